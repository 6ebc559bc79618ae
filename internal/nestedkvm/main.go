// Command nestedkvm runs the KVM backend's tests inside a nested KVM, for
// machines without /dev/kvm: QEMU's software CPU with -cpu max emulates AMD
// SVM with nested paging, and Debian's kernel loads kvm-amd in it.
//
// It builds static test binaries (go test -c) and a static vmrr on the host,
// packs them with busybox, the kvm modules and the repository's testdata
// into an initramfs, boots Debian's kernel on it in qemu-system-x86_64, and
// reports each test's result as go test does. The Debian packages are
// fetched once with apt-get download and kept in a cache directory.
//
// Usage (from the repository; .ci/nested-kvm runs it):
//
//	go run ./internal/nestedkvm [flags] [packages]
//
// The packages default to the KVM backend's: ./machine/kvm, ./machine,
// ./machine/probe, ./tlbsync and ./cmd/vmrr. docs/nested-kvm.md has more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// defaultPackages are the packages whose tests drive KVM, in the order they
// run inside, and the -test.timeout each gets there.
var defaultPackages = []pkgSpec{
	{dir: "./machine/kvm", timeout: 2 * time.Minute},
	{dir: "./machine", timeout: 8 * time.Minute},
	{dir: "./machine/probe", timeout: 4 * time.Minute},
	{dir: "./tlbsync", timeout: 4 * time.Minute},
	{dir: "./cmd/vmrr", timeout: 15 * time.Minute},
}

// helpers are the commands a package's tests build with `go build`; inside
// the VM a stand-in go copies the binary built on the host.
var helpers = map[string][]string{
	"./cmd/vmrr": {"./cmd/vmrr"},
	"./shell":    {"./shell/internal/fakeshell"},
}

// pkgSpec is one package to test inside.
type pkgSpec struct {
	dir        string        // as given: ./machine
	importPath string        // vmrr/machine
	timeout    time.Duration // its -test.timeout inside
}

type options struct {
	cache      string
	timeout    time.Duration
	pkgTimeout time.Duration
	run        string
	short      bool
	verbose    bool
	logPath    string
	mem        int
	keep       bool
	shell      bool
	kvmAMD     string // module parameters of kvm-amd inside: "npt=0"
	packages   []pkgSpec
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	var o options
	fs := flag.NewFlagSet("nested-kvm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: nested-kvm [flags] [packages]\n\n"+
			"Runs the KVM backend's tests in a nested KVM (QEMU TCG, -cpu max) and reports them as go test does.\n"+
			"Packages default to %s.\n\n", strings.Join(pkgDirs(defaultPackages), " "))
		fs.PrintDefaults()
	}
	fs.StringVar(&o.cache, "cache", defaultCache(), "where the Debian packages are kept (env VMRR_NESTED_CACHE)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "limit for the whole VM run")
	fs.DurationVar(&o.pkgTimeout, "pkg-timeout", 0, "each package's -test.timeout inside (default: per package, 2m-15m; 10m for others)")
	fs.StringVar(&o.run, "run", "", "run only the tests matching this regular expression (-test.run)")
	fs.BoolVar(&o.short, "short", false, "pass -test.short to the tests")
	fs.BoolVar(&o.verbose, "v", false, "also stream the VM's whole console (every test's output)")
	fs.StringVar(&o.logPath, "log", "", "write the VM's whole console here (default: console.log in the cache)")
	fs.IntVar(&o.mem, "mem", 2048, "the nested VM's memory in MiB")
	fs.BoolVar(&o.keep, "keep", false, "keep the build directory (initramfs, kernel, binaries) and print its path")
	fs.BoolVar(&o.shell, "shell", false, "boot the same VM to a shell on this terminal instead of running the tests")
	fs.StringVar(&o.kvmAMD, "kvm-amd", "", "module parameters for kvm-amd inside, e.g. npt=0 (shadow paging instead of nested paging)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.logPath == "" {
		o.logPath = filepath.Join(o.cache, "console.log")
	}
	o.packages = defaultPackages
	if fs.NArg() > 0 {
		o.packages = nil
		for _, d := range fs.Args() {
			p := pkgSpec{dir: pkgDir(d), timeout: 10 * time.Minute}
			for _, q := range defaultPackages {
				if q.dir == p.dir {
					p.timeout = q.timeout
				}
			}
			o.packages = append(o.packages, p)
		}
	}
	if o.pkgTimeout > 0 {
		for i := range o.packages {
			o.packages[i].timeout = o.pkgTimeout
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := nested(ctx, &o, start, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nested-kvm: %v\n", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// nested does the work: tools, packages, binaries, initramfs, the VM.
func nested(ctx context.Context, o *options, start time.Time, stdout, stderr io.Writer) (bool, error) {
	if _, err := os.Stat("go.mod"); err != nil {
		return false, errors.New("run from the repository's root (go.mod not found)")
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		fmt.Fprintln(stderr, "nested-kvm: note: this machine has /dev/kvm; `go test` runs these tests directly and much faster")
	}
	if err := ensureTools(ctx, stderr); err != nil {
		return false, err
	}
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return false, err
	}
	k, err := fetchKernel(ctx, o.cache, stderr)
	if err != nil {
		return false, err
	}
	work, err := os.MkdirTemp("", "vmrr-nested-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintf(stderr, "nested-kvm: build directory %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	buildStart := time.Now()
	b, err := buildBinaries(ctx, o.packages, filepath.Join(work, "root"), stderr)
	if err != nil {
		return false, err
	}
	initrd := filepath.Join(work, "initrd.gz")
	if err := writeInitramfs(initrd, filepath.Join(work, "root"), k, b, o); err != nil {
		return false, err
	}
	buildTime := time.Since(buildStart)
	fmt.Fprintf(stderr, "nested-kvm: built %d test binaries and the initramfs in %s; booting %s\n",
		len(b.tests), buildTime.Round(time.Second), k.version)

	if o.shell {
		return true, bootShell(ctx, o, k, initrd)
	}
	logf, err := os.Create(o.logPath)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	rep := newReport(stdout, o.verbose)
	for _, f := range b.failed {
		rep.buildFailed(f.importPath, f.output)
	}
	rep.expect(b.tests)
	vmStart := time.Now()
	vmErr := boot(ctx, o, k, initrd, io.MultiWriter(logf, rep))
	rep.finish(vmErr)
	fmt.Fprintf(stdout, "\nnested KVM (kernel %s, TCG -cpu max): wall time %s (build %s, VM %s); console log %s\n",
		k.version, time.Since(start).Round(time.Second), buildTime.Round(time.Second),
		time.Since(vmStart).Round(time.Second), o.logPath)
	rep.summary()
	return rep.ok(), nil
}

// pkgDir cleans a package argument to the ./dir form go accepts.
func pkgDir(d string) string {
	d = filepath.Clean(d)
	if d == "." {
		return "."
	}
	return "./" + strings.TrimPrefix(d, "./")
}

func pkgDirs(ps []pkgSpec) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.dir)
	}
	return s
}

// defaultCache is $VMRR_NESTED_CACHE, else vmrr-nested in the user's cache
// directory.
func defaultCache() string {
	if d := os.Getenv("VMRR_NESTED_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vmrr-nested")
	}
	return filepath.Join(os.TempDir(), "vmrr-nested")
}
