package machine

import (
	"errors"

	"vmrr/machine/cpu"
	"vmrr/machine/x86emu"
	"vmrr/tlbsync/pagewalk"
)

// emuEnv is guest memory and the hooks, as the emulator sees them.
type emuEnv struct{ m *Machine }

func (e emuEnv) ReadPhys(gpa uint64, b []byte) error  { return e.m.mem.ReadPhys(gpa, b) }
func (e emuEnv) WritePhys(gpa uint64, b []byte) error { return e.m.mem.WritePhys(gpa, b) }

func (e emuEnv) Translate(cpu *x86emu.CPU, linear uint64, write, user, fetch bool) (uint64, uint32, bool) {
	s := &cpu.Sregs
	mode := pagewalk.ModeOf(s.CR0, s.CR4, s.EFER)
	w, err := pagewalk.Translate(e.m.mem, mode, s.CR3, linear, pagewalk.Access{Write: write, User: user, Fetch: fetch}, pagewalk.FlagsOf(s.CR0, s.CR4, s.EFER))
	if err != nil {
		var pf *pagewalk.PageFault
		if errors.As(err, &pf) {
			return 0, pf.Code, false
		}
		// A malformed table: the CPU would raise #PF with the reserved bit.
		return 0, pagewalk.PFPresent | pagewalk.PFReserved, false
	}
	return w.Phys, 0, true
}

func (e emuEnv) NonDet(kind cpu.NonDet) (uint64, error) {
	return e.m.hooks.NonDet(e.m, kind)
}

// errNoPortIO: KVM runs port I/O itself and never hands it to the emulator.
var errNoPortIO = errors.New("machine: port I/O reached the instruction emulator")

func (e emuEnv) In(port uint16, size int) (uint32, error)  { return 0, errNoPortIO }
func (e emuEnv) Out(port uint16, size int, v uint32) error { return errNoPortIO }

// CPUID is the guest's table with the features x86emu checks before
// running an instruction forced on: KVM hands over only instructions the
// host processor would have run whatever the guest's CPUID says (RDTSCP,
// POPCNT, RDRAND, ...), so they must not raise #UD here.
func (e emuEnv) CPUID(leaf, subleaf uint32) (a, b, c, d uint32) {
	if l := cpu.Lookup(e.m.cpuid, leaf, subleaf); l != nil {
		a, b, c, d = l.Eax, l.Ebx, l.Ecx, l.Edx
	}
	switch {
	case leaf == 1:
		c |= 1<<23 | 1<<30 // POPCNT, RDRAND
	case leaf == 7 && subleaf == 0:
		b |= 1<<3 | 1<<18 // BMI1 (TZCNT), RDSEED
		c |= 1 << 22      // RDPID
	case leaf == 0x80000001:
		c |= 1 << 5  // LZCNT
		d |= 1 << 27 // RDTSCP
	}
	return a, b, c, d
}

func (e emuEnv) ReadMSR(index uint32) (uint64, bool, error) {
	v := uint64(0)
	ok, err := e.m.msrAccess(index, false, &v)
	return v, ok, err
}

func (e emuEnv) WriteMSR(index uint32, v uint64) (bool, error) { return e.m.msrAccess(index, true, &v) }

// FlushTLB has nothing to do under KVM: the instructions KVM hands over
// never change translations.
func (e emuEnv) FlushTLB(kind x86emu.TLBFlush, linear uint64) {}

// emulate runs the instruction at RIP in vmrr's emulator and writes the
// resulting state back.
func (m *Machine) emulate() error {
	regs, err := m.vcpu.Regs()
	if err != nil {
		return err
	}
	sregs, err := m.vcpu.Sregs()
	if err != nil {
		return err
	}
	cpu := x86emu.CPU{Regs: regs, Sregs: sregs, TSCAux: m.TSCAux()}
	_, err = x86emu.Step(&cpu, emuEnv{m})
	var unsup *x86emu.UnsupportedError
	switch {
	case errors.Is(err, x86emu.ErrTripleFault):
		res := m.finish(ReasonTripleFault, 0, "an exception vmrr's emulator raised could not be delivered")
		m.result = &res
		return nil
	case errors.As(err, &unsup):
		res := m.finish(ReasonInternal, 0, unsup.Error())
		m.result = &res
		return nil
	case err != nil:
		return err
	}
	if err := m.vcpu.SetSregs(&cpu.Sregs); err != nil {
		return err
	}
	m.emulated++
	return m.vcpu.SetRegs(&cpu.Regs)
}

// Emulated is the number of instructions vmrr's emulator ran.
func (m *Machine) Emulated() uint64 { return m.emulated }
