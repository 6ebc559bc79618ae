package replayer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/nondet"
	"vmrr/position"
	"vmrr/tlbsync"
)

// Options configure a replay.
type Options struct {
	LogPath  string
	Image    []byte    // the guest image; nil: the embedded one, else the header's path
	Console  io.Writer // the guest's serial output
	Warnings io.Writer
	// StuckAfter, if set, bounds the wall time the replay may spend without
	// applying an event before it reports where it is stuck. (A replay
	// that runs past its next event is caught at once regardless.)
	StuckAfter time.Duration
	// Accel, if set, is the CPU the caller expects; a log recorded on
	// another is refused. Replay always runs on the recording's CPU.
	Accel machine.Accel
}

// Divergence is a replay that no longer matches its recording.
type Divergence struct {
	Event   uint64 // index of the event that did not match
	Pos     position.Pos
	Message string
}

func (d *Divergence) Error() string {
	return fmt.Sprintf("replay diverged at event %d (position %s): %s", d.Event, d.Pos, d.Message)
}

// Engine replays a log on a machine: it is the machine.Hooks of a replay,
// and it alone reads the log. Timeline builds debugging on top of it
// through the replay interface (timeline.go).
type Engine struct {
	m      *machine.Machine
	hdr    *logfmt.Header
	image  []byte
	events *logfmt.Reader // the main cursor: every event but ring flushes
	rings  *logfmt.Reader // the ring cursor, read ahead of the guest
	next   *logfmt.Event  // next event to apply; nil when the log has no more
	index  uint64         // index of next
	endErr error          // why the log has no more events (io.EOF, *TruncatedError)

	trap       *nondet.Trapper
	tlb        *tlbsync.Sync
	ring       *nondet.Ring
	ringFilled uint64
	ringErr    error

	stepping bool // stepping over an armed breakpoint that was not the landing

	// stop, when set, is asked at every BeforeRun whether to stop
	// (control.stop).
	stop func() bool
	// atUserBP is set at a debugger breakpoint hit.
	atUserBP bool
	// stuckAfter and progress implement Options.StuckAfter.
	stuckAfter time.Duration
	progress   time.Time
	// singleStep is set while the debugger needs every instruction.
	singleStep bool
	// userBPs are debugger breakpoints armed beside the landing breakpoint
	// (control.bps).
	userBPs []uint64
	// missed says why the last landing check at the next event's position
	// failed, for the message when the replay passes it.
	missed string
	// lastCheckpoint is the index of the event after the last matching
	// checkpoint.
	lastCheckpoint uint64
	// pages are the page hashes at the last matching checkpoint.
	pages []uint32
	// ringIndex is the ring cursor's next event index (for snapshots).
	ringIndex uint64
	logPath   string
}

// ErrImageNeeded is returned when no image can be found for a log.
var ErrImageNeeded = errors.New("replayer: the log does not embed its image and the recorded path cannot be read (pass --image)")

// Open opens a log and builds a machine ready to replay it.
func Open(opt Options) (*Engine, error) {
	events, err := logfmt.Open(opt.LogPath)
	if err != nil {
		return nil, err
	}
	e := &Engine{events: events, hdr: events.Header(), logPath: opt.LogPath, stuckAfter: opt.StuckAfter, progress: time.Now()}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	if e.rings, err = logfmt.Open(opt.LogPath); err != nil {
		return nil, err
	}
	if e.image, err = findImage(e.hdr, opt.Image); err != nil {
		return nil, err
	}
	mode, err := nondet.ParseMode(e.hdr.Mode)
	if err != nil {
		return nil, fmt.Errorf("replayer: log header: %w", err)
	}
	// Never nil: a replay patches what the recording did, nothing more.
	recorded := make([]nondet.Patch, 0, len(e.hdr.Patches))
	for _, p := range e.hdr.Patches {
		recorded = append(recorded, nondet.Patch{Addr: p.Addr, Original: p.Original})
	}
	if e.trap, err = nondet.NewTrapper(mode, e.image, e, recorded); err != nil {
		return nil, err
	}
	cpuid := make([]cpu.CPUIDEntry, len(e.hdr.CPUID))
	for i, c := range e.hdr.CPUID {
		cpuid[i] = cpu.CPUIDEntry{Function: c.Function, Index: c.Index, Flags: c.Flags, Eax: c.EAX, Ebx: c.EBX, Ecx: c.ECX, Edx: c.EDX}
	}
	accel, err := LogAccel(e.hdr)
	if err != nil {
		return nil, err
	}
	if opt.Accel != "" && opt.Accel != machine.AccelAuto && opt.Accel != accel {
		return nil, fmt.Errorf("replayer: the log was recorded on the %s CPU; it replays only there (not --accel %s)", accel, opt.Accel)
	}
	e.m, err = machine.New(machine.Config{MemoryBytes: e.hdr.MemoryBytes, Image: e.image, Boot: machine.BootProtocol(e.hdr.Boot),
		Console: opt.Console, Hooks: e, CPUID: cpuid, Accel: accel, TLBSync: e.hdr.TLBSync})
	if err != nil {
		return nil, err
	}
	e.m.Warnings = opt.Warnings
	if os.Getenv("VMRR_TRACE") != "" {
		e.m.Trace = os.Stderr
	}
	if e.hdr.ExitsOnly {
		e.m.SetExitsOnly()
	}
	e.ring = nondet.NewRing(e.m.Memory(), false)
	if err := e.trap.Install(e.m); err != nil {
		return nil, err
	}
	if e.hdr.TLBSync {
		if e.tlb, err = tlbsync.Attach(e.m); err != nil {
			return nil, err
		}
	}
	e.refill()
	e.advance()
	ok = true
	return e, nil
}

// LogAccel is the CPU a log was recorded on (a log that does not say is
// from KVM).
func LogAccel(h *logfmt.Header) (machine.Accel, error) {
	switch a := machine.Accel(h.Accel); a {
	case "":
		return machine.AccelKVM, nil
	case machine.AccelKVM, machine.AccelSoft:
		return a, nil
	}
	return "", fmt.Errorf("replayer: log header: unknown CPU %q", h.Accel)
}

// findImage picks the image: given, embedded, or at the recorded path; its
// hash must match the header's.
func findImage(h *logfmt.Header, given []byte) ([]byte, error) {
	img := given
	if img == nil && len(h.Image) > 0 {
		img = h.Image
	}
	if img == nil {
		b, err := readFile(h.ImagePath)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImageNeeded, err)
		}
		img = b
	}
	if err := h.CheckImage(img); err != nil {
		return nil, err
	}
	return img, nil
}

// Close releases the machine and the log.
func (e *Engine) Close() error {
	if e.m != nil {
		e.m.Close()
	}
	if e.events != nil {
		e.events.Close()
	}
	if e.rings != nil {
		e.rings.Close()
	}
	return nil
}

// Machine is the machine being replayed.
func (e *Engine) Machine() *machine.Machine { return e.m }

// Header is the log's header.
func (e *Engine) Header() *logfmt.Header { return e.hdr }

// Image is the guest image.
func (e *Engine) Image() []byte { return e.image }

// Patches is the patch table in use.
func (e *Engine) Patches() nondet.Patches { return e.trap.Patches }

// LogPath is the log being replayed.
func (e *Engine) LogPath() string { return e.logPath }

// engineState is the Engine's part of a snapshot: the log cursors and
// what it learnt from the log so far.
type engineState struct {
	index       uint64 // index of next
	next        *logfmt.Event
	endErr      error
	readerIndex uint64 // where the main cursor reads next
	ringIndex   uint64
	ringFilled  uint64
	ringErr     error
	pages       []uint32 // page hashes at the last matching checkpoint
}

// saveState and restoreState are the Engine's part of taking and
// restoring a snapshot.
func (e *Engine) saveState() engineState {
	return engineState{index: e.index, next: e.next, endErr: e.endErr, readerIndex: e.events.Index(),
		ringIndex: e.ringIndex, ringFilled: e.ringFilled, ringErr: e.ringErr, pages: e.pages}
}

func (e *Engine) restoreState(s *engineState) error {
	if err := e.events.SeekEvent(s.readerIndex); err != nil {
		return err
	}
	if err := e.rings.SeekEvent(s.ringIndex); err != nil {
		return err
	}
	e.index, e.next, e.endErr = s.index, s.next, s.endErr
	e.ringIndex, e.ringFilled, e.ringErr = s.ringIndex, s.ringFilled, s.ringErr
	e.pages = s.pages
	// A step over a breakpoint belongs to the position left behind.
	e.stepping, e.atUserBP = false, false
	return nil
}

// control is how a debugger runs the replay (runControlled).
type control struct {
	step bool     // single-step every instruction
	bps  []uint64 // execution breakpoints, armed beside the replay's own
	// stop is asked before every entry into the guest; true ends the run
	// with machine.ReasonStopped. It may call setSingleStep.
	stop func() bool
	// kick, if not 0, kicks the vCPU this often, so that stop is asked
	// even while the guest makes no exits.
	kick time.Duration
}

// runControlled runs the replay forwards under a debugger's control until
// c.stop says stop or the replay ends. A breakpoint at the starting RIP is
// stepped over (resuming there would hit it at once).
func (e *Engine) runControlled(c control) (machine.Result, error) {
	m := e.m
	// A run interrupted half-way through stepping over a breakpoint left
	// the engine waiting for a step that will not come: start afresh (a
	// breakpoint at this very address is stepped over again on its hit).
	e.stepping, e.atUserBP = false, false
	if c.kick > 0 {
		defer e.kickEvery(c.kick)()
	}
	e.setSingleStep(c.step)
	e.userBPs, e.stop = c.bps, c.stop
	defer func() {
		e.userBPs, e.stop = nil, nil
		e.setSingleStep(false)
	}()
	regs, _ := m.Regs()
	for _, a := range c.bps {
		if a == regs.RIP {
			e.stepOver(m)
			break
		}
	}
	return m.Run()
}

// setSingleStep turns the debugger's single-stepping on or off (exact mode
// single-steps regardless).
func (e *Engine) setSingleStep(on bool) {
	e.singleStep = on
	e.m.SetSingleStep(on || e.trap.Mode == nondet.ModeExact)
}

// advance reads the next event of the main cursor, skipping ring flushes
// (the ring cursor reads those).
func (e *Engine) advance() {
	e.progress = time.Now()
	for {
		e.index = e.events.Index()
		ev, err := e.events.Next()
		if err != nil {
			e.next, e.endErr = nil, err
			return
		}
		if ev.Kind == logfmt.KindRingFlush {
			continue
		}
		e.next = ev
		return
	}
}

// Next is the next event to apply, with its index (nil at the end).
func (e *Engine) Next() (*logfmt.Event, uint64) { return e.next, e.index }

// EndErr says why there are no more events: io.EOF at a clean end, a
// *logfmt.TruncatedError, or a corruption error.
func (e *Engine) EndErr() error { return e.endErr }

// diverge builds a divergence at the next event.
func (e *Engine) diverge(format string, args ...any) error {
	p := position.Pos{}
	if e.next != nil {
		p = e.next.Pos
	}
	return &Divergence{Event: e.index, Pos: p, Message: fmt.Sprintf(format, args...)}
}

func describe(ev *logfmt.Event) string {
	switch ev.Kind {
	case logfmt.KindPortIn:
		return fmt.Sprintf("a read of port %#x", ev.Port)
	case logfmt.KindInterrupt:
		return fmt.Sprintf("IRQ %d at RIP %#x", ev.Vector, ev.Landing.RIP)
	case logfmt.KindInject:
		return fmt.Sprintf("the injection of vector %#x at RIP %#x", ev.Vector, ev.Landing.RIP)
	case logfmt.KindEnd:
		return "the end of the recording (" + ev.End.Reason + ")"
	}
	return ev.Kind.String()
}

// apply applies every event due at the current position.
func (e *Engine) apply(m *machine.Machine) error {
	for e.next != nil {
		cur := m.Position()
		ev := e.next
		if cur != ev.Pos {
			if ev.Pos.Less(cur) {
				regs, _ := m.Regs()
				return e.diverge("the replay passed %s without reaching it%s: now at %s RIP %#x", describe(ev), e.missed, cur, regs.RIP)
			}
			return nil
		}
		switch ev.Kind {
		case logfmt.KindInterrupt:
			if ok, err := e.land(m, ev); !ok {
				return err
			}
			m.RaiseIRQ(int(ev.Vector))
			if ev.Vector == machine.IRQTimer {
				m.PIT().Fired()
			}
		case logfmt.KindInject:
			if ok, err := e.land(m, ev); !ok {
				return err
			}
			vec, ok := m.CanInject()
			if !ok || vec != ev.Vector {
				return e.diverge("the recording injected vector %#x here, but the guest cannot take it now (pending %#x, possible %v)", ev.Vector, vec, ok)
			}
			m.Delivered()
		case logfmt.KindSerialRX:
			if ok, err := e.land(m, ev); !ok {
				return err
			}
			m.UART().Receive(ev.Data)
		case logfmt.KindCheckpoint:
			if err := e.checkpoint(m, ev); err != nil {
				return err
			}
		case logfmt.KindEnd:
			if !strings.HasPrefix(ev.End.Reason, machine.ReasonExited.String()) &&
				!strings.HasPrefix(ev.End.Reason, machine.ReasonTripleFault.String()) &&
				!strings.HasPrefix(ev.End.Reason, machine.ReasonInternal.String()) {
				// The recording was cut here (time limit, hang): end alike.
				m.End(reasonOf(ev.End.Reason), "as recorded")
			}
			return nil
		case logfmt.KindPortIn:
			return nil // Input takes it
		default:
			return e.diverge("unexpected %s event", ev.Kind)
		}
		e.advance()
	}
	return nil
}

// land reports whether the guest stands where the recording delivered an
// asynchronous event. One position can hold two stops with different RIPs
// (after an injection, and at the first instruction of the handler when
// single-stepping), so a RIP that differs means "not yet"; a replay that
// never gets there passes the position and is reported then.
func (e *Engine) land(m *machine.Machine, ev *logfmt.Event) (bool, error) {
	if ev.Landing.RIP == 0 && ev.Landing.RegHash == 0 {
		return true, nil // logged without a landing
	}
	regs, err := m.Regs()
	if err != nil {
		return false, err
	}
	if regs.RIP != ev.Landing.RIP {
		e.missed = fmt.Sprintf(" (at that position the guest was at RIP %#x)", regs.RIP)
		return false, nil
	}
	if h := machine.RegHash(&regs); h != ev.Landing.RegHash {
		return false, e.diverge("at the %s event's position the registers differ: %s", ev.Kind, regDiffHash(&regs, h, ev.Landing.RegHash))
	}
	e.missed = ""
	return true, nil
}

// regDiffHash describes a register-hash mismatch where only the hashes
// were recorded.
func regDiffHash(regs *cpu.Regs, got, want uint64) string {
	return fmt.Sprintf("register hash %#x, recorded %#x (RIP %#x)", got, want, regs.RIP)
}

func reasonOf(s string) machine.Reason {
	for r := machine.ReasonExited; r <= machine.ReasonStopped; r++ {
		if strings.HasPrefix(s, r.String()) {
			return r
		}
	}
	return machine.ReasonStopped
}

// checkpoint compares the state with a recorded checkpoint.
func (e *Engine) checkpoint(m *machine.Machine, ev *logfmt.Event) error {
	regs, err := m.Regs()
	if err != nil {
		return err
	}
	if h := machine.RegHash(&regs); h != ev.RegHash || regs.RIP != ev.RIP {
		return e.diverge("checkpoint: registers differ: %s", regDiff(machine.RegList(&regs), ev.Values))
	}
	// The recorded page hashes: those of the last checkpoint (which
	// matched), updated with the pages this one lists.
	want := append([]uint32(nil), e.pages...)
	if e.pages == nil {
		want = make([]uint32, m.Memory().Size()/4096)
	}
	for _, pc := range ev.Landing.Pages {
		if p := pc >> 32; p < uint64(len(want)) {
			want[p] = uint32(pc)
		}
	}
	got := m.PageHashes(nil)
	if h := machine.HashPages(got); h != ev.MemHash {
		var bad []string
		for p := range got {
			if got[p] != want[p] && len(bad) < 4 {
				bad = append(bad, fmt.Sprintf("%#x", uint64(p)*4096))
			}
		}
		where := "pages " + strings.Join(bad, ", ")
		if len(bad) == 0 {
			where = "a page the log cannot name (memory hash mismatch)"
		}
		return e.diverge("checkpoint: guest memory differs at RIP %#x: %s", regs.RIP, where)
	}
	e.pages = got
	if nr := len(machine.RegNames); len(ev.Values) == nr+2 {
		n, crc := m.ConsoleHash()
		if n != ev.Values[nr] || uint64(crc) != ev.Values[nr+1] {
			return e.diverge("checkpoint: the console output differs (%d bytes printed, recorded %d)", n, ev.Values[nr])
		}
	}
	e.lastCheckpoint = e.index + 1
	return nil
}

// regDiff names the registers that differ from the recorded values.
func regDiff(got, want []uint64) string {
	var d []string
	for i, name := range machine.RegNames {
		if i < len(want) && i < len(got) && got[i] != want[i] {
			d = append(d, fmt.Sprintf("%s %#x (recorded %#x)", name, got[i], want[i]))
		}
	}
	if len(d) == 0 {
		return "the register hash differs"
	}
	return strings.Join(d, ", ")
}

// BeforeRun applies due events, aims a breakpoint at the next landing and
// lets the trapper work.
func (e *Engine) BeforeRun(m *machine.Machine) error {
	if e.stop != nil && e.stop() {
		return machine.ErrStop
	}
	if e.atUserBP {
		e.atUserBP = false
		e.stepOver(m)
	}
	if e.tlb != nil {
		if err := e.tlb.BeforeRun(m); err != nil {
			return err
		}
	}
	if err := e.apply(m); err != nil {
		return err
	}
	if e.next == nil && !errors.Is(e.endErr, io.EOF) {
		return e.endOfLog()
	}
	if err := e.aim(m); err != nil {
		return err
	}
	return e.trap.BeforeRun(m)
}

// endOfLog stops a replay whose log ended early or is damaged.
func (e *Engine) endOfLog() error {
	return &EndOfLogError{Err: e.endErr}
}

// EndOfLogError is a replay that ran out of log before the recording's end.
type EndOfLogError struct{ Err error }

func (e *EndOfLogError) Error() string { return e.Err.Error() }
func (e *EndOfLogError) Unwrap() error { return e.Err }

// aim arms a hardware breakpoint at the next asynchronous event's RIP once
// the replay has reached that event's exit count, beside the debugger's.
func (e *Engine) aim(m *machine.Machine) error {
	if e.stepping {
		return nil
	}
	want := append([]uint64(nil), e.userBPs...)
	if e.aimExact(m) {
		return m.SetBreakpoints(want)
	}
	if ev := e.next; ev != nil && !m.SingleStepping() && ev.Pos.Exit == m.Exits() {
		switch ev.Kind {
		case logfmt.KindInterrupt, logfmt.KindInject, logfmt.KindSerialRX:
			if ev.Landing.RIP != 0 {
				want = append(want, ev.Landing.RIP)
			}
		case logfmt.KindEnd:
			want = append(want, ev.End.RIP)
		}
	}
	return m.SetBreakpoints(want)
}

// aimExact, where the CPU counts instructions exactly (soft), makes the
// guest stop at the next event's instruction count: the event is applied
// there, with no breakpoint and no search.
func (e *Engine) aimExact(m *machine.Machine) bool {
	var at uint64
	if ev := e.next; ev != nil && ev.Pos.Insn > m.Position().Insn {
		at = ev.Pos.Insn
	}
	return m.StopAt(at)
}

// Debug handles a breakpoint hit or a single-step: a breakpoint at the
// landing RIP that is not yet the landing's position is stepped over
// (the host does not honour RF: disarm, step once, re-arm).
func (e *Engine) Debug(m *machine.Machine, d cpu.DebugExit) error {
	if e.stepping {
		e.stepping = false
		m.SetSingleStep(e.trap.Mode == nondet.ModeExact || e.singleStep)
		return nil
	}
	if len(m.Breakpoints()) == 0 {
		return nil
	}
	if ev := e.next; ev != nil && m.Position() == ev.Pos {
		return nil // BeforeRun applies it
	}
	if len(e.userBPs) > 0 {
		regs, err := m.Regs()
		if err != nil {
			return err
		}
		for _, a := range e.userBPs {
			if a == regs.RIP {
				// The debugger decides in BeforeRun; if it goes on, the
				// breakpoint is stepped over then.
				e.atUserBP = true
				return nil
			}
		}
	}
	e.stepOver(m)
	return nil
}

// stepOver runs the next instruction with breakpoints disarmed: the host
// does not honour RF, so resuming at an armed address would hit it again.
func (e *Engine) stepOver(m *machine.Machine) {
	e.stepping = true
	m.SetBreakpoints(nil)
	m.SetSingleStep(true)
}

// Idle: a halted guest in replay can only be woken by the next event, which
// must be due here.
func (e *Engine) Idle(m *machine.Machine) error {
	// A halted guest's events are applied here rather than in BeforeRun:
	// a debugger that stops at this position must stop before them too.
	if e.stop != nil && e.stop() {
		return machine.ErrStop
	}
	if err := e.apply(m); err != nil {
		return err
	}
	if m.Pending() {
		return nil
	}
	if e.next == nil {
		if errors.Is(e.endErr, io.EOF) {
			return e.diverge("the guest halted, waiting for an interrupt, after the last event of the log")
		}
		return e.endOfLog()
	}
	regs, _ := m.Regs()
	return e.diverge("the guest halted at %s RIP %#x, waiting for an interrupt, but the next event is %s at %s",
		m.Position(), regs.RIP, describe(e.next), e.next.Pos)
}

// Input returns the logged value of an outside-world device read.
func (e *Engine) Input(m *machine.Machine, in machine.Input, live func() uint64) (uint64, error) {
	ev := e.next
	if ev == nil || ev.Kind != logfmt.KindPortIn || ev.Pos != m.Position() || ev.Port != in.Port {
		if ev == nil && !errors.Is(e.endErr, io.EOF) {
			return 0, e.endOfLog()
		}
		what := "nothing"
		if ev != nil {
			what = describe(ev) + " at " + ev.Pos.String()
		}
		return 0, e.diverge("the guest read port %#x at %s, but the log has %s", in.Port, m.Position(), what)
	}
	v := ev.Values[0]
	e.advance()
	return v, nil
}

// NonDet serves the emulator's and MSR exits' values from the ring.
func (e *Engine) NonDet(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	return e.trap.NonDet(m, kind)
}

// Port handles the trap and doorbell ports.
func (e *Engine) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	return e.trap.Port(m, port, out, data)
}

// Interrupted is a watchdog kick: a replay that ran past the next event's
// position without an exit can only have diverged (positions count every
// instruction, so a replay never loses its way silently).
func (e *Engine) Interrupted(m *machine.Machine) error {
	if e.stuckAfter > 0 && time.Since(e.progress) > e.stuckAfter && e.stop == nil {
		regs, _ := m.Regs()
		next := "the end of the log"
		if e.next != nil {
			next = describe(e.next) + " at " + e.next.Pos.String()
		}
		return e.diverge("no progress for %v: stuck at %s RIP %#x, waiting for %s", e.stuckAfter, m.Position(), regs.RIP, next)
	}
	if ev := e.next; ev != nil {
		cur := m.Position()
		if ev.Pos.Less(cur) && ev.Pos.Exit <= cur.Exit {
			regs, _ := m.Regs()
			return e.diverge("the replay ran past %s at %s without reaching it: now at %s RIP %#x", describe(ev), ev.Pos, cur, regs.RIP)
		}
	}
	return nil
}

// watchdogEvery is how often a running replay is kicked to check that it
// has not run past its next event.
const watchdogEvery = 100 * time.Millisecond

// kickEvery kicks the vCPU every d until the returned stop is called; a
// kick brings a guest that makes no exits back to the hooks.
func (e *Engine) kickEvery(d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				e.m.Kick()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// Now is zero: a replay never looks at the host clock for the guest.
func (e *Engine) Now() time.Duration { return 0 }

// refill loads the next logged batch into the ring.
func (e *Engine) refill() {
	for {
		ev, err := e.rings.Next()
		if err != nil {
			e.ringFilled, e.ringErr = 0, err
			e.ring.Fill(nil)
			e.ringIndex = e.rings.Index()
			return
		}
		if ev.Kind != logfmt.KindRingFlush {
			continue
		}
		batch := make([]nondet.Entry, len(ev.Ring))
		for i, r := range ev.Ring {
			batch[i] = nondet.Entry{Kind: r.Kind, Aux: r.Aux, Value: r.Value}
		}
		e.ring.Fill(batch)
		e.ringFilled = uint64(len(batch))
		e.ringIndex = e.rings.Index()
		return
	}
}

// Value takes a trapped instruction's value from the ring (nondet.Values).
func (e *Engine) Value(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	if e.ring.Head() >= e.ringFilled {
		if e.ringErr != nil && !errors.Is(e.ringErr, io.EOF) {
			return 0, &EndOfLogError{Err: e.ringErr}
		}
		return 0, e.diverge("the guest executed %s at %s, but the log holds no more values", kind, m.Position())
	}
	ent := e.ring.Take()
	if ent.Kind != uint32(kind) {
		return 0, e.diverge("the guest executed %s at %s, but the recording's next value is for %s", kind, m.Position(), cpu.NonDet(ent.Kind))
	}
	if e.ring.Head() >= machine.RingCapacity {
		e.refill()
	}
	return ent.Value, nil
}

// Doorbell refills the ring the guest used up.
func (e *Engine) Doorbell(m *machine.Machine) error {
	e.refill()
	return nil
}
