package main

// Differential tests of the soft CPU: the difftest guests (testdata/guests,
// difftest.c with the generated difftest32.S and difftest64.S) run
// thousands of random integer instructions and print a hash of the
// registers, the defined flags and a scratch buffer after each block. The
// 32-bit image must print the same under `vmrr run --accel soft` as under
// QEMU TCG; the 64-bit blocks, built into an ordinary Linux program, must
// print the same on the host CPU as the 64-bit image on the soft CPU.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

var difftestCPUID = regexp.MustCompile(`^difftest(?:32|64) cpuid:((?: \w+)*)$`)

// difftestSoft runs a difftest image on the soft CPU and returns its
// console and the optional instructions its CPUID offered.
func difftestSoft(t *testing.T, image string) (string, []string) {
	t.Helper()
	r := runVMRR(t, "run", "--accel", "soft", guestPath(image))
	if r.status != 1 {
		t.Fatalf("%s on the soft CPU: %s", image, r)
	}
	first, _, _ := strings.Cut(r.stdout, "\n")
	m := difftestCPUID.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("%s on the soft CPU: first line %q, want %s", image, first, difftestCPUID)
	}
	return r.stdout, strings.Fields(m[1])
}

// difftestSame fails the test unless two consoles of a difftest image are
// equal, naming the blocks that differ (dt_block_N in the .S file).
func difftestSame(t *testing.T, src, nameA, a, nameB, b string) {
	t.Helper()
	la := strings.Split(strings.TrimSuffix(a, "\n"), "\n")
	lb := strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	// A console that stopped early would match nothing: demand the
	// summary line and most blocks run.
	summary := regexp.MustCompile(`^difftest: (\d+) blocks, hash 0x[0-9a-f]{16}$`)
	if m := summary.FindStringSubmatch(la[len(la)-1]); m == nil || len(m[1]) < 3 {
		t.Fatalf("%s console does not end in a summary of 100 or more blocks:\n%s", nameA, a)
	}
	var diffs []string
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			diffs = append(diffs, fmt.Sprintf("  %s: %q\n  %s: %q", nameA, x, nameB, y))
		}
	}
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("  ... %d more", len(diffs)-10))
		}
		t.Errorf("%d console lines differ (block N is dt_block_N in testdata/guests/%s):\n%s",
			len(diffs), src, strings.Join(diffs, "\n"))
	}
}

func TestDifftestSoftVsQEMU(t *testing.T) {
	soft, feats := difftestSoft(t, "difftest32")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("the comparison needs qemu-system-x86_64 (Debian: apt-get install qemu-system-x86; .ci/run does): %v", err)
	}
	// QEMU's CPU gets the soft CPU's optional instructions and no others,
	// so both run the same blocks.
	model := "max"
	for _, f := range []struct{ name, qemu string }{{"popcnt", "popcnt"}, {"lzcnt", "abm"}, {"tzcnt", "bmi1"}} {
		if !strings.Contains(" "+strings.Join(feats, " ")+" ", " "+f.name+" ") {
			model += ",-" + f.qemu
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eLimit)
	defer cancel()
	// The devices of vmrr bench qemu: COM1 on stdout, isa-debug-exit.
	cmd := exec.CommandContext(ctx, qemu, "-cpu", model, "-accel", "tcg", "-display", "none", "-no-reboot", "-net", "none",
		"-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guestPath("difftest32"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("QEMU still running after %v", e2eLimit)
	case err != nil && !errors.As(err, &ee):
		t.Fatalf("QEMU: %v", err)
	case cmd.ProcessState.ExitCode() != 1:
		t.Fatalf("QEMU -cpu %s: status %d, want 1 (stderr %q)", model, cmd.ProcessState.ExitCode(), errOut.String())
	}
	difftestSame(t, "difftest32.S", "soft CPU", soft, "QEMU -cpu "+model, out.String())
}

func TestDifftestSoftVsHost(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the host oracle runs x86-64 code natively on Linux")
	}
	soft, feats := difftestSoft(t, "difftest64")
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("building the native difftest needs gcc: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "difftest64")
	build := exec.Command(gcc, "-O1", "-static", "-fno-pie", "-no-pie", "-DDT_NATIVE", "-o", bin,
		filepath.Join(e2eGuests, "difftest.c"), filepath.Join(e2eGuests, "difftest64.S"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the native difftest: %v\n%s", err, out)
	}
	// The native run uses the soft CPU's optional instructions where the
	// host has them too; a difference shows in the first line.
	native, err := exec.Command(bin, feats...).Output()
	if err != nil {
		t.Fatalf("native difftest: %v", err)
	}
	difftestSame(t, "difftest64.S", "soft CPU", soft, "host CPU", string(native))
}

// TestDifftestSources checks that the committed difftest32.S and
// difftest64.S are what the generator writes, so the images built from
// them and the native build above test the same code.
func TestDifftestSources(t *testing.T) {
	dir := t.TempDir()
	gen := exec.Command("go", "run", "./gen/difftest", "-o", dir)
	gen.Dir = e2eGuests
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen/difftest: %v\n%s", err, out)
	}
	for _, name := range []string{"difftest32.S", "difftest64.S"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(e2eGuests, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/guests/%s differs from the generator's output: run make in testdata/guests", name)
		}
	}
}
