package main

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"vmrr/replayer"
)

// matrixGuests are the guests every mode must record and replay exactly.
var matrixGuests = []string{"hello", "timer", "spin", "nondet", "serial-echo", "crash", "race", "paravirt", "emu32",
	"timer-multiboot", "race-multiboot", "flaky", "flaky64", "ptedit", "ptchurn", "repstring"}

// inProcess serialises the replays these tests run in the test process:
// machines take process-wide signal handlers for their kicks.
var inProcess sync.Mutex

// matrixParallel bounds the record/replay subtests running at once: the
// machines here have two cores, shared.
const matrixParallel = 2

// TestRecordReplayMatrix records every guest once in each mode and replays
// each log three times, twice with vmrr replay and once through the Go API:
// every replay prints the recording's console byte for byte and ends with its
// status and (the API says, by the end record's state hash) in its state.
func TestRecordReplayMatrix(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()
	in := serialInput(t, dir)
	cases := map[string]guestCase{}
	for _, c := range e2eGuestCases(in) {
		cases[c.name] = c
	}
	sem := make(chan struct{}, matrixParallel)
	for _, mode := range []string{"fast", "exact"} {
		for _, name := range matrixGuests {
			c, ok := cases[name]
			if !ok {
				t.Fatalf("no guest case for %s", name)
			}
			t.Run(mode+"/"+name, func(t *testing.T) {
				if testing.Short() && mode == "exact" {
					t.Skip("exact mode single-steps every instruction: -short records in fast mode only")
				}
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				log := filepath.Join(dir, mode+"-"+name+".vmrr")
				args := append([]string{"record", "--mode", mode, "-o", log}, c.args...)
				rec := runVMRR(t, append(args, guestPath(name))...)
				checkGuest(t, c, rec)
				if t.Failed() {
					t.FailNow()
				}
				// Three replays: two by the command, the third through the
				// Go API, which also compares the final state hash.
				for i := 1; i <= 2; i++ {
					rep := runVMRR(t, "replay", log)
					if rep.stdout != rec.stdout || rep.status != rec.status || rep.stderr != rec.stderr {
						t.Fatalf("replay %d differs from the recording:\nrecord: %s\nreplay: %s", i, rec, rep)
					}
				}
				inProcess.Lock()
				o, console, err := replayAPI(log)
				inProcess.Unlock()
				checkAPIReplay(t, o, console, err, rec)
			})
		}
	}
}

// replayAPI replays log in this process (the caller holds inProcess).
func replayAPI(log string) (*replayer.Outcome, string, error) {
	var console bytes.Buffer
	o, err := replayer.Replay(replayer.Options{LogPath: log, Console: &console, Warnings: io.Discard})
	return o, console.String(), err
}

// checkAPIReplay checks that a replay through the Go API reproduced rec
// exactly, the final state hash included.
func checkAPIReplay(t *testing.T, o *replayer.Outcome, console string, err error, rec e2eResult) {
	t.Helper()
	if err != nil {
		t.Fatalf("replayer.Replay: %v", err)
	}
	if !o.Identical() {
		t.Errorf("replayer.Replay: not identical: %s", o.Summary())
	}
	if o.End == nil || o.StateHash != o.End.StateHash {
		t.Errorf("replayer.Replay: state hash %#x, end record %+v", o.StateHash, o.End)
	}
	if o.Result.Status != rec.status {
		t.Errorf("replayer.Replay: status %d, recorded %d", o.Result.Status, rec.status)
	}
	if console != rec.stdout {
		t.Errorf("replayer.Replay: console %q, recorded %q", console, rec.stdout)
	}
}

// TestRecordingsDiffer shows that what the guests print depends on time or
// randomness: two recordings of each differ, and so a replay that repeats
// its recording's output has reproduced something a rerun would not.
func TestRecordingsDiffer(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()
	const tries = 5
	for _, name := range []string{"spin", "race", "nondet"} {
		t.Run(name, func(t *testing.T) {
			record := func(i int) e2eResult {
				r := runVMRR(t, "record", "-o", filepath.Join(dir, fmt.Sprintf("%s-%d.vmrr", name, i)), guestPath(name))
				if r.status != 1 {
					t.Fatalf("record: %s", r)
				}
				return r
			}
			first := record(0)
			for i := 1; i <= tries; i++ {
				if r := record(i); r.stdout != first.stdout {
					t.Logf("recording %d differs from the first:\n%s---\n%s", i, first.stdout, r.stdout)
					return
				}
			}
			t.Skipf("%d recordings all printed %q: the guest's output did not vary this time", tries+1, strings.TrimSpace(first.stdout))
		})
	}
}
