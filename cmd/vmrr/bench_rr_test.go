package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestBenchRRTable runs the record/replay benchmark once on hello and checks
// the table's shape: a header, one row per mode with every figure filled
// in, and the notes that say how it was measured.
func TestBenchRRTable(t *testing.T) {
	r := runVMRR(t, "bench", "rr", "--runs", "1", "--guests", e2eGuests, "hello")
	if r.status != 0 {
		t.Fatalf("%s", r)
	}
	num := `\d+(?:\.\d+)?`
	for _, re := range []string{
		`^\d{4}-\d\d-\d\d, .+; 1 runs per guest and mode, medians\n`,
		`(?m)^\| guest \| mode \| run ms \| record ms \| replay ms \| record / run \| replay / record \| exact / fast record \| exact / fast replay \| log bytes \| log B/s \| replay identical \| guest status \|$`,
		`(?m)^\|---\|---\|(?:---:\|){9}---\|---\|$`,
		`(?m)^\| hello \| fast \| (?:` + num + ` \| ){5} \|  \| \d+ \| \d+ \| 1/1 \| 1 \|$`,
		`(?m)^\| hello \| exact \| (?:` + num + ` \| ){7}\d+ \| \d+ \| 1/1 \| 1 \|$`,
		`(?m)^- Measured inside one vmrr process, through recorder\.Record and replayer\.Replay`,
		`(?m)^- log B/s: log bytes after the header \(\d+(?:-\d+)? bytes`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("table does not match %s:\n%s", re, r.stdout)
		}
	}
	if rows := regexp.MustCompile(`(?m)^\| hello \|`).FindAllString(r.stdout, -1); len(rows) != 2 {
		t.Errorf("%d rows for hello, want 2 (fast, exact):\n%s", len(rows), r.stdout)
	}
	if strings.Contains(r.stdout, "not identical") || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q: want identical replays and no stderr", r.stdout, r.stderr)
	}
}

// TestBenchRRBadInput checks that bench rr refuses bad flags and unknown
// guests with one line and the bad-input status, before measuring anything.
func TestBenchRRBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nosuch"},
		{"bench", "rr", "--runs=0"},
		{"bench", "rr", "--runs=101"},
		{"bench", "rr", "--timeout=0s"},
		{"bench", "rr", "--guests", e2eGuests, "nosuch"},
		{"bench", "rr", "--guests", e2eGuests, "--serial-in", "/nonexistent/input", "hello"},
	} {
		r := runVMRR(t, args...)
		if r.status != exitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") < 1 {
			t.Errorf("vmrr %s: %s; want status %d, a message and no table", strings.Join(args, " "), r, exitUsage)
		}
	}
}
