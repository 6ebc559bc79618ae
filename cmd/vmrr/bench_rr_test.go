package main

import (
	"os"
	"path/filepath"
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

// TestBenchOnceSaysWhy checks the account bench qemu gives of a replay that
// did not reproduce its recording: each difference, and what the recording
// said on stderr, in one line.
func TestBenchOnceSaysWhy(t *testing.T) {
	log := filepath.Join(t.TempDir(), "x.vmrr")
	rec := benchProc{status: 68, console: []byte("ticks: \n"), stderr: []byte("vmrr: recording\nvmrr: hung at RIP 0x1000\n")}
	tests := []struct {
		name string
		rep  benchProc
		want []string
	}{
		{"identical", benchProc{status: -1, console: rec.console, ok: true}, nil},
		{"verdict", benchProc{status: -1, console: rec.console, stderr: []byte("vmrr: diverged at 3:7\n")},
			[]string{`replay says "vmrr: diverged at 3:7"`, `the recording (status 68) said "vmrr: hung at RIP 0x1000"`}},
		{"status and console", benchProc{status: 1, console: []byte("ticks: 20\n"), ok: true},
			[]string{"status 1, recorded 68", `console "ticks: 20", recorded "ticks:"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tool := benchTool{
				run: func(string) (benchProc, error) { return benchProc{}, nil },
				record: func(_, log string) (benchProc, error) {
					return rec, os.WriteFile(log, []byte("log"), 0o644)
				},
				replay: func(string, string) (benchProc, error) { return tt.rep, nil },
			}
			why, err := benchOnce(tool, "image", log, &benchRow{})
			if err != nil {
				t.Fatal(err)
			}
			if (why == "") != (tt.want == nil) {
				t.Fatalf("benchOnce = %q", why)
			}
			for _, w := range tt.want {
				if !strings.Contains(why, w) {
					t.Errorf("benchOnce = %q, want it to contain %q", why, w)
				}
			}
		})
	}
}
