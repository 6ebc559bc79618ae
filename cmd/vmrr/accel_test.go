package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSoftTLBSync runs ptedit, which rewrites a PTE without INVLPG, on the
// soft CPU: with tlbsync the T bit drops the stale translation at once;
// without it the soft TLB keeps it as hardware does (QEMU TCG prints A, A
// too). --stats counts what tlbsync did.
func TestSoftTLBSync(t *testing.T) {
	tests := []struct {
		tlbsync string
		status  int
		lines   []string
		stats   string
	}{
		{"on", 1, []string{lit("before: A"), lit("immediately: B"), lit("after exit: B")},
			`^vmrr: stats: cpu soft, \d+ instructions, \d+ exits, tlbsync: [1-9]\d* page-table pages marked, [1-9]\d* writes to them dropped translations, \d+ walks\n$`},
		{"off", 7, []string{lit("before: A"), lit("immediately: A"), lit("after exit: A")},
			`^vmrr: stats: cpu soft, \d+ instructions, \d+ exits\n$`},
	}
	for _, tc := range tests {
		t.Run(tc.tlbsync, func(t *testing.T) {
			r := runVMRR(t, "run", "--accel", "soft", "--stats", "--tlbsync", tc.tlbsync, guestPath("ptedit"))
			if r.status != tc.status {
				t.Errorf("%s, want status %d", r, tc.status)
			}
			matchLines(t, r.stdout, tc.lines...)
			if !regexp.MustCompile(tc.stats).MatchString(r.stderr) {
				t.Errorf("stderr %q does not match %q", r.stderr, tc.stats)
			}
		})
	}
}

// TestAccelFlag checks --accel: auto says what it picked in one line, a
// replay runs on its recording's CPU and refuses another, and bad values
// get one line and status 2.
func TestAccelFlag(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "hello.vmrr")
	if r := runVMRR(t, "record", "--accel", "soft", "-o", log, guestPath("hello")); r.status != 1 || r.stderr != "" {
		t.Fatalf("record --accel soft: %s", r)
	}
	r := runVMRR(t, "run", "--accel", "auto", guestPath("hello"))
	if r.status != 1 || !regexp.MustCompile(`^vmrr: running on the (soft|kvm) CPU \(.+\)\n$`).MatchString(r.stderr) {
		t.Errorf("run --accel auto: %s, want status 1 and one line saying which CPU", r)
	}
	if r := runVMRR(t, "replay", "--check", log); r.status != 0 {
		t.Errorf("replay --check of a soft recording: %s", r)
	}
	if r := runVMRR(t, "replay", "--accel", "soft", "--check", log); r.status != 0 {
		t.Errorf("replay --accel soft --check of a soft recording: %s", r)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--accel", "tcg", guestPath("hello")}, "unknown accelerator"},
		{[]string{"record", "--accel", "", "-o", filepath.Join(dir, "x.vmrr"), guestPath("hello")}, "unknown accelerator"},
		{[]string{"replay", "--accel", "kvm", log}, "recorded on the soft CPU"},
		{[]string{"gdb", "--accel", "kvm", log}, "recorded on the soft CPU"},
		{[]string{"shell", "--accel", "kvm", "-c", "where", log}, "recorded on the soft CPU"},
		{[]string{"demo", "--accel", "qemu"}, "unknown accelerator"},
	}
	for _, b := range bad {
		r := runVMRR(t, b.args...)
		if r.status != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, b.want) {
			t.Errorf("vmrr %s: %s, want status 2 and one line saying %q", strings.Join(b.args, " "), r, b.want)
		}
	}
}

// TestClock runs flaky on the soft CPU's instruction clock: the outcome is
// a function of the clock rate (the same every time), and bad --clock
// values get one line and status 2.
func TestClock(t *testing.T) {
	for _, tc := range []struct {
		clock  string
		status int
		line   string
	}{
		{"1us", 1, "PASS: 20 jobs, sum 2470"},
		{"250ns", 3, "FAIL: job 7 lost its pointer"},
	} {
		for i := 0; i < 2; i++ {
			r := runVMRR(t, "run", "--accel", "soft", "--clock", tc.clock, guestPath("flaky"))
			if r.status != tc.status || r.stdout != tc.line+"\n" {
				t.Errorf("--clock %s, run %d: %s, want status %d and %q", tc.clock, i, r, tc.status, tc.line)
			}
		}
	}
	for _, args := range [][]string{
		{"run", "--accel", "soft", "--clock", "fast", guestPath("hello")},
		{"run", "--accel", "soft", "--clock", "-1us", guestPath("hello")},
		{"record", "--accel", "soft", "--clock", "0", "-o", filepath.Join(t.TempDir(), "x.vmrr"), guestPath("hello")},
	} {
		if r := runVMRR(t, args...); r.status != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--clock") {
			t.Errorf("vmrr %s: %s, want status 2 and one line about --clock", strings.Join(args, " "), r)
		}
	}
}
