package x86emu

import (
	"fmt"
	"math/bits"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// arithFlags are the six status flags.
const arithFlags = cpu.FlagCF | cpu.FlagPF | cpu.FlagAF | cpu.FlagZF | cpu.FlagSF | cpu.FlagOF

// cr4TSD restricts RDTSC and RDTSCP to CPL0.
const cr4TSD = 1 << 2

// exec executes a decoded instruction on e.c.
func (e *emu) exec(in *inst) error {
	if in.g9 != 0 {
		return e.execGroup9(in)
	}
	x := &in.x
	for _, p := range x.Prefix {
		if p == 0 {
			break
		}
		if p&x86asm.PrefixInvalid != 0 {
			return &exception{vector: vecUD}
		}
	}
	switch x.Op {
	case x86asm.IRET, x86asm.IRETD, x86asm.IRETQ:
		return e.iret(x.DataSize/8, in)
	case x86asm.INT:
		v := uint8(vecBP)
		if x.Opcode>>24 != 0xcc {
			imm, ok := x.Args[0].(x86asm.Imm)
			if !ok {
				return e.unsupported(in, "INT without an immediate")
			}
			v = uint8(imm)
		}
		return e.deliver(event{vector: v, soft: true}, in.next)
	case x86asm.INTO:
		if e.mode == modeLong64 {
			return &exception{vector: vecUD}
		}
		if e.c.Regs.RFLAGS&cpu.FlagOF != 0 {
			return e.deliver(event{vector: vecOF, soft: true}, in.next)
		}
	case x86asm.ICEBP:
		// INT1 is a trap-class #DB with no gate DPL check.
		return e.deliver(event{vector: vecDB}, in.next)
	case x86asm.UD2:
		return &exception{vector: vecUD}
	case x86asm.POPCNT, x86asm.LZCNT, x86asm.TZCNT, x86asm.CMPXCHG16B:
		if done, err := e.featureGate(in); done {
			return err
		}
		if err := e.bitCount(in); err != nil {
			return err
		}
	case x86asm.RDTSC, x86asm.RDTSCP:
		if x.Op == x86asm.RDTSCP && !e.feature(featRDTSCP) {
			return &exception{vector: vecUD}
		}
		if err := e.rdtsc(x.Op == x86asm.RDTSCP); err != nil {
			return err
		}
	default:
		// System first: it claims the MOV, PUSH and POP forms with
		// segment, control and debug registers.
		if ok, err := e.execSystem(in); ok {
			return err
		}
		if ok, err := e.execGeneral(in); ok {
			return err
		}
		if f, ok := floatingPoint(in); ok && !e.feature(f) {
			// x87, MMX and SSE are not implemented, and the soft CPU's CPUID
			// says so: a guest that tries one anyway gets #UD, as on a
			// processor without it.
			return &exception{vector: vecUD}
		}
		return e.unsupported(in, "")
	}
	e.finish(in)
	return nil
}

// finish completes an instruction that falls through to the next one.
func (e *emu) finish(in *inst) {
	e.c.Regs.RIP = in.next
	e.c.Regs.RFLAGS &^= cpu.FlagRF
}

// bitCount is POPCNT, LZCNT and TZCNT r, r/m.
func (e *emu) bitCount(in *inst) error {
	x := &in.x
	dst, ok := x.Args[0].(x86asm.Reg)
	di, width, ok2 := gprOf(dst)
	if !ok || !ok2 {
		return e.unsupported(in, "unexpected destination operand")
	}
	var src uint64
	switch a := x.Args[1].(type) {
	case x86asm.Reg:
		si, sw, ok := gprOf(a)
		if !ok {
			return e.unsupported(in, "unexpected source operand")
		}
		src = truncate(*e.gpr(si), sw)
	case x86asm.Mem:
		seg, off, err := e.effAddr(a, x.AddrSize, in.next)
		if err != nil {
			return err
		}
		if src, err = e.readMem(seg, off, width/8); err != nil {
			return err
		}
	default:
		return e.unsupported(in, "unexpected source operand")
	}
	var res, fl uint64
	switch x.Op {
	case x86asm.POPCNT:
		res = uint64(bits.OnesCount64(src))
		if src == 0 {
			fl = cpu.FlagZF
		}
	case x86asm.LZCNT:
		res = uint64(bits.LeadingZeros64(src) - (64 - width))
		if src == 0 {
			res, fl = uint64(width), cpu.FlagCF
		}
	default:
		res = uint64(bits.TrailingZeros64(src))
		if src == 0 {
			res, fl = uint64(width), cpu.FlagCF
		}
	}
	if x.Op != x86asm.POPCNT && res == 0 {
		fl |= cpu.FlagZF
	}
	e.setGPR(di, width, res)
	e.c.Regs.RFLAGS = e.c.Regs.RFLAGS&^arithFlags | fl
	return nil
}

// nonDet fetches a logged or recorded value; failing to get one ends the run.
func (e *emu) nonDet(k cpu.NonDet) (uint64, error) {
	v, err := e.env.NonDet(k)
	if err != nil {
		return 0, fmt.Errorf("x86emu: %s value: %w", strings.ToUpper(k.String()), err)
	}
	return v, nil
}

// rdtsc is RDTSC and RDTSCP: EDX:EAX = TSC (and ECX = TSC_AUX).
func (e *emu) rdtsc(aux bool) error {
	if e.c.Sregs.CR4&cr4TSD != 0 && e.cpl() > 0 {
		return gpErr(0)
	}
	kind := cpu.RDTSC
	if aux {
		kind = cpu.RDTSCP
	}
	v, err := e.nonDet(kind)
	if err != nil {
		return err
	}
	e.setGPR(0, 32, v)
	e.setGPR(2, 32, v>>32)
	if aux {
		e.setGPR(1, 32, e.c.TSCAux)
	}
	return nil
}

// execGroup9 is RDRAND, RDSEED and RDPID into a register.
func (e *emu) execGroup9(in *inst) error {
	if !e.feature(group9Feature[in.g9]) {
		return &exception{vector: vecUD}
	}
	var v uint64
	switch in.g9 {
	case cpu.RDPID:
		v = e.c.TSCAux
	case cpu.RDRAND, cpu.RDSEED:
		var err error
		if v, err = e.nonDet(in.g9); err != nil {
			return err
		}
		// The value is valid: CF=1, the other status flags cleared.
		e.c.Regs.RFLAGS = e.c.Regs.RFLAGS&^arithFlags | cpu.FlagCF
	}
	e.setGPR(in.g9reg, in.g9bit, v)
	e.finish(in)
	return nil
}

// CPUID feature bits of the floating-point and vector units.
var (
	featFPU = feat{1, 0, cpuidEDX, 0}
	featMMX = feat{1, 0, cpuidEDX, 23}
	featSSE = feat{1, 0, cpuidEDX, 25}
)

// floatingPoint reports which unit an x87, MMX or SSE/AVX instruction
// needs: x87 by its escape opcodes d8-df, the others by their registers.
func floatingPoint(in *inst) (feat, bool) {
	x := &in.x
	if op := x.Opcode >> 24; op >= 0xd8 && op <= 0xdf {
		return featFPU, true
	}
	for _, a := range x.Args {
		r, ok := a.(x86asm.Reg)
		switch {
		case !ok:
		case r >= x86asm.M0 && r <= x86asm.M7:
			return featMMX, true
		case r >= x86asm.X0 && r <= x86asm.X15, r >= x86asm.Y0 && r <= x86asm.Y15:
			return featSSE, true
		}
	}
	return feat{}, false
}
