//go:build !linux

package machine

import (
	"errors"

	"vmrr/machine/cpu"
)

// KVM exists only on Linux; elsewhere vmrr runs guests on the soft CPU.

// ErrNoKVM is returned by New for AccelKVM where there is no KVM.
var ErrNoKVM = errors.New("KVM is not available on this system (it needs Linux): use --accel soft")

// kvmBackend is never built here.
type kvmBackend struct{ backend }

func newKVMBackend(*Memory, []cpu.CPUIDEntry) (*kvmBackend, []cpu.CPUIDEntry, error) {
	return nil, nil, ErrNoKVM
}

func (m *Machine) maxSlots() int { return 0 }

// CanProtectPages reports whether SetReadOnlyPages works here: never.
func (m *Machine) CanProtectPages() bool { return false }

// SetReadOnlyPages needs KVM's read-only memory slots.
func (m *Machine) SetReadOnlyPages(pages []uint64) error {
	return errors.New("machine: read-only memory slots need KVM (the soft CPU keeps its T bit in its MMU)")
}

// FlushTLB drops the soft CPU's cached translations.
func (m *Machine) FlushTLB() error {
	if m.soft != nil {
		m.soft.flushTLB()
	}
	return nil
}
