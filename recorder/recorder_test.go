package recorder_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/recorder"
)

// readGuest reads a committed guest image.
func readGuest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "guests", name+".elf"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kinds counts a log's events by kind and returns its header.
func kinds(t *testing.T, path string) (*logfmt.Header, map[logfmt.Kind]int) {
	t.Helper()
	r, err := logfmt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := map[logfmt.Kind]int{}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n[ev.Kind]++
	}
	return r.Header(), n
}

// TestRecord records guests that exercise each kind of input and checks
// what the log holds: the header says how it was made, and each input the
// guest saw is an event.
func TestRecord(t *testing.T) {
	tests := []struct {
		guest   string
		serial  string
		status  int
		console string // a regexp
		want    map[logfmt.Kind]int
	}{
		{"hello", "", 1, `^hello from vmrr\n$`, map[logfmt.Kind]int{logfmt.KindEnd: 1}},
		{"timer", "", 1, `^ticks: 20\n$`, map[logfmt.Kind]int{logfmt.KindInterrupt: 20, logfmt.KindEnd: 1}},
		{"nondet", "", 1, `rdtsc: 0x`, map[logfmt.Kind]int{logfmt.KindRingFlush: 1, logfmt.KindEnd: 1}},
		{"serial-echo", "ab q", 1, `^ready\nab bye\n$`, map[logfmt.Kind]int{logfmt.KindSerialRX: 1, logfmt.KindEnd: 1}},
		{"crash", "", machine.StatusTripleFault, `^about to crash\n$`, map[logfmt.Kind]int{logfmt.KindEnd: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.guest, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.guest+".vmrr")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			var console, stats bytes.Buffer
			var serial io.Reader
			if tc.serial != "" {
				serial = strings.NewReader(tc.serial)
			}
			res, err := recorder.Record(f, recorder.Options{ImagePath: tc.guest, Image: readGuest(t, tc.guest), Mode: nondet.ModeFast,
				Console: &console, Serial: serial, Timeout: time.Minute, Warnings: io.Discard, TLBSync: true,
				Accel: testAccel(), Stats: &stats})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || !regexp.MustCompile(tc.console).MatchString(console.String()) {
				t.Errorf("status %d console %q, want %d and %s", res.Status, console.String(), tc.status, tc.console)
			}
			h, n := kinds(t, path)
			if h.Accel != string(testAccel()) || h.Boot != "elf64" || h.Mode != "fast" || !h.TLBSync || h.ImagePath != tc.guest {
				t.Errorf("header accel %q boot %q mode %q tlbsync %v image %q", h.Accel, h.Boot, h.Mode, h.TLBSync, h.ImagePath)
			}
			for k, min := range tc.want {
				if n[k] < min {
					t.Errorf("%d %s events, want at least %d (all: %v)", n[k], k, min, n)
				}
			}
			if !strings.HasPrefix(stats.String(), "vmrr: stats: cpu "+string(testAccel())+", ") {
				t.Errorf("stats %q", stats.String())
			}
		})
	}
}

// TestRun is `vmrr run`: a live run that writes no log.
func TestRun(t *testing.T) {
	var console bytes.Buffer
	res, err := recorder.Record(nil, recorder.Options{Image: readGuest(t, "timer"), Console: &console, Warnings: io.Discard, Accel: testAccel()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 1 || console.String() != "ticks: 20\n" {
		t.Errorf("status %d console %q", res.Status, console.String())
	}
}

// TestRecordEnds covers runs that end without the guest's exit: a time
// limit and a guest halted for good. The log still ends with an end record.
func TestRecordEnds(t *testing.T) {
	tests := []struct {
		name    string
		image   []byte
		timeout time.Duration
		reason  machine.Reason
	}{
		{"timeout", []byte{0xeb, 0xfe}, 200 * time.Millisecond, machine.ReasonTimeout}, // jmp $
		{"hung", []byte{0xfa, 0xf4}, time.Minute, machine.ReasonHung},                  // cli; hlt
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.vmrr")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			res, err := recorder.Record(f, recorder.Options{Image: tc.image, Mode: nondet.ModeFast, Timeout: tc.timeout,
				Warnings: io.Discard, Accel: testAccel()})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tc.reason {
				t.Errorf("reason %v, want %v (%s)", res.Reason, tc.reason, res.Message)
			}
			if _, n := kinds(t, path); n[logfmt.KindEnd] != 1 {
				t.Errorf("events %v, want one end record", n)
			}
		})
	}
}

// TestRecordFastTimer halts between timer ticks that come every 10 or
// 50 us (PIT divisor 12 or 60), so the next tick is at times already due
// when the idle vCPU computes how long to sleep. An overdue tick is no
// reason to call the guest hung: it must run to its 200th tick and exit.
// The handler counts and exits itself: where the CPU is slower than the
// timer (the race detector), the loop it interrupts would never run.
func TestRecordFastTimer(t *testing.T) {
	for _, divisor := range []byte{12, 60} {
		// Real mode: IVT[8] = handler; unmask IRQ0; PIT channel 0 mode 2
		// with the divisor; then sti; hlt; jmp back. The handler counts
		// ticks at 0x600 and at 200 exits through the debug port.
		image := []byte{
			0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xc7, 0x06, 0x20, 0x00, 0x25, 0x7c, 0xc7, // cli; xor ax,ax; mov ds,ax; mov [0x20],handler
			0x06, 0x22, 0x00, 0x00, 0x00, 0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6, // mov [0x22],0; out 0x21,0xfe; out 0x43,0x34
			0x43, 0xb0, divisor, 0xe6, 0x40, 0x30, 0xc0, 0xe6, 0x40, 0xfb, 0xf4, 0xeb, // out 0x40,divisor; out 0x40,0; 1: sti; hlt; jmp 1b
			0xfc, 0xff, 0x06, 0x00, 0x06, 0x81, 0x3e, 0x00, 0x06, 0xc8, 0x00, 0x73, // handler: inc [0x600]; cmp [0x600],200; jae 2f
			0x05, 0xb0, 0x20, 0xe6, 0x20, 0xcf, 0x30, 0xc0, 0xe6, 0xf4, // out 0x20,0x20; iret; 2: out 0xf4,0
		}
		t.Run(fmt.Sprintf("divisor %d", divisor), func(t *testing.T) {
			for range 3 {
				// No time limit: with one, an idle guest waits for it instead
				// of being called hung.
				res, err := recorder.Record(io.Discard, recorder.Options{Image: image, Mode: nondet.ModeFast,
					Warnings: io.Discard, Accel: testAccel()})
				if err != nil {
					t.Fatal(err)
				}
				if res.Reason != machine.ReasonExited {
					t.Fatalf("reason %v, want the guest's exit (%s)", res.Reason, res.Message)
				}
			}
		})
	}
}

// TestRecordBadImage refuses what is not a guest, with an error, not a
// panic, and writes no log.
func TestRecordBadImage(t *testing.T) {
	var log bytes.Buffer
	_, err := recorder.Record(&log, recorder.Options{Image: []byte("\x7fELF\x02\x01\x01 not really"), Mode: nondet.ModeFast,
		Warnings: io.Discard, Accel: testAccel()})
	if err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("error %v, want one about the ELF image", err)
	}
	if log.Len() != 0 {
		t.Errorf("%d bytes of log written for an image that never ran", log.Len())
	}
}
