// Package fakesession is a replayer.Session over a small scripted trace, so
// the shell's commands can be tested without KVM or a recording.
//
// The guest is a four-instruction loop at Main:
//
//	main:   rdtsc                    ; patched in memory to `out 0xe0, al`
//	        inc  %rbx
//	store:  mov  %rbx, counter       ; the only memory write
//	        jmp  main
//
// Step t of the trace (t instructions executed) is computed in closed form,
// so reverse motion and goto are exact and a trace may be astronomically
// long. Event k of the log sits at step 5+10k (even k: timer irq, which
// makes the guest print "tick N"; odd k: a serial byte). The position at
// step t is (events applied so far, instructions since the last of them).
package fakesession

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync/atomic"
	"time"
	"vmrr/machine/cpu"
	"vmrr/position"
	"vmrr/replayer"
)

// Addresses of the fake image.
const (
	Main    = 0x1000 // the loop, Main..Main+CodeLen
	Store   = 0x1005 // the instruction that writes Counter
	Counter = 0x2000 // 8 bytes: the loop count as stored so far
	Message = 0x3000 // a NUL-terminated string
	CodeLen = 0xf

	// HighBase aliases low memory: virtual HighBase+x is physical x, so
	// tests see that addresses go through translation.
	HighBase = 0xffffffff80000000
	memSize  = 0x10000
)

// Code is the loop as patched in guest memory; OriginalCode as in the image.
var (
	Code = []byte{
		0xe6, 0xe0, // out %al, $0xe0 (patched rdtsc)
		0x48, 0xff, 0xc3, // inc %rbx
		0x48, 0x89, 0x1c, 0x25, 0x00, 0x20, 0x00, 0x00, // mov %rbx, 0x2000
		0xeb, 0xf1, // jmp 0x1000
	}
	OriginalCode = append([]byte{0x0f, 0x31}, Code[2:]...)
	// MessageText is the string at Message.
	MessageText = "hello from the guest\n"
)

// ripAt is the instruction address at each phase of the loop.
var ripAt = [4]uint64{0x1000, 0x1002, 0x1005, 0x100d}

// Config shapes a fake session.
type Config struct {
	// Steps is the length of the trace in instructions (default 400).
	Steps uint64
	// Mode is the CPU mode the registers describe: 64 (default), 32 or 16.
	Mode int
	// Delay, if set, makes Continue sleep this long every 4096 steps, so a
	// continue over a long trace runs until interrupted.
	Delay time.Duration
	// Log, if set, gets a line when a Continue starts (tests synchronise on it).
	Log io.Writer
	// Image is returned by ImagePath.
	Image string
}

// Session is the fake replayer.Session.
type Session struct {
	cfg    Config
	t      uint64
	bps    map[int]replayer.Breakpoint
	nextID int
	intr   atomic.Bool
}

var _ replayer.Session = (*Session)(nil)

// New returns a session at the start of its trace.
func New(cfg Config) *Session {
	if cfg.Steps == 0 {
		cfg.Steps = 400
	}
	if cfg.Mode == 0 {
		cfg.Mode = 64
	}
	return &Session{cfg: cfg, bps: map[int]replayer.Breakpoint{}, nextID: 1}
}

// StepCount returns the number of instructions executed so far.
func (s *Session) StepCount() uint64 { return s.t }

// eventStep is the step at which event k is applied.
func eventStep(k uint64) uint64 { return 5 + 10*k }

// applied is the number of events applied by step t.
func applied(t uint64) uint64 {
	if t < 5 {
		return 0
	}
	return (t-5)/10 + 1
}

// EventCount is the number of events in the log.
func (s *Session) EventCount() int { return int(applied(s.cfg.Steps)) }

func (s *Session) posAt(t uint64) position.Pos {
	j := applied(t)
	if j == 0 {
		return position.Pos{Insn: t}
	}
	return position.Pos{Exit: j, Insn: t - eventStep(j-1)}
}

// Position is where the replay stands now.
func (s *Session) Position() position.Pos { return s.posAt(s.t) }

func rip(t uint64) uint64 { return ripAt[t%4] }

// counter is the value stored at Counter after t steps.
func counter(t uint64) uint64 {
	k := t / 4
	if t%4 == 3 {
		k++
	}
	return k
}

// Registers reads the registers at the current step.
func (s *Session) Registers() (replayer.Registers, error) {
	var r replayer.Registers
	k, phase := s.t/4, s.t%4
	r.RIP = rip(s.t)
	r.RBX = k
	if phase >= 2 {
		r.RBX++
	}
	r.RAX = 1000 * k
	if phase >= 1 {
		r.RAX += 1000
	}
	r.RSP = 0x8000
	r.RBP = 0x8010
	r.RFLAGS = 0x246
	r.R15 = 0xdeadbeef
	sr := &r.Sregs
	flat := cpu.Segment{Limit: 0xffffffff, Present: 1, S: 1, G: 1}
	sr.DS, sr.ES, sr.FS, sr.GS, sr.SS = flat, flat, flat, flat, flat
	sr.CS = flat
	sr.CS.Typ = 0xb
	for _, seg := range []*cpu.Segment{&sr.DS, &sr.ES, &sr.FS, &sr.GS, &sr.SS} {
		seg.Typ = 0x3
		seg.Selector = 0x10
	}
	sr.CS.Selector = 0x8
	switch s.cfg.Mode {
	case 64:
		sr.CS.L = 1
		sr.CR0 = cpu.CR0PE | cpu.CR0ET | cpu.CR0PG
		sr.CR4 = cpu.CR4PAE
		sr.CR3 = 0x9000
		sr.EFER = cpu.EFERLME | cpu.EFERLMA
	case 32:
		sr.CS.DB = 1
		sr.CR0 = cpu.CR0PE | cpu.CR0ET
	default:
		sr.CR0 = cpu.CR0ET
		sr.CS.Selector, sr.CS.G, sr.CS.Limit = 0, 0, 0xffff
	}
	r.MXCSR = 0x1f80
	r.FCW = 0x37f
	r.XMM[1][0] = 0x11
	return r, nil
}

// Translate maps a virtual address: identity below 64 KiB, and the same
// memory again at HighBase.
func (s *Session) Translate(addr uint64) (uint64, error) {
	switch {
	case addr < memSize:
		return addr, nil
	case addr >= HighBase && addr-HighBase < memSize:
		return addr - HighBase, nil
	}
	return 0, fmt.Errorf("virtual address %#x is not mapped", addr)
}

func (s *Session) phys(pa uint64) byte {
	switch {
	case pa >= Main && pa < Main+CodeLen:
		return Code[pa-Main]
	case pa >= Counter && pa < Counter+8:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], counter(s.t))
		return b[pa-Counter]
	case pa >= Message && pa < Message+uint64(len(MessageText)):
		return MessageText[pa-Message]
	}
	return 0
}

// ReadVirtual reads memory through the fake page tables.
func (s *Session) ReadVirtual(addr uint64, b []byte) (int, error) {
	for i := range b {
		pa, err := s.Translate(addr + uint64(i))
		if err != nil {
			return i, err
		}
		b[i] = s.phys(pa)
	}
	return len(b), nil
}

// ReadPhysical reads the fake's 64 KiB of RAM.
func (s *Session) ReadPhysical(addr uint64, b []byte) (int, error) {
	for i := range b {
		pa := addr + uint64(i)
		if pa >= memSize {
			return i, fmt.Errorf("physical address %#x is outside RAM", pa)
		}
		b[i] = s.phys(pa)
	}
	return len(b), nil
}

// hit returns the breakpoint that stops execution on arriving at step t.
func (s *Session) hit(t uint64) (replayer.Breakpoint, bool) {
	ids := make([]int, 0, len(s.bps))
	for id := range s.bps {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		bp := s.bps[id]
		switch bp.Kind {
		case replayer.BreakSoftware, replayer.BreakHardware:
			if rip(t) == bp.Addr {
				return bp, true
			}
		case replayer.WatchWrite, replayer.WatchAccess:
			// The store at phase 2 writes Counter..Counter+8.
			if t > 0 && (t-1)%4 == 2 && bp.Addr < Counter+8 && Counter < bp.Addr+bp.Len {
				return bp, true
			}
		}
	}
	return replayer.Breakpoint{}, false
}

func (s *Session) stop(kind replayer.StopKind) replayer.Stop {
	return replayer.Stop{Kind: kind, Pos: s.Position(), RIP: rip(s.t)}
}

func (s *Session) stopAt(bp replayer.Breakpoint) replayer.Stop {
	st := s.stop(replayer.StopBreakpoint)
	if bp.Kind >= replayer.WatchWrite {
		st.Kind = replayer.StopWatchpoint
		st.Addr = Counter
	}
	return st
}

// run moves towards target one step at a time, stopping at breakpoints,
// interrupts and the ends of the trace.
func (s *Session) run(target uint64, forward bool) replayer.Stop {
	defer s.intr.Store(false)
	for n := uint64(1); s.t != target; n++ {
		if s.intr.Swap(false) {
			return s.stop(replayer.StopInterrupted)
		}
		if s.cfg.Delay > 0 && n%4096 == 0 {
			time.Sleep(s.cfg.Delay)
		}
		if forward {
			s.t++
		} else {
			s.t--
		}
		if bp, ok := s.hit(s.t); ok {
			return s.stopAt(bp)
		}
	}
	switch {
	case s.t == s.cfg.Steps:
		return s.stop(replayer.StopEnd)
	case s.t == 0:
		return s.stop(replayer.StopBegin)
	}
	return s.stop(replayer.StopStep)
}

// Step runs n instructions forwards.
func (s *Session) Step(n int) (replayer.Stop, error) {
	if n <= 0 {
		return replayer.Stop{}, fmt.Errorf("step count %d is not positive", n)
	}
	target := s.t + uint64(n)
	if target > s.cfg.Steps || target < s.t {
		target = s.cfg.Steps
	}
	return s.run(target, true), nil
}

// ReverseStep moves n instructions backwards.
func (s *Session) ReverseStep(n int) (replayer.Stop, error) {
	if n <= 0 {
		return replayer.Stop{}, fmt.Errorf("step count %d is not positive", n)
	}
	target := uint64(0)
	if uint64(n) < s.t {
		target = s.t - uint64(n)
	}
	return s.run(target, false), nil
}

// Continue runs to a breakpoint, the end, or Interrupt.
func (s *Session) Continue() (replayer.Stop, error) {
	if s.cfg.Log != nil {
		fmt.Fprintln(s.cfg.Log, "fake: running")
	}
	return s.run(s.cfg.Steps, true), nil
}

// ReverseContinue moves back to the last breakpoint hit, or the start.
func (s *Session) ReverseContinue() (replayer.Stop, error) {
	return s.run(0, false), nil
}

// Goto moves to a position of the trace.
func (s *Session) Goto(p position.Pos) (replayer.Stop, error) {
	n := uint64(s.EventCount())
	if p.Exit > n {
		return replayer.Stop{}, fmt.Errorf("position %s is past the end of the recording (%d exits)", p, n)
	}
	base := uint64(0)
	if p.Exit > 0 {
		base = eventStep(p.Exit - 1)
	}
	t := base + p.Insn
	limit := s.cfg.Steps
	if p.Exit < n {
		limit = eventStep(p.Exit) - 1
	}
	if p.Exit == n && (t > limit || t < base) {
		end := s.posAt(s.cfg.Steps)
		return replayer.Stop{}, fmt.Errorf("position %s is past the end of the recording (%s)", p, end)
	}
	if t > limit || t < base {
		return replayer.Stop{}, fmt.Errorf("position %s is not in the recording", p)
	}
	s.t = t
	return s.stop(replayer.StopStep), nil
}

// GotoEvent moves to where event k is applied.
func (s *Session) GotoEvent(k int) (replayer.Stop, error) {
	if k < 0 || k >= s.EventCount() {
		return replayer.Stop{}, fmt.Errorf("event %d is not in the log (%d events)", k, s.EventCount())
	}
	s.t = eventStep(uint64(k))
	return s.stop(replayer.StopStep), nil
}

// GotoStart moves to the start.
func (s *Session) GotoStart() (replayer.Stop, error) {
	s.t = 0
	return s.stop(replayer.StopBegin), nil
}

// GotoEnd moves to the end.
func (s *Session) GotoEnd() (replayer.Stop, error) {
	s.t = s.cfg.Steps
	return s.stop(replayer.StopEnd), nil
}

// Interrupt stops a running motion.
func (s *Session) Interrupt() { s.intr.Store(true) }

// AddBreakpoint sets a breakpoint or watchpoint.
func (s *Session) AddBreakpoint(kind replayer.BreakKind, addr, length uint64) (int, error) {
	if _, err := s.Translate(addr); err != nil {
		return 0, err
	}
	switch kind {
	case replayer.BreakSoftware, replayer.BreakHardware:
	case replayer.WatchWrite, replayer.WatchAccess:
		if length == 0 || length > 4096 {
			return 0, fmt.Errorf("watch length %d out of range 1..4096", length)
		}
	case replayer.WatchRead:
		return 0, fmt.Errorf("read watchpoints are not supported")
	default:
		return 0, fmt.Errorf("unknown breakpoint kind %d", kind)
	}
	id := s.nextID
	s.nextID++
	s.bps[id] = replayer.Breakpoint{ID: id, Kind: kind, Addr: addr, Len: length}
	return id, nil
}

// RemoveBreakpoint deletes a breakpoint.
func (s *Session) RemoveBreakpoint(id int) error {
	if _, ok := s.bps[id]; !ok {
		return fmt.Errorf("no breakpoint %d", id)
	}
	delete(s.bps, id)
	return nil
}

// Breakpoints lists the breakpoints by ID.
func (s *Session) Breakpoints() []replayer.Breakpoint {
	out := make([]replayer.Breakpoint, 0, len(s.bps))
	for _, bp := range s.bps {
		out = append(out, bp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Session) event(k int) replayer.EventInfo {
	e := replayer.EventInfo{Index: k, Pos: position.Pos{Exit: uint64(k) + 1}}
	if k%2 == 0 {
		e.Kind, e.Text = "irq", "irq 0 (timer)"
	} else {
		e.Kind, e.Text = "serial-rx", fmt.Sprintf("byte %#02x", 'a'+k%26)
	}
	return e
}

// Events returns up to count events from index from.
func (s *Session) Events(from, count int) ([]replayer.EventInfo, error) {
	n := s.EventCount()
	if from < 0 || from > n || count < 0 {
		return nil, fmt.Errorf("events %d+%d out of range (%d events)", from, count, n)
	}
	var out []replayer.EventInfo
	for k := from; k < n && k < from+count; k++ {
		out = append(out, s.event(k))
	}
	return out, nil
}

// NextEvent is the index of the next event to apply.
func (s *Session) NextEvent() int { return int(applied(s.t)) }

// Console is one "tick N" line per timer event applied so far.
func (s *Session) Console() []byte {
	var b []byte
	for k := 0; k < s.NextEvent() && k < 1<<16; k += 2 {
		b = fmt.Appendf(b, "tick %d\r\n", k/2)
	}
	return b
}

// Snapshots lists one snapshot per 100 steps up to now (the last 16).
func (s *Session) Snapshots() []replayer.SnapshotInfo {
	var out []replayer.SnapshotInfo
	first := uint64(0)
	if s.t/100 > 15 {
		first = s.t/100 - 15
	}
	for i := first; i*100 <= s.t; i++ {
		t := i * 100
		out = append(out, replayer.SnapshotInfo{Pos: s.posAt(t), Event: int(applied(t)), Bytes: 4096 * (i + 1)})
	}
	return out
}

// ImagePath returns Config.Image.
func (s *Session) ImagePath() string { return s.cfg.Image }

// OriginalBytes puts back the rdtsc the fake patched at Main.
func (s *Session) OriginalBytes(addr uint64, b []byte) {
	for i := range b {
		pa, err := s.Translate(addr + uint64(i))
		if err == nil && pa >= Main && pa < Main+2 {
			b[i] = OriginalCode[pa-Main]
		}
	}
}
