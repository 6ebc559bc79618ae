package nondet

import (
	"vmrr/machine/cpu"
)

// Apply gives the guest the result of in, as the instruction itself would:
// value is the TSC or random number (for RDPID, IA32_TSC_AUX), aux is
// IA32_TSC_AUX for RDTSCP. It advances RIP past the instruction.
func Apply(in Inst, r *cpu.Regs, value uint64, aux uint32, mode int) {
	switch in.Kind {
	case cpu.RDTSC, cpu.RDTSCP:
		r.RAX = value & 0xffffffff
		r.RDX = value >> 32
		if in.Kind == cpu.RDTSCP {
			r.RCX = uint64(aux)
		}
	case cpu.RDRAND, cpu.RDSEED:
		setReg(r, in.Reg, in.OpSize, value)
		r.RFLAGS &^= cpu.FlagOF | cpu.FlagSF | cpu.FlagZF | cpu.FlagAF | cpu.FlagPF
		r.RFLAGS |= cpu.FlagCF
	case cpu.RDPID:
		setReg(r, in.Reg, in.OpSize, value)
	}
	r.RIP += uint64(in.Len)
	if mode != 64 {
		r.RIP &= 0xffffffff
	}
}

// setReg writes a general register the way a register destination of the
// given size does: 32-bit writes zero the upper half, 16-bit ones keep it.
func setReg(r *cpu.Regs, n, size int, v uint64) {
	regs := []*uint64{&r.RAX, &r.RCX, &r.RDX, &r.RBX, &r.RSP, &r.RBP, &r.RSI, &r.RDI,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}
	p := regs[n&15]
	switch size {
	case 16:
		*p = *p&^0xffff | v&0xffff
	case 32:
		*p = v & 0xffffffff
	default:
		*p = v
	}
}
