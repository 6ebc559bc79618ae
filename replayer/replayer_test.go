package replayer

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/recorder"
)

// guestPath is a committed guest image.
func guestPath(name string) string { return filepath.Join("..", "testdata", "guests", name+".elf") }

// recordGuest records a guest to a log in dir and returns the log's path
// and the recording's console.
func recordGuest(t *testing.T, dir, guest, serial string) (string, string) {
	t.Helper()
	image, err := os.ReadFile(guestPath(guest))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, guest+".vmrr")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	var in io.Reader
	if serial != "" {
		in = strings.NewReader(serial)
	}
	if _, err := recorder.Record(f, recorder.Options{ImagePath: guestPath(guest), Image: image, Mode: nondet.ModeFast,
		Console: &console, Serial: in, Timeout: time.Minute, Warnings: io.Discard, TLBSync: true, Accel: testAccel()}); err != nil {
		t.Fatal(err)
	}
	return path, console.String()
}

// TestReplayIdentical replays recordings of guests with every kind of
// input twice: each replay ends where, how and in the state the recording
// did, printing the same console.
func TestReplayIdentical(t *testing.T) {
	dir := t.TempDir()
	for _, g := range []struct{ guest, serial string }{
		{"timer", ""}, {"spin", ""}, {"race", ""}, {"nondet", ""}, {"paravirt", ""}, {"emu32", ""},
		{"serial-echo", "ab q"}, {"ptedit", ""}, {"repstring", ""}, {"crash", ""},
	} {
		t.Run(g.guest, func(t *testing.T) {
			log, recConsole := recordGuest(t, dir, g.guest, g.serial)
			for i := 0; i < 2; i++ {
				var console bytes.Buffer
				o, err := Replay(Options{LogPath: log, Console: &console, Warnings: io.Discard})
				if err != nil {
					t.Fatal(err)
				}
				if !o.Identical() || console.String() != recConsole {
					t.Fatalf("replay %d: %s; console %q, recorded %q", i, o.Summary(), console.String(), recConsole)
				}
			}
		})
	}
}

// TestReplayRefuses: a replay on another CPU than the recording's, or with
// another image, does not start.
func TestReplayRefuses(t *testing.T) {
	dir := t.TempDir()
	log, _ := recordGuest(t, dir, "hello", "")
	other := machine.AccelKVM
	if testAccel() == machine.AccelKVM {
		other = machine.AccelSoft
	}
	if _, err := Replay(Options{LogPath: log, Accel: other}); err == nil || !strings.Contains(err.Error(), "replays only there") {
		t.Errorf("replay on the %s CPU: %v", other, err)
	}
	timer, err := os.ReadFile(guestPath("timer"))
	if err != nil {
		t.Fatal(err)
	}
	var mismatch *logfmt.ImageMismatchError
	if _, err := Replay(Options{LogPath: log, Image: timer}); !errors.As(err, &mismatch) {
		t.Errorf("replay with another image: %v", err)
	}
}

// TestReplayDiverges changes a value the guest read: the replay stops at
// the first checkpoint that no longer matches, or at the end, and says so.
func TestReplayDiverges(t *testing.T) {
	dir := t.TempDir()
	log, _ := recordGuest(t, dir, "nondet", "")
	changed := filepath.Join(dir, "changed.vmrr")
	rewrite(t, log, changed, func(e *logfmt.Event) {
		if e.Kind == logfmt.KindRingFlush && len(e.Ring) > 0 {
			e.Ring[0].Value ^= 0xff00
		}
	})
	var console bytes.Buffer
	o, err := Replay(Options{LogPath: changed, Console: &console, Warnings: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if o.Identical() || !strings.Contains(o.Summary(), "diverged") {
		t.Errorf("replay of a changed log: %s", o.Summary())
	}
}

// rewrite copies a log through logfmt, letting edit change each event.
func rewrite(t *testing.T, src, dst string, edit func(e *logfmt.Event)) {
	t.Helper()
	r, err := logfmt.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	w, err := logfmt.NewWriter(f, r.Header(), logfmt.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == logfmt.KindEnd {
			if err := w.Close(ev.End); err != nil {
				t.Fatal(err)
			}
			return
		}
		edit(ev)
		if err := w.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no end record")
}

// symbol is a guest symbol's address.
func symbol(t *testing.T, guest, name string) uint64 {
	t.Helper()
	f, err := elf.Open(guestPath(guest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("%s has no symbol %s", guest, name)
	return 0
}

// timerTimeline records timer.elf and opens its replay as a Timeline,
// closed when the test ends.
func timerTimeline(t *testing.T) *Timeline {
	t.Helper()
	log, _ := recordGuest(t, t.TempDir(), "timer", "")
	tl, err := OpenTimeline(TimelineOptions{Options: Options{LogPath: log, Warnings: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl
}

// stopOrFatal returns a function that passes a motion's Stop on and ends
// the test at its error.
func stopOrFatal(t *testing.T) func(Stop, error) Stop {
	return func(s Stop, err error) Stop {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestTimeline moves around a replay of timer.elf: steps both ways come
// back to the same places, a breakpoint and a watched write stop motions
// in both directions.
func TestTimeline(t *testing.T) {
	tl := timerTimeline(t)
	must := stopOrFatal(t)
	start := tl.Position()
	ten := must(tl.Step(10))
	if ten.Pos.Insn != start.Insn+10 {
		t.Errorf("10 steps from %v: %v", start, ten.Pos)
	}
	back := must(tl.ReverseStep(4))
	if back.Pos.Insn != start.Insn+6 {
		t.Errorf("4 steps back from %v: %v", ten.Pos, back.Pos)
	}
	if again := must(tl.Step(4)); again.Pos != ten.Pos || again.RIP != ten.RIP {
		t.Errorf("4 steps forward again: %+v, first time %+v", again, ten)
	}

	handler := symbol(t, "timer", "timer_handler")
	id, err := tl.AddBreakpoint(BreakSoftware, handler, 1)
	if err != nil {
		t.Fatal(err)
	}
	first := must(tl.Continue())
	if first.Kind != StopBreakpoint || first.RIP != handler {
		t.Fatalf("continue to the handler: %+v", first)
	}
	second := must(tl.Continue())
	if second.Kind != StopBreakpoint || !first.Pos.Less(second.Pos) {
		t.Fatalf("continue to the handler again: %+v", second)
	}
	if rc := must(tl.ReverseContinue()); rc.Kind != StopBreakpoint || rc.Pos != first.Pos {
		t.Errorf("reverse-continue: %+v, want the first hit at %v", rc, first.Pos)
	}
	if err := tl.RemoveBreakpoint(id); err != nil {
		t.Fatal(err)
	}

	if _, err := tl.AddBreakpoint(WatchWrite, symbol(t, "timer", "tick_count"), 4); err != nil {
		t.Fatal(err)
	}
	w := must(tl.Continue())
	if w.Kind != StopWatchpoint {
		t.Fatalf("continue with a watchpoint on tick_count: %+v", w)
	}
	end := must(tl.GotoEnd())
	if end.Kind != StopExited || end.Status != 1 {
		t.Fatalf("goto end: %+v", end)
	}
	if last := must(tl.ReverseContinue()); last.Kind != StopWatchpoint || !w.Pos.Less(last.Pos) {
		t.Errorf("reverse-continue from the end: %+v, want the last write to tick_count after %v", last, w.Pos)
	}
	if s := must(tl.GotoStart()); s.Pos != start {
		t.Errorf("goto start: %v, want %v", s.Pos, start)
	}
}

// TestTimelineReadWatch stops at reads of timer.elf's tick_count (main
// polls it; the handler loads it to increment it and again to compare it):
// forwards right after the reading instruction, backwards before it. KVM has no read
// watchpoints: adding one says so.
func TestTimelineReadWatch(t *testing.T) {
	tl := timerTimeline(t)
	must := stopOrFatal(t)
	ticks := symbol(t, "timer", "tick_count")
	handler := symbol(t, "timer", "timer_handler")
	if testAccel() != machine.AccelSoft {
		if _, err := tl.AddBreakpoint(WatchRead, ticks, 4); err == nil || !strings.Contains(err.Error(), "soft CPU") {
			t.Errorf("read watchpoint on %s: %v", testAccel(), err)
		}
		return
	}
	id, err := tl.AddBreakpoint(WatchRead, ticks, 4)
	if err != nil {
		t.Fatal(err)
	}
	// main polls the counter; the handler's first read is its second
	// instruction, and the stop comes after it.
	var r Stop
	for i := 0; ; i++ {
		r = must(tl.Continue())
		if r.Kind != StopWatchpoint || r.Addr != ticks {
			t.Fatalf("rwatch tick_count: %+v", r)
		}
		if r.RIP == handler+7 {
			break
		}
		if i == 100 {
			t.Fatalf("100 reads of tick_count, none in the handler; last stop %+v", r)
		}
	}
	// The increment's store is no read; the compare's load is.
	r2 := must(tl.Continue())
	if r2.Kind != StopWatchpoint || r2.RIP != handler+0x16 {
		t.Errorf("rwatch again: %+v, want a stop at %#x", r2, handler+0x16)
	}
	// Backwards, the stop is at the reading instruction, before it ran:
	// the last read before now is the one just made.
	back := must(tl.ReverseContinue())
	if back.Kind != StopWatchpoint || back.RIP != handler+0x10 {
		t.Errorf("reverse-continue with rwatch: %+v, want a stop at the second load (%#x)", back, handler+0x10)
	}
	if err := tl.RemoveBreakpoint(id); err != nil {
		t.Fatal(err)
	}
	// An access watchpoint sees the store too: from before the handler's
	// first load, the load, then the store.
	if _, err := tl.Goto(r.Pos); err != nil {
		t.Fatal(err)
	}
	if s := must(tl.ReverseStep(1)); s.RIP != handler+1 {
		t.Fatalf("reverse-stepi from after the load: %+v", s)
	}
	if _, err := tl.AddBreakpoint(WatchAccess, ticks, 4); err != nil {
		t.Fatal(err)
	}
	if a := must(tl.Continue()); a.Kind != StopWatchpoint || a.RIP != handler+7 {
		t.Errorf("awatch, the load: %+v, want a stop at %#x", a, handler+7)
	}
	if a := must(tl.Continue()); a.Kind != StopWatchpoint || a.RIP != handler+0x10 {
		t.Errorf("awatch, the store: %+v, want a stop at %#x", a, handler+0x10)
	}
}
