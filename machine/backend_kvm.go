//go:build linux

package machine

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"

	"vmrr/machine/cpu"
	"vmrr/machine/kvm"
)

// kvmBackend runs the guest on KVM: one VM with one vCPU, guest RAM as
// memory slot 0 (protect_kvm.go splits it), no in-kernel irqchip or PIT.
type kvmBackend struct {
	*kvm.VCPU // the register and state ioctls are the backend's own
	sys       *kvm.System
	vm        *kvm.VM
	debugCtl  kvm.GuestDebug
}

var kickOnce sync.Once

// catchKicks installs a handler for the kick signal. An ignored signal would
// not interrupt KVM_RUN, and an unhandled one would kill the process.
func catchKicks() {
	c := make(chan os.Signal, 16)
	signal.Notify(c, kvm.KickSignal)
	go func() {
		for range c {
		}
	}()
}

// ErrNoKVM is returned by New for AccelKVM on a host without /dev/kvm.
var ErrNoKVM = kvm.ErrNoKVM

// newKVMBackend creates the VM and vCPU, installs RAM and the CPUID table
// (nil: DefaultCPUID) and returns the table in use.
func newKVMBackend(mem *Memory, table []cpu.CPUIDEntry) (_ *kvmBackend, _ []cpu.CPUIDEntry, err error) {
	kickOnce.Do(catchKicks)
	sys, err := kvm.Open()
	if err != nil {
		return nil, nil, err
	}
	// b is not the named result: the error returns below set that to nil
	// before the deferred cleanup runs.
	b := &kvmBackend{sys: sys}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.vm, err = sys.CreateVM(); err != nil {
		return nil, nil, err
	}
	// Intel needs these three pages for real mode; they sit above RAM.
	if err := b.vm.SetTSSAddr(0xfffbd000); err != nil {
		return nil, nil, err
	}
	if err := b.vm.SetMemoryRegion(0, 0, 0, mem.b); err != nil {
		return nil, nil, err
	}
	if b.VCPU, err = b.vm.CreateVCPU(0); err != nil {
		return nil, nil, err
	}
	if table == nil {
		if table, err = DefaultCPUID(sys); err != nil {
			return nil, nil, err
		}
	}
	if err := b.VCPU.SetCPUID(table); err != nil {
		return nil, nil, err
	}
	return b, table, nil
}

func (b *kvmBackend) accel() Accel { return AccelKVM }

func (b *kvmBackend) interrupt(vector uint8) error { return b.VCPU.Interrupt(vector) }
func (b *kvmBackend) kick()                        { b.VCPU.Kick() }
func (b *kvmBackend) finishMSR(ok bool)            { b.VCPU.MSR().Error = boolByte(!ok) }
func (b *kvmBackend) insnCount() (uint64, bool) {
	n, err := b.VCPU.InsnCount()
	return n, err == nil && b.VCPU.HasInsnCounter()
}
func boolByte(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// setDebug programs KVM_SET_GUEST_DEBUG when the wanted state changed.
func (b *kvmBackend) setDebug(step bool, breakpoints []uint64) error {
	d := kvm.GuestDebug{}
	if step || len(breakpoints) > 0 {
		d.Control = kvm.GuestDbgEnable
	}
	if step {
		d.Control |= kvm.GuestDbgSingleStep
	}
	if len(breakpoints) > 0 {
		d.Control |= kvm.GuestDbgUseHWBP
		var dr7 uint64
		for i, a := range breakpoints {
			d.DebugReg[i] = a
			dr7 |= 1 << (2 * i) // local enable, execute, length 1
		}
		d.DebugReg[7] = dr7 | 0x400
	}
	if d == b.debugCtl {
		return nil
	}
	b.debugCtl = d
	return b.VCPU.SetGuestDebug(&d)
}

func (b *kvmBackend) run(window bool) (*exit, error) {
	run := b.VCPU.State()
	run.RequestInterruptWindow = boolByte(window)
	err := b.VCPU.Run()
	if errors.Is(err, kvm.ErrInterrupted) {
		return nil, errKicked
	}
	if err != nil {
		return nil, err
	}
	ex := &exit{deterministic: true}
	switch run.ExitReason {
	case kvm.ExitIO:
		io, data := b.VCPU.IO()
		if data == nil {
			ex.kind, ex.detail = exitInternal, "malformed port I/O exit"
			break
		}
		ex.kind, ex.port, ex.out, ex.size, ex.count, ex.data = exitIO, io.Port, io.Direction == 1, int(io.Size), int(io.Count), data
	case kvm.ExitMMIO:
		mm := b.VCPU.MMIO()
		ex.kind, ex.gpa, ex.write, ex.mmio = exitMMIO, mm.PhysAddr, mm.IsWrite != 0, mm.Data[:min(mm.Len, 8)]
	case kvm.ExitHLT:
		ex.kind = exitHLT
	case kvm.ExitIRQWindowOpen, kvm.ExitIntr:
		// On hosts like PVM the interrupt-window exit comes some way after
		// the window opened, at a place that varies from run to run.
		ex.kind, ex.deterministic = exitWindow, false
	case kvm.ExitDebug:
		ex.kind, ex.deterministic, ex.debug = exitDebug, false, *b.VCPU.Debug()
	case kvm.ExitShutdown:
		ex.kind = exitShutdown
	case kvm.ExitInternalError:
		ie := b.VCPU.Internal()
		ex.kind = exitEmulate
		if ie.Suberror != kvm.InternalErrorEmulation {
			ex.kind, ex.detail = exitInternal, fmt.Sprintf("KVM internal error, suberror %d", ie.Suberror)
		}
	case kvm.ExitX86RDMSR, kvm.ExitX86WRMSR:
		e := b.VCPU.MSR()
		ex.kind, ex.msrIndex, ex.msrWrite, ex.msrData = exitMSR, e.Index, run.ExitReason == kvm.ExitX86WRMSR, &e.Data
	case kvm.ExitFailEntry:
		ex.kind, ex.deterministic, ex.detail = exitFailEntry, false, "KVM refused to enter the guest (invalid vCPU state)"
	default:
		ex.kind, ex.deterministic, ex.detail = exitInternal, false, fmt.Sprintf("unexpected KVM exit reason %d", run.ExitReason)
	}
	return ex, nil
}

// completeIO finishes a pending PIO or MMIO exit without running guest
// code (KVM_RUN with immediate_exit): KVM finishes a PIO instruction only
// on the next KVM_RUN, and registers set before that are undefined.
func (b *kvmBackend) completeIO() error {
	b.VCPU.State().ImmediateExit = 1
	if err := b.VCPU.Run(); err != nil && !errors.Is(err, kvm.ErrInterrupted) {
		return err
	}
	b.VCPU.State().ImmediateExit = 0
	return nil
}

func (b *kvmBackend) close() {
	if b.VCPU != nil {
		b.VCPU.Close()
	}
	if b.vm != nil {
		b.vm.Close()
	}
	if b.sys != nil {
		b.sys.Close()
	}
}

// KVMVCPU is the KVM vCPU, for machine/probe, which measures KVM itself;
// nil on the soft CPU.
func (m *Machine) KVMVCPU() *kvm.VCPU {
	if m.kvm == nil {
		return nil
	}
	return m.kvm.VCPU
}

// KVMVM is the KVM VM (see KVMVCPU); nil on the soft CPU.
func (m *Machine) KVMVM() *kvm.VM {
	if m.kvm == nil {
		return nil
	}
	return m.kvm.vm
}
