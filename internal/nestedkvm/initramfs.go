package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// marker starts the lines /init prints for the host to follow the run:
//
//	marker kernel VERSION
//	marker kvm ready | marker kvm missing
//	marker caps begin ... marker caps end STATUS
//	marker begin IMPORTPATH
//	marker end IMPORTPATH STATUS
//	marker done
const marker = "@@vmrr-nested@@"

// writeInitramfs completes the tree under root (busybox, modules, /init,
// the stand-in go) and writes it as a gzipped newc cpio archive.
func writeInitramfs(path, root string, k *kernel, b *binaries, o *options) error {
	if err := copyFile(k.busybox, filepath.Join(root, "bin", "busybox")); err != nil {
		return err
	}
	var mods []string // each an insmod argument list
	for _, m := range k.modules {
		data, err := moduleBytes(m.path)
		if err != nil {
			return err
		}
		p := filepath.Join("/lib/modules", m.name+".ko")
		if err := write(root, p, data, 0o644); err != nil {
			return err
		}
		if normMod(m.name) == "kvm_amd" && o.kvmAMD != "" {
			p += " " + o.kvmAMD
		}
		mods = append(mods, p)
	}
	if err := write(root, "/init", []byte(initScript(mods, b, o)), 0o755); err != nil {
		return err
	}
	if err := write(root, "/bin/go", []byte(goShim(b.module)), 0o755); err != nil {
		return err
	}
	// rdinit=/bin/sh boots to a bare shell.
	if err := os.Symlink("busybox", filepath.Join(root, "bin", "sh")); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "root", "sbin", "usr/bin", "usr/sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := writeCpio(zw, root); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func write(root, p string, data []byte, perm os.FileMode) error {
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, data, perm)
}

// initScript is the VM's /init: it mounts what the tests need, loads the
// modules, checks /dev/kvm, runs vmrr caps and each test binary from its
// package folder, and powers off.
func initScript(mods []string, b *binaries, o *options) string {
	var s strings.Builder
	s.WriteString(`#!/bin/busybox sh
# /init of the nested KVM test VM (written by internal/nestedkvm).
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
# The end-to-end tests run their guests on KVM here, not on the soft CPU.
export VMRR_TEST_ACCEL=kvm
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
M=` + marker + `
echo "$M kernel $(uname -r)"
`)
	for _, m := range mods {
		fmt.Fprintf(&s, "insmod %s || echo \"$M insmod %s failed\"\n", m, strings.ReplaceAll(m, `"`, ""))
	}
	s.WriteString(`i=0
while [ ! -c /dev/kvm ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
dmesg | grep -iE 'kvm|svm|nested' | sed "s/^/$M dmesg /"
if [ ! -c /dev/kvm ]; then
	echo "$M kvm missing"
	dmesg | tail -n 20
	poweroff -f
fi
echo "$M kvm ready"
if grep -qw vmrr.shell /proc/cmdline; then
	echo "vmrr.shell: a shell instead of the tests; they are under ` + repoDir + `, as /init runs them; poweroff -f ends"
	setsid cttyhack sh
	poweroff -f
fi
`)
	if b.vmrr != "" {
		fmt.Fprintf(&s, "echo \"$M caps begin\"\n%s caps 2>&1\necho \"$M caps end $?\"\n", b.vmrr)
	}
	for _, t := range b.tests {
		args := []string{t.bin, "-test.v=test2json", "-test.timeout=" + t.timeout.String()}
		if o.run != "" {
			args = append(args, "-test.run="+shellQuote(o.run))
		}
		if o.short {
			args = append(args, "-test.short")
		}
		fmt.Fprintf(&s, "echo \"$M begin %s\"\ncd %s && %s </dev/null 2>&1\necho \"$M end %s $?\"\n",
			t.importPath, t.dir, strings.Join(args, " "), t.importPath)
	}
	s.WriteString("cd /\necho \"$M done\"\nsync\npoweroff -f\n")
	return s.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// goShim is /bin/go inside: the tests build vmrr (and a few other
// commands) with `go build -o OUT PKG`; it copies the static binary the host
// built for PKG instead.
func goShim(module string) string {
	return `#!/bin/sh
# go, as far as the tests need it in the nested VM: "go build -o OUT PKG"
# copies the static binary of PKG built on the host (internal/nestedkvm).
if [ "$1" != build ]; then
	echo "go $1: not available in the nested VM (only go build -o OUT PKG of a prebuilt command)" >&2
	exit 2
fi
shift
out= pkg=
while [ $# -gt 0 ]; do
	case "$1" in
	-o) out=$2; shift 2 ;;
	-*) shift ;;
	*) pkg=$1; shift ;;
	esac
done
case "$pkg" in
"" | . | ./* | ../*)
	dir=$(cd "${pkg:-.}" && pwd) || exit 1
	case "$dir" in
	` + repoDir + `) pkg=` + module + ` ;;
	` + repoDir + `/*) pkg=` + module + `${dir#` + repoDir + `} ;;
	*) echo "go build: $dir is outside the repository" >&2; exit 1 ;;
	esac
	;;
esac
bin=` + prebuiltDir + `/$pkg
if [ ! -f "$bin" ]; then
	echo "go build $pkg: not built for the nested VM (internal/nestedkvm builds only the commands the tests need)" >&2
	exit 1
fi
[ -n "$out" ] || out=./${pkg##*/}
cp "$bin" "$out" && chmod 755 "$out"
`
}

// writeCpio writes the tree under root as a newc cpio archive (the format
// the kernel unpacks as its initramfs), owned by root.
func writeCpio(w io.Writer, root string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths) // folders before what they hold
	mtime := time.Now().Unix()
	ino := 1
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var mode uint32
		var data []byte
		nlink := 1
		switch {
		case fi.IsDir():
			mode, nlink = 0o040000|0o755, 2
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			mode, data = 0o120777, []byte(target)
		case fi.Mode().IsRegular():
			mode = 0o100000 | uint32(fi.Mode().Perm())
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		default:
			continue
		}
		if err := cpioEntry(w, rel, ino, mode, nlink, mtime, data); err != nil {
			return err
		}
		ino++
	}
	return cpioEntry(w, "TRAILER!!!", 0, 0, 1, 0, nil)
}

// cpioEntry writes one newc header, name and data, each padded to 4 bytes.
func cpioEntry(w io.Writer, name string, ino int, mode uint32, nlink int, mtime int64, data []byte) error {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, pad4(len(data))))
	return err
}

func pad4(n int) int { return (4 - n%4) % 4 }
