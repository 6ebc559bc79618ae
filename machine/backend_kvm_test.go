//go:build linux

package machine

import (
	"testing"

	"vmrr/machine/cpu"
)

// TestNewKVMFailureReleases makes the KVM backend fail half-way through its
// setup (KVM_SET_CPUID2 refuses more entries than KVM_MAX_CPUID_ENTRIES)
// and checks that New returns the error after releasing what it had
// created, rather than crashing in its cleanup.
func TestNewKVMFailureReleases(t *testing.T) {
	needKVM(t)
	table := make([]cpu.CPUIDEntry, 4096)
	for i := range table {
		table[i].Function = uint32(i)
	}
	for range 3 {
		m, err := New(Config{Image: elf64Code(0x100000, codeExit), MemoryBytes: 4 << 20, Accel: AccelKVM, CPUID: table, Hooks: &nopHooks{}})
		if err == nil {
			m.Close()
			t.Fatal("New accepted a CPUID table of 4096 entries")
		}
		t.Logf("New: %v", err)
	}
}
