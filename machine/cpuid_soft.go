package machine

import "vmrr/machine/cpu"

// CPUID bits the soft CPU advertises: exactly what machine/x86emu
// implements, so a guest that tests a feature before using it never
// reaches an instruction the interpreter lacks.
const (
	softCPUID1EDX = 1<<3 | // PSE (no FPU: x87 is not implemented)
		1<<4 | // TSC
		1<<5 | // MSR
		1<<6 | // PAE
		1<<8 | // CX8
		1<<13 | // PGE
		1<<15 // CMOV
	softCPUID1ECX = 1<<23 | // POPCNT
		1<<30 | // RDRAND
		1<<31 // hypervisor present
	softCPUID7EBX     = 1 << 18 // RDSEED
	softCPUID7ECX     = 1 << 22 // RDPID
	softCPUIDExt1EDX  = 1<<20 | 1<<27 | 1<<29
	softCPUIDExt1ECX  = 1<<0 | 1<<5 // LAHF/SAHF in 64-bit mode, LZCNT
	softCPUIDMaxLeaf  = 7
	softCPUIDMaxExt   = 0x80000008
	softCPUIDVendor   = "VmrrSoftCPU "
	softCPUIDFamModel = 6<<8 | 1<<4 // family 6, model 1, stepping 0
)

// SoftCPUID is the CPUID table of the soft CPU: vendor "VmrrSoftCPU ",
// family 6, the features it implements (softCPUID* above; extended leaf
// 0x80000001 EDX: NX, RDTSCP, long mode), 48-bit physical and linear
// addresses, and vmrr's hypervisor signature at 0x40000000.
func SoftCPUID() []cpu.CPUIDEntry {
	word := func(s string, i int) uint32 {
		return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
	}
	v := softCPUIDVendor
	sig := cpuidHypervisorString
	brand := "vmrr soft x86-64 CPU" + string(make([]byte, 28))
	t := []cpu.CPUIDEntry{
		{Function: 0, Eax: softCPUIDMaxLeaf, Ebx: word(v, 0), Edx: word(v, 4), Ecx: word(v, 8)},
		{Function: 1, Eax: softCPUIDFamModel, Ecx: softCPUID1ECX, Edx: softCPUID1EDX},
		{Function: 7, Index: 0, Flags: cpu.CPUIDFlagSignificantIndex, Ebx: softCPUID7EBX, Ecx: softCPUID7ECX},
		{Function: cpuidHypervisorLeaf, Eax: cpuidHypervisorLeaf, Ebx: word(sig, 0), Ecx: word(sig, 4), Edx: word(sig, 8)},
		{Function: 0x80000000, Eax: softCPUIDMaxExt},
		{Function: 0x80000001, Ecx: softCPUIDExt1ECX, Edx: softCPUIDExt1EDX},
		{Function: 0x80000008, Eax: 48<<8 | 48},
	}
	for i := range 3 {
		e := cpu.CPUIDEntry{Function: 0x80000002 + uint32(i)}
		o := 16 * i
		e.Eax, e.Ebx, e.Ecx, e.Edx = word(brand, o), word(brand, o+4), word(brand, o+8), word(brand, o+12)
		t = append(t, e)
	}
	return t
}
