package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Inside the VM the repository's layout is rebuilt under repoDir, so each
// test binary runs from its package folder and finds ../testdata as `go
// test` would; the commands the tests build with `go build` are under
// prebuiltDir, by import path.
const (
	repoDir     = "/repo"
	prebuiltDir = "/usr/libexec/vmrr-nested"
)

// binaries is what buildBinaries made.
type binaries struct {
	module string         // the module path, vmrr
	tests  []testBinary   // in run order
	failed []buildFailure // packages whose tests did not build
	vmrr   string         // vmrr inside the VM, "" if it did not build
}

// testBinary is one package's test binary, as seen inside the VM.
type testBinary struct {
	pkgSpec
	dir string // its package folder inside: /repo/machine
	bin string // ./machine.test
}

type buildFailure struct {
	importPath, output string
}

// buildBinaries builds, into root (the initramfs's tree), a static test
// binary for each package, the commands their tests build, vmrr, and copies
// the testdata they read.
func buildBinaries(ctx context.Context, pkgs []pkgSpec, root string, stderr io.Writer) (*binaries, error) {
	mod, err := goOutput(ctx, "list", "-m")
	if err != nil {
		return nil, err
	}
	b := &binaries{module: mod}
	if err := copyTree("testdata", filepath.Join(root, repoDir, "testdata")); err != nil {
		return nil, err
	}
	built := map[string]bool{}
	helper := func(dir string) error {
		ip, err := goOutput(ctx, "list", "-f", "{{.ImportPath}}", dir)
		if err != nil {
			return err
		}
		if built[ip] {
			return nil
		}
		out, err := goStatic(ctx, "build", "-o", filepath.Join(root, prebuiltDir, ip), dir)
		if err != nil {
			return fmt.Errorf("go build %s: %v\n%s", dir, err, out)
		}
		built[ip] = true
		return nil
	}
	if err := helper("./cmd/vmrr"); err != nil {
		fmt.Fprintf(stderr, "nested-kvm: %v\n", err)
	} else {
		b.vmrr = filepath.Join(prebuiltDir, mod, "cmd", "vmrr")
	}
	for _, p := range pkgs {
		ip, err := goOutput(ctx, "list", "-f", "{{.ImportPath}}", p.dir)
		if err != nil {
			b.failed = append(b.failed, buildFailure{importPath: p.dir, output: err.Error()})
			continue
		}
		p.importPath = ip
		rel := strings.TrimPrefix(p.dir, "./")
		t := testBinary{pkgSpec: p, dir: filepath.Join(repoDir, rel), bin: "./" + filepath.Base(ip) + ".test"}
		hostBin := filepath.Join(root, t.dir, t.bin)
		fmt.Fprintf(stderr, "nested-kvm: go test -c %s\n", p.dir)
		if out, err := goStatic(ctx, "test", "-c", "-o", hostBin, p.dir); err != nil {
			b.failed = append(b.failed, buildFailure{importPath: ip, output: strings.TrimSpace(string(out))})
			continue
		}
		if _, err := os.Stat(hostBin); err != nil {
			fmt.Fprintf(stderr, "nested-kvm: %s has no tests\n", ip)
			continue
		}
		var herr error
		for _, h := range helpers[p.dir] {
			if herr = helper(h); herr != nil {
				break
			}
		}
		if herr != nil {
			b.failed = append(b.failed, buildFailure{importPath: ip, output: herr.Error()})
			continue
		}
		if err := copyPackageData(rel, filepath.Join(root, t.dir)); err != nil {
			return nil, err
		}
		b.tests = append(b.tests, t)
	}
	return b, nil
}

// goStatic runs the go command with cgo off, so the binaries it builds are
// static and run on the initramfs's bare busybox.
func goStatic(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

func goOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// copyPackageData copies what a package's tests may read from their folder:
// its files other than Go sources, and its testdata tree.
func copyPackageData(rel, dst string) error {
	ents, err := os.ReadDir(rel)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".go") {
			if err := copyFile(filepath.Join(rel, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(rel, "testdata")); err == nil {
		return copyTree(filepath.Join(rel, "testdata"), filepath.Join(dst, "testdata"))
	}
	return nil
}

// copyTree copies the regular files and folders under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case d.Type().IsRegular():
			return copyFile(p, filepath.Join(dst, rel))
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, fi.Mode().Perm())
}
