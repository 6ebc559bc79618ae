package x86emu

import (
	"math/bits"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// maskCount is a shift or rotate count as the processor uses it: its low
// six bits for a 64-bit operand, its low five otherwise.
func maskCount(c uint64, w int) uint64 {
	if w == 64 {
		return c & 63
	}
	return c & 31
}

// shift is SHL/SAL, SHR, SAR, ROL, ROR, RCL and RCR. The count is masked to
// 5 bits (6 with a 64-bit operand); a masked count of 0 changes nothing.
// OF is defined only for a count of 1; for larger counts the Intel host
// computes it as for the first 1-bit step (except for rotates by an
// immediate, below), and so does this. AF, undefined
// for the shifts, is cleared as on the host; rotates leave it alone.
func (e *emu) shift(in *inst) error {
	w := argBits(in, 0)
	dst, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	cnt, err := e.operand(in, 1, 8)
	if err != nil {
		return err
	}
	c, _ := e.read(&cnt)
	c = maskCount(c, w)
	a, err := e.readRMW(&dst)
	if err != nil {
		return err
	}
	if c == 0 {
		return e.zeroExtend(&dst, a)
	}
	msb := a >> uint(w-1) & 1
	next := a >> uint(w-2) & 1 // the bit below the sign bit
	var r, fl uint64
	mask := uint64(arithFlags)
	switch in.x.Op {
	case x86asm.SHL:
		r = truncate(a<<c, w)
		if c <= uint64(w) && a>>(uint64(w)-c)&1 != 0 {
			fl |= cpu.FlagCF
		}
		if msb != next {
			fl |= cpu.FlagOF
		}
		fl |= szp(r, w)
	case x86asm.SHR:
		r = a >> c
		if c <= uint64(w) && a>>(c-1)&1 != 0 {
			fl |= cpu.FlagCF
		}
		if msb != 0 {
			fl |= cpu.FlagOF
		}
		fl |= szp(r, w)
	case x86asm.SAR:
		s := int64(signExtend(a, w))
		r = truncate(uint64(s>>c), w)
		fl = uint64(s>>(c-1)) & 1 // CF
		fl |= szp(r, w)
	case x86asm.ROL, x86asm.ROR:
		mask = cpu.FlagCF | cpu.FlagOF
		if cnt.kind == opImm && c != 1 {
			// The Intel host leaves OF alone when rotating by an
			// immediate other than 1, but not by CL.
			mask = cpu.FlagCF
		}
		rc := c % uint64(w)
		if in.x.Op == x86asm.ROL {
			r = truncate(a<<rc|a>>(uint64(w)-rc), w)
			fl = r & 1
			if msb != next {
				fl |= cpu.FlagOF
			}
		} else {
			r = truncate(a>>rc|a<<(uint64(w)-rc), w)
			fl = r >> uint(w-1) & 1
			if msb != a&1 {
				fl |= cpu.FlagOF
			}
		}
	default: // RCL, RCR: a (w+1)-bit rotate through CF
		mask = cpu.FlagCF | cpu.FlagOF
		rc := c
		if w < 32 {
			rc = c % uint64(w+1)
		}
		if rc == 0 {
			return e.zeroExtend(&dst, a)
		}
		cf := e.cf()
		if in.x.Op == x86asm.RCL {
			r = truncate(a<<rc|cf<<(rc-1)|a>>(uint64(w)+1-rc), w)
			fl = a >> (uint64(w) - rc) & 1
			if msb != next {
				fl |= cpu.FlagOF
			}
		} else {
			r = truncate(a>>rc|cf<<(uint64(w)-rc)|a<<(uint64(w)+1-rc), w)
			fl = a >> (rc - 1) & 1
			if msb != cf {
				fl |= cpu.FlagOF
			}
		}
	}
	if err := e.write(&dst, r); err != nil {
		return err
	}
	e.setFlags(mask, fl)
	return nil
}

// zeroExtend completes a shift or rotate that moves nothing: a 32-bit
// register destination still has its upper half cleared, as any 32-bit
// register write does.
func (e *emu) zeroExtend(dst *operand, a uint64) error {
	if dst.kind == opReg && dst.bits == 32 {
		return e.write(dst, a)
	}
	return nil
}

// shiftDouble is SHLD and SHRD. A 16-bit operand shifted by 17-31 (result
// undefined in the SDM) behaves on the Intel host as a shift of the 48-bit
// DEST:SRC:DEST (SHLD) or DEST:SRC:DEST from the other end (SHRD), which
// the formulas below reproduce; OF is as for the first 1-bit step, AF clear.
func (e *emu) shiftDouble(in *inst) error {
	w := argBits(in, 0)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	cnt, err := e.operand(in, 2, 8)
	if err != nil {
		return err
	}
	c, _ := e.read(&cnt)
	c = maskCount(c, w)
	a, err := e.readRMW(&dst)
	if err != nil {
		return err
	}
	if c == 0 {
		return e.zeroExtend(&dst, a)
	}
	b, _ := e.read(&src)
	msb := a >> uint(w-1) & 1
	var r, fl uint64
	if in.x.Op == x86asm.SHLD {
		if w == 16 {
			v := a<<32 | b<<16 | a
			r = v >> (32 - c) & 0xffff
			fl = v >> (48 - c) & 1
		} else {
			r = truncate(a<<c|b>>(uint64(w)-c), w)
			fl = a >> (uint64(w) - c) & 1
		}
		if msb != a>>uint(w-2)&1 {
			fl |= cpu.FlagOF
		}
	} else {
		if w == 16 {
			v := a | b<<16 | a<<32
			r = v >> c & 0xffff
			fl = v >> (c - 1) & 1
		} else {
			r = truncate(a>>c|b<<(uint64(w)-c), w)
			fl = a >> (c - 1) & 1
		}
		if msb != b&1 {
			fl |= cpu.FlagOF
		}
	}
	if err := e.write(&dst, r); err != nil {
		return err
	}
	e.setFlags(arithFlags, fl|szp(r, w))
	return nil
}

// bitTest is BT, BTS, BTR and BTC: CF := the bit, then set, clear or
// complement it. OF, SF, AF and PF are undefined; the Intel host leaves
// them unchanged. With a memory operand and a register offset, the offset
// is signed and may address memory beyond the operand.
func (e *emu) bitTest(in *inst) error {
	w := argBits(in, 0)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	off, _ := e.read(&src)
	if dst.kind == opMem && src.kind != opImm {
		// The operand is the w-bit unit holding the bit.
		so := int64(signExtend(off, w))
		unit := so >> uint(bits.TrailingZeros(uint(w)))
		dst.off = truncate(dst.off+uint64(unit*int64(w/8)), in.x.AddrSize)
	}
	off &= uint64(w - 1)
	var a uint64
	if in.x.Op == x86asm.BT {
		a, err = e.read(&dst)
	} else {
		a, err = e.readRMW(&dst)
	}
	if err != nil {
		return err
	}
	bit := uint64(1) << off
	var r uint64
	switch in.x.Op {
	case x86asm.BTS:
		r = a | bit
	case x86asm.BTR:
		r = a &^ bit
	case x86asm.BTC:
		r = a ^ bit
	}
	if in.x.Op != x86asm.BT {
		if err := e.write(&dst, r); err != nil {
			return err
		}
	}
	e.setFlags(cpu.FlagCF, a>>off&1)
	return nil
}

// bitScan is BSF and BSR. With a zero source the destination is left
// unchanged (whole register, as on the Intel host and documented by AMD)
// and ZF is set; the undefined flags are as on the host: CF, OF, SF and AF
// clear, PF from the result (set when the source is zero).
func (e *emu) bitScan(in *inst) error {
	w := argBits(in, 0)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	v, err := e.read(&src)
	if err != nil {
		return err
	}
	if v == 0 {
		e.setFlags(arithFlags, cpu.FlagZF|cpu.FlagPF)
		return nil
	}
	var r uint64
	if in.x.Op == x86asm.BSF {
		r = uint64(bits.TrailingZeros64(v))
	} else {
		r = uint64(63 - bits.LeadingZeros64(v))
	}
	if err := e.write(&dst, r); err != nil {
		return err
	}
	e.setFlags(arithFlags, parity(r))
	return nil
}
