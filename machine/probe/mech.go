//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"vmrr/machine/cpu"
	"vmrr/machine/kvm"
)

// Support says whether a mechanism works at one privilege level.
type Support string

// Support values.
const (
	Yes Support = "yes"
	No  Support = "no"
	// NotApplicable: the mechanism has no meaning at that level (HLT or
	// RDMSR at CPL3 fault by definition).
	NotApplicable Support = "n/a"
	// Broken: the probe could not run (Detail says why).
	Broken Support = "error"
)

// Level is one mechanism at one privilege level.
type Level struct {
	Works Support `json:"works"`
	// Cost is the time of one use (one step, one exit, one hit): the
	// median over Options.Repeat uses, each timed from the previous one,
	// so it includes the few guest instructions of the probe's loop. 0 if
	// not measured.
	Cost   time.Duration `json:"cost_ns,omitempty"`
	Detail string        `json:"detail,omitempty"`
}

// Mechanism is one KVM mechanism vmrr may rely on.
type Mechanism struct {
	Name string `json:"name"`
	CPL0 Level  `json:"cpl0"`
	CPL3 Level  `json:"cpl3"`
	Note string `json:"note,omitempty"`
}

// Mechanism names, as Report.Mechanism and Require take them.
const (
	MechSingleStep    = "single-step"
	MechHWBreakpoint  = "hardware breakpoint"
	MechHWWatchpoint  = "hardware watchpoint"
	MechINT3          = "INT3 intercept"
	MechReadOnlySlot  = "read-only memslot"
	MechDirtyLog      = "dirty logging"
	MechPIOExit       = "PIO exit"
	MechMMIOExit      = "MMIO exit"
	MechHLTExit       = "HLT exit"
	MechRDTSCTrap     = "RDTSC trapping"
	MechMSRFilter     = "MSR filter"
	MechInsnCounter   = "exact instruction counter"
	MechKick          = "kick"
	MechImmediateExit = "immediate_exit"
	MechInject        = "interrupt injection"
)

// prober holds what every mechanism probe needs.
type prober struct {
	n     int           // uses to time
	limit time.Duration // per guest
	// speed is guest instructions per second, by CPL (from the counter
	// probe).
	speed [4]float64
	// hasCounter: the vCPU has the insn_emulation statistic.
	hasCounter bool
}

// Probe ports and addresses of the mechanism guests.
const (
	portLoop  = 0xec
	dataAddr  = 0x200000  // a RAM page the guests write
	roGPA     = 0x1000000 // a read-only slot above RAM
	mmioGPA   = 0x2000000 // nothing there: reads exit as MMIO
	dirtyMem  = 64 << 20  // RAM of the dirty-logging guest
	msrTSC    = 0x10
	drExecute = 0x401 // DR7: L0, bit 10 set as the architecture wants
	cr4TSD    = 1 << 2
	tscMark   = 1 << 62
	roPattern = 0xa5a5a5a5a5a5a5a5
	wrPattern = 0x1122334455667788
)

func broken(err error) Level { return Level{Works: Broken, Detail: err.Error()} }

// no is a mechanism that did not work, with why.
func no(format string, args ...any) Level {
	return Level{Works: No, Detail: fmt.Sprintf(format, args...)}
}

// cpl runs a probe at CPL0 (long64) and CPL3 (user64).
func (p *prober) cpl(name string, fn func(Mode) Level) Mechanism {
	return Mechanism{Name: name, CPL0: fn(ModeLong64), CPL3: fn(ModeUser64)}
}

// mechanisms runs every mechanism probe.
func (p *prober) mechanisms() []Mechanism {
	return []Mechanism{
		p.insnCounter(),
		p.cpl(MechSingleStep, p.singleStep),
		p.hwBreakpoint(),
		p.cpl(MechHWWatchpoint, p.hwWatchpoint),
		p.cpl(MechINT3, p.int3),
		p.readOnlySlot(),
		p.roPageTables(),
		p.dirtyLog(),
		p.cpl(MechPIOExit, p.pioExit),
		p.cpl(MechMMIOExit, p.mmioExit),
		{Name: MechHLTExit, CPL0: p.hltExit(), CPL3: Level{Works: NotApplicable, Detail: "HLT at CPL3 is #GP"}},
		p.rdtscTrap(),
		p.msrFilter(),
		p.cpl(MechKick, p.kick),
		p.immediateExit(),
		p.inject(),
	}
}

// laps collects the time of each use, so that a cost is the median use:
// the machines are shared, and a mean would count other processes' time
// slices.
type laps struct {
	last time.Time
	d    []time.Duration
}

func (l *laps) start() { l.last = time.Now() }

// lap ends one use and starts the next.
func (l *laps) lap() {
	now := time.Now()
	l.d = append(l.d, now.Sub(l.last))
	l.last = now
}

// median is the median use (0 if none).
func (l *laps) median() time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	d := slices.Clone(l.d)
	slices.Sort(d)
	return d[len(d)/2]
}

// singleStep counts KVM_GUESTDBG_SINGLESTEP exits over a loop.
func (p *prober) singleStep(mode Mode) Level {
	a := newAsmFor(mode)
	start := a.pc()
	a.loop(uint32(p.n/2), func() {})
	end := a.pc()
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	if err := g.v.SetGuestDebug(&kvm.GuestDebug{Control: kvm.GuestDbgEnable | kvm.GuestDbgSingleStep}); err != nil {
		return broken(err)
	}
	steps := 0
	var tm laps
	err = g.until(portMark, func(r uint32) (bool, error) {
		if r != kvm.ExitDebug {
			return false, g.unexpected(r)
		}
		// user64's way to CPL3 is stepped too; count the loop only.
		if pc := g.v.Debug().PC; pc >= start && pc <= end {
			if steps == 0 {
				tm.start()
			} else {
				tm.lap()
			}
			steps++
		}
		return steps < 4*p.n, nil
	})
	want := 2 * (p.n / 2)
	switch {
	case errors.Is(err, errTimeout):
		return no("no debug exits: %v", err)
	case steps == 0 && err == nil:
		return no("not delivered: no debug exits, the guest ran on")
	case err != nil && steps == 0:
		return no("not delivered: %v", err)
	case err != nil:
		return no("%d steps, then %v", steps, err)
	case steps < want:
		return no("%d debug exits over %d instructions", steps, want+1)
	}
	return Level{Works: Yes, Cost: tm.median()}
}

// hwBreakpoint arms DR0 (execute) on a loop instruction, and learns
// whether RFLAGS.RF steps over a hit or the VMM has to (disarm, one
// single-step, re-arm).
func (p *prober) hwBreakpoint() Mechanism {
	m := Mechanism{Name: MechHWBreakpoint}
	var rf [2]string
	for i, mode := range []Mode{ModeLong64, ModeUser64} {
		var l Level
		l, rf[i] = p.breakpointAt(mode)
		if i == 0 {
			m.CPL0 = l
		} else {
			m.CPL3 = l
		}
	}
	m.Note = rf[0]
	return m
}

func (p *prober) breakpointAt(mode Mode) (Level, string) {
	a := newAsmFor(mode)
	var bp uint64
	a.loop(uint32(p.n), func() { bp = a.pc(); a.nop() })
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err), ""
	}
	defer g.close()
	arm := kvm.GuestDebug{Control: kvm.GuestDbgEnable | kvm.GuestDbgUseHWBP}
	arm.DebugReg[0], arm.DebugReg[7] = bp, drExecute
	step := kvm.GuestDebug{Control: kvm.GuestDbgEnable | kvm.GuestDbgSingleStep}
	if err := g.v.SetGuestDebug(&arm); err != nil {
		return broken(err), ""
	}
	hits, useRF, lastRCX := 0, true, ^uint64(0)
	var hitTime, stepTime laps
	for {
		hitTime.start()
		r, err := g.next()
		hitTime.lap()
		if err != nil {
			return no("after %d hits: %v", hits, err), ""
		}
		if port, _ := g.port(); r == kvm.ExitIO && port == portMark {
			break
		}
		if r != kvm.ExitDebug || g.v.Debug().PC != bp {
			return no("after %d hits: %s", hits, g.describe(r)), ""
		}
		regs, err := g.v.Regs()
		if err != nil {
			return broken(err), ""
		}
		if regs.RCX == lastRCX {
			useRF = false // the same iteration hit again despite RF
		} else {
			hits++
			lastRCX = regs.RCX
		}
		if useRF {
			regs.RFLAGS |= cpu.FlagRF
			if err := g.v.SetRegs(&regs); err != nil {
				return broken(err), ""
			}
			continue
		}
		stepTime.start()
		if err := g.v.SetGuestDebug(&step); err != nil {
			return broken(err), ""
		}
		if r, err := g.next(); err != nil || r != kvm.ExitDebug {
			if err == nil {
				err = g.unexpected(r)
			}
			return no("stepping over a hit: %v", err), ""
		}
		if err := g.v.SetGuestDebug(&arm); err != nil {
			return broken(err), ""
		}
		stepTime.lap()
	}
	if hits == 0 {
		return no("never fires"), ""
	}
	if hits != p.n {
		return no("%d hits over %d passes", hits, p.n), ""
	}
	note := "RFLAGS.RF steps over a hit"
	if !useRF {
		note = "RFLAGS.RF is not honoured: step over a hit by disarming, one single-step, re-arming (cost includes it)"
	}
	hit, over := hitTime.median(), stepTime.median()
	return Level{Works: Yes, Cost: hit + over, Detail: fmt.Sprintf("running to a hit %s, stepping over it %s", cost(hit), cost(over))}, note
}

// hwWatchpoint arms DR0 as a write watchpoint on a word the guest writes.
func (p *prober) hwWatchpoint(mode Mode) Level {
	a := newAsmFor(mode)
	a.loop(uint32(p.n), func() { a.store64(dataAddr) })
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	d := kvm.GuestDebug{Control: kvm.GuestDbgEnable | kvm.GuestDbgUseHWBP}
	d.DebugReg[0] = dataAddr
	d.DebugReg[7] = drExecute | 1<<16 | 3<<18 // R/W0 = write, LEN0 = 8 bytes
	if err := g.v.SetGuestDebug(&d); err != nil {
		return broken(err)
	}
	hits := 0
	var tm laps
	tm.start()
	err = g.until(portMark, func(r uint32) (bool, error) {
		if r != kvm.ExitDebug || g.v.Debug().DR6&1 == 0 {
			return false, g.unexpected(r)
		}
		hits++
		tm.lap()
		return true, nil
	})
	switch {
	case err != nil:
		return no("after %d hits: %v", hits, err)
	case hits == 0:
		return no("never fires")
	case hits != p.n:
		return no("%d hits over %d writes", hits, p.n)
	}
	return Level{Works: Yes, Cost: tm.median()}
}

// int3 asks KVM to exit at the guest's INT3 (KVM_GUESTDBG_USE_SW_BP), as a
// debugger's software breakpoints would.
func (p *prober) int3(mode Mode) Level {
	a := newAsmFor(mode)
	var at uint64
	a.loop(uint32(p.n), func() { at = a.pc(); a.raw(0xcc) })
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	if err := g.v.SetGuestDebug(&kvm.GuestDebug{Control: kvm.GuestDbgEnable | kvm.GuestDbgUseSWBP}); err != nil {
		return broken(err)
	}
	hits := 0
	var tm laps
	tm.start()
	err = g.until(portMark, func(r uint32) (bool, error) {
		if r != kvm.ExitDebug || g.v.Debug().Exception != 3 {
			return false, g.unexpected(r)
		}
		regs, err := g.v.Regs()
		if err != nil {
			return false, err
		}
		if regs.RIP == at { // the exit leaves RIP at the INT3
			regs.RIP++
			if err := g.v.SetRegs(&regs); err != nil {
				return false, err
			}
		}
		hits++
		tm.lap()
		return true, nil
	})
	switch {
	case err != nil:
		return no("%v", err)
	case hits != p.n:
		return no("%d exits over %d INT3s", hits, p.n)
	}
	return Level{Works: Yes, Cost: tm.median()}
}

// readOnlySlot maps a page with KVM_MEM_READONLY: guest writes must exit
// as MMIO with their data and leave the page alone, reads must not exit.
func (p *prober) readOnlySlot() Mechanism {
	m := p.cpl(MechReadOnlySlot, p.readOnlyAt)
	if g, err := startRaw(ModeLong64, newAsmFor(ModeLong64), 0, p.limit); err == nil {
		m.Note = fmt.Sprintf("up to %d memory slots", g.m.KVMVM().CheckExtension(capNRMemslots))
		g.close()
	}
	return m
}

// capNRMemslots is KVM_CAP_NR_MEMSLOTS.
const capNRMemslots = 10

func (p *prober) readOnlyAt(mode Mode) Level {
	a := newAsmFor(mode)
	a.movabs(wrPattern)
	a.loop(uint32(p.n), func() { a.store64(roGPA) })
	a.load64(roGPA)
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		g.close()
		return broken(err)
	}
	defer unix.Munmap(buf)
	defer g.close() // before the unmap: the slot refers to buf
	want := bytes.Repeat([]byte{0xa5}, 4096)
	copy(buf, want)
	if g.m.KVMVM().CheckExtension(kvm.CapReadonlyMem) <= 0 {
		return no("KVM_CAP_READONLY_MEM is missing")
	}
	if err := g.m.KVMVM().SetMemoryRegion(1, kvm.MemReadonly, roGPA, buf); err != nil {
		return no("%v", err)
	}
	hits := 0
	var tm laps
	tm.start()
	err = g.until(portMark, func(r uint32) (bool, error) {
		mm := g.v.MMIO()
		if r != kvm.ExitMMIO || mm.IsWrite == 0 || mm.PhysAddr != roGPA || mm.Len != 8 {
			return false, g.unexpected(r)
		}
		if v := binary.LittleEndian.Uint64(mm.Data[:]); v != wrPattern {
			return false, fmt.Errorf("MMIO write of %#x, the guest wrote %#x", v, uint64(wrPattern))
		}
		hits++
		tm.lap()
		return true, nil
	})
	cost := tm.median()
	regs, _ := g.v.Regs()
	switch {
	case err != nil:
		return no("after %d writes: %v", hits, err)
	case hits != p.n:
		return no("%d exits over %d writes", hits, p.n)
	case !bytes.Equal(buf, want):
		return no("a guest write changed the read-only page")
	case regs.RBX != roPattern:
		return no("the guest read %#x from the read-only page, which holds %#x", regs.RBX, uint64(roPattern))
	}
	return Level{Works: Yes, Cost: cost}
}

// dirtyLog checks that KVM_GET_DIRTY_LOG reports exactly the pages the
// guest wrote, and times a get (which also clears) of all of a 64 MiB
// guest's RAM.
func (p *prober) dirtyLog() Mechanism {
	m := p.cpl(MechDirtyLog, p.dirtyAt)
	m.Note = fmt.Sprintf("cost: one KVM_GET_DIRTY_LOG (get and clear) of %d MiB with no page dirty", dirtyMem>>20)
	return m
}

func (p *prober) dirtyAt(mode Mode) Level {
	pages := []uint64{0, 5, 77, 127} // of a 128-page window
	a := newAsmFor(mode)
	a.out(portMark)
	for _, pg := range pages {
		a.store64(uint32(dataAddr + pg*4096))
	}
	a.out(portMark).out(portExit)
	g, err := startRaw(mode, a, dirtyMem, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	ram := g.m.Memory().Bytes()
	if err := g.m.KVMVM().SetMemoryRegion(0, kvm.MemLogDirtyPages, 0, ram); err != nil {
		return no("%v", err)
	}
	bitmap := make([]uint64, len(ram)/4096/64)
	if err := g.until(portMark, nil); err != nil {
		return broken(err)
	}
	if err := g.m.KVMVM().DirtyLog(0, bitmap); err != nil {
		return no("%v", err)
	}
	if err := g.until(portMark, nil); err != nil {
		return broken(err)
	}
	if err := g.m.KVMVM().DirtyLog(0, bitmap); err != nil {
		return no("%v", err)
	}
	var got []uint64
	first := uint64(dataAddr / 4096)
	for pg := first; pg < first+128; pg++ {
		if bitmap[pg/64]&(1<<(pg%64)) != 0 {
			got = append(got, pg-first)
		}
	}
	if !slices.Equal(got, pages) {
		return no("the guest wrote pages %v of a window, the log says %v", pages, got)
	}
	var tm laps
	tm.start()
	for i := 0; i < max(p.n/10, 1); i++ {
		if err := g.m.KVMVM().DirtyLog(0, bitmap); err != nil {
			return broken(err)
		}
		tm.lap()
	}
	return Level{Works: Yes, Cost: tm.median(), Detail: "exact"}
}

// exitLoop runs a guest that does one exiting thing per pass and times the
// exits; check vets (and completes) each exit, after vets the end state.
func (p *prober) exitLoop(mode Mode, body func(a *asm), check func(g *rawGuest, r uint32) error, after func(g *rawGuest) error) Level {
	a := newAsmFor(mode)
	a.movabs(wrPattern)
	a.loop(uint32(p.n), func() { body(a) })
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	hits := 0
	var tm laps
	tm.start()
	err = g.until(portMark, func(r uint32) (bool, error) {
		if err := check(g, r); err != nil {
			return false, err
		}
		hits++
		tm.lap()
		return true, nil
	})
	switch {
	case err != nil:
		return no("after %d exits: %v", hits, err)
	case hits != p.n:
		return no("%d exits over %d passes", hits, p.n)
	}
	if after != nil {
		if err := after(g); err != nil {
			return no("%v", err)
		}
	}
	return Level{Works: Yes, Cost: tm.median()}
}

// pioExit times OUT exits (CPL3 code has IOPL 3).
func (p *prober) pioExit(mode Mode) Level {
	return p.exitLoop(mode, func(a *asm) { a.out(portLoop) }, func(g *rawGuest, r uint32) error {
		if port, _ := g.port(); r != kvm.ExitIO || port != portLoop {
			return g.unexpected(r)
		}
		return nil
	}, nil)
}

// mmioExit times reads of an address no memory slot backs; each exits as
// MMIO and the VMM supplies the value, which the guest must see.
func (p *prober) mmioExit(mode Mode) Level {
	return p.exitLoop(mode, func(a *asm) { a.load64(mmioGPA) }, func(g *rawGuest, r uint32) error {
		mm := g.v.MMIO()
		if r != kvm.ExitMMIO || mm.IsWrite != 0 || mm.PhysAddr != mmioGPA || mm.Len != 8 {
			return g.unexpected(r)
		}
		binary.LittleEndian.PutUint64(mm.Data[:], roPattern)
		return nil
	}, func(g *rawGuest) error {
		if regs, err := g.v.Regs(); err != nil || regs.RBX != roPattern {
			return fmt.Errorf("the guest read %#x, not the VMM's %#x (%v)", regs.RBX, uint64(roPattern), err)
		}
		return nil
	})
}

// hltExit times HLT exits with interrupts off (there is no in-kernel
// irqchip, so KVM hands every HLT to the VMM).
func (p *prober) hltExit() Level {
	return p.exitLoop(ModeLong64, func(a *asm) { a.hlt() }, func(g *rawGuest, r uint32) error {
		if r != kvm.ExitHLT {
			return g.unexpected(r)
		}
		return nil
	}, nil)
}

// msrFilter traps RDMSR of IA32_TSC with KVM_X86_SET_MSR_FILTER.
func (p *prober) msrFilter() Mechanism {
	m := Mechanism{Name: MechMSRFilter, CPL3: Level{Works: NotApplicable, Detail: "RDMSR at CPL3 is #GP"}}
	a := newAsmFor(ModeLong64)
	a.loopWith(regESI, uint32(p.n), func() { a.movR32(regECX, msrTSC).raw(0x0f, 0x32) })
	a.out(portMark)
	g, err := startRaw(ModeLong64, a, 0, p.limit)
	if err != nil {
		m.CPL0 = broken(err)
		return m
	}
	defer g.close()
	if g.m.KVMVM().CheckExtension(kvm.CapX86MSRFilter) <= 0 {
		m.CPL0 = no("KVM_CAP_X86_MSR_FILTER is missing")
		return m
	}
	if err := g.m.KVMVM().TrapMSRs([]uint32{msrTSC}); err != nil {
		m.CPL0 = no("%v", err)
		return m
	}
	hits := 0
	var tm laps
	tm.start()
	err = g.until(portMark, func(r uint32) (bool, error) {
		e := g.v.MSR()
		if r != kvm.ExitX86RDMSR || e.Index != msrTSC {
			return false, g.unexpected(r)
		}
		e.Data, e.Error = wrPattern, 0
		hits++
		tm.lap()
		return true, nil
	})
	cost := tm.median()
	regs, _ := g.v.Regs()
	switch {
	case err != nil:
		m.CPL0 = no("after %d exits: %v", hits, err)
	case hits != p.n:
		m.CPL0 = no("%d exits over %d RDMSRs", hits, p.n)
	case regs.RAX != wrPattern&0xffffffff || regs.RDX != wrPattern>>32:
		m.CPL0 = no("the guest read %#x:%#x, not the VMM's value", regs.RDX, regs.RAX)
	default:
		m.CPL0 = Level{Works: Yes, Cost: cost, Detail: "RDMSR of IA32_TSC exits"}
	}
	return m
}

// rdtscTrap asks whether RDTSC can be made to exit to the VMM: plainly at
// CPL0, and with CR4.TSD at CPL3 (where the architecture makes it #GP, to
// the guest kernel, not the VMM). It also tries setting IA32_TSC.
func (p *prober) rdtscTrap() Mechanism {
	m := Mechanism{Name: MechRDTSCTrap}
	var settable bool
	m.CPL0, settable = p.rdtscAt(ModeLong64)
	m.CPL3, _ = p.rdtscAt(ModeUser64)
	if settable {
		m.Note = "KVM_SET_MSRS of IA32_TSC moves the guest's TSC"
	} else {
		m.Note = "KVM_SET_MSRS of IA32_TSC does not move the guest's TSC"
	}
	return m
}

func (p *prober) rdtscAt(mode Mode) (Level, bool) {
	a := newAsmFor(mode)
	a.raw(0x0f, 0x31).out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err), false
	}
	defer g.close()
	s, err := g.v.Sregs()
	if err != nil {
		return broken(err), false
	}
	s.CR4 |= cr4TSD
	if err := g.v.SetSregs(&s); err != nil {
		return broken(err), false
	}
	setErr := g.v.SetMSRs([]cpu.MSREntry{{Index: msrTSC, Data: tscMark}})
	r, err := g.next()
	if err != nil {
		return broken(err), false
	}
	port, v := g.port()
	regs, _ := g.v.Regs()
	settable := setErr == nil && regs.RDX<<32|regs.RAX&0xffffffff >= tscMark
	switch {
	case r == kvm.ExitIO && port == portMark && mode == ModeUser64:
		return no("no exit, and CR4.TSD is ignored (RDTSC runs at CPL3)"), settable
	case r == kvm.ExitIO && port == portMark:
		return no("RDTSC never exits"), settable
	case r == kvm.ExitIO && port == portFault && v == 13 && mode == ModeUser64:
		return no("no exit; CR4.TSD makes it #GP in the guest (a guest kernel can trap it)"), settable
	}
	return Level{Works: Yes, Detail: g.describe(r)}, settable
}

// kick times how long a kick (vcpu.Kick: immediate_exit and a signal)
// takes to end KVM_RUN of a vCPU spinning in the guest.
func (p *prober) kick(mode Mode) Level {
	a := newAsmFor(mode)
	spin := a.pc()
	a.raw(0xeb, 0xfe) // jmp $
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	reps := max(p.n/10, 3)
	var lat []time.Duration
	for len(lat) < reps {
		kicked := make(chan time.Time, 1)
		go func() {
			time.Sleep(300 * time.Microsecond)
			t := time.Now()
			g.v.Kick()
			kicked <- t
		}()
		err := g.v.Run()
		end := time.Now()
		t := <-kicked
		if g.expired.Load() {
			return no("a kick did not end KVM_RUN")
		}
		if !errors.Is(err, kvm.ErrInterrupted) {
			if err == nil {
				return no("%s", g.describe(g.v.State().ExitReason))
			}
			return broken(err)
		}
		if end.Before(t) {
			// Something else interrupted the run first; the kick that
			// came after it left immediate_exit set.
			g.v.State().ImmediateExit = 0
			continue
		}
		lat = append(lat, end.Sub(t))
	}
	if rip := g.rip(); rip != spin {
		return no("kicked out at %#x, not in the guest's loop at %#x", rip, spin)
	}
	slices.Sort(lat)
	return Level{Works: Yes, Cost: lat[len(lat)/2],
		Detail: fmt.Sprintf("latency min %s, median %s, max %s over %d kicks", cost(lat[0]), cost(lat[len(lat)/2]), cost(lat[len(lat)-1]), len(lat))}
}

// immediateExit times KVM_RUN with immediate_exit set, which the machine
// uses to complete every I/O exit: it must return at once without running
// the guest.
func (p *prober) immediateExit() Mechanism {
	m := Mechanism{Name: MechImmediateExit, CPL3: Level{Works: NotApplicable}}
	a := newAsmFor(ModeLong64)
	a.out(portMark)
	g, err := startRaw(ModeLong64, a, 0, p.limit)
	if err != nil {
		m.CPL0 = broken(err)
		return m
	}
	defer g.close()
	entry := g.rip()
	if g.m.KVMVM().CheckExtension(kvm.CapImmediateExit) <= 0 {
		m.CPL0 = no("KVM_CAP_IMMEDIATE_EXIT is missing")
		return m
	}
	var tm laps
	tm.start()
	for i := 0; i < p.n; i++ {
		g.v.State().ImmediateExit = 1
		if err := g.v.Run(); !errors.Is(err, kvm.ErrInterrupted) {
			m.CPL0 = no("KVM_RUN with immediate_exit returned %v", err)
			return m
		}
		tm.lap()
	}
	cost := tm.median()
	if rip := g.rip(); rip != entry {
		m.CPL0 = no("the guest ran (RIP %#x, entry %#x)", rip, entry)
		return m
	}
	m.CPL0 = Level{Works: Yes, Cost: cost}
	return m
}

// insnCounter checks KVM's insn_emulation statistic against loops of known
// length, and measures guest speed at each level.
func (p *prober) insnCounter() Mechanism {
	m := Mechanism{Name: MechInsnCounter}
	m.CPL0 = p.counterAt(ModeLong64)
	m.CPL3 = p.counterAt(ModeUser64)
	return m
}

// Loop lengths for the counter probe: the difference between two loops
// cancels what the marks around them add.
const (
	counterShort = 1000
	counterLong  = 20000
	nativeLoop   = 5000000
)

// counterGuest is a guest that runs two loops, of short and long
// iterations (two instructions each), between marks.
type counterGuest struct {
	*rawGuest
	shortIters, longIters uint32
}

// startCounterGuest builds a counterGuest in mode; the caller closes it.
func startCounterGuest(mode Mode, short, long uint32, limit time.Duration) (counterGuest, error) {
	a := newAsmFor(mode)
	a.out(portMark)
	a.loop(short, func() {})
	a.out(portMark)
	a.loop(long, func() {})
	a.out(portMark)
	g, err := startRaw(mode, a, 0, limit)
	return counterGuest{g, short, long}, err
}

// loopCounts is what KVM's insn_emulation statistic said of a
// counterGuest's two loops.
type loopCounts struct {
	present     bool   // the vCPU has the statistic
	short, long uint64 // its advance over each loop
	longTook    time.Duration
	wantDiff    uint64 // what long - short must be, if it counts exactly
	err         error
}

// inexact says how the counts show the statistic is not an exact
// instruction counter, or "" if they do not.
func (c loopCounts) inexact() string {
	switch {
	case c.long-c.short == c.wantDiff:
		return ""
	case c.long == c.short:
		return "does not count this level's instructions"
	}
	return fmt.Sprintf("counted %d, then %d, for loops %d instructions apart", c.short, c.long, c.wantDiff)
}

// countLoops runs the guest through its loops, reading the statistic at
// each mark.
func (g counterGuest) countLoops() loopCounts {
	c := loopCounts{present: g.v.HasInsnCounter(), wantDiff: uint64(2 * (g.longIters - g.shortIters))}
	if !c.present {
		return c
	}
	var at [3]uint64
	var when [3]time.Time
	for i := range at {
		if c.err = g.until(portMark, nil); c.err != nil {
			return c
		}
		when[i] = time.Now()
		if at[i], c.err = g.v.InsnCount(); c.err != nil {
			return c
		}
	}
	c.short, c.long, c.longTook = at[1]-at[0], at[2]-at[1], when[2].Sub(when[1])
	return c
}

func (p *prober) counterAt(mode Mode) Level {
	g, err := startCounterGuest(mode, counterShort, counterLong, p.limit)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	c := g.countLoops()
	cpl := cplOf(mode)
	if c.err != nil {
		return broken(c.err)
	}
	if !c.present {
		p.speed[cpl] = p.nativeSpeed(mode)
		return no("KVM has no insn_emulation statistic")
	}
	p.hasCounter = true
	short, long := c.short, c.long
	if why := c.inexact(); why != "" {
		p.speed[cpl] = p.nativeSpeed(mode)
		return no("%s", why)
	}
	p.speed[cpl] = float64(2*counterLong) / c.longTook.Seconds()
	var tm laps
	tm.start()
	for i := 0; i < max(p.n, 1); i++ {
		if _, err := g.v.InsnCount(); err != nil {
			return broken(err)
		}
		tm.lap()
	}
	return Level{Works: Yes, Cost: tm.median(),
		Detail: fmt.Sprintf("exact: loops of %d and %d instructions read %d and %d (cost: one read)", 2*counterShort+1, 2*counterLong+1, short, long)}
}

// nativeSpeed times a long loop at a level the counter does not see.
func (p *prober) nativeSpeed(mode Mode) float64 {
	a := newAsmFor(mode)
	a.out(portMark)
	a.loop(nativeLoop, func() {})
	a.out(portMark)
	g, err := startRaw(mode, a, 0, p.limit)
	if err != nil {
		return 0
	}
	defer g.close()
	if err := g.until(portMark, nil); err != nil {
		return 0
	}
	t0 := time.Now()
	if err := g.until(portMark, nil); err != nil {
		return 0
	}
	return float64(2*nativeLoop) / time.Since(t0).Seconds()
}

// Interrupt injection probe: the vector injected, and how long a guest
// that does not take it is given.
const (
	injectVector = 0x30
	injectWait   = 50 * time.Millisecond
)

// inject delivers an external interrupt with KVM_INTERRUPT (there is no
// in-kernel irqchip) to a guest with interrupts on, at each level, and
// learns whether KVM holds it back while interrupts are off.
func (p *prober) inject() Mechanism {
	m := Mechanism{Name: MechInject}
	m.CPL0, _ = p.injectAt(ModeLong64, true)
	m.CPL3, _ = p.injectAt(ModeUser64, true)
	if l, taken := p.injectAt(ModeLong64, false); l.Works == Broken {
		m.Note = "with IF=0: " + l.Detail
	} else if taken {
		m.Note = "KVM_INTERRUPT injects even when IF=0: inject only when ready_for_interrupt_injection and IF=1, else request an interrupt window"
	} else {
		m.Note = "KVM_INTERRUPT waits while IF=0"
	}
	return m
}

// injectAt injects at the guest's mark exit and reports whether the
// guest's handler ran.
func (p *prober) injectAt(mode Mode, sti bool) (Level, bool) {
	// CPL3 code gets IF from IRETQ: on some hosts STI at CPL3 is #GP
	// although IOPL is 3.
	a := newAsmFlags(mode, userRFLAGS|cpu.FlagIF)
	if mode != ModeUser64 {
		if sti {
			a.raw(0xfb)
		} else {
			a.raw(0xfa) // cli
		}
		a.nop()
	}
	a.out(portMark)
	spin := a.pc()
	a.raw(0xeb, 0xfe)
	g, err := startRaw(mode, a, 0, injectWait)
	if err != nil {
		return broken(err), false
	}
	defer g.close()
	if err := g.until(portMark, nil); err != nil {
		return broken(err), false
	}
	t0 := time.Now()
	if err := g.v.Interrupt(injectVector); err != nil {
		return no("%v", err), false
	}
	r, err := g.next()
	d := time.Since(t0)
	port, v := g.port()
	switch {
	case errors.Is(err, errTimeout):
		if rip := g.rip(); rip != spin {
			return broken(fmt.Errorf("the guest is at %#x, not spinning at %#x", rip, spin)), false
		}
		return no("not delivered within %s", injectWait), false
	case err != nil:
		return broken(err), false
	case r == kvm.ExitIO && port == portFault && v == injectVector:
		return Level{Works: Yes, Cost: d}, true
	}
	return no("%s", g.describe(r)), false
}

func cplOf(mode Mode) int {
	if mode == ModeUser64 {
		return 3
	}
	return 0
}
