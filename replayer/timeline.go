package replayer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/position"
)

// DefaultSnapshotMemory bounds the guest memory snapshots hold beyond the
// full copy at the start; past it every other snapshot is dropped.
const DefaultSnapshotMemory = 256 << 20

// DefaultSnapshotEvery is how many instructions a Timeline lets pass
// between automatic snapshots. Going back costs at most this many
// single-steps: ~0.7 s for a reverse-stepi across a whole interval on this
// project's hosts, where a step inside a replay costs ~35 us
// (BenchmarkReverseStepi).
const DefaultSnapshotEvery = 20000

// Timeline is a recording under a debugger's control: the Session that the
// gdbstub and the shell use. It replays forwards with the Engine, keeps
// snapshots as it goes, and moves backwards by restoring the snapshot
// before the target and re-executing up to it.
type Timeline struct {
	e       replay
	m       *machine.Machine // e.Machine()
	snaps   snapshots
	console consoleBuf
	every   uint64

	bps    []Breakpoint
	nextID int

	intr      atomic.Bool
	running   atomic.Bool
	end       *Stop // how the replay ends, once it got there
	imagePath string
	tempImage string // a copy of the embedded image, removed by Close

	eventsOnce sync.Once
	eventCount int
	eventLog   *logfmt.Reader
}

// replay is all a Timeline uses of the Engine: the machine (to read the
// guest, and to snapshot and restore its CPU, devices and memory), a run
// under the debugger's control, the Engine's own part of a snapshot, and
// the log. The Engine's fields are its own: a Timeline reaches them only
// through these methods.
type replay interface {
	Machine() *machine.Machine
	// runControlled runs forwards with the debugger's breakpoints,
	// single-stepping and stop check; setSingleStep changes the
	// single-stepping during the run.
	runControlled(c control) (machine.Result, error)
	setSingleStep(on bool)
	// saveState and restoreState are the Engine's part of a snapshot.
	saveState() engineState
	restoreState(s *engineState) error
	// Next is the next event to apply and its index.
	Next() (*logfmt.Event, uint64)
	Header() *logfmt.Header
	Image() []byte
	Patches() nondet.Patches
	LogPath() string
	Close() error
}

var _ replay = (*Engine)(nil)

// point is a position and the RIP there.
type point struct {
	pos position.Pos
	rip uint64
}

// consoleBuf is the guest's serial output; snapshots remember its length.
type consoleBuf struct{ b []byte }

func (c *consoleBuf) Write(p []byte) (int, error) { c.b = append(c.b, p...); return len(p), nil }

// TimelineOptions configure a Timeline.
type TimelineOptions struct {
	Options
	SnapshotEvery  uint64 // instructions between snapshots; DefaultSnapshotEvery if 0
	SnapshotMemory uint64 // bytes the snapshots may hold beyond the first; DefaultSnapshotMemory if 0
}

// OpenTimeline opens a log for debugging.
func OpenTimeline(opt TimelineOptions) (*Timeline, error) {
	t := &Timeline{every: opt.SnapshotEvery}
	if t.every == 0 {
		t.every = DefaultSnapshotEvery
	}
	t.snaps.limit = opt.SnapshotMemory
	if t.snaps.limit == 0 {
		t.snaps.limit = DefaultSnapshotMemory
	}
	opt.Console = &t.console
	e, err := Open(opt.Options)
	if err != nil {
		return nil, err
	}
	t.e, t.m = e, e.Machine()
	if !t.m.HasInsnCounter() {
		e.Close()
		if e.Header().ExitsOnly {
			return nil, errors.New("replayer: this recording's positions count exits only (it placed its events at the guest's exits, see vmrr record --exits-only); the debugger needs instruction counts: vmrr replay runs it")
		}
		return nil, errors.New("replayer: reverse execution needs an exact instruction counter (KVM's insn_emulation statistic), which this host does not have")
	}
	if _, err := t.snaps.take(e, 0); err != nil {
		e.Close()
		return nil, err
	}
	t.imagePath = e.Header().ImagePath
	if opt.Image == nil && len(e.Header().Image) > 0 || !fileExists(t.imagePath) {
		if f, err := os.CreateTemp("", "vmrr-image-*.elf"); err == nil {
			_, werr := f.Write(e.Image())
			if cerr := f.Close(); werr == nil && cerr == nil {
				t.imagePath, t.tempImage = f.Name(), f.Name()
			} else {
				os.Remove(f.Name())
			}
		}
	}
	return t, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Close releases the replay.
func (t *Timeline) Close() error {
	if t.eventLog != nil {
		t.eventLog.Close()
	}
	if t.tempImage != "" {
		os.Remove(t.tempImage)
	}
	return t.e.Close()
}

func (t *Timeline) here() point {
	regs, _ := t.m.Regs()
	return point{t.m.Position(), regs.RIP}
}

// Position is where the replay stands.
func (t *Timeline) Position() position.Pos { return t.here().pos }

// Registers reads the vCPU state.
func (t *Timeline) Registers() (Registers, error) {
	var r Registers
	cpu, err := t.m.SaveCPU()
	if err != nil {
		return r, err
	}
	r.Regs, r.Sregs = cpu.Regs, cpu.Sregs
	for i := range r.ST {
		copy(r.ST[i][:], cpu.FPU.FPR[i][:10])
	}
	r.FCW, r.FSW, r.FTW = cpu.FPU.FCW, cpu.FPU.FSW, uint16(cpu.FPU.FTWX)
	r.XMM, r.MXCSR = cpu.FPU.XMM, cpu.FPU.MXCSR
	return r, nil
}

// ReadVirtual reads guest memory through the guest's page tables.
func (t *Timeline) ReadVirtual(addr uint64, b []byte) (int, error) {
	s, err := t.m.Sregs()
	if err != nil {
		return 0, err
	}
	return t.m.ReadVirtual(&s, addr, b)
}

// ReadPhysical reads guest physical memory.
func (t *Timeline) ReadPhysical(addr uint64, b []byte) (int, error) {
	mem := t.m.Memory()
	if addr >= mem.Size() {
		return 0, fmt.Errorf("physical address %#x is outside RAM", addr)
	}
	n := min(uint64(len(b)), mem.Size()-addr)
	mem.ReadPhys(addr, b[:n])
	if int(n) < len(b) {
		return int(n), fmt.Errorf("physical address %#x is outside RAM", mem.Size())
	}
	return int(n), nil
}

// Translate maps a virtual address through the guest's page tables.
func (t *Timeline) Translate(addr uint64) (uint64, error) {
	s, err := t.m.Sregs()
	if err != nil {
		return 0, err
	}
	return t.m.Translate(&s, addr)
}

// Interrupt stops a running motion soon. A motion is running from its
// start to its end, restores and scans between its runs included: an
// Interrupt that lands between two runs stops the next one at once.
func (t *Timeline) Interrupt() {
	if t.running.Load() {
		t.intr.Store(true)
		t.m.Kick()
	}
}

// AddBreakpoint sets a breakpoint or watchpoint. Execution breakpoints of
// both kinds use the vCPU's debug registers (guest memory never changes);
// write watchpoints compare memory after every instruction, because this
// host's KVM never fires data breakpoints. Read watchpoints are refused.
func (t *Timeline) AddBreakpoint(kind BreakKind, addr, length uint64) (int, error) {
	switch kind {
	case BreakSoftware, BreakHardware:
		length = 1
	case WatchWrite:
		if length == 0 || length > 64 {
			return 0, fmt.Errorf("watchpoint length %d: want 1 to 64 bytes", length)
		}
		b := make([]byte, length)
		if _, err := t.ReadVirtual(addr, b); err != nil {
			return 0, fmt.Errorf("watchpoint at %#x: %w", addr, err)
		}
	case WatchRead, WatchAccess:
		if !t.m.HasDataWatchpoints() {
			return 0, errors.New("read and access watchpoints need the soft CPU (--accel soft): KVM's data breakpoints are not used, and vmrr watches writes there by comparing memory")
		}
		if length == 0 || length > 64 {
			return 0, fmt.Errorf("watchpoint length %d: want 1 to 64 bytes", length)
		}
	default:
		return 0, fmt.Errorf("unknown breakpoint kind %d", kind)
	}
	t.nextID++
	t.bps = append(t.bps, Breakpoint{ID: t.nextID, Kind: kind, Addr: addr, Len: length})
	return t.nextID, nil
}

// RemoveBreakpoint deletes a breakpoint.
func (t *Timeline) RemoveBreakpoint(id int) error {
	for i, b := range t.bps {
		if b.ID == id {
			t.bps = append(t.bps[:i], t.bps[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("no breakpoint %d", id)
}

// Breakpoints lists the breakpoints.
func (t *Timeline) Breakpoints() []Breakpoint { return append([]Breakpoint(nil), t.bps...) }

func (t *Timeline) execBPs() []uint64 {
	var a []uint64
	for _, b := range t.bps {
		if b.Kind == BreakSoftware || b.Kind == BreakHardware {
			a = append(a, b.Addr)
		}
	}
	return a
}

func (t *Timeline) watches() []Breakpoint {
	var w []Breakpoint
	for _, b := range t.bps {
		if b.Kind == WatchWrite || b.Kind == WatchRead || b.Kind == WatchAccess {
			w = append(w, b)
		}
	}
	return w
}

// watchState reads the ranges of the write watchpoints among ws, which
// are seen by comparing memory, and arms the read and access ones in the
// soft CPU, which sees each access (their hits are read by accessHit).
func (t *Timeline) watchState(ws []Breakpoint) [][]byte {
	vals := make([][]byte, len(ws))
	var data []machine.DataWatchpoint
	for i, w := range ws {
		if w.Kind != WatchWrite {
			data = append(data, machine.DataWatchpoint{Addr: w.Addr, Len: w.Len, Read: true, Write: w.Kind == WatchAccess})
			continue
		}
		vals[i] = make([]byte, w.Len)
		t.ReadVirtual(w.Addr, vals[i])
	}
	t.m.SetDataWatchpoints(data)
	t.m.DataWatchHits()
	return vals
}

// writeState reads the ranges of the write watchpoints among ws.
func (t *Timeline) writeState(ws []Breakpoint) [][]byte {
	vals := make([][]byte, len(ws))
	for i, w := range ws {
		if w.Kind == WatchWrite {
			vals[i] = make([]byte, w.Len)
			t.ReadVirtual(w.Addr, vals[i])
		}
	}
	return vals
}

// accessHit reports the first read or access watchpoint among ws that the
// instructions since the last call touched.
func (t *Timeline) accessHit(ws []Breakpoint) (Breakpoint, bool) {
	hits := t.m.DataWatchHits()
	bit := 0
	for _, w := range ws {
		if w.Kind == WatchWrite {
			continue
		}
		if hits&(1<<bit) != 0 {
			return w, true
		}
		bit++
	}
	return Breakpoint{}, false
}

// hit is why a check stopped a run.
type hit struct {
	kind StopKind
	addr uint64
}

// runOpts describe one forward run.
type runOpts struct {
	step  bool     // single-step every instruction
	bps   []uint64 // execution breakpoints to arm
	check func(p point) (hit, bool)
	// far, if set, is a position the run may race towards without
	// stepping; within a margin of it, the run single-steps.
	far *position.Pos
	// snapInsn, if not 0, asks for a snapshot at the first stop at or
	// past that instruction count, besides the regular ones: a motion that
	// is about to come back there (reverse-stepi) starts from it instead of
	// single-stepping a whole snapshot interval again.
	snapInsn uint64
}

// runResult is how a forward run ended.
type runResult struct {
	stopped bool // check said stop
	hit     hit
	end     *Stop // the replay ended (guest exit, crash, end of log, divergence)
	intr    bool
}

// run runs forwards. The check is not asked at the starting point.
func (t *Timeline) run(o runOpts) (runResult, error) {
	if t.end != nil && t.here().pos == t.end.Pos {
		return runResult{end: t.end}, nil
	}
	start := t.here()
	first := true
	var res runResult
	racing := o.far != nil
	c := control{step: o.step && !racing, bps: o.bps}
	if racing {
		// Kicks bring the run back to the stop check often enough to
		// switch to stepping before it reaches the target.
		c.kick = time.Millisecond
	}
	const margin = 50000
	lastExit := start.pos.Exit
	c.stop = func() bool {
		p := t.here()
		if p.pos.Exit != lastExit {
			lastExit = p.pos.Exit
			// Right after an injection (machine.Injecting) a debugger
			// would see the interrupted instruction twice, and a
			// single-step from there would skip the handler's first
			// instruction: no motion stops, checks or snapshots there.
			if t.m.Injecting() {
				return false
			}
		}
		if racing && (o.far.Exit < p.pos.Exit || o.far.Exit == p.pos.Exit && o.far.Insn <= p.pos.Insn+margin) {
			racing = false
			t.e.setSingleStep(o.step)
		}
		last := t.snaps.list[len(t.snaps.list)-1]
		due := p.pos.Insn >= last.pos.Insn+t.every || o.snapInsn != 0 && p.pos.Insn >= o.snapInsn
		if due && last.pos.Less(p.pos) {
			t.snaps.take(t.e, len(t.console.b))
			o.snapInsn = 0
		}
		if t.intr.Load() {
			res.intr = true
			return true
		}
		if first && p == start {
			first = false
			return false
		}
		first = false
		if h, ok := o.check(p); ok {
			res.stopped, res.hit = true, h
			return true
		}
		return false
	}
	r, err := t.e.runControlled(c)
	var div *Divergence
	var eol *EndOfLogError
	p := t.here()
	switch {
	case errors.As(err, &div):
		res.end = &Stop{Kind: StopDiverged, Pos: p.pos, RIP: p.rip, Message: div.Error()}
	case errors.As(err, &eol):
		res.end = &Stop{Kind: StopEnd, Pos: p.pos, RIP: p.rip, Message: eol.Error()}
		t.end = res.end
	case err != nil:
		return res, err
	case r.Reason == machine.ReasonStopped:
	case r.Reason == machine.ReasonExited:
		res.end = &Stop{Kind: StopExited, Pos: p.pos, RIP: p.rip, Status: r.Status, Message: r.Message}
		t.end = res.end
	default:
		res.end = &Stop{Kind: StopCrashed, Pos: p.pos, RIP: p.rip, Status: r.Status, Message: r.Message}
		t.end = res.end
	}
	return res, nil
}

// stopFrom turns a run result into a Stop.
func (t *Timeline) stopFrom(r runResult, def StopKind) Stop {
	p := t.here()
	switch {
	case r.end != nil:
		return *r.end
	case r.intr:
		return Stop{Kind: StopInterrupted, Pos: p.pos, RIP: p.rip}
	case r.stopped:
		return Stop{Kind: r.hit.kind, Pos: p.pos, RIP: p.rip, Addr: r.hit.addr}
	}
	return Stop{Kind: def, Pos: p.pos, RIP: p.rip}
}

// motion runs one of the Session's motions: Interrupt works from its start
// to its end, and an Interrupt left from an earlier one is forgotten.
func (t *Timeline) motion(f func() (Stop, error)) (Stop, error) {
	t.intr.Store(false)
	t.running.Store(true)
	defer func() {
		t.running.Store(false)
		t.intr.Store(false)
		t.m.SetDataWatchpoints(nil)
	}()
	return f()
}

// motionCheck stops at execution breakpoints and watched writes.
func (t *Timeline) motionCheck() func(p point) (hit, bool) {
	bps := t.execBPs()
	ws := t.watches()
	vals := t.watchState(ws)
	return func(p point) (hit, bool) {
		for _, a := range bps {
			if a == p.rip {
				return hit{kind: StopBreakpoint, addr: a}, true
			}
		}
		if w, ok := t.accessHit(ws); ok {
			return hit{kind: StopWatchpoint, addr: w.Addr}, true
		}
		for i, w := range ws {
			if w.Kind != WatchWrite {
				continue
			}
			cur := make([]byte, w.Len)
			t.ReadVirtual(w.Addr, cur)
			if !bytes.Equal(cur, vals[i]) {
				vals[i] = cur
				return hit{kind: StopWatchpoint, addr: w.Addr}, true
			}
		}
		return hit{}, false
	}
}

// armable returns the execution breakpoints to arm in the debug registers,
// or forces single-stepping when there are more than fit beside the
// replay's own landing breakpoint.
func (t *Timeline) armable() (bps []uint64, step bool) {
	bps = t.execBPs()
	if len(bps) > 3 {
		return nil, true
	}
	return bps, len(t.watches()) > 0
}

// Step runs n instructions forwards.
func (t *Timeline) Step(n int) (Stop, error) {
	return t.motion(func() (Stop, error) { return t.step(n) })
}

func (t *Timeline) step(n int) (Stop, error) {
	if n < 1 {
		n = 1
	}
	ws := t.watches()
	vals := t.watchState(ws)
	for i := 0; i < n; i++ {
		from := t.here()
		r, err := t.run(runOpts{step: true, check: func(p point) (hit, bool) {
			return hit{kind: StopStep}, p != from
		}})
		if err != nil {
			return Stop{}, err
		}
		if r.end != nil || r.intr {
			return t.stopFrom(r, StopStep), nil
		}
		if s, ok := t.watchHit(ws, vals, true); ok {
			return s, nil
		}
	}
	return t.stopFrom(runResult{}, StopStep), nil
}

// watchHit reports a write-watched range that no longer holds vals, or,
// with accesses, a read or access watchpoint the instructions since the
// last check touched (as the stop of the step that made the access: a
// debugger shows it as a watchpoint hit, as hardware reports one with the
// single-step).
func (t *Timeline) watchHit(ws []Breakpoint, vals [][]byte, accesses bool) (Stop, bool) {
	if w, ok := t.accessHit(ws); ok && accesses {
		s := t.stopFrom(runResult{}, StopWatchpoint)
		s.Addr = w.Addr
		return s, true
	}
	for i, cur := range t.writeState(ws) {
		if ws[i].Kind == WatchWrite && !bytes.Equal(cur, vals[i]) {
			s := t.stopFrom(runResult{}, StopWatchpoint)
			s.Addr = ws[i].Addr
			return s, true
		}
	}
	return Stop{}, false
}

// Continue runs forwards to a breakpoint, a watched write, or the end.
func (t *Timeline) Continue() (Stop, error) { return t.motion(t.cont) }

func (t *Timeline) cont() (Stop, error) {
	bps, step := t.armable()
	r, err := t.run(runOpts{step: step, bps: bps, check: t.motionCheck()})
	if err != nil {
		return Stop{}, err
	}
	return t.stopFrom(r, StopEnd), nil
}

// lastBefore returns the index of the last snapshot strictly before p.
func (t *Timeline) lastBefore(p position.Pos) int {
	for i := len(t.snaps.list) - 1; i >= 0; i-- {
		if t.snaps.list[i].pos.Less(p) {
			return i
		}
	}
	return -1
}

// restore brings the replay back to snapshot i.
func (t *Timeline) restore(i int) error {
	s, err := t.snaps.restore(t.e, i)
	if err != nil {
		return err
	}
	t.console.b = t.console.b[:s.console]
	return nil
}

// scan restores snapshot i and runs to `to` (exclusive), calling visit at
// each stop point passed, the snapshot's own point included, with what the
// check (made after the restore) says there. A scan cut short by Interrupt
// returns that stop: the caller must stop too. (A scan that diverges ends
// there, as if it had reached `to`: single-stepping over IRETQ can diverge
// where the recording does not, and the earlier intervals are still good.)
func (t *Timeline) scan(i int, to position.Pos, bps []uint64, step bool, snapInsn uint64, mkCheck func() func(p point) (hit, bool), visit func(p point, h hit, hitOK bool)) (*Stop, error) {
	if err := t.restore(i); err != nil {
		return nil, err
	}
	check := mkCheck()
	p := t.here()
	h, ok := check(p)
	visit(p, h, ok)
	r, err := t.run(runOpts{step: step, bps: bps, snapInsn: snapInsn, check: func(p point) (hit, bool) {
		if !p.pos.Less(to) {
			// A write seen on arriving at `to` was made before it.
			if h, ok := check(p); ok && h.kind == StopWatchpoint && p.pos == to {
				visit(p, h, ok)
			}
			return hit{}, true
		}
		h, ok := check(p)
		visit(p, h, ok)
		return hit{}, false
	}})
	if err != nil || !r.intr {
		return nil, err
	}
	s := t.stopFrom(r, StopInterrupted)
	return &s, nil
}

// goTo moves to a position: from the latest snapshot at or before it,
// racing ahead and single-stepping the last stretch.
func (t *Timeline) goTo(target point) (Stop, error) {
	s, err := t.goToFrom(target, true)
	if err == errOvershot {
		// The race overshot (no stop close enough before the target):
		// step the whole way from the snapshot.
		s, err = t.goToFrom(target, false)
	}
	if err == errOvershot {
		return s, fmt.Errorf("position %s is not an instruction boundary of this replay", target.pos)
	}
	return s, err
}

// errOvershot means a run passed the position it was aiming at.
var errOvershot = errors.New("replayer: ran past the target position")

// at reports whether p is the target point (any RIP if the target's is 0).
func (target point) at(p point) bool {
	return p.pos == target.pos && (target.rip == 0 || p.rip == target.rip)
}

func (t *Timeline) goToFrom(target point, race bool) (Stop, error) {
	cur := t.here()
	i := t.snaps.before(target.pos)
	if target.pos.Less(cur.pos) || cur.pos.Less(t.snaps.list[i].pos) || !race ||
		cur.pos == target.pos && !target.at(cur) {
		if err := t.restore(i); err != nil {
			return Stop{}, err
		}
	}
	if target.at(t.here()) {
		return t.stopFrom(runResult{}, StopStep), nil
	}
	o := runOpts{step: true, check: func(p point) (hit, bool) {
		return hit{kind: StopStep}, target.at(p) || target.pos.Less(p.pos)
	}}
	if race {
		o.far = &target.pos
	}
	if target.rip != 0 {
		// Some stops only exist at a breakpoint: the first instruction of
		// an interrupt handler is never a single-step stop.
		o.bps = []uint64{target.rip}
	}
	r, err := t.run(o)
	if err != nil {
		return Stop{}, err
	}
	s := t.stopFrom(r, StopStep)
	if r.end == nil && !r.intr && !target.at(t.here()) {
		return s, errOvershot
	}
	return s, nil
}

// holdSnapshots keeps the snapshot list from being thinned while a
// reverse motion works with snapshot indices.
func (t *Timeline) holdSnapshots() (release func()) {
	limit := t.snaps.limit
	t.snaps.limit = 0
	return func() { t.snaps.limit = limit }
}

// ReverseStep moves n instructions backwards.
func (t *Timeline) ReverseStep(n int) (Stop, error) {
	defer t.holdSnapshots()()
	return t.motion(func() (Stop, error) { return t.reverseStep(n) })
}

func (t *Timeline) reverseStep(n int) (Stop, error) {
	if n < 1 {
		n = 1
	}
	from := t.here()
	if t.end != nil && t.end.Kind == StopCrashed && from.pos == t.end.Pos {
		// The instruction that crashed the guest never completed: the
		// point before the crash has the same RIP, and for a debugger it
		// is the same place (gdb shows a fault at the faulting
		// instruction). Stepping back from a crash goes past it.
		prev, ok, cut, err := t.stepsBack(from.pos, 1)
		if err != nil || cut != nil {
			return deref(cut), err
		}
		if ok && prev.rip == from.rip {
			n++
		}
	}
	target, ok, cut, err := t.stepsBack(from.pos, n)
	if err != nil || cut != nil {
		return deref(cut), err
	}
	if !ok {
		if err := t.restore(0); err != nil {
			return Stop{}, err
		}
		p := t.here()
		return Stop{Kind: StopBegin, Pos: p.pos, RIP: p.rip}, nil
	}
	ws := t.watches()
	vals := t.watchState(ws)
	s, err := t.goTo(target)
	if err == nil && n == 1 && s.Kind == StopStep {
		// One step back over a write to a watched range: the write's
		// watchpoint hit, seen backwards.
		// Reads seen on the way back are not this instruction's.
		if w, ok := t.watchHit(ws, vals, false); ok {
			s = w
		}
	}
	return s, err
}

// deref is the Stop s points at, or the zero Stop.
func deref(s *Stop) Stop {
	if s == nil {
		return Stop{}
	}
	return *s
}

// stepsBack finds the position n instruction boundaries before to, by
// single-stepping from earlier snapshots; false if that is before the start.
// A non-nil Stop says the search was interrupted, and where.
func (t *Timeline) stepsBack(to position.Pos, n int) (point, bool, *Stop, error) {
	for {
		i := t.lastBefore(to)
		if i < 0 {
			return point{}, false, nil, nil
		}
		var pts []point
		noCheck := func() func(point) (hit, bool) { return func(point) (hit, bool) { return hit{}, false } }
		// The point n back has an instruction count of at least
		// to.Insn-n (a step runs at most one instruction): a snapshot at
		// the first stop there is at or before it, and goTo starts there.
		var snapInsn uint64
		if to.Insn > uint64(n) {
			snapInsn = to.Insn - uint64(n)
		}
		cut, err := t.scan(i, to, nil, true, snapInsn, noCheck, func(p point, _ hit, _ bool) {
			if len(pts) == 0 || pts[len(pts)-1] != p {
				pts = append(pts, p)
			}
		})
		if err != nil || cut != nil {
			return point{}, false, cut, err
		}
		if len(pts) >= n {
			return pts[len(pts)-n], true, nil, nil
		}
		n -= len(pts)
		to = t.snaps.list[i].pos
		if i == 0 {
			return point{}, false, nil, nil
		}
	}
}

// ReverseContinue moves back to the last breakpoint hit or watched write
// before now, or to the start.
func (t *Timeline) ReverseContinue() (Stop, error) {
	defer t.holdSnapshots()()
	return t.motion(t.reverseContinue)
}

func (t *Timeline) reverseContinue() (Stop, error) {
	to := t.here().pos
	bps, step := t.armable()
	for {
		i := t.lastBefore(to)
		if i < 0 {
			break
		}
		var last *point
		var lastHit hit
		var prev point
		cut, err := t.scan(i, to, bps, step, 0, t.motionCheck, func(p point, h hit, ok bool) {
			if ok {
				q := p
				if h.kind == StopWatchpoint {
					// Going backwards, a write is seen just before the
					// instruction that made it.
					q = prev
				}
				last, lastHit = &q, h
			}
			prev = p
		})
		if err != nil || cut != nil {
			// Stopped where the scan was cut: earlier than where the
			// motion started, and not at a hit.
			return deref(cut), err
		}
		if last != nil {
			s, err := t.goTo(*last)
			if err == nil && s.Kind == StopStep {
				s.Kind, s.Addr = lastHit.kind, lastHit.addr
			}
			return s, err
		}
		if i == 0 {
			break
		}
		to = t.snaps.list[i].pos
	}
	if err := t.restore(0); err != nil {
		return Stop{}, err
	}
	p := t.here()
	return Stop{Kind: StopBegin, Pos: p.pos, RIP: p.rip}, nil
}

// Goto moves to a position.
func (t *Timeline) Goto(p position.Pos) (Stop, error) {
	return t.motion(func() (Stop, error) { return t.gotoPos(p) })
}

func (t *Timeline) gotoPos(p position.Pos) (Stop, error) {
	if t.end != nil && t.end.Pos.Less(p) {
		return Stop{}, fmt.Errorf("position %s is past the end of the recording (%s)", p, t.end.Pos)
	}
	return t.goTo(point{pos: p})
}

// GotoStart moves to the start of the recording.
func (t *Timeline) GotoStart() (Stop, error) { return t.motion(t.gotoStart) }

func (t *Timeline) gotoStart() (Stop, error) {
	if err := t.restore(0); err != nil {
		return Stop{}, err
	}
	p := t.here()
	return Stop{Kind: StopBegin, Pos: p.pos, RIP: p.rip}, nil
}

// GotoEnd runs to the end of the recording.
func (t *Timeline) GotoEnd() (Stop, error) { return t.motion(t.gotoEnd) }

func (t *Timeline) gotoEnd() (Stop, error) {
	r, err := t.run(runOpts{check: func(point) (hit, bool) { return hit{}, false }})
	if err != nil {
		return Stop{}, err
	}
	return t.stopFrom(r, StopEnd), nil
}

// eventReader opens a second cursor over the log for listing events.
func (t *Timeline) eventReader() (*logfmt.Reader, error) {
	if t.eventLog == nil {
		r, err := logfmt.Open(t.e.LogPath())
		if err != nil {
			return nil, err
		}
		t.eventLog = r
	}
	return t.eventLog, nil
}

// EventCount is the number of events in the log.
func (t *Timeline) EventCount() int {
	t.eventsOnce.Do(func() {
		r, err := t.eventReader()
		if err != nil {
			return
		}
		if end := r.End(); end != nil {
			t.eventCount = int(end.Events) + 1
			return
		}
		r.SeekEvent(0)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
			t.eventCount++
		}
	})
	return t.eventCount
}

// Events returns up to count events from index from.
func (t *Timeline) Events(from, count int) ([]EventInfo, error) {
	if from < 0 || from > t.EventCount() {
		return nil, fmt.Errorf("event %d is outside the log (0 to %d)", from, t.EventCount()-1)
	}
	r, err := t.eventReader()
	if err != nil {
		return nil, err
	}
	if err := r.SeekEvent(uint64(from)); err != nil {
		return nil, err
	}
	var out []EventInfo
	for i := 0; i < count; i++ {
		ev, err := r.Next()
		if err != nil {
			break
		}
		out = append(out, EventInfo{Index: from + i, Pos: ev.Pos, Kind: eventKind(ev), Text: eventText(ev)})
	}
	return out, nil
}

func eventKind(ev *logfmt.Event) string {
	if ev.Kind == logfmt.KindNonDet {
		return ev.Instr.String()
	}
	return ev.Kind.String()
}

func eventText(ev *logfmt.Event) string {
	switch ev.Kind {
	case logfmt.KindPortIn:
		return fmt.Sprintf("port %#x = %#x", ev.Port, ev.Values[0])
	case logfmt.KindInterrupt:
		return fmt.Sprintf("irq %d at rip %#x", ev.Vector, ev.Landing.RIP)
	case logfmt.KindInject:
		return fmt.Sprintf("vector %#x at rip %#x", ev.Vector, ev.Landing.RIP)
	case logfmt.KindSerialRX:
		return fmt.Sprintf("%q", ev.Data)
	case logfmt.KindCheckpoint:
		return fmt.Sprintf("rip %#x", ev.RIP)
	case logfmt.KindRingFlush:
		return fmt.Sprintf("%d values", len(ev.Ring))
	case logfmt.KindEnd:
		return ev.End.Reason
	case logfmt.KindNonDet:
		return fmt.Sprintf("%#x", ev.Values)
	}
	return ""
}

// NextEvent is the index of the next event to apply.
func (t *Timeline) NextEvent() int {
	next, index := t.e.Next()
	if next == nil {
		return t.EventCount()
	}
	return int(index)
}

// GotoEvent moves to where event k is applied.
func (t *Timeline) GotoEvent(k int) (Stop, error) {
	return t.motion(func() (Stop, error) { return t.gotoEvent(k) })
}

func (t *Timeline) gotoEvent(k int) (Stop, error) {
	evs, err := t.Events(k, 1)
	if err != nil {
		return Stop{}, err
	}
	if len(evs) == 0 {
		return Stop{}, fmt.Errorf("event %d is past the end of the log (%d events)", k, t.EventCount())
	}
	return t.goTo(point{pos: evs[0].Pos})
}

// Console is the guest's serial output up to now.
func (t *Timeline) Console() []byte { return append([]byte(nil), t.console.b...) }

// Snapshots lists the snapshots held.
func (t *Timeline) Snapshots() []SnapshotInfo {
	out := make([]SnapshotInfo, len(t.snaps.list))
	for i, s := range t.snaps.list {
		out[i] = SnapshotInfo{Pos: s.pos, Event: s.event, Bytes: s.bytes}
	}
	return out
}

// ImagePath is the guest image on disk (a temporary copy when the log
// embeds it).
func (t *Timeline) ImagePath() string { return t.imagePath }

// OriginalBytes shows patched instructions as they were.
func (t *Timeline) OriginalBytes(addr uint64, b []byte) { t.e.Patches().Restore(addr, b) }

var _ Session = (*Timeline)(nil)
