package machine

// vmrr's hypervisor CPUID leaf, the same on both CPUs: a guest can tell it
// runs under vmrr.
const (
	cpuidHypervisorLeaf   = 0x40000000
	cpuidHypervisorString = "vmrrvmrrvmrr"
)
