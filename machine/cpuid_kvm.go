//go:build linux

package machine

import (
	"vmrr/machine/cpu"
	"vmrr/machine/kvm"
)

// CPUID feature bits vmrr adjusts.
const (
	cpuid1ECXX2APIC      = 1 << 21
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1ECXHypervisor  = 1 << 31
)

// DefaultCPUID is the table a new recording uses: what this host's KVM
// supports, minus what vmrr's machine does not model (x2APIC, the TSC
// deadline timer: there is no local APIC), with the hypervisor bit set and
// vmrr's signature at leaf 0x40000000. The table is stored in the log so a
// replay shows the guest the same one.
func DefaultCPUID(sys *kvm.System) ([]cpu.CPUIDEntry, error) {
	entries, err := sys.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	out := entries[:0]
	for _, e := range entries {
		if e.Function >= cpuidHypervisorLeaf && e.Function < cpuidHypervisorLeaf+0x100 {
			continue
		}
		if e.Function == 1 {
			e.Ecx &^= cpuid1ECXX2APIC | cpuid1ECXTSCDeadline
			e.Ecx |= cpuid1ECXHypervisor
			e.Ebx &^= 0xff000000 // initial APIC ID 0
		}
		out = append(out, e)
	}
	sig := []byte(cpuidHypervisorString)
	word := func(i int) uint32 {
		return uint32(sig[i]) | uint32(sig[i+1])<<8 | uint32(sig[i+2])<<16 | uint32(sig[i+3])<<24
	}
	out = append(out, cpu.CPUIDEntry{Function: cpuidHypervisorLeaf, Eax: cpuidHypervisorLeaf, Ebx: word(0), Ecx: word(4), Edx: word(8)})
	return out, nil
}
