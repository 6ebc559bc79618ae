package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// kernel is Debian's kernel and busybox, unpacked in the cache.
type kernel struct {
	version string   // 6.1.0-41-amd64
	vmlinuz string   // its bzImage
	modules []module // kvm-amd and what it needs, in load order
	busybox string   // the static busybox
}

// module is one kernel module to load inside.
type module struct {
	name string // kvm-amd
	path string // the .ko file, possibly compressed (.ko.xz, .ko.zst, .ko.gz)
}

// wantModule is the module the VM loads; its .modinfo says what it needs
// (kvm and ccp, and irqbypass under kvm).
const wantModule = "kvm-amd"

// ensureTools installs QEMU with apt-get when it is missing.
func ensureTools(ctx context.Context, stderr io.Writer) error {
	for _, t := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: the nested VM is built from Debian's packages and needs a Debian-like host", t)
		}
	}
	var need []string
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		need = append(need, "qemu-system-x86")
	}
	if len(need) == 0 {
		return nil
	}
	fmt.Fprintf(stderr, "nested-kvm: installing %s\n", strings.Join(need, " "))
	if out, err := root(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v\n%s", err, out)
	}
	cmd := root(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, need...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %v\n%s", strings.Join(need, " "), err, out)
	}
	return nil
}

// root runs a command as root: directly when we are root, else with sudo.
func root(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err == nil {
			return exec.CommandContext(ctx, "sudo", append([]string{"-n", name}, args...)...)
		}
	}
	return exec.CommandContext(ctx, name, args...)
}

// fetchKernel downloads (once) and unpacks (once) linux-image-amd64, the
// versioned kernel package it depends on, and busybox-static.
func fetchKernel(ctx context.Context, cache string, stderr io.Writer) (*kernel, error) {
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	meta, err := fetchDeb(ctx, debs, "linux-image-amd64", stderr)
	if err != nil {
		return nil, err
	}
	dep, err := exec.CommandContext(ctx, "dpkg-deb", "-f", meta, "Depends").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -f %s Depends: %v", meta, err)
	}
	image := strings.FieldsFunc(string(dep), func(r rune) bool { return strings.ContainsRune(" ,|(\n", r) })
	if len(image) == 0 || !strings.HasPrefix(image[0], "linux-image-") {
		return nil, fmt.Errorf("%s: no linux-image package in Depends %q", filepath.Base(meta), dep)
	}
	kdeb, err := fetchDeb(ctx, debs, image[0], stderr)
	if err != nil {
		return nil, err
	}
	bdeb, err := fetchDeb(ctx, debs, "busybox-static", stderr)
	if err != nil {
		return nil, err
	}
	kdir, err := unpack(ctx, cache, kdeb)
	if err != nil {
		return nil, err
	}
	bdir, err := unpack(ctx, cache, bdeb)
	if err != nil {
		return nil, err
	}

	k := &kernel{busybox: filepath.Join(bdir, "bin", "busybox")}
	vers, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*"))
	if len(vers) != 1 {
		return nil, fmt.Errorf("%s: want one kernel under lib/modules, found %d", kdir, len(vers))
	}
	k.version = filepath.Base(vers[0])
	k.vmlinuz = filepath.Join(kdir, "boot", "vmlinuz-"+k.version)
	if _, err := os.Stat(k.vmlinuz); err != nil {
		return nil, err
	}
	if _, err := os.Stat(k.busybox); err != nil {
		return nil, err
	}
	if k.modules, err = moduleOrder(vers[0], wantModule); err != nil {
		return nil, err
	}
	return k, nil
}

// fetchDeb returns the cached .deb of pkg, downloading it with apt-get
// download the first time. The package lists are updated only when apt
// does not know the package.
func fetchDeb(ctx context.Context, debs, pkg string, stderr io.Writer) (string, error) {
	if have, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb")); len(have) > 0 {
		sort.Strings(have)
		return have[len(have)-1], nil
	}
	tmp, err := os.MkdirTemp(debs, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(stderr, "nested-kvm: apt-get download %s (once; kept in %s)\n", pkg, debs)
	download := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-qq", pkg)
		cmd.Dir = tmp
		return cmd.CombinedOutput()
	}
	out, err := download()
	if err != nil && bytes.Contains(out, []byte("Unable to locate package")) {
		if uout, uerr := root(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update: %v\n%s", uerr, uout)
		}
		out, err = download()
	}
	if err != nil {
		return "", fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(got))
	}
	dst := filepath.Join(debs, filepath.Base(got[0]))
	return dst, os.Rename(got[0], dst)
}

// unpack extracts a .deb with dpkg-deb -x into the cache, once.
func unpack(ctx context.Context, cache, deb string) (string, error) {
	dir := filepath.Join(cache, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	done := filepath.Join(dir, ".unpacked")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	return dir, os.WriteFile(done, nil, 0o644)
}

// moduleOrder returns the module name under moddir and the modules it
// depends on, in the order to load them (dependencies first). The
// dependencies come from each module's .modinfo "depends=" (the package
// ships no modules.dep: depmod makes it at install).
func moduleOrder(moddir, name string) ([]module, error) {
	files := map[string]string{} // module name (with _) -> file
	err := filepath.WalkDir(filepath.Join(moddir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			files[normMod(modName(p))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[normMod(n)] {
		case 1:
			return fmt.Errorf("module %s depends on itself", n)
		case 2:
			return nil
		}
		state[normMod(n)] = 1
		path, ok := files[normMod(n)]
		if !ok {
			return fmt.Errorf("%s: module %s not found", moddir, n)
		}
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[normMod(n)] = 2
		order = append(order, module{name: modName(path), path: path})
		return nil
	}
	return order, visit(name)
}

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	data, err := moduleBytes(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// normMod is a module name as the kernel spells it: kvm-amd is kvm_amd.
func normMod(n string) string { return strings.ReplaceAll(n, "-", "_") }

// modName is the module name of a modules.dep path:
// kernel/arch/x86/kvm/kvm-amd.ko.xz is kvm-amd.
func modName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return base
}

// moduleBytes reads a module, decompressing it when it is compressed.
func moduleBytes(path string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(path, ".ko.xz"):
		return decompress("xz", path)
	case strings.HasSuffix(path, ".ko.zst"):
		return decompress("zstd", path)
	}
	return nil, fmt.Errorf("%s: unknown module compression", path)
}

func decompress(tool, path string) ([]byte, error) {
	out, err := exec.Command(tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %v (install %s)", tool, path, err, tool)
	}
	return out, nil
}
