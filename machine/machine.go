package machine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"time"

	"vmrr/machine/cpu"
	"vmrr/position"
)

// DefaultMemory is the guest RAM size when Config.MemoryBytes is zero.
const DefaultMemory = 64 << 20

// Config describes a machine to build.
type Config struct {
	MemoryBytes uint64       // guest RAM; DefaultMemory if zero
	Image       []byte       // the guest image
	Boot        BootProtocol // "" detects it from the image
	Console     io.Writer    // COM1 output; io.Discard if nil
	Hooks       Hooks        // where outside-world inputs come from; required
	// CPUID is the table the guest sees; nil takes the backend's default
	// (DefaultCPUID on KVM, SoftCPUID on soft).
	CPUID []cpu.CPUIDEntry
	// Accel is the CPU backend: AccelKVM or AccelSoft ("" is AccelKVM;
	// AccelAuto is resolved by the caller with ChooseAccel).
	Accel Accel
	// TLBSync makes the soft CPU's MMU drop translations built from a page
	// the guest writes (the T bit); without it the soft TLB keeps stale
	// entries until INVLPG or a CR3 load, as hardware does. KVM ignores it
	// (tlbsync.Attach does the job there).
	TLBSync bool
}

// InputKind says which device register an outside-world input is for.
type InputKind int

// Device reads whose value depends on the outside world (time).
const (
	InputPIT    InputKind = iota + 1 // an 8254 counter read
	InputPort61                      // port 0x61 (refresh toggle and timer 2 output)
	InputRTC                         // a CMOS RTC data read
)

// Input describes one outside-world device read.
type Input struct {
	Kind InputKind
	Port uint16
	Size uint8
}

// Hooks is the seam between the machine and whoever decides what the
// outside world does: the live runner and recorder (host clock, host RNG,
// stdin) or the replayer (the log). The exit loop calls them; a hook that
// returns ErrStop makes Run return with ReasonStopped.
type Hooks interface {
	// BeforeRun is called before every entry into the guest: deliver
	// asynchronous events due now (RaiseIRQ, UART().Receive), arm kicks or
	// breakpoints.
	BeforeRun(m *Machine) error
	// Idle is called when the guest halted with interrupts enabled and no
	// interrupt pending: deliver the next event, waiting for it if live.
	Idle(m *Machine) error
	// Input supplies an outside-world device value; live computes it from
	// the host (a replayer must not call it).
	Input(m *Machine, in Input, live func() uint64) (uint64, error)
	// NonDet supplies a non-deterministic instruction's result for
	// instructions the VMM emulates.
	NonDet(m *Machine, kind cpu.NonDet) (uint64, error)
	// Port is offered accesses to ports with no device model (the trap and
	// ring doorbell ports); it returns false to leave them unclaimed.
	Port(m *Machine, port uint16, out bool, data []byte) (bool, error)
	// Debug is called at a debug exit (single-step or hardware breakpoint).
	Debug(m *Machine, d cpu.DebugExit) error
	// Interrupted is called when the vCPU was kicked out of the guest.
	Interrupted(m *Machine) error
	// Now is the host time since the start, for stamping device state that
	// only live inputs use; a replayer returns 0.
	Now() time.Duration
}

// ErrStop is returned by a hook to make Run return ReasonStopped.
var ErrStop = errors.New("machine: stop requested")

// Reason says why a run ended.
type Reason int

// How a run can end. Every value but ReasonExited is a guest failure of
// its own kind, with its own process status (see ExitStatus).
const (
	ReasonExited      Reason = iota + 1 // the guest wrote the debug-exit port
	ReasonTripleFault                   // a triple fault (KVM_EXIT_SHUTDOWN)
	ReasonInternal                      // the CPU could not run the guest and vmrr could not help
	ReasonHung                          // halted with interrupts disabled: nothing can wake it
	ReasonTimeout                       // the run's time limit passed
	ReasonStopped                       // a hook asked to stop (debugger)
)

func (r Reason) String() string {
	switch r {
	case ReasonExited:
		return "exited"
	case ReasonTripleFault:
		return "triple fault"
	case ReasonInternal:
		return "internal error"
	case ReasonHung:
		return "hung"
	case ReasonTimeout:
		return "timeout"
	case ReasonStopped:
		return "stopped"
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Process exit statuses for guest failures. Debug-exit statuses are odd
// ((value<<1)|1); these are even so they never collide.
const (
	StatusTripleFault = 64
	StatusInternal    = 66
	StatusHung        = 68
	StatusTimeout     = 70
)

// Result is how a run ended.
type Result struct {
	Reason  Reason
	Status  int    // process exit status (see ExitStatus)
	Value   uint32 // the value written to the debug-exit port
	RIP     uint64
	Pos     position.Pos
	Message string // one line: reason, RIP, exit count, detail
}

// Machine is a PC with one vCPU, RAM, devices and the exit loop, on a CPU
// backend: KVM or the soft CPU.
type Machine struct {
	vcpu  backend
	kvm   *kvmBackend  // the KVM backend, nil on soft
	soft  *softBackend // the soft CPU, nil on KVM
	slots *slotTable   // KVM memory slots holding RAM (protect_kvm.go)
	mem   *Memory
	hooks Hooks
	boot  BootProtocol
	cpuid []cpu.CPUIDEntry

	pic  *PIC
	pit  *PIT
	rtc  *RTC
	uart *UART

	exits       uint64
	insnBase    uint64
	unknown     map[uint16]bool // unknown ports already reported
	Warnings    io.Writer       // where one-time warnings go (unknown ports); nil = none
	Trace       io.Writer       // if set, every exit is traced here
	stepping    bool
	breakpoints []uint64
	afterIO     []func() error
	emulated    uint64
	console     *consoleHash
	stepBP      uint64 // a breakpoint standing in for a single-step, see adjustStep
	onRAMWrite  func(gpa uint64, data []byte) error
	// atDeterministicExit and delivered say whether the guest may take an
	// interrupt at the next entry (see step).
	atDeterministicExit bool
	delivered           bool
	exitsOnly           bool // see SetExitsOnly
	tscAux              uint64
	result              *Result
	closeOnce           sync.Once
}

// New builds a machine and loads the image. The caller must Close it.
func New(cfg Config) (m *Machine, err error) {
	if cfg.Hooks == nil {
		return nil, errors.New("machine: no hooks")
	}
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultMemory
	}
	if cfg.MemoryBytes < 2<<20 || cfg.MemoryBytes%4096 != 0 || cfg.MemoryBytes > 4<<30 {
		return nil, fmt.Errorf("machine: memory size %d: want a multiple of 4 KiB between 2 MiB and 4 GiB", cfg.MemoryBytes)
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	boot := cfg.Boot
	if boot == "" {
		if boot, err = DetectBoot(cfg.Image); err != nil {
			return nil, err
		}
	}
	mm := &Machine{hooks: cfg.Hooks, boot: boot, unknown: map[uint16]bool{}, atDeterministicExit: true}
	m = mm
	defer func() {
		if err != nil {
			mm.Close()
		}
	}()
	if m.mem, err = newMemory(cfg.MemoryBytes); err != nil {
		return nil, err
	}
	switch cfg.Accel {
	case AccelKVM, "":
		if m.kvm, m.cpuid, err = newKVMBackend(m.mem, cfg.CPUID); err != nil {
			return nil, err
		}
		m.vcpu = m.kvm
	case AccelSoft:
		m.soft, m.cpuid = newSoftBackend(m, cfg.CPUID, cfg.TLBSync)
		m.vcpu = m.soft
	default:
		return nil, fmt.Errorf("machine: accelerator %q: want kvm or soft", cfg.Accel)
	}
	m.pic = newPIC()
	m.pit = newPIT()
	m.rtc = newRTC()
	m.console = &consoleHash{w: cfg.Console}
	m.uart = newUART(m.console, m.RaiseIRQ)
	m.initRing()
	if err := m.load(cfg.Image, boot); err != nil {
		return nil, err
	}
	if n, ok := m.vcpu.insnCount(); ok {
		m.insnBase = n
	}
	return m, nil
}

// Close releases the VM.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() {
		if m.vcpu != nil {
			m.vcpu.close()
		}
		if m.mem != nil {
			m.mem.free()
		}
	})
	return nil
}

// initRing writes the ring header; recorder and replayer set RecMask.
func (m *Machine) initRing() {
	hdr := make([]byte, RingEntries)
	m.mem.WritePhys(RingBase, hdr)
	m.mem.PutUint32(RingBase+RingOffMagic, RingMagic)
	m.mem.PutUint32(RingBase+RingOffVersion, RingVersion)
	m.mem.PutUint32(RingBase+RingOffCapacity, RingCapacity)
	m.mem.PutUint32(RingBase+RingOffEntrySz, RingEntrySize)
}

// Boot is the boot protocol the image was loaded with.
func (m *Machine) Boot() BootProtocol { return m.boot }

// CPUID is the table the guest sees.
func (m *Machine) CPUID() []cpu.CPUIDEntry { return m.cpuid }

// Memory is guest RAM.
func (m *Machine) Memory() *Memory { return m.mem }

// Accel is the CPU backend running the guest.
func (m *Machine) Accel() Accel { return m.vcpu.accel() }

// Regs reads the general registers, RIP and RFLAGS.
func (m *Machine) Regs() (cpu.Regs, error) { return m.vcpu.Regs() }

// SetRegs writes the general registers, RIP and RFLAGS.
func (m *Machine) SetRegs(r *cpu.Regs) error { return m.vcpu.SetRegs(r) }

// Sregs reads the segment and control registers.
func (m *Machine) Sregs() (cpu.Sregs, error) { return m.vcpu.Sregs() }

// SetSregs writes the segment and control registers.
func (m *Machine) SetSregs(s *cpu.Sregs) error { return m.vcpu.SetSregs(s) }

// Events reads the vCPU's pending events and interrupt shadow.
func (m *Machine) Events() (cpu.Events, error) { return m.vcpu.Events() }

// Injecting reports whether an interrupt is queued in the vCPU but not yet
// taken. The machine counts an injection as a position and shows the hooks
// the vCPU once more before it runs, with RIP still at the interrupted
// instruction: no instruction boundary of the guest, and no place a
// debugger stops at.
func (m *Machine) Injecting() bool {
	ev, err := m.vcpu.Events()
	return err == nil && ev.I.Inject != 0
}

// Kick makes the running guest stop soon at an instruction boundary (the
// hooks see it through Interrupted). Safe from any goroutine.
func (m *Machine) Kick() { m.vcpu.kick() }

// UART is COM1.
func (m *Machine) UART() *UART { return m.uart }

// PIT is the 8254.
func (m *Machine) PIT() *PIT { return m.pit }

// RaiseIRQ signals an edge on an ISA interrupt line.
func (m *Machine) RaiseIRQ(irq int) {
	m.pic.Raise(irq)
	m.delivered = true
}

// HasInsnCounter reports whether positions include an exact instruction count.
func (m *Machine) HasInsnCounter() bool {
	_, ok := m.vcpu.insnCount()
	return ok && !m.exitsOnly
}

// Position is the current position. It reads the instruction counter.
func (m *Machine) Position() position.Pos {
	p := position.Pos{Exit: m.exits}
	if n, ok := m.vcpu.insnCount(); ok && !m.exitsOnly {
		p.Insn = n - m.insnBase
	}
	return p
}

// SetExitsOnly makes positions exit counts alone (their Insn stays 0) and
// the machine inject interrupts only at exits the guest caused (port I/O,
// HLT, MMIO), never at a kick or an interrupt window. A recording needs
// this where the CPU cannot count instructions exactly (KVM without an
// exact counter): such an exit is found again by its number alone, any
// other stop is not. The replay of such a recording sets it too, whatever
// its CPU can count. Call it before Run.
func (m *Machine) SetExitsOnly() { m.exitsOnly = true }

// ExitsOnly reports whether SetExitsOnly was called.
func (m *Machine) ExitsOnly() bool { return m.exitsOnly }

// CountExit counts an instruction the VMM carried out itself, outside any
// KVM exit, as a deterministic exit.
func (m *Machine) CountExit() { m.exits++ }

// Exits is the number of deterministic exits so far.
func (m *Machine) Exits() uint64 { return m.exits }

// SetTSCAux sets IA32_TSC_AUX as RDTSCP and RDPID see it.
func (m *Machine) SetTSCAux(v uint64) {
	if m.soft != nil {
		m.soft.c.TSCAux = v
	}
	m.tscAux = v
}

// TSCAux is IA32_TSC_AUX as RDTSCP and RDPID see it.
func (m *Machine) TSCAux() uint64 {
	if m.soft != nil {
		return m.soft.c.TSCAux
	}
	return m.tscAux
}

// StopAt makes the running guest stop (the hooks see it through
// Interrupted) when the position's instruction count reaches insn, where
// the CPU counts instructions exactly; 0 clears it. It reports whether the
// CPU can.
func (m *Machine) StopAt(insn uint64) bool {
	if m.soft == nil || m.exitsOnly {
		return false
	}
	m.soft.stopAt = 0
	if insn != 0 {
		m.soft.stopAt = m.insnBase + insn
	}
	return true
}

// SetSingleStep turns the VMM's single-stepping on or off.
func (m *Machine) SetSingleStep(on bool) { m.stepping = on }

// SingleStepping reports whether single-stepping is on.
func (m *Machine) SingleStepping() bool { return m.stepping }

// SetBreakpoints arms up to four hardware execute breakpoints at linear
// addresses (nil disarms them).
func (m *Machine) SetBreakpoints(addrs []uint64) error {
	if len(addrs) > 4 {
		return fmt.Errorf("machine: %d hardware breakpoints, at most 4", len(addrs))
	}
	m.breakpoints = append(m.breakpoints[:0], addrs...)
	return nil
}

// Breakpoints returns the armed hardware breakpoints.
func (m *Machine) Breakpoints() []uint64 { return m.breakpoints }

// applyGuestDebug arms the wanted single-stepping and breakpoints.
func (m *Machine) applyGuestDebug() error { return m.vcpu.setDebug(m.stepping, m.breakpoints) }

// AfterIO registers fn to run once the current port I/O exit is complete,
// when registers may be changed (KVM finishes a PIO instruction only on the
// next KVM_RUN; setting registers before that is undefined).
func (m *Machine) AfterIO(fn func() error) { m.afterIO = append(m.afterIO, fn) }

// completeIO finishes a pending PIO or MMIO exit without running guest
// code (KVM_RUN with immediate_exit) and runs the AfterIO functions. Every
// I/O exit is completed at once so that the state hooks see after it is
// the state after the instruction: otherwise the exit (RIP at the
// instruction) and the next stop (RIP past it) would share one position.
func (m *Machine) completeIO() error {
	if m.result != nil {
		return nil
	}
	if err := m.vcpu.completeIO(); err != nil {
		return err
	}
	fns := m.afterIO
	m.afterIO = nil
	for _, fn := range fns {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

// Run runs the guest until it ends or a hook stops it. It locks the
// calling goroutine to its OS thread while the vCPU runs.
func (m *Machine) Run() (Result, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m.result = nil
	for m.result == nil {
		if err := m.step(); err != nil {
			if errors.Is(err, ErrStop) {
				return m.finish(ReasonStopped, 0, "stopped"), nil
			}
			return Result{}, err
		}
	}
	return *m.result, nil
}

// finish builds the run's result, naming RIP and the position.
func (m *Machine) finish(r Reason, value uint32, detail string) Result {
	regs, _ := m.vcpu.Regs()
	res := Result{Reason: r, Value: value, RIP: regs.RIP, Pos: m.Position()}
	switch r {
	case ReasonExited:
		res.Status = int(value<<1 | 1)
		res.Message = fmt.Sprintf("guest exited with value %d (status %d) at RIP %#x, exit %d", value, res.Status, regs.RIP, m.exits)
		return res
	case ReasonTripleFault:
		res.Status = StatusTripleFault
	case ReasonInternal:
		res.Status = StatusInternal
	case ReasonHung:
		res.Status = StatusHung
	case ReasonTimeout:
		res.Status = StatusTimeout
	}
	res.Message = fmt.Sprintf("%s at RIP %#x, exit %d", r, regs.RIP, m.exits)
	if detail != "" {
		res.Message += ": " + detail
	}
	return res
}

// End makes the current Run return with the given reason after this exit;
// hooks use it for timeouts.
func (m *Machine) End(r Reason, detail string) {
	res := m.finish(r, 0, detail)
	m.result = &res
}

// step is one trip through the exit loop: hooks, interrupt injection,
// running the guest, and dispatch of the exit.
func (m *Machine) step() error {
	injected, window := false, false
	var injectedVector uint8
	for {
		if err := m.hooks.BeforeRun(m); err != nil {
			return err
		}
		if m.result != nil {
			return nil
		}
		_, pending := m.pic.Pending()
		window = false
		if !pending || injected {
			break
		}
		// Inject only where replay stops too: after an exit the guest
		// caused, or where a hook delivered an event. At a kick or a
		// debugger's stop the guest could take the interrupt, but a replay
		// would not be there to give it; the window exit comes at a place
		// both agree on.
		if !(m.atDeterministicExit || m.delivered) || !m.interruptible() {
			// Placing events at exits only, the interrupt waits for the
			// guest's next exit: a window exit would be a stop the replay
			// cannot find.
			window = !m.exitsOnly
			break
		}
		// An injection changes what later events do (a second IRQ raised
		// before it is coalesced, one raised after it waits in the IRR),
		// so it counts as a position step and the hooks see the machine
		// again before it runs.
		// A debug stop (a VMM breakpoint) leaves RF set in RFLAGS; the
		// interrupt frame would save it, and the guest's IRET would then
		// skip a breakpoint, or leave a different stack than a run that
		// never stopped there. RF is the VMM's business: clear it.
		if regs, err := m.vcpu.Regs(); err == nil && regs.RFLAGS&cpu.FlagRF != 0 {
			regs.RFLAGS &^= cpu.FlagRF
			if err := m.vcpu.SetRegs(&regs); err != nil {
				return err
			}
		}
		vec, _ := m.pic.Acknowledge()
		if err := m.vcpu.interrupt(vec); err != nil {
			return err
		}
		injectedVector = vec
		m.exits++
		injected = true
	}
	// KVM turns HLT into a no-op when it single-steps it (the step's debug
	// exit replaces the halt), so a stepped guest would not halt where an
	// unstepped one does. Let KVM run an HLT unstepped: it exits as usual.
	stepping, bps := m.stepping, m.breakpoints
	m.stepBP = 0
	if stepping && m.kvm != nil {
		m.adjustStep(injected, injectedVector)
	}
	err := m.applyGuestDebug()
	m.stepping, m.breakpoints = stepping, bps
	if err != nil {
		return err
	}
	m.delivered = false
	ex, err := m.vcpu.run(window)
	m.atDeterministicExit = err == nil && ex.deterministic
	if errors.Is(err, errKicked) {
		return m.hooks.Interrupted(m)
	}
	if err != nil {
		return err
	}
	return m.dispatch(ex)
}

// AtDeterministicExit reports whether the vCPU stopped at an exit the
// guest's own instructions caused, where replay stops too.
func (m *Machine) AtDeterministicExit() bool { return m.atDeterministicExit }

// CanInject reports whether an interrupt is pending in the PIC and the vCPU
// could take it now.
func (m *Machine) CanInject() (uint8, bool) {
	vec, pending := m.pic.Pending()
	return vec, pending && m.interruptible()
}

// interruptible reports whether the vCPU can take an external interrupt
// now. It reads the registers and pending events instead of trusting
// kvm_run's if_flag and ready_for_interrupt_injection, which describe the
// state at the last exit: vmrr's emulator may have changed it since (an
// emulated IRET sets IF), and they differ between a kick and a debug stop
// at the same instruction.
func (m *Machine) interruptible() bool {
	regs, err := m.vcpu.Regs()
	if err != nil || regs.RFLAGS&cpu.FlagIF == 0 {
		return false
	}
	ev, err := m.vcpu.Events()
	if err != nil {
		return false
	}
	return ev.I.Shadow == 0 && ev.I.Inject == 0 && ev.E.Inject == 0 && ev.E.Pending == 0 && ev.N.Inject == 0
}

// MayInject reports whether the next entry will inject a pending interrupt
// without being told to (see Delivered).
func (m *Machine) MayInject() bool { return m.atDeterministicExit || m.delivered }

// Delivered tells the machine that a hook delivered an asynchronous event
// at the current position, where an interrupt may now be injected.
func (m *Machine) Delivered() { m.delivered = true }

func (m *Machine) dispatch(ex *exit) error {
	if m.Trace != nil {
		regs, _ := m.vcpu.Regs()
		fmt.Fprintf(m.Trace, "exit %d kind %d %s rip %#x if %d\n", m.exits, ex.kind, m.Position(), regs.RIP, regs.RFLAGS>>9&1)
	}
	switch ex.kind {
	case exitIO:
		m.exits++
		if err := m.handleIO(ex); err != nil {
			return err
		}
		return m.completeIO()
	case exitMMIO:
		m.exits++
		if err := m.handleMMIO(ex); err != nil {
			return err
		}
		return m.completeIO()
	case exitHLT:
		m.exits++
		return m.handleHLT()
	case exitWindow:
		return nil
	case exitDebug:
		if h := m.stepBP; h != 0 {
			// The breakpoint that stands in for a single-step (see
			// adjustStep).
			m.stepBP = 0
			if regs, err := m.vcpu.Regs(); err == nil && regs.RIP == h {
				return nil
			}
		}
		return m.hooks.Debug(m, ex.debug)
	case exitShutdown:
		m.exits++
		res := m.finish(ReasonTripleFault, 0, "the guest shut the machine down (an exception it could not handle)")
		m.result = &res
		return nil
	case exitEmulate:
		m.exits++
		return m.emulate()
	case exitMSR:
		m.exits++
		ok, err := m.msrAccess(ex.msrIndex, ex.msrWrite, ex.msrData)
		m.vcpu.finishMSR(ok)
		return err
	case exitInternal:
		m.exits++
	}
	res := m.finish(ReasonInternal, 0, ex.detail)
	m.result = &res
	return nil
}

func (m *Machine) handleHLT() error {
	if err := m.applyGuestDebug(); err != nil {
		return err
	}
	if _, ok := m.pic.Pending(); ok {
		return nil
	}
	regs, err := m.vcpu.Regs()
	if err != nil {
		return err
	}
	if regs.RFLAGS&cpu.FlagIF == 0 {
		res := m.finish(ReasonHung, 0, "halted with interrupts disabled")
		m.result = &res
		return nil
	}
	for m.result == nil {
		if err := m.hooks.Idle(m); err != nil {
			return err
		}
		if _, ok := m.pic.Pending(); ok {
			return nil
		}
	}
	return nil
}

// handleMMIO: a write to write-protected RAM goes to its handler (tlbsync);
// there are no MMIO devices, and reads see all ones.
func (m *Machine) handleMMIO(ex *exit) error {
	if ex.write && m.onRAMWrite != nil && ex.gpa < m.mem.Size() {
		return m.onRAMWrite(ex.gpa, ex.mmio)
	}
	if !ex.write {
		for i := range ex.mmio {
			ex.mmio[i] = 0xff
		}
	}
	return nil
}

// MSRs vmrr intercepts.
const (
	msrTSC    = 0x10
	msrTSCAux = 0xc0000103
)

// msrAccess reads or writes an MSR the VMM keeps; ok=false raises #GP in
// the guest.
func (m *Machine) msrAccess(index uint32, write bool, data *uint64) (ok bool, err error) {
	switch {
	case index == msrTSC && !write:
		v, err := m.hooks.NonDet(m, cpu.RDTSC)
		if err != nil {
			return false, err
		}
		*data = v
	case index == msrTSCAux && !write:
		*data = m.TSCAux()
	case index == msrTSCAux && write:
		m.SetTSCAux(*data & 0xffffffff)
	default:
		return false, nil
	}
	return true, nil
}

// warnOnce reports an unknown port once per port.
func (m *Machine) warnOnce(port uint16, out bool) {
	if m.unknown[port] || m.Warnings == nil {
		return
	}
	m.unknown[port] = true
	dir := "read"
	if out {
		dir = "write"
	}
	fmt.Fprintf(m.Warnings, "vmrr: guest %s of unknown port %#x (reads give 0xff, writes are ignored; reported once)\n", dir, port)
}

// Pending reports whether the PIC has an interrupt to deliver.
func (m *Machine) Pending() bool { _, ok := m.pic.Pending(); return ok }

// SetRAMWriteHandler installs the function that handles guest writes to
// RAM that is mapped read-only (the write arrives as an MMIO exit; the
// handler must apply it).
func (m *Machine) SetRAMWriteHandler(fn func(gpa uint64, data []byte) error) { m.onRAMWrite = fn }

// adjustStep changes how the next entry steps where a plain single-step
// would not stop where an unstepped run does, or would change the guest:
//   - KVM turns a single-stepped HLT into a no-op (the step's debug exit
//     replaces the halt), so a stepped guest would not halt where an
//     unstepped one does: KVM runs the HLT unstepped and it exits as usual.
//   - An interrupt delivered during a step pushes the TF that stepping sets
//     behind the guest's back into the guest's frame: the guest's IRET
//     would then trap for itself, and memory would differ from an
//     unstepped run. It is delivered unstepped, with a breakpoint at the
//     handler's first instruction.
//   - IRETQ loads RFLAGS from the stack, dropping the stepping TF, so the
//     step would run on past the next instruction: a breakpoint at the
//     return address stops there instead.
//
// The caller restores m.stepping and m.breakpoints after the entry.
func (m *Machine) adjustStep(injected bool, vec uint8) {
	var target uint64
	var ok bool
	switch {
	case injected:
		target, ok = m.handlerAddress(vec)
	default:
		op, rexW, regs, sregs, found := m.nextOpcode()
		switch {
		case !found:
		case op == 0xf4:
			m.stepping = false
			return
		case op == 0xcf && cpu.Mode(&sregs) == 64:
			size := 4
			if rexW {
				size = 8
			}
			var b [8]byte
			if n, _ := m.ReadVirtual(&sregs, regs.RSP, b[:size]); n == size {
				target, ok = binary.LittleEndian.Uint64(b[:]), true // b is zero above size
			}
		}
	}
	if ok && len(m.breakpoints) < 4 {
		m.stepping = false
		m.stepBP = target
		m.breakpoints = append(append([]uint64(nil), m.breakpoints...), target)
	}
}

// nextOpcode decodes the prefixes of the next instruction and returns its
// first opcode byte and whether REX.W was set.
func (m *Machine) nextOpcode() (op byte, rexW bool, regs cpu.Regs, sregs cpu.Sregs, ok bool) {
	var err error
	if regs, err = m.vcpu.Regs(); err != nil {
		return
	}
	if sregs, err = m.vcpu.Sregs(); err != nil {
		return
	}
	var code [8]byte
	n, _ := m.ReadVirtual(&sregs, sregs.CS.Base+regs.RIP, code[:])
	long := cpu.Mode(&sregs) == 64
	for _, b := range code[:n] {
		switch {
		case b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 || b == 0x65 || b == 0x66 || b == 0x67 || b == 0xf2 || b == 0xf3:
			continue
		case long && b&0xf0 == 0x40:
			rexW = b&0x08 != 0
			continue
		}
		return b, rexW, regs, sregs, true
	}
	return
}

// handlerAddress finds the linear address of the handler of an interrupt
// vector in the guest's IDT (or real-mode IVT). Segment bases of
// protected-mode handlers are taken as 0, as in every flat guest.
func (m *Machine) handlerAddress(vec uint8) (uint64, bool) {
	s, err := m.vcpu.Sregs()
	if err != nil {
		return 0, false
	}
	switch cpu.Mode(&s) {
	case 64:
		var g [16]byte
		if uint64(vec)*16+15 > uint64(s.IDT.Limit) {
			return 0, false
		}
		if n, _ := m.ReadVirtual(&s, s.IDT.Base+uint64(vec)*16, g[:]); n != 16 {
			return 0, false
		}
		return uint64(g[0]) | uint64(g[1])<<8 | uint64(g[6])<<16 | uint64(g[7])<<24 |
			uint64(g[8])<<32 | uint64(g[9])<<40 | uint64(g[10])<<48 | uint64(g[11])<<56, true
	case 32:
		var g [8]byte
		if uint64(vec)*8+7 > uint64(s.IDT.Limit) {
			return 0, false
		}
		if n, _ := m.ReadVirtual(&s, s.IDT.Base+uint64(vec)*8, g[:]); n != 8 {
			return 0, false
		}
		return uint64(g[0]) | uint64(g[1])<<8 | uint64(g[6])<<16 | uint64(g[7])<<24, true
	default:
		var g [4]byte
		if n, _ := m.ReadVirtual(&s, s.IDT.Base+uint64(vec)*4, g[:]); n != 4 {
			return 0, false
		}
		ip, cs := uint64(g[0])|uint64(g[1])<<8, uint64(g[2])|uint64(g[3])<<8
		return cs<<4 + ip, true
	}
}

// consoleHash passes the guest's console output on and keeps its length
// and CRC-32C, so state hashes cover what the guest printed.
type consoleHash struct {
	w   io.Writer
	n   uint64
	crc uint32
}

func (c *consoleHash) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	c.crc = crc32.Update(c.crc, castagnoli, p)
	return c.w.Write(p)
}

// ConsoleHash is the length and CRC-32C of the guest's console output.
func (m *Machine) ConsoleHash() (n uint64, crc uint32) { return m.console.n, m.console.crc }
