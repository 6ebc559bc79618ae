package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmrr/logfmt"
	"vmrr/machine/cpu"
)

// recordLog records image into dir/name with args and returns the log's path
// and the recording's result; the guest must end with status (0: any status
// the guest itself chose, an odd one).
func recordLog(t *testing.T, dir, name, image string, status int, args ...string) (string, e2eResult) {
	t.Helper()
	log := filepath.Join(dir, name)
	r := runVMRR(t, append(append([]string{"record", "-o", log}, args...), image)...)
	if status != 0 && r.status != status || status == 0 && r.status%2 != 1 {
		t.Fatalf("record %s: %s, want status %d", image, r, status)
	}
	return log, r
}

// rewriteLog copies the log at src to dst through the logfmt API, passing
// every event through edit: the result has valid checksums but says what
// edit made it say.
func rewriteLog(t *testing.T, src, dst string, edit func(i uint64, e *logfmt.Event)) {
	t.Helper()
	rewriteLogFrames(t, src, dst, 0, edit)
}

// rewriteLogFrames is rewriteLog with frames of about frameBytes (0: the
// default).
func rewriteLogFrames(t *testing.T, src, dst string, frameBytes int, edit func(i uint64, e *logfmt.Event)) {
	t.Helper()
	r, err := logfmt.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := logfmt.Create(dst, r.Header(), logfmt.WriterOptions{FrameBytes: frameBytes})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); ; i++ {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("%s: event %d: %v", src, i, err)
		}
		edit(i, e)
		if e.Kind == logfmt.KindEnd {
			if err := w.Close(e.End); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
}

// logFrames is where the frames of a log start: after the magic, the
// version and the header record (docs/logformat.md, "File layout").
func logFrames(t *testing.T, b []byte) int {
	t.Helper()
	const recordHeader = 16
	if len(b) < 12+recordHeader {
		t.Fatalf("log of %d bytes has no header record", len(b))
	}
	off := 12 + recordHeader + int(binary.LittleEndian.Uint32(b[16:]))
	if off+4 > len(b) || string(b[off:off+4]) != "FRAM" {
		t.Fatalf("no frame at offset %d", off)
	}
	return off
}

// TestReplayBadLogs replays logs that are not what was recorded, or not
// whole: each gets one line on stderr with its own status.
func TestReplayBadLogs(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()

	// A log whose image has been replaced since, and one replayed with
	// --image of another guest.
	img := writeFile(t, dir, "guest.elf", readGuest(t, "hello"))
	replaced, _ := recordLog(t, dir, "replaced.vmrr", img, 1)
	writeFile(t, dir, "guest.elf", readGuest(t, "timer"))
	hello, _ := recordLog(t, dir, "hello.vmrr", guestPath("hello"), 1)

	// nondet: its RDTSC values are in a ring flush. A flipped bit in the
	// frame is damage; a value changed through logfmt is a valid log of a
	// run that did not happen.
	nondet, nondetRec := recordLog(t, dir, "nondet.vmrr", guestPath("nondet"), 1)
	data, err := os.ReadFile(nondet)
	if err != nil {
		t.Fatal(err)
	}
	frames := logFrames(t, data)
	flipped := bytes.Clone(data)
	flipped[frames+56+(len(data)-frames-56)/4] ^= 0x10 // inside frame 0's payload
	changed := filepath.Join(dir, "changed.vmrr")
	var oldTSC, newTSC uint64
	rewriteLog(t, nondet, changed, func(i uint64, e *logfmt.Event) {
		if e.Kind != logfmt.KindRingFlush || oldTSC != 0 {
			return
		}
		for j := range e.Ring {
			if e.Ring[j].Kind == uint32(cpu.RDTSC) {
				oldTSC = e.Ring[j].Value
				e.Ring[j].Value ^= 0xff00
				newTSC = e.Ring[j].Value
				return
			}
		}
	})
	if oldTSC == 0 {
		t.Fatal("nondet's log has no RDTSC value in a ring flush")
	}
	// The guest prints the value it read, so the tampered value shows.
	wantConsole := strings.Replace(nondetRec.stdout, "rdtsc: "+hex16of(oldTSC), "rdtsc: "+hex16of(newTSC), 1)

	// flaky64 calibrates its TSC against the timer and spins on RDTSC: a
	// changed calibration value changes how long it spins, so the recorded
	// interrupts no longer fall where the replay is.
	flaky, _ := recordLog(t, dir, "flaky64.vmrr", guestPath("flaky64"), 0)
	flakyChanged := filepath.Join(dir, "flaky64-changed.vmrr")
	done := false
	rewriteLog(t, flaky, flakyChanged, func(i uint64, e *logfmt.Event) {
		if e.Kind == logfmt.KindRingFlush && !done && len(e.Ring) > 0 {
			e.Ring[0].Value -= 1 << 26
			done = true
		}
	})
	if !done {
		t.Fatal("flaky64's log has no ring flush")
	}

	// race: hundreds of interrupts, so half the file is mid-recording. Its
	// recording is too short for the writer to seal more than one frame:
	// the copy has small frames, as a long recording's would be.
	raceRec, _ := recordLog(t, dir, "race-recorded.vmrr", guestPath("race"), 1)
	race := filepath.Join(dir, "race.vmrr")
	rewriteLogFrames(t, raceRec, race, 32, func(uint64, *logfmt.Event) {})
	raceData, err := os.ReadFile(race)
	if err != nil {
		t.Fatal(err)
	}
	raceFrames := logFrames(t, raceData)

	tests := []struct {
		name    string
		args    []string
		status  int
		stderr  string
		console string // checked if not empty
	}{
		{"image replaced", []string{replaced}, 2, `^vmrr: .*sha256.*this image is sha256`, ""},
		{"--image of another guest", []string{"--image", guestPath("timer"), hello}, 2, `^vmrr: .*sha256.*this image is sha256`, ""},
		{"--image of the same guest", []string{"--image", guestPath("hello"), hello}, 1, `^$`, "hello from vmrr\n"},
		{"bit flipped in a frame", []string{writeFile(t, dir, "flipped.vmrr", flipped)}, 74, `^vmrr: .*frame 0 at offset ` + strconv.Itoa(frames) + `: checksum mismatch`, ""},
		{"calibration TSC changed", []string{flakyChanged}, 72, `^vmrr: replay diverged at event \d+ `, ""},
		// nondet ends before its first checkpoint, and the values it read
		// leave no trace in its final registers or memory: only the console
		// shows them, which the final state hash covers.
		{"printed RDTSC value changed", []string{changed}, 72, `^vmrr: replay diverged at the end of the recording .*console output.*events 0 to`, wantConsole},
		{"whole log in small frames", []string{race}, 1, `^$`, ""},
		// Half of what follows the header: the header (the CPUID table) can
		// be half a short log by itself.
		{"cut at half", []string{writeFile(t, dir, "half.vmrr", raceData[:raceFrames+(len(raceData)-raceFrames)/2])}, 74,
			`^vmrr: replayed to the end of the log at position [1-9]\d*:\d+: log ends early after event [1-9]\d* \(recording was interrupted\)\n$`, ""},
		{"cut after the header", []string{writeFile(t, dir, "header-only.vmrr", raceData[:raceFrames])}, 74,
			`^vmrr: .*log ends early after event 0 \(recording was interrupted\)`, ""},
		{"cut inside the header", []string{writeFile(t, dir, "cut-header.vmrr", raceData[:raceFrames/2])}, 2, `^vmrr: .*header.*(log ends early|truncated)`, ""},
		{"cut inside the magic", []string{writeFile(t, dir, "cut-magic.vmrr", raceData[:5])}, 2, `^vmrr: .*(log ends early|not a vmrr log)`, ""},
		{"empty file", []string{writeFile(t, dir, "empty.vmrr", nil)}, 2, `^vmrr: .*(log ends early|not a vmrr log|empty)`, ""},
		{"garbage", []string{writeFile(t, dir, "garbage.vmrr", bytes.Repeat([]byte("garbage!"), 512))}, 2, `^vmrr: not a vmrr log\n$`, ""},
		{"a guest image", []string{guestPath("hello")}, 2, `^vmrr: not a vmrr log\n$`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runVMRR(t, append([]string{"replay"}, tc.args...)...)
			var p []string
			if tc.stderr == `^$` {
				if r.stderr != "" {
					p = append(p, "output on stderr")
				}
			} else {
				p = oneLineProblems(r.stderr, regexp.MustCompile(tc.stderr))
			}
			if r.status != tc.status {
				p = append(p, "status "+strconv.Itoa(r.status)+", want "+strconv.Itoa(tc.status))
			}
			if tc.console != "" && r.stdout != tc.console {
				p = append(p, "console "+strconv.Quote(r.stdout)+", want "+strconv.Quote(tc.console))
			}
			if len(p) == 0 {
				t.Logf("%s", strings.TrimSpace(r.stderr))
				return
			}
			t.Errorf("%s: %s", strings.Join(p, "; "), r)
		})
	}
}

// hex16of prints v as the guests do.
func hex16of(v uint64) string { return fmt.Sprintf("0x%016x", v) }

// TestReplayKilledRecording kills vmrr record with SIGKILL in the middle of
// a recording: the log must replay up to its last complete frame and say
// that the recording was interrupted.
func TestReplayKilledRecording(t *testing.T) {
	bin := e2eBin(t)
	dir := t.TempDir()
	// A flat image that never ends: rdtsc; out %al, $0x80; jmp back. In
	// exact mode every RDTSC is trapped, so events keep coming and the
	// writer seals a frame every second.
	image := writeFile(t, dir, "loop.bin", []byte{0x0f, 0x31, 0xe6, 0x80, 0xeb, 0xfa})
	log := filepath.Join(dir, "killed.vmrr")
	needRecord(t, "record")
	cmd := exec.Command(bin, "record", "--mode", "exact", "--timeout", "30s", "-o", log, image)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Kill it once a frame has been written (or after a safety limit, which
	// leaves a header-only log: a weaker test, but still one).
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !hasEvent(log) {
		select {
		case err := <-done:
			t.Fatalf("vmrr record ended by itself: %v: %s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	if !hasEvent(log) {
		t.Logf("no frame was written before the kill")
	}

	r, err := logfmt.Open(log)
	if err != nil {
		t.Fatalf("the killed recording's log does not open: %v", err)
	}
	if r.End() != nil {
		t.Errorf("a killed recording has an end record: %+v", r.End())
	}
	var n uint64
	for {
		if _, err := r.Next(); err != nil {
			if _, ok := err.(*logfmt.TruncatedError); !ok {
				t.Errorf("reading the killed log: %v, want a *logfmt.TruncatedError", err)
			}
			break
		}
		n++
	}
	r.Close()
	t.Logf("the killed log holds %d events", n)

	rep := runVMRR(t, "replay", log)
	if rep.status != statusLogEnded {
		t.Errorf("replay: %s, want status %d", rep, statusLogEnded)
	}
	want := regexp.MustCompile(`log ends early after event ` + strconv.FormatUint(n, 10) + ` \(recording was interrupted\)`)
	p := oneLineProblems(rep.stderr, want)
	if len(p) > 0 {
		t.Errorf("replay: %s: %s", strings.Join(p, "; "), rep)
	}
}

// hasEvent reports whether the log at path has a complete frame.
func hasEvent(path string) bool {
	r, err := logfmt.Open(path)
	if err != nil {
		return false
	}
	defer r.Close()
	_, err = r.Next()
	return err == nil
}
