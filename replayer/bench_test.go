package replayer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/position"
	"vmrr/recorder"
)

// longGuest is a guest of about 10 million instructions with a timer
// running (testdata/guests/long.c). Recording it takes ~10 s and replaying
// it to the end ~25 s on this project's hosts, so it is done once per
// process, and only by benchmarks.
const longGuest = "../testdata/guests/long.elf"

// longTimeline is the recording of longGuest, opened and replayed to its
// end, shared by the benchmark's rounds.
var longTimeline struct {
	once  sync.Once
	tl    *Timeline
	end   Stop
	snaps []position.Pos // the snapshots taken on the way to the end
	err   error
	// intervals counts the snapshot intervals the interval benchmark has
	// used: each round takes the one before, across the benchmark's runs.
	intervals int
}

// openLong records longGuest and replays it to the end. It returns the
// Timeline, how the recording ends and where the replay took snapshots on
// its way there.
func openLong(b *testing.B) (*Timeline, Stop, []position.Pos) {
	b.Helper()
	lt := &longTimeline
	lt.once.Do(func() {
		if lt.tl, lt.end, lt.err = recordLong(); lt.err == nil {
			for _, s := range lt.tl.Snapshots() {
				lt.snaps = append(lt.snaps, s.Pos)
			}
		}
	})
	if lt.err != nil {
		b.Fatal(lt.err)
	}
	return lt.tl, lt.end, lt.snaps
}

// recordLong records longGuest into a temporary file, opens it for
// debugging and replays it to the end. The file is removed once open: the
// replay keeps its own descriptors, and the Timeline lives as long as the
// process.
func recordLong() (*Timeline, Stop, error) {
	image, err := os.ReadFile(longGuest)
	if err != nil {
		return nil, Stop{}, err
	}
	dir, err := os.MkdirTemp("", "vmrr-bench-")
	if err != nil {
		return nil, Stop{}, err
	}
	defer os.RemoveAll(dir)
	log := filepath.Join(dir, "long.vmrr")
	f, err := os.Create(log)
	if err != nil {
		return nil, Stop{}, err
	}
	var console bytes.Buffer
	res, err := recorder.Record(f, recorder.Options{ImagePath: longGuest, Image: image, MemoryBytes: machine.DefaultMemory,
		Mode: nondet.ModeFast, Console: &console, Warnings: io.Discard, TLBSync: true, Accel: testAccel()})
	if err != nil {
		return nil, Stop{}, fmt.Errorf("record %s: %w", longGuest, err)
	}
	if res.Status != 1 || !strings.HasPrefix(console.String(), "long: checksum 0x7a41fc7c5af0aef0 ticks ") {
		return nil, Stop{}, fmt.Errorf("record %s: status %d, console %q", longGuest, res.Status, console.String())
	}
	tl, err := OpenTimeline(TimelineOptions{Options: Options{LogPath: log, Image: image, Warnings: io.Discard}})
	if err != nil {
		return nil, Stop{}, err
	}
	end, err := tl.GotoEnd()
	if err != nil {
		tl.Close()
		return nil, Stop{}, err
	}
	if end.Kind != StopExited || end.Status != 1 {
		tl.Close()
		return nil, Stop{}, fmt.Errorf("replay of %s ended with %+v, want the guest's exit with status 1", longGuest, end)
	}
	return tl, end, nil
}

// BenchmarkReverseStepi measures the first reverse-stepi from a position
// of a recording of ~10 million instructions, against the baseline of one
// forward stepi measured in the same rounds (from the point reverse-stepi
// reached back to where it started):
//   - end: from the end of the recording (the guest's exit);
//   - interval: from the position of a snapshot, so the way back crosses a
//     whole snapshot interval, the worst case (each round takes the
//     snapshot before the last round's).
//
// Each round first puts the replay where it starts without the snapshots
// the last round left (untimed). A reverse-stepi restores the snapshot
// before the target, single-steps to the current position to find the
// instruction boundary before it, taking a snapshot just before the end,
// and restores that: two restores and single-steps over the distance to the
// snapshot, so its cost follows DefaultSnapshotEvery.
func BenchmarkReverseStepi(b *testing.B) {
	b.Run("end", func(b *testing.B) {
		tl, end, snaps := openLong(b)
		lastSnap := snaps[len(snaps)-1]
		benchReverseStepi(b, tl, func(int) position.Pos {
			if _, err := tl.Goto(lastSnap); err != nil {
				b.Fatal(err)
			}
			if s, err := tl.GotoEnd(); err != nil || s.Pos != end.Pos {
				b.Fatalf("goto end: %+v, %v", s, err)
			}
			return end.Pos
		})
	})
	b.Run("interval", func(b *testing.B) {
		tl, _, snaps := openLong(b)
		benchReverseStepi(b, tl, func(int) position.Pos {
			k := len(snaps) - 1 - longTimeline.intervals
			if k < 1 {
				b.Fatalf("the recording has only %d snapshot intervals", len(snaps)-1)
			}
			longTimeline.intervals++
			from := snaps[k]
			if s, err := tl.Goto(from); err != nil || s.Pos != from {
				b.Fatalf("goto %+v: %+v, %v", from, s, err)
			}
			return from
		})
	})
}

// benchReverseStepi runs the rounds: setup (untimed) returns the position
// the replay now stands at; one reverse-stepi and one stepi back are timed.
func benchReverseStepi(b *testing.B, tl *Timeline, setup func(round int) position.Pos) {
	var back, fwd time.Duration
	var dist uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		from := setup(i)
		if j := tl.lastBefore(from); j >= 0 {
			dist += from.Insn - tl.snaps.list[j].pos.Insn
		}
		b.StartTimer()
		back += reverseStepi(b, tl, from)
		t0 := time.Now()
		s, err := tl.Step(1)
		fwd += time.Since(t0)
		if err != nil || s.Pos != from {
			b.Fatalf("stepi: %+v, %v; want %+v", s, err, from)
		}
	}
	b.StopTimer()
	rsi := back.Seconds() / float64(b.N)
	si := fwd.Seconds() / float64(b.N)
	b.ReportMetric(rsi*1e3, "ms/reverse-stepi")
	b.ReportMetric(si*1e6, "us/stepi")
	b.ReportMetric(rsi/si, "reverse/forward")
	b.ReportMetric(float64(dist)/float64(b.N), "insns-back-to-snapshot")
}

// reverseStepi times one reverse-stepi that must land before from.
func reverseStepi(b *testing.B, tl *Timeline, from position.Pos) time.Duration {
	t0 := time.Now()
	s, err := tl.ReverseStep(1)
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	if s.Kind != StopStep || !s.Pos.Less(from) {
		b.Fatalf("reverse-stepi from %+v: %+v", from, s)
	}
	return d
}
