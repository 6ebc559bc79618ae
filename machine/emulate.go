package machine

import (
	"fmt"

	"vmrr/machine/kvm"
)

// handleInternal handles KVM_EXIT_INTERNAL_ERROR. An emulation failure is
// an instruction this host's KVM cannot emulate; vmrr emulates it itself.
func (m *Machine) handleInternal() error {
	ie := m.vcpu.Internal()
	if ie.Suberror != kvm.InternalErrorEmulation {
		res := m.finish(ReasonInternal, 0, fmt.Sprintf("KVM internal error, suberror %d", ie.Suberror))
		m.result = &res
		return nil
	}
	return m.emulate()
}

// emulate is replaced by the x86emu-based emulator.
func (m *Machine) emulate() error {
	regs, _ := m.vcpu.Regs()
	res := m.finish(ReasonInternal, 0, fmt.Sprintf("cannot emulate the instruction at RIP %#x", regs.RIP))
	m.result = &res
	return nil
}
