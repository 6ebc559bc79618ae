package x86emu

import (
	"encoding/binary"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// ioAllowed checks the I/O permission bitmap in the TSS when the CPL may
// not do I/O by IOPL alone (SDM vol. 1, 19.5): every bit of the size ports
// from port must be clear, and both bitmap bytes inside the TSS limit.
func (e *emu) ioAllowed(port uint16, size int) error {
	if e.mode == modeReal || e.mode != modeVM86 && e.cpl() <= e.iopl() {
		return nil
	}
	tr := &e.c.Sregs.TR
	// Only 32-bit (and 64-bit) TSSs, types 9 and 11, have a bitmap.
	if tr.Unusable != 0 || tr.Typ&^2 != 9 || tr.Limit < 103 {
		return gpErr(0)
	}
	b := e.scratch()
	if err := e.readSys(tr.Base+102, b[:2]); err != nil {
		return err
	}
	at := uint64(binary.LittleEndian.Uint16(b[:])) + uint64(port>>3)
	if at+1 > uint64(tr.Limit) {
		return gpErr(0)
	}
	b = e.scratch()
	if err := e.readSys(tr.Base+at, b[:2]); err != nil {
		return err
	}
	mask := uint16(1)<<size - 1
	if binary.LittleEndian.Uint16(b[:])>>(port&7)&mask != 0 {
		return gpErr(0)
	}
	return nil
}

// ioSize is the width of AL, AX or EAX.
func ioSize(r x86asm.Reg) int {
	switch r {
	case x86asm.AL:
		return 1
	case x86asm.AX:
		return 2
	}
	return 4
}

// inOut is IN and OUT with an immediate port or DX. An error of Env.In or
// Env.Out ends the Step with the CPU as it was.
func (e *emu) inOut(in *inst) error {
	x := &in.x
	portArg, regArg := x.Args[0], x.Args[1]
	if x.Op == x86asm.IN {
		portArg, regArg = regArg, portArg
	}
	reg, ok := regArg.(x86asm.Reg)
	if !ok {
		return e.unsupported(in, "unexpected operand")
	}
	var port uint16
	switch p := portArg.(type) {
	case x86asm.Imm:
		port = uint16(p)
	case x86asm.Reg:
		port = uint16(e.c.Regs.RDX)
	default:
		return e.unsupported(in, "unexpected port operand")
	}
	size := ioSize(reg)
	if err := e.ioAllowed(port, size); err != nil {
		return err
	}
	rax := &e.c.Regs.RAX
	if x.Op == x86asm.OUT {
		if err := e.env.Out(port, size, uint32(*rax)&(1<<(8*size)-1)); err != nil {
			return err
		}
	} else {
		v, err := e.env.In(port, size)
		if err != nil {
			return err
		}
		switch size {
		case 1:
			*rax = *rax&^0xff | uint64(v&0xff)
		case 2:
			*rax = *rax&^0xffff | uint64(v&0xffff)
		default:
			*rax = uint64(v)
		}
	}
	e.finish(in)
	return nil
}

// stringIO is INS and OUTS, one element per Step: with REP, RIP stays on
// the instruction until the count runs out, so that an interrupt or a
// device exit can come between elements as on the processor.
func (e *emu) stringIO(in *inst) error {
	x := &in.x
	c := e.c
	size := 1
	switch x.Op {
	case x86asm.INSW, x86asm.OUTSW:
		size = 2
	case x86asm.INSD, x86asm.OUTSD:
		size = 4
	}
	isIn := x.Op == x86asm.INSB || x.Op == x86asm.INSW || x.Op == x86asm.INSD
	rep := hasPrefix(x, x86asm.PrefixREP) || hasPrefix(x, x86asm.PrefixREPN)
	abits := x.AddrSize
	count := truncate(c.Regs.RCX, abits)
	if rep && count == 0 {
		e.finish(in)
		return nil
	}
	port := uint16(c.Regs.RDX)
	if err := e.ioAllowed(port, size); err != nil {
		return err
	}
	step := uint64(size)
	if c.Regs.RFLAGS&cpu.FlagDF != 0 {
		step = -step
	}
	b := e.scratch()
	if isIn {
		// The destination is always ES, and it is checked (segment and
		// page) before the port is read: a device read has side effects
		// that a fault afterwards would lose.
		off := truncate(c.Regs.RDI, abits)
		lin, err := e.linear(segES, off, size, true)
		if err != nil {
			return err
		}
		user := e.userAccess()
		if _, err := e.phys(lin, true, user, false); err != nil {
			return err
		}
		if _, err := e.phys((lin+uint64(size)-1)&e.linMask(), true, user, false); err != nil {
			return err
		}
		v, err := e.env.In(port, size)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(b[:], v)
		if err := e.accessLin(lin, b[:size], true, user); err != nil {
			return err
		}
		e.setIndex(7, abits, off+step)
	} else {
		seg := segDS
		if m, ok := x.Args[1].(x86asm.Mem); ok && m.Segment != 0 {
			seg = segOf(m.Segment)
		}
		off := truncate(c.Regs.RSI, abits)
		if err := e.readAt(seg, off, b[:size]); err != nil {
			return err
		}
		if err := e.env.Out(port, size, binary.LittleEndian.Uint32(b[:])); err != nil {
			return err
		}
		e.setIndex(6, abits, off+step)
	}
	if rep {
		count--
		e.setIndex(1, abits, count)
		if count != 0 {
			return nil
		}
	}
	e.finish(in)
	return nil
}

// setIndex writes a string instruction's index or count register at the
// address size: a 16-bit one keeps the upper bits, a 32-bit one zeroes them.
func (e *emu) setIndex(reg, abits int, v uint64) {
	e.setGPR(reg, abits, truncate(v, abits))
}
