package machine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"vmrr/machine/cpu"
	"vmrr/machine/x86emu"
)

// softBackend is vmrr's software CPU: machine/x86emu interprets the guest,
// pre-decoded blocks on its fast path and Step for everything else. It is
// deterministic by construction: the instruction count is exact, so every
// event is placed at its count, and it runs wherever Go runs.
type softBackend struct {
	m      *Machine
	c      x86emu.CPU
	mmu    softMMU
	fast   *x86emu.Fast // pre-decoded code run in place; Step does the rest
	count  uint64       // instructions run (a faulting one included)
	fpu    cpu.FPU
	events cpu.Events
	msrs   map[uint32]uint64

	kicked atomic.Bool
	// stopAt, if non-zero, ends a run with errKicked when count reaches it.
	stopAt uint64

	step        bool
	breakpoints []uint64
	// atBreakpoint: the last run stopped at a breakpoint at RIP; the next
	// run executes that instruction without stopping there again (the
	// processor's RF).
	atBreakpoint bool

	io softIO
}

// softIO is a port access waiting for the device models. An IN stops the
// interpreter before the instruction (errPortIO); the machine handles the
// exit, and completeIO runs the instruction again with the value. An OUT
// completes first and exits after, with RIP past it, as KVM's PIO exits
// leave it.
type softIO struct {
	pending, ready bool
	port           uint16
	size           int
	out            bool
	value          uint32
	buf            [4]byte
}

// errPortIO stops an instruction at its port access (see softIO).
var errPortIO = errors.New("machine: port I/O exit")

// softMSRs are the MSRs the soft CPU keeps for the guest besides those
// x86emu holds itself (EFER, FS/GS base, TSC_AUX) and the machine's own
// (TSC): a guest may write and read them back; others raise #GP.
var softMSRs = []uint32{
	0x1b,                // APIC_BASE
	0x174, 0x175, 0x176, // SYSENTER_CS, ESP, EIP
	0x277,                                          // PAT
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, // STAR, LSTAR, CSTAR, SFMASK
	0xc0000102, // KERNEL_GS_BASE
}

// newSoftBackend builds the soft CPU in the processor's reset state.
func newSoftBackend(m *Machine, table []cpu.CPUIDEntry, tlbSync bool) (*softBackend, []cpu.CPUIDEntry) {
	if table == nil {
		table = SoftCPUID()
	}
	s := &softBackend{m: m, msrs: map[uint32]uint64{0x1b: 0xfee00900, 0x277: 0x0007040600070406}}
	s.mmu.init(m.mem, tlbSync)
	s.fast = x86emu.NewFast(m.mem.b, &s.mmu.entries, s.mmu.marked)
	s.fast.Dirty = x86emu.NewDirtyLog(len(m.mem.b) / 4096)
	m.mem.written = s.fast.Written
	s.c.Regs = cpu.Regs{RIP: 0xfff0, RFLAGS: 2}
	seg := func(sel uint16, base uint64, typ uint8) cpu.Segment {
		return cpu.Segment{Selector: sel, Base: base, Limit: 0xffff, Typ: typ, Present: 1, S: 1}
	}
	sr := &s.c.Sregs
	sr.CS = seg(0xf000, 0xffff0000, 11)
	sr.DS, sr.ES, sr.FS, sr.GS, sr.SS = seg(0, 0, 3), seg(0, 0, 3), seg(0, 0, 3), seg(0, 0, 3), seg(0, 0, 3)
	sr.TR = cpu.Segment{Limit: 0xffff, Typ: 11, Present: 1}
	sr.LDT = cpu.Segment{Limit: 0xffff, Typ: 2, Present: 1}
	sr.GDT.Limit, sr.IDT.Limit = 0xffff, 0xffff
	sr.CR0 = cpu.CR0ET | cpu.CR0NW | cpu.CR0CD
	s.c.DR.DR6, s.c.DR.DR7 = 0xffff0ff0, 0x400
	s.fpu.FCW, s.fpu.MXCSR = 0x37f, 0x1f80
	return s, table
}

func (s *softBackend) accel() Accel { return AccelSoft }

func (s *softBackend) Regs() (cpu.Regs, error)   { return s.c.Regs, nil }
func (s *softBackend) Sregs() (cpu.Sregs, error) { return s.c.Sregs, nil }
func (s *softBackend) FPU() (cpu.FPU, error)     { return s.fpu, nil }
func (s *softBackend) SetFPU(f *cpu.FPU) error   { s.fpu = *f; return nil }

// SetRegs also forgets a port access in progress and a breakpoint or
// injection just passed: a caller that sets registers (a snapshot restore)
// moves the CPU somewhere else.
func (s *softBackend) SetRegs(r *cpu.Regs) error {
	s.c.Regs = *r
	s.io = softIO{}
	s.atBreakpoint = false
	return nil
}

// SetSregs drops cached translations: a caller that changes CR3 or the
// paging bits behind the guest's back (a snapshot restore, the loader)
// wants the new ones used.
func (s *softBackend) SetSregs(sr *cpu.Sregs) error {
	s.c.Sregs = *sr
	s.mmu.flush(x86emu.FlushAll, 0)
	return nil
}

func (s *softBackend) Events() (cpu.Events, error) {
	e := s.events
	e.I.Shadow = 0
	if s.c.Shadow {
		e.I.Shadow = 1
	}
	return e, nil
}

func (s *softBackend) SetEvents(e *cpu.Events) error {
	s.events = *e
	s.events.Flags = 0
	s.c.Shadow = e.I.Shadow != 0
	return nil
}

func (s *softBackend) DebugRegs() (cpu.DebugRegs, error) { return s.c.DR, nil }
func (s *softBackend) SetDebugRegs(d *cpu.DebugRegs) error {
	s.c.DR = *d
	return nil
}

func (s *softBackend) GetMSRs(entries []cpu.MSREntry) error {
	for i := range entries {
		e := &entries[i]
		v, ok, err := softEnv{s}.ReadMSR(e.Index)
		if err != nil || !ok {
			return fmt.Errorf("machine: soft CPU: no MSR %#x", e.Index)
		}
		e.Data = v
	}
	return nil
}

func (s *softBackend) SetMSRs(entries []cpu.MSREntry) error {
	for _, e := range entries {
		if ok, err := (softEnv{s}).WriteMSR(e.Index, e.Data); err != nil || !ok {
			return fmt.Errorf("machine: soft CPU: no MSR %#x", e.Index)
		}
	}
	return nil
}

func (s *softBackend) interrupt(vector uint8) error {
	// The handler's first instruction is where the hooks see the vCPU
	// next: a stop of its own, as KVM's step after an injection makes it.
	return x86emu.Interrupt(&s.c, softEnv{s}, vector)
}

func (s *softBackend) setDebug(step bool, breakpoints []uint64) error {
	s.step = step
	s.breakpoints = append(s.breakpoints[:0], breakpoints...)
	return nil
}

func (s *softBackend) insnCount() (uint64, bool) { return s.count, true }
func (s *softBackend) kick()                     { s.kicked.Store(true) }
func (s *softBackend) finishMSR(ok bool)         {}
func (s *softBackend) close()                    {}

// flushTLB drops every cached translation, and the decoded code: it is
// called after the VMM rewrote guest memory behind the guest's back.
func (s *softBackend) flushTLB() {
	s.mmu.flush(x86emu.FlushAll, 0)
	s.fast.FlushCode()
}

// interruptible: IF set and no interrupt shadow.
func (s *softBackend) interruptible() bool {
	return s.c.Regs.RFLAGS&cpu.FlagIF != 0 && !s.c.Shadow
}

// atBreakpointAddr reports whether an armed breakpoint is at CS:RIP.
func (s *softBackend) atBreakpointAddr() bool {
	lin := s.c.Sregs.CS.Base + s.c.Regs.RIP
	if cpu.Mode(&s.c.Sregs) != 64 {
		lin &= 0xffffffff
	}
	for _, a := range s.breakpoints {
		if a == lin {
			return true
		}
	}
	return false
}

// run interprets instructions until one needs the machine (port I/O, HLT),
// a debug stop, a kick or the instruction limit.
func (s *softBackend) run(window bool) (*exit, error) {
	env := softEnv{s}
	resume := s.atBreakpoint
	s.atBreakpoint = false
	slow := false // the next instruction is Step's
	// spread counts the instructions still to run, one at a time, before
	// a kick's stop (see kickSpread).
	spread := 0
	for first := true; ; first = false {
		if s.kicked.Load() && spread == 0 {
			s.kicked.Store(false)
			if spread = rand.IntN(kickSpread); spread == 0 {
				return nil, errKicked
			}
		}
		if !first && s.stopAt != 0 && s.count == s.stopAt {
			return nil, errKicked
		}
		if window && s.interruptible() {
			return &exit{kind: exitWindow, deterministic: true}, nil
		}
		if len(s.breakpoints) > 0 && !(first && resume) && s.atBreakpointAddr() {
			s.atBreakpoint = true
			return &exit{kind: exitDebug, debug: cpu.DebugExit{Exception: 1, PC: s.c.Regs.RIP}}, nil
		}
		if !slow && s.c.Watch == nil {
			budget := s.budget(window)
			if spread > 0 {
				budget = 1
			}
			n, st := s.fast.Run(&s.c, budget, &s.kicked)
			s.count += n
			slow = st
			if n > 0 {
				if s.step {
					return &exit{kind: exitDebug, debug: cpu.DebugExit{Exception: 1, PC: s.c.Regs.RIP}}, nil
				}
				if spread > 0 {
					if spread--; spread == 0 {
						return nil, errKicked
					}
				}
				continue
			}
		}
		slow = false
		res, err := x86emu.Step(&s.c, env)
		if err != nil {
			return s.stepError(err)
		}
		s.count++
		if s.io.pending {
			return s.ioExit(), nil
		}
		if res.Halted {
			return &exit{kind: exitHLT, deterministic: true}, nil
		}
		if s.step {
			return &exit{kind: exitDebug, debug: cpu.DebugExit{Exception: 1, PC: s.c.Regs.RIP}}, nil
		}
		if spread > 0 {
			if spread--; spread == 0 {
				return nil, errKicked
			}
		}
	}
}

// kickSpread bounds how far past a kick the soft CPU runs before it stops.
// The fast path sees kicks only between blocks, so without a spread every
// kick (and so every timer tick of a recording) would land at a block's
// first instruction: a guest racing with its timer, like race.elf, would
// never lose an update. Hardware stops anywhere; so does the soft CPU,
// running a random number of instructions (under 64, a block's most) one
// at a time first. Where it stops is logged like any landing.
const kickSpread = 64

// budget is how many instructions the fast path may run before the checks
// run's loop makes between instructions would stop it: the instruction
// limit, one when a breakpoint, a single-step or an interrupt window needs
// looking at each boundary (the fast path never changes IF, so a window
// with IF clear waits for Step).
func (s *softBackend) budget(window bool) uint64 {
	if s.step || len(s.breakpoints) > 0 || window && s.c.Regs.RFLAGS&cpu.FlagIF != 0 {
		return 1
	}
	if s.stopAt != 0 && s.count < s.stopAt {
		return s.stopAt - s.count
	}
	return ^uint64(0)
}

// stepError turns an instruction that could not complete into an exit.
func (s *softBackend) stepError(err error) (*exit, error) {
	var unsup *x86emu.UnsupportedError
	switch {
	case errors.Is(err, errPortIO):
		return s.ioExit(), nil
	case errors.Is(err, x86emu.ErrTripleFault):
		s.count++
		return &exit{kind: exitShutdown, deterministic: true}, nil
	case errors.As(err, &unsup):
		return &exit{kind: exitInternal, deterministic: true, detail: unsup.Error()}, nil
	}
	return nil, err
}

// ioExit describes the pending port access; an OUT is done with.
func (s *softBackend) ioExit() *exit {
	io := &s.io
	if io.out {
		io.pending = false
		for i := range io.size {
			io.buf[i] = byte(io.value >> (8 * i))
		}
	}
	return &exit{kind: exitIO, deterministic: true, port: io.port, out: io.out, size: io.size, count: 1, data: io.buf[:io.size]}
}

// completeIO runs the instruction of the last I/O exit again, now with
// the device's value.
func (s *softBackend) completeIO() error {
	io := &s.io
	if !io.pending {
		return nil
	}
	var v uint32
	for i := range io.size {
		v |= uint32(io.buf[i]) << (8 * i)
	}
	io.value = v
	io.pending, io.ready = false, true
	res, err := x86emu.Step(&s.c, softEnv{s})
	io.ready = false
	if err != nil {
		ex, err := s.stepError(err)
		if err != nil {
			return err
		}
		return s.m.dispatch(ex)
	}
	s.count++
	if res.Halted {
		return errors.New("machine: soft CPU: HLT after port I/O")
	}
	return nil
}

// softEnv is guest memory, the MMU, the devices and the hooks as the
// interpreter sees them.
type softEnv struct{ s *softBackend }

// ReadPhys reads RAM; there are no MMIO devices, so reads elsewhere see
// all ones (as KVM's MMIO exits give them).
func (e softEnv) ReadPhys(gpa uint64, b []byte) error {
	mem := e.s.m.mem.b
	if gpa < uint64(len(mem)) && uint64(len(b)) <= uint64(len(mem))-gpa {
		copy(b, mem[gpa:])
		return nil
	}
	for i := range b {
		b[i] = 0xff
		if a := gpa + uint64(i); a < uint64(len(mem)) {
			b[i] = mem[a]
		}
	}
	return nil
}

// WritePhys writes RAM (writes elsewhere are dropped), dropping cached
// translations built from a page-table page it changes when the T bit is on.
func (e softEnv) WritePhys(gpa uint64, b []byte) error {
	mem := e.s.m.mem.b
	e.s.mmu.written(gpa, len(b))
	e.s.fast.Written(gpa, len(b))
	if gpa < uint64(len(mem)) && uint64(len(b)) <= uint64(len(mem))-gpa {
		copy(mem[gpa:], b)
		return nil
	}
	for i := range b {
		if a := gpa + uint64(i); a < uint64(len(mem)) {
			mem[a] = b[i]
		}
	}
	return nil
}

func (e softEnv) Translate(c *x86emu.CPU, linear uint64, write, user, fetch bool) (uint64, uint32, bool) {
	return e.s.mmu.translate(&c.Sregs, linear, write, user, fetch)
}

func (e softEnv) NonDet(kind cpu.NonDet) (uint64, error) {
	return e.s.m.hooks.NonDet(e.s.m, kind)
}

func (e softEnv) In(port uint16, size int) (uint32, error) {
	io := &e.s.io
	if io.ready && !io.out && io.port == port && io.size == size {
		return io.value, nil
	}
	*io = softIO{pending: true, port: port, size: size}
	return 0, errPortIO
}

func (e softEnv) Out(port uint16, size int, v uint32) error {
	e.s.io = softIO{pending: true, out: true, port: port, size: size, value: v}
	return nil
}

func (e softEnv) CPUID(leaf, subleaf uint32) (a, b, c, d uint32) {
	if l := cpu.Lookup(e.s.m.cpuid, leaf, subleaf); l != nil {
		return l.Eax, l.Ebx, l.Ecx, l.Edx
	}
	return 0, 0, 0, 0
}

func (e softEnv) ReadMSR(index uint32) (uint64, bool, error) {
	v := uint64(0)
	if ok, err := e.s.m.msrAccess(index, false, &v); ok || err != nil {
		return v, ok, err
	}
	v, ok := e.s.msrs[index]
	if !ok {
		for _, i := range softMSRs {
			ok = ok || i == index
		}
	}
	return v, ok, nil
}

func (e softEnv) WriteMSR(index uint32, v uint64) (bool, error) {
	if ok, err := e.s.m.msrAccess(index, true, &v); ok || err != nil {
		return ok, err
	}
	for _, i := range softMSRs {
		if i == index {
			e.s.msrs[index] = v
			return true, nil
		}
	}
	return false, nil
}

func (e softEnv) FlushTLB(kind x86emu.TLBFlush, linear uint64) { e.s.mmu.flush(kind, linear) }

// DataWatchpoint is a range of guest linear addresses whose reads, writes
// or both stop a debugger (gdb's rwatch, watch and awatch).
type DataWatchpoint struct {
	Addr, Len   uint64
	Read, Write bool
}

// SetDataWatchpoints arms data watchpoints (nil disarms them) and reports
// whether this CPU has them: the soft CPU sees every data access; KVM's
// data breakpoints are not used. While armed the soft CPU runs on its slow
// path, which checks each access.
func (m *Machine) SetDataWatchpoints(ws []DataWatchpoint) bool {
	if m.soft == nil {
		return false
	}
	if len(ws) == 0 {
		m.soft.c.Watch = nil
		return true
	}
	w := &x86emu.Watch{}
	for _, d := range ws {
		w.Ranges = append(w.Ranges, x86emu.WatchRange{Addr: d.Addr, Len: d.Len, Read: d.Read, Write: d.Write})
	}
	m.soft.c.Watch = w
	return true
}

// DataWatchHits returns which data watchpoints (bit i for the i-th of
// SetDataWatchpoints) were accessed since the last call, and clears them.
func (m *Machine) DataWatchHits() uint64 {
	if m.soft == nil || m.soft.c.Watch == nil {
		return 0
	}
	h := m.soft.c.Watch.Hits
	m.soft.c.Watch.Hits = 0
	return h
}

// HasDataWatchpoints reports whether SetDataWatchpoints works on this CPU.
func (m *Machine) HasDataWatchpoints() bool { return m.soft != nil }

// DirtyPages returns the guest pages (page numbers) written since the last
// call, where the CPU keeps a dirty log (the soft CPU; KVM's is per memory
// slot and not used here), and forgets them.
func (m *Machine) DirtyPages() ([]uint64, bool) {
	if m.soft == nil {
		return nil, false
	}
	return m.soft.fast.Dirty.Take(), true
}
