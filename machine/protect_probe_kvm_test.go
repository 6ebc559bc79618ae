//go:build linux

package machine_test

import (
	"errors"
	"testing"

	"vmrr/machine"
	"vmrr/machine/kvm"
	"vmrr/machine/probe"
)

// TestFlushTLBReadOnly runs a guest on a page table in a read-only slot
// (machine.FlushTLBReadOnly) where the probe found that this host's KVM
// runs such guests; where it does not (AMD nested paging: the guest reads
// its page-table entry as data), the test skips naming that.
func TestFlushTLBReadOnly(t *testing.T) {
	if err := probe.ReadOnlyPageTables(); err != nil {
		if errors.Is(err, kvm.ErrNoKVM) {
			t.Skipf("needs /dev/kvm: %v", err)
		}
		t.Skipf("needs %s, which this host's KVM lacks: %v", probe.MechROPageTables, err)
	}
	machine.FlushTLBReadOnly(t)
}
