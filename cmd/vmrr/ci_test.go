package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"vmrr/logfmt"
)

// The CI workflow end to end: vmrr record --keep, vmrr replay --check, and
// a flaky guest's failure caught once and reproduced on demand. These run
// the built binary on real KVM, as a CI job would.

const guestDir = "../../testdata/guests"

// ciRun is one finished vmrr process.
type ciRun struct {
	status         int
	stdout, stderr string
}

// ciTool is a vmrr binary built for one test.
type ciTool struct {
	t   *testing.T
	bin string
}

// newCITool uses the vmrr the end-to-end tests built.
func newCITool(t *testing.T) *ciTool {
	t.Helper()
	return &ciTool{t: t, bin: e2eBin(t)}
}

// run runs vmrr with args and returns its status and output; only a
// failure to start it at all is fatal.
func (c *ciTool) run(args ...string) ciRun {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("vmrr %s: %v", strings.Join(args, " "), err)
	}
	return ciRun{status: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// oneLine fails the test unless s is exactly one line matching re.
func oneLine(t *testing.T, what, s string, re *regexp.Regexp) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !re.MatchString(s) {
		t.Errorf("%s: stderr %q, want one line matching %s", what, s, re)
	}
}

func TestRecordKeep(t *testing.T) {
	needRecord(t, "record")
	c := newCITool(t)
	dir := t.TempDir()
	hello := filepath.Join(guestDir, "hello.elf")
	crash := filepath.Join(guestDir, "crash.elf")
	idle := filepath.Join(guestDir, "serial-echo.elf") // waits for input that never comes
	tests := []struct {
		name       string
		args       []string
		image      string
		wantStatus int
		wantKept   bool
		wantStderr string // regexp; "" for none
	}{
		{"default keeps a pass", nil, hello, 1, true, ""},
		{"always keeps a pass", []string{"--keep=always"}, hello, 1, true, ""},
		{"fail drops a pass", []string{"--keep=fail"}, hello, 1, false, ""},
		{"fail keeps a crash", []string{"--keep=fail"}, crash, 64, true, `^vmrr: kept log \S+ \(guest failed: triple fault.*\)\n$`},
		{"fail keeps a timeout", []string{"--keep=fail", "--timeout=300ms"}, idle, 70, true, `^vmrr: kept log \S+ \(guest failed: .*\)\n$`},
		{"fail keeps a failure status", []string{"--keep=fail", "--success-status=3"}, hello, 1, true,
			`^vmrr: kept log \S+ \(guest failed: guest exited with value 0 \(status 1\).*\)\n$`},
		{"never drops a crash", []string{"--keep=never"}, crash, 64, false, `triple fault`},
		{"bad keep", []string{"--keep=sometimes"}, hello, 2, false, `^vmrr: --keep=sometimes: want always, fail or never\n$`},
		{"bad success status", []string{"--success-status=300"}, hello, 2, false, `^vmrr: --success-status=300: `},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(dir, strconv.Itoa(i)+".vmrr")
			args := append(append([]string{"record", "-o", log}, tc.args...), tc.image)
			r := c.run(args...)
			if r.status != tc.wantStatus {
				t.Errorf("status %d, want %d (stderr %q)", r.status, tc.wantStatus, r.stderr)
			}
			if got := exists(log); got != tc.wantKept {
				t.Errorf("log kept: %v, want %v", got, tc.wantKept)
			}
			switch {
			case tc.wantStderr == "" && r.stderr != "":
				t.Errorf("stderr %q, want none", r.stderr)
			case tc.wantStderr != "" && !regexp.MustCompile(tc.wantStderr).MatchString(r.stderr):
				t.Errorf("stderr %q, want a match for %s", r.stderr, tc.wantStderr)
			}
			if tc.wantKept && strings.Contains(tc.wantStderr, "kept log") && !strings.Contains(r.stderr, log) {
				t.Errorf("stderr %q does not name the log %s", r.stderr, log)
			}
		})
	}
}

// tamper rewrites the log at src into dst through edit, which may change
// any event (the end event included) before it is written again with
// valid checksums: a log that reads well but is not what was recorded.
func tamper(t *testing.T, src, dst string, edit func(e *logfmt.Event)) {
	t.Helper()
	r, err := logfmt.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := logfmt.Create(dst, r.Header(), logfmt.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		edit(e)
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

// headerBytes is where the first frame of a log with header h starts.
func headerBytes(t *testing.T, h *logfmt.Header) int {
	t.Helper()
	var b bytes.Buffer
	if _, err := logfmt.NewWriter(&b, h, logfmt.WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	return b.Len()
}

func TestReplayCheck(t *testing.T) {
	needRecord(t, "record")
	c := newCITool(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.vmrr")
	// race-multiboot: hundreds of interrupts, each placed mid-loop.
	if r := c.run("record", "-o", good, filepath.Join(guestDir, "race-multiboot.elf")); r.status != 1 {
		t.Fatalf("record: status %d: %s", r.status, r.stderr)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	r, err := logfmt.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	frames := headerBytes(t, r.Header())
	r.Close()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(data)
	flipped[frames+40] ^= 0x55
	endStatus := filepath.Join(dir, "end-status.vmrr")
	tamper(t, good, endStatus, func(e *logfmt.Event) {
		if e.Kind == logfmt.KindEnd {
			e.End.Status = 3
		}
	})
	lateIRQ := filepath.Join(dir, "late-irq.vmrr")
	moved := false
	tamper(t, good, lateIRQ, func(e *logfmt.Event) {
		if e.Kind == logfmt.KindInterrupt && !moved && e.Pos.Insn > 1000 {
			e.Pos.Insn += 3
			moved = true
		}
	})

	tests := []struct {
		name       string
		log        string
		wantStatus int
		wantStderr string
	}{
		{"identical", good, 0, `^vmrr: check ok: guest status 1 at RIP 0x[0-9a-f]+, position \d+:\d+ \(exited: .*\)\n$`},
		{"cut in a frame", write("cut.vmrr", data[:frames+(len(data)-frames)/3]), 74, `^vmrr: check failed: .*log ends early`},
		{"cut in the header", write("cut-header.vmrr", data[:frames/2]), 74, `^vmrr: check failed: .*log ends early`},
		{"flipped byte", write("flipped.vmrr", flipped), 74, `^vmrr: check failed: .*checksum mismatch`},
		{"end status changed", endStatus, 72, `^vmrr: check failed: replay ended with status 1 .* the recording with 3`},
		{"interrupt moved", lateIRQ, 72, `^vmrr: check failed: `},
		{"not a log", write("empty.vmrr", []byte("hello")), 2, `^vmrr: .*`},
		{"missing", filepath.Join(dir, "missing.vmrr"), 2, `no such file`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run("replay", "--check", tc.log)
			if r.status != tc.wantStatus {
				t.Errorf("status %d, want %d (stderr %q)", r.status, tc.wantStatus, r.stderr)
			}
			oneLine(t, tc.name, r.stderr, regexp.MustCompile(tc.wantStderr))
		})
	}
}

// checkLine parses vmrr replay --check's success line.
var checkLine = regexp.MustCompile(`^vmrr: check ok: guest status (\d+) at RIP (0x[0-9a-f]+), position (\d+):(\d+) `)

// recordUntilFailure records image with --keep=fail up to max times into
// dir and returns the first kept log, the one failing run's, and how many
// runs it took; "" if every run passed. Passing runs must leave nothing.
func recordUntilFailure(t *testing.T, c *ciTool, image, dir string, max int) (string, int) {
	t.Helper()
	// On the soft CPU the failure is certain: on the instruction clock a
	// run is a function of the clock rate, and clocks holds a rate at
	// which each guest's tick lands in its window (at 1us both pass, so
	// the first recording is a passing one, discarded).
	clocks := map[string]string{"flaky.elf": "250ns", "flaky64.elf": "280ns"}
	for i := 1; i <= max; i++ {
		log := filepath.Join(dir, "run"+strconv.Itoa(i)+".vmrr")
		args := []string{"record", "--keep=fail", "--embed-image", "-o", log}
		if e2eAccel() == "soft" {
			clock := "1us"
			if i > 1 {
				clock = clocks[filepath.Base(image)]
			}
			args = append(args, "--clock", clock)
		}
		r := c.run(append(args, image)...)
		switch {
		case r.status == 1 && !exists(log) && e2eAccel() == "soft" && i > 1:
			t.Fatalf("run %d on the instruction clock passed: the failing clock rate no longer fails", i)
		case r.status == 1 && !exists(log):
		case r.status == 1:
			t.Fatalf("run %d passed but its log %s was kept", i, log)
		case !exists(log):
			t.Fatalf("run %d failed (status %d) but its log was deleted: %s", i, r.status, r.stderr)
		default:
			if !strings.Contains(r.stderr, "kept log "+log) {
				t.Errorf("run %d: stderr %q does not name the kept log", i, r.stderr)
			}
			return log, i
		}
	}
	return "", max
}

// TestFlakyReproduced is the CI story: a guest whose failure depends on
// interrupt timing is recorded until it fails; the one kept log, with the
// image embedded and the image itself gone, reproduces that failure on
// every replay. Later steps (a debugger attached at the crash) extend it
// with more subtests on the same log.
func TestFlakyReproduced(t *testing.T) {
	needRecord(t, "record")
	c := newCITool(t)
	dir := t.TempDir()
	// A private copy of the image, removed after recording, proves the log
	// alone is enough to replay.
	src, err := os.ReadFile(filepath.Join(guestDir, "flaky.elf"))
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "flaky.elf")
	if err := os.WriteFile(image, src, 0o644); err != nil {
		t.Fatal(err)
	}
	const maxRuns = 60
	log, runs := recordUntilFailure(t, c, image, dir, maxRuns)
	if log == "" {
		t.Skipf("flaky.elf passed %d recordings in a row: no failure to reproduce", maxRuns)
	}
	t.Logf("failure recorded on run %d", runs)
	if err := os.Remove(image); err != nil {
		t.Fatal(err)
	}
	others, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(others) != 1 || others[0] != log {
		t.Fatalf("directory holds %v, want only the failing log %s", others, log)
	}
	r, err := logfmt.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	end := r.End()
	r.Close()
	if end == nil || end.Status != 3 {
		t.Fatalf("end record %+v, want the guest's failure status 3", end)
	}

	t.Run("check 3 of 3", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			res := c.run("replay", "--check", log)
			if res.status != 0 {
				t.Fatalf("replay %d: status %d: %s", i, res.status, res.stderr)
			}
			if !strings.HasPrefix(res.stdout, "FAIL: job ") {
				t.Errorf("replay %d: console %q, want the recorded failure", i, res.stdout)
			}
			m := checkLine.FindStringSubmatch(res.stderr)
			if m == nil {
				t.Fatalf("replay %d: stderr %q", i, res.stderr)
			}
			status, _ := strconv.Atoi(m[1])
			rip, _ := strconv.ParseUint(m[2], 0, 64)
			exit, _ := strconv.ParseUint(m[3], 10, 64)
			if status != end.Status || rip != end.RIP || exit != end.Pos.Exit {
				t.Errorf("replay %d: status %d RIP %#x exit %d, recorded %d %#x %d", i, status, rip, exit, end.Status, end.RIP, end.Pos.Exit)
			}
		}
	})
}

// TestBenchQEMUTable runs the comparison on one guest, with QEMU made
// unavailable so that only the vmrr row (on the tests' CPU) and the skip
// note are printed.
func TestBenchQEMUTable(t *testing.T) {
	needRecord(t, "record")
	c := newCITool(t)
	r := c.run("bench", "qemu", "--runs=1", "--qemu=/nonexistent/qemu", "--accel="+e2eAccel(), "--guests="+guestDir, "hello-multiboot")
	if r.status != 0 {
		t.Fatalf("status %d: %s", r.status, r.stderr)
	}
	for _, re := range []string{
		`(?m)^QEMU rows skipped: .*/nonexistent/qemu`,
		`(?m)^\| guest \| tool \| run ms \| record ms \| replay ms \|`,
		`(?m)^\| hello-multiboot \| vmrr ` + e2eAccel() + ` fast \| \d+ \| \d+ \| \d+ \| [\d.]+ \| \d+ \| 1/1 \| 1 \|$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("table does not match %s:\n%s", re, r.stdout)
		}
	}
	// A row whose tool is QEMU; the host line may name a CPU "QEMU TCG CPU"
	// (the nested KVM's).
	if regexp.MustCompile(`(?m)^\| [^|]* \| QEMU`).MatchString(r.stdout) {
		t.Errorf("QEMU row printed without QEMU:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"bench"}, {"bench", "qemu", "--runs=0"}, {"bench", "qemu", "--guests=" + guestDir, "nosuch"}} {
		if r := c.run(args...); r.status != exitUsage || strings.Count(r.stderr, "\n") < 1 {
			t.Errorf("vmrr %s: status %d, stderr %q; want %d and a message", strings.Join(args, " "), r.status, r.stderr, exitUsage)
		}
	}
}
