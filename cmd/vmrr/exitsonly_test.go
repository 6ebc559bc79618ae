package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"vmrr/logfmt"
	"vmrr/machine/probe"
)

// TestRecordExitsOnly records guests whose timer ticks and serial input are
// placed at their own exits only (vmrr record --exits-only, which a KVM
// without an exact instruction counter does by itself) and replays each
// log three times. Such a log replays on any CPU, counter or not.
// tlbsync is off: a KVM without the counter (AMD SVM) cannot keep page
// tables read-only either, and it has nothing to do with where events go.
func TestRecordExitsOnly(t *testing.T) {
	dir := t.TempDir()
	input := writeFile(t, dir, "input", []byte("ab q"))
	tests := []struct {
		guest   string
		args    []string
		console string
		events  logfmt.Kind // at least one of them
	}{
		{"timer", nil, "ticks: 20\n", logfmt.KindInterrupt},
		{"timer-multiboot", nil, "ticks: 20\n", logfmt.KindInterrupt},
		{"serial-echo", []string{"--serial-in", input}, "ready\nab bye\n", logfmt.KindSerialRX},
		{"hello", nil, "hello from vmrr\n", logfmt.KindEnd},
	}
	for _, tc := range tests {
		t.Run(tc.guest, func(t *testing.T) {
			log := filepath.Join(dir, tc.guest+".vmrr")
			args := append([]string{"record", "--exits-only", "--tlbsync=off", "-o", log}, tc.args...)
			if r := runVMRR(t, append(args, guestPath(tc.guest))...); r.status != 1 || r.stdout != tc.console {
				t.Fatalf("record: %s, want status 1 and %q", r, tc.console)
			}
			lr, err := logfmt.Open(log)
			if err != nil {
				t.Fatal(err)
			}
			defer lr.Close()
			if !lr.Header().ExitsOnly {
				t.Error("the header does not say the events are at exits only")
			}
			n := 0
			for {
				ev, err := lr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if ev.Pos.Insn != 0 {
					t.Errorf("%s event at %s: a position with an instruction count", ev.Kind, ev.Pos)
				}
				if ev.Kind == tc.events {
					n++
				}
			}
			if n == 0 {
				t.Errorf("no %s event in the log", tc.events)
			}
			for i := range 3 {
				if r := runVMRR(t, "replay", "--check", log); r.status != 0 {
					t.Fatalf("replay %d: %s", i+1, r)
				}
			}
		})
	}
	if e2eAccel() == "kvm" && probe.ExactCounter() != nil {
		// On a KVM without the counter no flag is needed: the recorder says
		// where its events go and the header keeps it.
		t.Run("automatic without a counter", func(t *testing.T) {
			log := filepath.Join(dir, "auto.vmrr")
			r := runVMRRAnyHost(t, nil, "record", "--accel", "kvm", "--tlbsync=off", "-o", log, guestPath("timer"))
			if r.status != 1 || !strings.Contains(r.stderr, "no exact instruction counter") ||
				!strings.Contains(r.stderr, "timer ticks and serial input wait for the guest's next port I/O or HLT") {
				t.Fatalf("record: %s, want status 1 and a line saying where events go", r)
			}
			if r := runVMRR(t, "replay", "--check", log); r.status != 0 {
				t.Fatalf("replay: %s", r)
			}
		})
	}
	t.Run("a time limit between exits", func(t *testing.T) {
		// jmp $ until --timeout: the recording ends at no exit of the
		// guest's, and the replay stops at the last one.
		forever := writeFile(t, dir, "forever.bin", []byte{0xeb, 0xfe})
		log := filepath.Join(dir, "forever.vmrr")
		if r := runVMRR(t, "record", "--exits-only", "--tlbsync=off", "--timeout", "300ms", "-o", log, forever); r.status != 70 {
			t.Fatalf("record: %s, want status 70 (timeout)", r)
		}
		r := runVMRR(t, "replay", "--check", log)
		want := regexp.MustCompile(`(?m)^vmrr: replay identical up to exit \d+, where the recording was cut between two exits \(timeout: .*\); it kept no state there to compare\n\z`)
		if r.status != 0 || !want.MatchString(r.stderr) {
			t.Errorf("replay: %s, want status 0 and a line matching %s", r, want)
		}
	})
	if e2eAccel() == "kvm" {
		// Exact mode on KVM runs the guest's clock on instruction counts.
		t.Run("exact mode", func(t *testing.T) {
			log := filepath.Join(dir, "exact.vmrr")
			r := runVMRR(t, "record", "--exits-only", "--mode", "exact", "--tlbsync=off", "-o", log, guestPath("timer"))
			want := regexp.MustCompile(`^vmrr: recorder: exact mode on KVM .* --mode fast, or on the soft CPU \(--accel soft\)\n$`)
			if r.status != exitUsage || !want.MatchString(r.stderr) {
				t.Errorf("%s, want status %d and one line matching %s", r, exitUsage, want)
			}
			if _, err := os.Stat(log); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a recording refused before the guest started left %s behind (%v)", log, err)
			}
		})
	}
	t.Run("a guest that spins without exits", func(t *testing.T) {
		// Real mode: unmask IRQ 0, start the PIT at ~1 kHz, sti; jmp $.
		// Its ticks can never be placed, and the recording says so
		// rather than running for ever.
		spin := writeFile(t, dir, "spin.bin", []byte{
			0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6, 0x43, // out 0x21,0xfe; out 0x43,0x34
			0xb0, 0xa9, 0xe6, 0x40, 0xb0, 0x04, 0xe6, 0x40, // out 0x40,0xa9; out 0x40,0x04
			0xfb, 0xeb, 0xfe, // sti; jmp $
		})
		log := filepath.Join(dir, "spin.vmrr")
		r := runVMRR(t, "record", "--exits-only", "--tlbsync=off", "-o", log, spin)
		// (On KVM a line before warns that a flat image gets no patches.)
		want := regexp.MustCompile(`(?m)^vmrr: recorder: a timer tick has waited [\d.]+s for the guest's next port I/O or HLT, .*--accel soft\), without --exits-only\n\z`)
		if r.status != exitUsage || !want.MatchString(r.stderr) {
			t.Errorf("%s, want status %d and one line matching %s", r, exitUsage, want)
		}
	})
}
