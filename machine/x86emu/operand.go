package x86emu

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// opKind says where an operand lives.
type opKind uint8

const (
	opNone    opKind = iota
	opReg            // a general register, low bits
	opRegHigh        // AH, CH, DH or BH: bits 8-15 of register reg
	opMem            // memory at seg:off
	opImm            // an immediate, sign-extended by the decoder
)

// operand is an instruction argument resolved against the CPU state: the
// register or the segment and offset it names, and its width. Resolving
// once lets a read-modify-write instruction read and write the same place.
type operand struct {
	kind opKind
	bits int
	reg  int
	seg  segReg
	off  uint64
	imm  uint64
}

// regOf maps any x86asm general register (8, 16, 32 or 64-bit) to its
// number, width and whether it is a high-byte register.
func regOf(r x86asm.Reg) (idx, bits int, high, ok bool) {
	switch {
	case r >= x86asm.AL && r <= x86asm.BL:
		return int(r - x86asm.AL), 8, false, true
	case r >= x86asm.AH && r <= x86asm.BH:
		return int(r - x86asm.AH), 8, true, true
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return int(r-x86asm.SPB) + 4, 8, false, true
	}
	idx, bits, ok = gprOf(r)
	return idx, bits, false, ok
}

// operand resolves argument i of the instruction. memBits is the width of
// a memory operand (the decoder's MemBytes is not always the access size).
func (e *emu) operand(in *inst, i int, memBits int) (operand, error) {
	switch a := in.x.Args[i].(type) {
	case x86asm.Reg:
		idx, bits, high, ok := regOf(a)
		if !ok {
			return operand{}, e.unsupported(in, "unexpected register operand")
		}
		if high {
			return operand{kind: opRegHigh, bits: 8, reg: idx}, nil
		}
		return operand{kind: opReg, bits: bits, reg: idx}, nil
	case x86asm.Mem:
		seg, off, err := e.effAddr(a, in.x.AddrSize, in.next)
		if err != nil {
			return operand{}, err
		}
		return operand{kind: opMem, bits: memBits, seg: seg, off: off}, nil
	case x86asm.Imm:
		return operand{kind: opImm, bits: memBits, imm: uint64(a)}, nil
	}
	return operand{}, e.unsupported(in, "unexpected operand")
}

// reg is a register operand of the given number and width.
func regOperand(idx, bits int) operand { return operand{kind: opReg, bits: bits, reg: idx} }

// read returns the operand's value, zero-extended from its width.
func (e *emu) read(o *operand) (uint64, error) {
	switch o.kind {
	case opReg:
		return truncate(*e.gpr(o.reg), o.bits), nil
	case opRegHigh:
		return *e.gpr(o.reg) >> 8 & 0xff, nil
	case opMem:
		return e.readMem(o.seg, o.off, o.bits/8)
	}
	return truncate(o.imm, o.bits), nil
}

// write stores v into the operand with the register semantics of its
// width: 8 and 16-bit writes keep the other bits, 32-bit writes clear the
// upper half.
func (e *emu) write(o *operand, v uint64) error {
	switch o.kind {
	case opReg:
		p := e.gpr(o.reg)
		switch o.bits {
		case 8:
			*p = *p&^0xff | v&0xff
		case 16:
			*p = *p&^0xffff | v&0xffff
		case 32:
			*p = v & 0xffffffff
		default:
			*p = v
		}
		return nil
	case opRegHigh:
		p := e.gpr(o.reg)
		*p = *p&^0xff00 | v<<8&0xff00
		return nil
	case opMem:
		return e.writeMem(o.seg, o.off, o.bits/8, v)
	}
	return fmt.Errorf("x86emu: internal: write to an immediate")
}

// writeMem writes the low size bytes of v at r:off.
func (e *emu) writeMem(r segReg, off uint64, size int, v uint64) error {
	lin, err := e.linear(r, off, size, true)
	if err != nil {
		return err
	}
	buf := e.scratch()
	binary.LittleEndian.PutUint64(buf[:], v)
	return e.accessLin(lin, buf[:size], true, e.userAccess())
}

// readRMW reads a destination the instruction will also write. The
// processor checks write access before reading such an operand, so a #PF
// on it reports a write.
func (e *emu) readRMW(o *operand) (uint64, error) {
	if o.kind != opMem {
		return e.read(o)
	}
	size := o.bits / 8
	lin, err := e.linear(o.seg, o.off, size, true)
	if err != nil {
		return 0, err
	}
	if e.paging() {
		user := e.userAccess()
		last := (lin + uint64(size) - 1) & e.linMask()
		if _, err := e.phys(lin, true, user, false); err != nil {
			return 0, err
		}
		if last>>12 != lin>>12 {
			if _, err := e.phys(last&^0xfff, true, user, false); err != nil {
				return 0, err
			}
		}
	}
	buf := e.scratch()
	if err := e.accessLin(lin, buf[:size], false, e.userAccess()); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(buf[:]), nil
}
