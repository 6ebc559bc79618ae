package x86emu

import (
	"math/bits"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// execGeneral executes the general-purpose integer instructions: data
// movement, arithmetic and logic, shifts and rotates, bit operations,
// control transfers within the code segment and string instructions. It
// reports whether it knows the instruction; when it does, it has set RIP.
func (e *emu) execGeneral(in *inst) (bool, error) {
	x := &in.x
	var err error
	switch x.Op {
	case x86asm.ADD, x86asm.OR, x86asm.ADC, x86asm.SBB, x86asm.AND, x86asm.SUB, x86asm.XOR,
		x86asm.CMP, x86asm.TEST:
		err = e.alu(in)
	case x86asm.INC, x86asm.DEC, x86asm.NOT, x86asm.NEG:
		err = e.unary(in)
	case x86asm.MUL, x86asm.IMUL:
		err = e.mul(in)
	case x86asm.DIV, x86asm.IDIV:
		err = e.div(in)
	case x86asm.MOV:
		if !gprArgs(in) {
			// Segment, control and debug registers are system state.
			return false, nil
		}
		err = e.mov(in)
	case x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD:
		err = e.movx(in)
	case x86asm.LEA:
		err = e.lea(in)
	case x86asm.XCHG:
		err = e.xchg(in)
	case x86asm.XADD:
		err = e.xadd(in)
	case x86asm.CMPXCHG:
		err = e.cmpxchg(in)
	case x86asm.CMPXCHG8B, x86asm.CMPXCHG16B:
		err = e.cmpxchg8b(in)
	case x86asm.BSWAP:
		err = e.bswap(in)
	case x86asm.CBW, x86asm.CWDE, x86asm.CDQE:
		w := x.DataSize
		e.setGPR(0, w, signExtend(truncate(e.c.Regs.RAX, w/2), w/2))
	case x86asm.CWD, x86asm.CDQ, x86asm.CQO:
		w := x.DataSize
		var v uint64
		if e.c.Regs.RAX&signOf(w) != 0 {
			v = ^uint64(0)
		}
		e.setGPR(2, w, v)
	case x86asm.SHL, x86asm.SHR, x86asm.SAR, x86asm.ROL, x86asm.ROR, x86asm.RCL, x86asm.RCR:
		err = e.shift(in)
	case x86asm.SHLD, x86asm.SHRD:
		err = e.shiftDouble(in)
	case x86asm.BT, x86asm.BTS, x86asm.BTR, x86asm.BTC:
		err = e.bitTest(in)
	case x86asm.BSF, x86asm.BSR:
		err = e.bitScan(in)
	case x86asm.SETO, x86asm.SETNO, x86asm.SETB, x86asm.SETAE, x86asm.SETE, x86asm.SETNE,
		x86asm.SETBE, x86asm.SETA, x86asm.SETS, x86asm.SETNS, x86asm.SETP, x86asm.SETNP,
		x86asm.SETL, x86asm.SETGE, x86asm.SETLE, x86asm.SETG:
		err = e.setcc(in)
	case x86asm.CMOVO, x86asm.CMOVNO, x86asm.CMOVB, x86asm.CMOVAE, x86asm.CMOVE, x86asm.CMOVNE,
		x86asm.CMOVBE, x86asm.CMOVA, x86asm.CMOVS, x86asm.CMOVNS, x86asm.CMOVP, x86asm.CMOVNP,
		x86asm.CMOVL, x86asm.CMOVGE, x86asm.CMOVLE, x86asm.CMOVG:
		err = e.cmov(in)
	case x86asm.JO, x86asm.JNO, x86asm.JB, x86asm.JAE, x86asm.JE, x86asm.JNE, x86asm.JBE, x86asm.JA,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP, x86asm.JL, x86asm.JGE, x86asm.JLE, x86asm.JG:
		if e.cond(condCode(in)) {
			return true, e.jumpRel(in)
		}
	case x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ:
		if truncate(e.c.Regs.RCX, x.AddrSize) == 0 {
			return true, e.jumpRel(in)
		}
	case x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		return true, e.loop(in)
	case x86asm.JMP:
		return true, e.jmpNear(in)
	case x86asm.CALL:
		return true, e.callNear(in)
	case x86asm.RET:
		return true, e.retNear(in)
	case x86asm.PUSH:
		if !gprArgs(in) {
			return false, nil
		}
		err = e.pushOp(in)
	case x86asm.POP:
		if !gprArgs(in) {
			return false, nil
		}
		err = e.popOp(in)
	case x86asm.PUSHA, x86asm.PUSHAD:
		err = e.pusha(in)
	case x86asm.POPA, x86asm.POPAD:
		err = e.popa(in)
	case x86asm.PUSHF, x86asm.PUSHFD, x86asm.PUSHFQ:
		err = e.pushf(in)
	case x86asm.POPF, x86asm.POPFD, x86asm.POPFQ:
		err = e.popf(in)
	case x86asm.ENTER:
		err = e.enter(in)
	case x86asm.LEAVE:
		err = e.leave(in)
	case x86asm.LAHF:
		f := e.c.Regs.RFLAGS
		ah := f&(cpu.FlagSF|cpu.FlagZF|cpu.FlagAF|cpu.FlagPF|cpu.FlagCF) | flagFixed
		e.c.Regs.RAX = e.c.Regs.RAX&^0xff00 | ah<<8
	case x86asm.SAHF:
		e.setFlags(cpu.FlagSF|cpu.FlagZF|cpu.FlagAF|cpu.FlagPF|cpu.FlagCF, e.c.Regs.RAX>>8)
	case x86asm.CLC:
		e.setFlags(cpu.FlagCF, 0)
	case x86asm.STC:
		e.setFlags(cpu.FlagCF, cpu.FlagCF)
	case x86asm.CMC:
		e.c.Regs.RFLAGS ^= cpu.FlagCF
	case x86asm.CLD:
		e.setFlags(cpu.FlagDF, 0)
	case x86asm.STD:
		e.setFlags(cpu.FlagDF, cpu.FlagDF)
	case x86asm.NOP, x86asm.PAUSE, x86asm.PREFETCHNTA, x86asm.PREFETCHT0, x86asm.PREFETCHT1,
		x86asm.PREFETCHT2, x86asm.PREFETCHW, x86asm.LFENCE, x86asm.MFENCE, x86asm.SFENCE:
		// Hints and fences: one CPU, no caches, no reordering.
	case x86asm.XLATB:
		err = e.xlat(in)
	case x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD, x86asm.MOVSQ,
		x86asm.CMPSB, x86asm.CMPSW, x86asm.CMPSD, x86asm.CMPSQ,
		x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.STOSQ,
		x86asm.LODSB, x86asm.LODSW, x86asm.LODSD, x86asm.LODSQ,
		x86asm.SCASB, x86asm.SCASW, x86asm.SCASD, x86asm.SCASQ:
		if x.Op == x86asm.MOVSD && x.Opcode>>24 != 0xa5 {
			return false, nil // the SSE2 MOVSD shares the mnemonic
		}
		if x.Op == x86asm.CMPSD && x.Opcode>>24 != 0xa7 {
			return false, nil
		}
		return true, e.stringOp(in)
	case x86asm.DAA, x86asm.DAS, x86asm.AAA, x86asm.AAS, x86asm.AAM, x86asm.AAD:
		err = e.bcd(in)
	default:
		return false, nil
	}
	if err != nil {
		return true, err
	}
	e.finish(in)
	return true, nil
}

// gprArgs reports whether every argument is a general register, memory or
// an immediate (not a segment, control or debug register).
func gprArgs(in *inst) bool {
	for _, a := range in.x.Args {
		switch a := a.(type) {
		case nil:
			return true
		case x86asm.Reg:
			if _, _, _, ok := regOf(a); !ok {
				return false
			}
		}
	}
	return true
}

// argBits is the width of argument i: a register's own, a memory
// operand's from the decoder, 0 for anything else.
func argBits(in *inst, i int) int {
	switch a := in.x.Args[i].(type) {
	case x86asm.Reg:
		_, b, _, _ := regOf(a)
		return b
	case x86asm.Mem:
		return in.x.MemBytes * 8
	}
	return 0
}

// operands resolves a destination and a source of width w.
func (e *emu) operands(in *inst, w int) (dst, src operand, err error) {
	if dst, err = e.operand(in, 0, w); err != nil {
		return
	}
	src, err = e.operand(in, 1, w)
	return
}

func (e *emu) cf() uint64 { return e.c.Regs.RFLAGS & cpu.FlagCF }

// alu is the two-operand arithmetic and logic instructions.
func (e *emu) alu(in *inst) error {
	op := in.x.Op
	w := argBits(in, 0)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	store := op != x86asm.CMP && op != x86asm.TEST
	var a uint64
	if store {
		a, err = e.readRMW(&dst)
	} else {
		a, err = e.read(&dst)
	}
	if err != nil {
		return err
	}
	b, err := e.read(&src)
	if err != nil {
		return err
	}
	var r, fl uint64
	switch op {
	case x86asm.ADD:
		r, fl = addFlags(a, b, 0, w)
	case x86asm.ADC:
		r, fl = addFlags(a, b, e.cf(), w)
	case x86asm.SUB, x86asm.CMP:
		r, fl = subFlags(a, b, 0, w)
	case x86asm.SBB:
		r, fl = subFlags(a, b, e.cf(), w)
	case x86asm.AND, x86asm.TEST:
		r = a & b
		fl = logicFlags(r, w)
	case x86asm.OR:
		r = a | b
		fl = logicFlags(r, w)
	default:
		r = a ^ b
		fl = logicFlags(r, w)
	}
	if store {
		if err := e.write(&dst, r); err != nil {
			return err
		}
	}
	e.setFlags(arithFlags, fl)
	return nil
}

// unary is INC, DEC, NOT and NEG.
func (e *emu) unary(in *inst) error {
	w := argBits(in, 0)
	dst, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	a, err := e.readRMW(&dst)
	if err != nil {
		return err
	}
	var r, fl uint64
	mask := uint64(arithFlags)
	switch in.x.Op {
	case x86asm.INC:
		r, fl = addFlags(a, 1, 0, w)
		mask &^= cpu.FlagCF
	case x86asm.DEC:
		r, fl = subFlags(a, 1, 0, w)
		mask &^= cpu.FlagCF
	case x86asm.NOT:
		r, mask = ^a, 0
	default:
		r, fl = subFlags(0, a, 0, w)
	}
	if err := e.write(&dst, r); err != nil {
		return err
	}
	e.setFlags(mask, fl)
	return nil
}

// mulFlags are the flags of MUL and IMUL: CF and OF say the high half is
// significant. SF, ZF, AF and PF are undefined; the Intel host sets SF and
// PF from the low half of the result and clears ZF and AF.
func mulFlags(lo uint64, w int, overflow bool) uint64 {
	fl := parity(lo)
	if lo&signOf(w) != 0 {
		fl |= cpu.FlagSF
	}
	if overflow {
		fl |= cpu.FlagCF | cpu.FlagOF
	}
	return fl
}

// mulSigned multiplies two w-bit signed values: the low and high halves of
// the 2w-bit product.
func mulSigned(a, b uint64, w int) (lo, hi uint64) {
	sa, sb := signExtend(a, w), signExtend(b, w)
	if w < 64 {
		p := uint64(int64(sa) * int64(sb))
		return truncate(p, w), truncate(p>>uint(w), w)
	}
	hi, lo = bits.Mul64(sa, sb)
	if int64(sa) < 0 {
		hi -= sb
	}
	if int64(sb) < 0 {
		hi -= sa
	}
	return lo, hi
}

// mul is MUL and the one, two and three-operand IMUL.
func (e *emu) mul(in *inst) error {
	x := &in.x
	if x.Op == x86asm.IMUL && x.Args[1] != nil {
		w := argBits(in, 0)
		dst, src, err := e.operands(in, w)
		if err != nil {
			return err
		}
		a, err := e.read(&dst)
		if err != nil {
			return err
		}
		b, err := e.read(&src)
		if err != nil {
			return err
		}
		if x.Args[2] != nil {
			a = b
			imm, err := e.operand(in, 2, w)
			if err != nil {
				return err
			}
			b, _ = e.read(&imm)
		}
		lo, hi := mulSigned(a, b, w)
		if err := e.write(&dst, lo); err != nil {
			return err
		}
		e.setFlags(arithFlags, mulFlags(lo, w, hi != signFill(lo, w)))
		return nil
	}
	w := argBits(in, 0)
	src, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	b, err := e.read(&src)
	if err != nil {
		return err
	}
	a := truncate(e.c.Regs.RAX, w)
	var lo, hi uint64
	var overflow bool
	if x.Op == x86asm.MUL {
		if w == 64 {
			hi, lo = bits.Mul64(a, b)
		} else {
			p := a * b
			lo, hi = truncate(p, w), p>>uint(w)
		}
		overflow = hi != 0
	} else {
		lo, hi = mulSigned(a, b, w)
		overflow = hi != signFill(lo, w)
	}
	if w == 8 {
		e.setGPR(0, 16, hi<<8|lo)
	} else {
		e.setGPR(0, w, lo)
		e.setGPR(2, w, hi)
	}
	e.setFlags(arithFlags, mulFlags(lo, w, overflow))
	return nil
}

// div is DIV and IDIV. #DE on a zero divisor or a quotient that does not
// fit. The flags are undefined; the Intel host leaves them unchanged.
func (e *emu) div(in *inst) error {
	w := argBits(in, 0)
	src, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	d, err := e.read(&src)
	if err != nil {
		return err
	}
	if d == 0 {
		return &exception{vector: vecDE}
	}
	var hi, lo uint64
	if w == 8 {
		hi, lo = e.c.Regs.RAX>>8&0xff, e.c.Regs.RAX&0xff
	} else {
		hi, lo = truncate(e.c.Regs.RDX, w), truncate(e.c.Regs.RAX, w)
	}
	var q, r uint64
	if in.x.Op == x86asm.DIV {
		if hi >= d {
			return &exception{vector: vecDE}
		}
		if w == 64 {
			q, r = bits.Div64(hi, lo, d)
		} else {
			n := hi<<uint(w) | lo
			q, r = n/d, n%d
		}
	} else {
		var ok bool
		if q, r, ok = idiv(hi, lo, d, w); !ok {
			return &exception{vector: vecDE}
		}
	}
	if w == 8 {
		e.c.Regs.RAX = e.c.Regs.RAX&^0xffff | r<<8 | q
	} else {
		e.setGPR(0, w, q)
		e.setGPR(2, w, r)
	}
	return nil
}

// idiv divides the signed 2w-bit hi:lo by the signed w-bit d (not zero);
// ok is false when the quotient does not fit in w bits.
func idiv(hi, lo, d uint64, w int) (q, r uint64, ok bool) {
	// Divide magnitudes as a 128-bit dividend, then apply the signs.
	var nhi, nlo uint64
	if w == 64 {
		nhi, nlo = hi, lo
	} else {
		n := signExtend(hi<<uint(w)|lo, 2*w)
		nhi, nlo = uint64(int64(n)>>63), n
	}
	neg := int64(nhi) < 0
	if neg {
		var borrow uint64
		nlo, borrow = bits.Sub64(0, nlo, 0)
		nhi, _ = bits.Sub64(0, nhi, borrow)
	}
	sd := signExtend(d, w)
	dneg := int64(sd) < 0
	ad := sd
	if dneg {
		ad = -sd
	}
	if nhi >= ad {
		return 0, 0, false
	}
	uq, ur := bits.Div64(nhi, nlo, ad)
	limit := signOf(w) // |quotient| may reach 2^(w-1) only when negative
	if neg != dneg {
		if uq > limit {
			return 0, 0, false
		}
		uq = -uq
	} else if uq >= limit {
		return 0, 0, false
	}
	if neg {
		ur = -ur
	}
	return truncate(uq, w), truncate(ur, w), true
}

// mov is MOV between general registers, memory and immediates.
func (e *emu) mov(in *inst) error {
	w := argBits(in, 0)
	if w == 0 {
		return e.unsupported(in, "unexpected destination")
	}
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	v, err := e.read(&src)
	if err != nil {
		return err
	}
	return e.write(&dst, v)
}

// movx is MOVZX, MOVSX and MOVSXD.
func (e *emu) movx(in *inst) error {
	w, sw := argBits(in, 0), argBits(in, 1)
	dst, src, err := e.operands(in, sw)
	if err != nil {
		return err
	}
	dst.bits = w
	v, err := e.read(&src)
	if err != nil {
		return err
	}
	if in.x.Op != x86asm.MOVZX {
		v = signExtend(v, sw)
	}
	return e.write(&dst, v)
}

// lea stores the offset of its memory operand, truncated to the operand size.
func (e *emu) lea(in *inst) error {
	m, ok := in.x.Args[1].(x86asm.Mem)
	if !ok {
		return &exception{vector: vecUD}
	}
	w := argBits(in, 0)
	m.Segment = 0
	_, off, err := e.effAddr(m, in.x.AddrSize, in.next)
	if err != nil {
		return err
	}
	dst, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	return e.write(&dst, off)
}

// xchg swaps its operands (locked on hardware when one is memory).
func (e *emu) xchg(in *inst) error {
	w := argBits(in, 0)
	a, b, err := e.operands(in, w)
	if err != nil {
		return err
	}
	if a.kind != opMem {
		a, b = b, a
	}
	va, err := e.readRMW(&a)
	if err != nil {
		return err
	}
	vb, err := e.read(&b)
	if err != nil {
		return err
	}
	if err := e.write(&a, vb); err != nil {
		return err
	}
	return e.write(&b, va)
}

// xadd is DEST := DEST + SRC, SRC := old DEST.
func (e *emu) xadd(in *inst) error {
	w := argBits(in, 1)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	a, err := e.readRMW(&dst)
	if err != nil {
		return err
	}
	b, err := e.read(&src)
	if err != nil {
		return err
	}
	r, fl := addFlags(a, b, 0, w)
	if dst.kind == opMem {
		// The memory write comes first: if it faults, SRC is unchanged.
		if err := e.write(&dst, r); err != nil {
			return err
		}
		_ = e.write(&src, a)
	} else {
		_ = e.write(&src, a)
		_ = e.write(&dst, r)
	}
	e.setFlags(arithFlags, fl)
	return nil
}

// cmpxchg compares the accumulator with DEST: equal, DEST := SRC; else the
// accumulator := DEST. A memory DEST is written either way (with its own
// value on a mismatch); a register DEST is left alone on a mismatch (so a
// 32-bit one keeps its upper half, as on the Intel host).
func (e *emu) cmpxchg(in *inst) error {
	w := argBits(in, 1)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	old, err := e.readRMW(&dst)
	if err != nil {
		return err
	}
	acc := regOperand(0, w)
	a, _ := e.read(&acc)
	_, fl := subFlags(a, old, 0, w)
	if a == old {
		v, err := e.read(&src)
		if err != nil {
			return err
		}
		if err := e.write(&dst, v); err != nil {
			return err
		}
	} else {
		if dst.kind == opMem {
			if err := e.write(&dst, old); err != nil {
				return err
			}
		}
		_ = e.write(&acc, old)
	}
	e.setFlags(arithFlags, fl)
	return nil
}

// cmpxchg8b is CMPXCHG8B m64 and CMPXCHG16B m128 (16-byte aligned, #GP(0)
// otherwise): compare rDX:rAX with memory; equal, memory := rCX:rBX and
// ZF=1; else rDX:rAX := memory and ZF=0. Memory is written either way.
func (e *emu) cmpxchg8b(in *inst) error {
	m, ok := in.x.Args[0].(x86asm.Mem)
	if !ok {
		return &exception{vector: vecUD}
	}
	half := 32
	if in.x.Op == x86asm.CMPXCHG16B {
		half = 64
	}
	seg, off, err := e.effAddr(m, in.x.AddrSize, in.next)
	if err != nil {
		return err
	}
	if half == 64 && off&15 != 0 {
		return gpErr(0)
	}
	n := half / 8
	lo := operand{kind: opMem, bits: half, seg: seg, off: off}
	hi := operand{kind: opMem, bits: half, seg: seg, off: truncate(off+uint64(n), in.x.AddrSize)}
	if _, err := e.linear(seg, off, 2*n, true); err != nil {
		return err
	}
	mlo, err := e.readRMW(&lo)
	if err != nil {
		return err
	}
	mhi, err := e.readRMW(&hi)
	if err != nil {
		return err
	}
	r := &e.c.Regs
	if mlo == truncate(r.RAX, half) && mhi == truncate(r.RDX, half) {
		if err := e.write(&lo, r.RBX); err != nil {
			return err
		}
		if err := e.write(&hi, r.RCX); err != nil {
			return err
		}
		e.setFlags(cpu.FlagZF, cpu.FlagZF)
		return nil
	}
	if err := e.write(&lo, mlo); err != nil {
		return err
	}
	if err := e.write(&hi, mhi); err != nil {
		return err
	}
	e.setGPR(0, half, mlo)
	e.setGPR(2, half, mhi)
	e.setFlags(cpu.FlagZF, 0)
	return nil
}

// bswap reverses the bytes of a 32 or 64-bit register. The 16-bit form is
// undefined; the Intel host clears the low 16 bits.
func (e *emu) bswap(in *inst) error {
	w := argBits(in, 0)
	dst, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	v, _ := e.read(&dst)
	switch w {
	case 64:
		v = bits.ReverseBytes64(v)
	case 32:
		v = uint64(bits.ReverseBytes32(uint32(v)))
	default:
		v = 0
	}
	return e.write(&dst, v)
}

// setcc stores 1 or 0 in a byte.
func (e *emu) setcc(in *inst) error {
	dst, err := e.operand(in, 0, 8)
	if err != nil {
		return err
	}
	var v uint64
	if e.cond(condCode(in)) {
		v = 1
	}
	return e.write(&dst, v)
}

// cmov moves when the condition holds. The source is read (and may fault)
// either way, and a 32-bit destination is zero-extended either way.
func (e *emu) cmov(in *inst) error {
	w := argBits(in, 0)
	dst, src, err := e.operands(in, w)
	if err != nil {
		return err
	}
	v, err := e.read(&src)
	if err != nil {
		return err
	}
	if !e.cond(condCode(in)) {
		if v, err = e.read(&dst); err != nil {
			return err
		}
	}
	return e.write(&dst, v)
}

// xlat is AL := [seg:rBX + AL].
func (e *emu) xlat(in *inst) error {
	seg := segDS
	if m, ok := in.x.Args[0].(x86asm.Mem); ok && m.Segment >= x86asm.ES && m.Segment <= x86asm.GS {
		seg = segReg(m.Segment - x86asm.ES)
	}
	aw := in.x.AddrSize
	off := truncate(truncate(e.c.Regs.RBX, aw)+e.c.Regs.RAX&0xff, aw)
	v, err := e.readMem(seg, off, 1)
	if err != nil {
		return err
	}
	e.c.Regs.RAX = e.c.Regs.RAX&^0xff | v
	return nil
}

// bcd is the decimal adjustments, all #UD in 64-bit mode. The flags the
// SDM leaves undefined (OF for DAA and DAS; OF, SF, ZF, PF for AAA and AAS;
// OF, AF, CF for AAM and AAD) are computed as QEMU does: OF, AF and CF
// clear, SF, ZF and PF from AL.
func (e *emu) bcd(in *inst) error {
	if e.mode == modeLong64 {
		return &exception{vector: vecUD}
	}
	r := &e.c.Regs
	al := r.RAX & 0xff
	cf, af := r.RFLAGS&cpu.FlagCF != 0, r.RFLAGS&cpu.FlagAF != 0
	var fl uint64
	switch in.x.Op {
	case x86asm.DAA:
		old := al
		if al&0xf > 9 || af {
			al = (al + 6) & 0xff
			fl |= cpu.FlagAF
		}
		if old > 0x99 || cf {
			al = (al + 0x60) & 0xff
			fl |= cpu.FlagCF
		}
		r.RAX = r.RAX&^0xff | al
	case x86asm.DAS:
		old := al
		if al&0xf > 9 || af {
			if al < 6 || cf {
				fl |= cpu.FlagCF
			}
			al = (al - 6) & 0xff
			fl |= cpu.FlagAF
		}
		if old > 0x99 || cf {
			al = (al - 0x60) & 0xff
			fl |= cpu.FlagCF
		}
		r.RAX = r.RAX&^0xff | al
	case x86asm.AAA, x86asm.AAS:
		ax := r.RAX & 0xffff
		if al&0xf > 9 || af {
			if in.x.Op == x86asm.AAA {
				ax += 0x106
			} else {
				ax = (ax - 6 - 0x100) & 0xffff
			}
			fl = cpu.FlagAF | cpu.FlagCF
		}
		ax = ax&0xff00 | ax&0x0f
		al = ax & 0xff
		r.RAX = r.RAX&^0xffff | ax&0xffff
	case x86asm.AAM:
		base := uint64(in.x.Args[0].(x86asm.Imm)) & 0xff
		if base == 0 {
			return &exception{vector: vecDE}
		}
		ah := al / base
		al %= base
		r.RAX = r.RAX&^0xffff | ah<<8 | al
	case x86asm.AAD:
		base := uint64(in.x.Args[0].(x86asm.Imm)) & 0xff
		al = (al + (r.RAX>>8&0xff)*base) & 0xff
		r.RAX = r.RAX&^0xffff | al
	}
	fl |= szp(al, 8)
	e.setFlags(arithFlags, fl)
	return nil
}
