package x86emu

import (
	"vmrr/machine/cpu"

	"golang.org/x/arch/x86/x86asm"
)

// String instructions. With a REP prefix each Step runs one iteration and
// leaves RIP at the instruction while more remain, so the machine can take
// an interrupt between iterations as the processor does; a count of zero
// at the start skips the instruction.

// repKind is the repeat prefix in effect.
type repKind int

const (
	repNone repKind = iota
	repE            // f3: REP, or REPE for CMPS and SCAS
	repNE           // f2: REPNE; plain REP for the others
)

func repPrefix(in *inst) repKind {
	for _, p := range in.x.Prefix {
		if p == 0 {
			break
		}
		if p&x86asm.PrefixIgnored != 0 {
			continue
		}
		switch p &^ (x86asm.PrefixImplicit | x86asm.PrefixInvalid) {
		case x86asm.PrefixREP:
			return repE
		case x86asm.PrefixREPN:
			return repNE
		}
	}
	return repNone
}

// stringBits is the element width of a string instruction.
func stringBits(op x86asm.Op) int {
	switch op {
	case x86asm.MOVSB, x86asm.CMPSB, x86asm.STOSB, x86asm.LODSB, x86asm.SCASB:
		return 8
	case x86asm.MOVSW, x86asm.CMPSW, x86asm.STOSW, x86asm.LODSW, x86asm.SCASW:
		return 16
	case x86asm.MOVSD, x86asm.CMPSD, x86asm.STOSD, x86asm.LODSD, x86asm.SCASD:
		return 32
	}
	return 64
}

// sourceSeg is the segment of the rSI operand: DS unless overridden.
func sourceSeg(in *inst) segReg {
	for _, a := range in.x.Args {
		m, ok := a.(x86asm.Mem)
		if !ok {
			continue
		}
		if m.Segment != x86asm.ES && m.Segment >= x86asm.ES && m.Segment <= x86asm.GS {
			return segReg(m.Segment - x86asm.ES)
		}
		if m.Segment == x86asm.ES && (m.Base == x86asm.SI || m.Base == x86asm.ESI || m.Base == x86asm.RSI) {
			return segES
		}
	}
	return segDS
}

func (e *emu) stringOp(in *inst) error {
	op := in.x.Op
	aw := in.x.AddrSize
	w := stringBits(op)
	n := w / 8
	rep := repPrefix(in)
	r := &e.c.Regs
	if rep != repNone && truncate(r.RCX, aw) == 0 {
		e.finish(in)
		return nil
	}
	delta := uint64(n)
	if r.RFLAGS&cpu.FlagDF != 0 {
		delta = -delta
	}
	si, di := truncate(r.RSI, aw), truncate(r.RDI, aw)
	acc := regOperand(0, w)
	compare := false
	switch op {
	case x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD, x86asm.MOVSQ:
		v, err := e.readMem(sourceSeg(in), si, n)
		if err != nil {
			return err
		}
		if err := e.writeMem(segES, di, n, v); err != nil {
			return err
		}
		e.setGPR(6, aw, si+delta)
		e.setGPR(7, aw, di+delta)
	case x86asm.CMPSB, x86asm.CMPSW, x86asm.CMPSD, x86asm.CMPSQ:
		a, err := e.readMem(sourceSeg(in), si, n)
		if err != nil {
			return err
		}
		b, err := e.readMem(segES, di, n)
		if err != nil {
			return err
		}
		_, fl := subFlags(a, b, 0, w)
		e.setFlags(arithFlags, fl)
		e.setGPR(6, aw, si+delta)
		e.setGPR(7, aw, di+delta)
		compare = true
	case x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.STOSQ:
		v, _ := e.read(&acc)
		if err := e.writeMem(segES, di, n, v); err != nil {
			return err
		}
		e.setGPR(7, aw, di+delta)
	case x86asm.LODSB, x86asm.LODSW, x86asm.LODSD, x86asm.LODSQ:
		v, err := e.readMem(sourceSeg(in), si, n)
		if err != nil {
			return err
		}
		_ = e.write(&acc, v)
		e.setGPR(6, aw, si+delta)
	default: // SCAS
		a, _ := e.read(&acc)
		b, err := e.readMem(segES, di, n)
		if err != nil {
			return err
		}
		_, fl := subFlags(a, b, 0, w)
		e.setFlags(arithFlags, fl)
		e.setGPR(7, aw, di+delta)
		compare = true
	}
	if rep == repNone {
		e.finish(in)
		return nil
	}
	cnt := truncate(r.RCX-1, aw)
	e.setGPR(1, aw, cnt)
	more := cnt != 0
	if compare {
		zf := e.flag(cpu.FlagZF)
		more = more && zf == (rep == repE)
	}
	if !more {
		e.finish(in)
	}
	return nil
}
