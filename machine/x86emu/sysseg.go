package x86emu

import (
	"encoding/binary"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// loadSeg loads data or stack segment register r with sel (SDM MOV,
// "Loading a segment register while in protected mode"): in real mode only
// the selector and base change; in protected mode the descriptor is
// checked and its accessed bit set.
func (e *emu) loadSeg(r segReg, sel uint16) error {
	s := e.seg(r)
	if e.mode == modeReal {
		*s = realSegment(*s, sel)
		return nil
	}
	cpl := e.cpl()
	if sel&^3 == 0 {
		switch {
		case r != segSS:
			*s = nullSegment(sel)
		case e.mode == modeLong64 && cpl != 3 && int(sel&3) == cpl:
			// 64-bit code below CPL3 may run on a null SS.
			*s = flatNullSS(cpl)
			s.Selector = sel
		default:
			return gpErr(0)
		}
		return nil
	}
	d, ok, err := e.readDesc(sel)
	if err != nil {
		return err
	}
	rpl, code := int(sel&3), selCode(sel, 0)
	if r == segSS {
		switch {
		case !ok, rpl != cpl, !d.writableData(), d.dpl() != cpl:
			return gpErr(code)
		case !d.present():
			return ssErr(code)
		}
	} else {
		readable := !d.system() && (!d.code() || d.typ()&2 != 0)
		switch {
		case !ok, !readable,
			!d.conforming() && (rpl > d.dpl() || cpl > d.dpl()):
			return gpErr(code)
		case !d.present():
			return npErr(code)
		}
	}
	if err := e.markAccessed(sel, &d); err != nil {
		return err
	}
	*s = d.segment(sel)
	return nil
}

// movToSeg is MOV Sreg, r/m16. Loading SS blocks interrupts for one
// instruction, so that the stack pointer can follow.
func (e *emu) movToSeg(in *inst, dst x86asm.Reg, src x86asm.Arg) error {
	if dst == x86asm.CS {
		return &exception{vector: vecUD}
	}
	sel, err := e.readRM16(in, src)
	if err != nil {
		return err
	}
	r := segOf(dst)
	if err := e.loadSeg(r, sel); err != nil {
		return err
	}
	if r == segSS {
		e.c.Shadow = true
	}
	e.finish(in)
	return nil
}

// stackOpSize is the operand size in bytes of PUSH and POP of a segment
// register: 64 bits by default in 64-bit mode, where only 66 shrinks it.
func (e *emu) stackOpSize(in *inst) int {
	if e.mode == modeLong64 {
		if hasPrefix(&in.x, x86asm.PrefixDataSize) {
			return 2
		}
		return 8
	}
	return in.x.DataSize / 8
}

func (e *emu) pushSeg(in *inst, r segReg) error {
	if e.mode == modeLong64 && r < segFS {
		return &exception{vector: vecUD}
	}
	if err := e.push(uint64(e.seg(r).Selector), e.stackOpSize(in)); err != nil {
		return err
	}
	e.finish(in)
	return nil
}

func (e *emu) popSeg(in *inst, r segReg) error {
	if r == segCS || e.mode == modeLong64 && r < segFS {
		return &exception{vector: vecUD}
	}
	v, err := e.pop(e.stackOpSize(in))
	if err != nil {
		return err
	}
	if err := e.loadSeg(r, uint16(v)); err != nil {
		return err
	}
	if r == segSS {
		e.c.Shadow = true
	}
	e.finish(in)
	return nil
}

// readFarPtr reads an m16:16, m16:32 or m16:64 far pointer: the offset,
// then the selector.
func (e *emu) readFarPtr(in *inst, a x86asm.Arg, size int) (sel uint16, off uint64, err error) {
	seg, addr, err := e.memOperand(in, a)
	if err != nil {
		return 0, 0, err
	}
	b := e.scratch()
	if err := e.readAt(seg, addr, b[:size+2]); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint16(b[size:]), truncate(binary.LittleEndian.Uint64(b[:]), size*8), nil
}

// loadFarPointer is LDS, LES, LFS, LGS and LSS r, m16:n.
func (e *emu) loadFarPointer(in *inst) error {
	x := &in.x
	dst, _ := x.Args[0].(x86asm.Reg)
	di, bits, ok := gprOf(dst)
	if !ok {
		return e.unsupported(in, "unexpected destination operand")
	}
	sel, off, err := e.readFarPtr(in, x.Args[1], bits/8)
	if err != nil {
		return err
	}
	var r segReg
	switch x.Op {
	case x86asm.LDS:
		r = segDS
	case x86asm.LES:
		r = segES
	case x86asm.LFS:
		r = segFS
	case x86asm.LGS:
		r = segGS
	default:
		r = segSS
	}
	if err := e.loadSeg(r, sel); err != nil {
		return err
	}
	e.setGPR(di, bits, off)
	e.finish(in)
	return nil
}

// loadDTR is LGDT and LIDT: a 16-bit limit, then a 32-bit base (24 bits
// with a 16-bit operand) or, in 64-bit mode, a 64-bit one.
func (e *emu) loadDTR(in *inst, idt bool) error {
	seg, off, err := e.memOperand(in, in.x.Args[0])
	if err != nil {
		return err
	}
	if e.cpl() != 0 {
		return gpErr(0)
	}
	n := 4
	if e.mode == modeLong64 {
		n = 8
	}
	b := e.scratch()
	if err := e.readAt(seg, off, b[:2+n]); err != nil {
		return err
	}
	limit := binary.LittleEndian.Uint16(b[:])
	base := truncate(binary.LittleEndian.Uint64(b[2:]), n*8)
	if n == 4 && in.x.DataSize == 16 {
		base &= 0xffffff
	}
	if !e.canonical(base) && n == 8 {
		return gpErr(0)
	}
	t := &e.c.Sregs.GDT
	if idt {
		t = &e.c.Sregs.IDT
	}
	t.Base, t.Limit = base, limit
	e.finish(in)
	return nil
}

// storeDTR is SGDT and SIDT; outside 64-bit mode all 32 base bits are
// stored whatever the operand size.
func (e *emu) storeDTR(in *inst, idt bool) error {
	seg, off, err := e.memOperand(in, in.x.Args[0])
	if err != nil {
		return err
	}
	if err := e.umip(); err != nil {
		return err
	}
	t := e.c.Sregs.GDT
	if idt {
		t = e.c.Sregs.IDT
	}
	n := 4
	if e.mode == modeLong64 {
		n = 8
	}
	b := e.scratch()
	binary.LittleEndian.PutUint16(b[:], t.Limit)
	binary.LittleEndian.PutUint64(b[2:], t.Base)
	if err := e.writeAt(seg, off, b[:2+n]); err != nil {
		return err
	}
	e.finish(in)
	return nil
}

// sysDesc reads the GDT descriptor of an LDT or TSS selector: 16 bytes in
// long mode, whose upper half supplies base bits 63:32 and must have a
// zero type field. ok=false means #GP(selector).
func (e *emu) sysDesc(sel uint16) (d desc, baseHi uint64, ok bool, err error) {
	if sel&4 != 0 {
		return desc{}, 0, false, nil
	}
	d, ok, err = e.readDesc(sel)
	if !ok || err != nil || !e.long() {
		return d, 0, ok, err
	}
	idx := uint64(sel &^ 7)
	if idx+15 > uint64(e.c.Sregs.GDT.Limit) {
		return d, 0, false, nil
	}
	b := e.scratch()
	if err := e.readSys(e.c.Sregs.GDT.Base+idx+8, b[:8]); err != nil {
		return d, 0, true, err
	}
	if binary.LittleEndian.Uint32(b[4:])>>8&0x1f != 0 {
		return d, 0, false, nil
	}
	return d, uint64(binary.LittleEndian.Uint32(b[:])), true, nil
}

// lldt loads LDTR; a null selector leaves it unusable.
func (e *emu) lldt(in *inst) error {
	if e.mode == modeReal {
		return &exception{vector: vecUD}
	}
	if e.cpl() != 0 {
		return gpErr(0)
	}
	sel, err := e.readRM16(in, in.x.Args[0])
	if err != nil {
		return err
	}
	if sel&^3 == 0 {
		e.c.Sregs.LDT = nullSegment(sel)
		e.finish(in)
		return nil
	}
	d, hi, ok, err := e.sysDesc(sel)
	switch {
	case err != nil:
		return err
	case !ok, !d.system(), d.typ() != 2:
		return gpErr(selCode(sel, 0))
	case !d.present():
		return npErr(selCode(sel, 0))
	}
	s := d.segment(sel)
	s.Base |= hi << 32
	e.c.Sregs.LDT = s
	e.finish(in)
	return nil
}

// ltr loads TR with an available TSS and marks its descriptor busy.
func (e *emu) ltr(in *inst) error {
	if e.mode == modeReal {
		return &exception{vector: vecUD}
	}
	if e.cpl() != 0 {
		return gpErr(0)
	}
	sel, err := e.readRM16(in, in.x.Args[0])
	if err != nil {
		return err
	}
	if sel&^3 == 0 {
		return gpErr(0)
	}
	d, hi, ok, err := e.sysDesc(sel)
	switch {
	case err != nil:
		return err
	case !ok, !d.system(), d.typ() != 9 && (e.long() || d.typ() != 1):
		return gpErr(selCode(sel, 0))
	case !d.present():
		return npErr(selCode(sel, 0))
	}
	d.hi |= 1 << 9
	addr, _ := e.descAddr(sel)
	b := e.scratch()
	b[0] = byte(d.hi >> 8)
	if err := e.writeSys(addr+5, b[:1]); err != nil {
		return err
	}
	s := d.segment(sel)
	s.Base |= hi << 32
	e.c.Sregs.TR = s
	e.finish(in)
	return nil
}

// verify is LAR, LSL, VERR and VERW: ZF says whether the selector names a
// descriptor of a fitting type that the CPL and RPL may see; LAR and LSL
// then load its access rights or limit.
func (e *emu) verify(in *inst) error {
	if e.mode == modeReal {
		return &exception{vector: vecUD}
	}
	x := &in.x
	src := x.Args[0]
	if x.Op == x86asm.LAR || x.Op == x86asm.LSL {
		src = x.Args[1]
	}
	sel, err := e.readRM16(in, src)
	if err != nil {
		return err
	}
	d, ok, err := e.readDesc(sel)
	if err != nil {
		return err
	}
	valid := ok && sel&^3 != 0
	if valid {
		switch x.Op {
		case x86asm.VERR:
			valid = !d.system() && (!d.code() || d.typ()&2 != 0)
		case x86asm.VERW:
			valid = !d.system() && !d.code() && d.typ()&2 != 0
		default:
			valid = !d.system() || e.visibleSystem(d.typ(), x.Op == x86asm.LAR)
		}
	}
	if valid && !d.conforming() {
		valid = d.dpl() >= e.cpl() && d.dpl() >= int(sel&3)
	}
	c := e.c
	if !valid {
		c.Regs.RFLAGS &^= cpu.FlagZF
		e.finish(in)
		return nil
	}
	c.Regs.RFLAGS |= cpu.FlagZF
	if x.Op == x86asm.LAR || x.Op == x86asm.LSL {
		dst, _ := x.Args[0].(x86asm.Reg)
		di, bits, ok := gprOf(dst)
		if !ok {
			return e.unsupported(in, "unexpected destination operand")
		}
		v := uint64(d.limit())
		if x.Op == x86asm.LAR {
			v = uint64(d.hi & 0x00f0ff00)
		}
		e.setGPR(di, bits, v)
	}
	e.finish(in)
	return nil
}

// visibleSystem reports the system descriptor types LAR (gates too) and
// LSL accept; long mode knows fewer.
func (e *emu) visibleSystem(typ uint8, lar bool) bool {
	switch typ {
	case 2, 9, 11:
		return true
	case 12:
		return lar
	case 1, 3:
		return !e.long()
	case 4, 5:
		return lar && !e.long()
	}
	return false
}

// farJmpCall is JMP and CALL far, direct (ptr16:16/32) or through memory
// (m16:16/32/64).
func (e *emu) farJmpCall(in *inst, call bool) error {
	x := &in.x
	size := x.DataSize / 8
	var sel uint16
	var off uint64
	if imm, ok := x.Args[0].(x86asm.Imm); ok {
		o, _ := x.Args[1].(x86asm.Imm)
		sel, off = uint16(imm), uint64(o)
	} else {
		var err error
		if sel, off, err = e.readFarPtr(in, x.Args[0], size); err != nil {
			return err
		}
	}
	c := e.c
	if e.mode == modeReal {
		if off > uint64(c.Sregs.CS.Limit) {
			return gpErr(0)
		}
		if call {
			if err := e.pushReturn(in, size); err != nil {
				return err
			}
		}
		c.Sregs.CS = realSegment(c.Sregs.CS, sel)
		c.Regs.RIP = off
		c.Regs.RFLAGS &^= cpu.FlagRF
		return nil
	}
	if sel&^3 == 0 {
		return gpErr(0)
	}
	d, ok, err := e.readDesc(sel)
	if err != nil {
		return err
	}
	code := selCode(sel, 0)
	if !ok {
		return gpErr(code)
	}
	if d.system() {
		switch d.typ() {
		case 4, 12:
			return e.unsupported(in, "call gate")
		case 5, 1, 9:
			return e.unsupported(in, "task switch")
		}
		return gpErr(code)
	}
	cpl := e.cpl()
	switch {
	case !d.code(),
		d.conforming() && d.dpl() > cpl,
		!d.conforming() && (int(sel&3) > cpl || d.dpl() != cpl),
		e.long() && d.l() && d.db():
		return gpErr(code)
	case !d.present():
		return npErr(code)
	}
	if e.long() && d.l() {
		if !e.canonical(off) {
			return gpErr(0)
		}
	} else if off > uint64(d.limit()) {
		return gpErr(0)
	}
	if call {
		if err := e.pushReturn(in, size); err != nil {
			return err
		}
	}
	if err := e.markAccessed(sel, &d); err != nil {
		return err
	}
	c.Sregs.CS = d.segment(sel&^3 | uint16(cpl))
	c.Regs.RIP = off
	c.Regs.RFLAGS &^= cpu.FlagRF
	e.setMode()
	return nil
}

// pushReturn pushes CS and the next instruction's address for CALL far.
func (e *emu) pushReturn(in *inst, size int) error {
	if err := e.push(uint64(e.c.Sregs.CS.Selector), size); err != nil {
		return err
	}
	return e.push(in.next, size)
}

// retFar is RETF and RETF imm16, to the same privilege level or an outer
// one (SDM RET, "PROTECTED-MODE / RETURN-TO-OUTER-PRIVILEGE-LEVEL").
func (e *emu) retFar(in *inst) error {
	x := &in.x
	c := e.c
	size := x.DataSize / 8
	var imm uint64
	if i, ok := x.Args[0].(x86asm.Imm); ok {
		imm = uint64(uint16(i))
	}
	ip, err := e.pop(size)
	if err != nil {
		return err
	}
	csv, err := e.pop(size)
	if err != nil {
		return err
	}
	cs := uint16(csv)
	if e.mode == modeReal {
		if ip > uint64(c.Sregs.CS.Limit) {
			return gpErr(0)
		}
		c.Sregs.CS = realSegment(c.Sregs.CS, cs)
		c.Regs.RIP = ip
		bits := e.stackBits()
		e.setSP(truncate(c.Regs.RSP+imm, bits), bits)
		c.Regs.RFLAGS &^= cpu.FlagRF
		return nil
	}
	d, err := e.returnCS(cs)
	if err != nil {
		return err
	}
	rpl := int(cs & 3)
	outer := rpl > e.cpl()
	to64 := e.long() && d.l()
	var ssSeg cpu.Segment
	var sp uint64
	if outer {
		bits := e.stackBits()
		e.setSP(truncate(c.Regs.RSP+imm, bits), bits)
		if sp, err = e.pop(size); err != nil {
			return err
		}
		ssv, err := e.pop(size)
		if err != nil {
			return err
		}
		ss := uint16(ssv)
		var sd desc
		if ssSeg, sd, err = e.returnSS(ss, rpl, to64 && rpl != 3); err != nil {
			return err
		}
		if ss&^3 != 0 {
			if err := e.markAccessed(ss, &sd); err != nil {
				return err
			}
			ssSeg = sd.segment(ss)
		}
	}
	if to64 {
		if !e.canonical(ip) {
			return gpErr(0)
		}
	} else if ip > uint64(d.limit()) {
		return gpErr(0)
	}
	if err := e.markAccessed(cs, &d); err != nil {
		return err
	}
	c.Sregs.CS = d.segment(cs)
	c.Regs.RIP = ip
	c.Regs.RFLAGS &^= cpu.FlagRF
	if outer {
		c.Sregs.SS = ssSeg
		c.Regs.RSP = sp
	}
	e.setMode()
	bits := e.stackBits()
	e.setSP(truncate(c.Regs.RSP+imm, bits), bits)
	if outer {
		e.nullInaccessible(rpl)
	}
	return nil
}

// nullInaccessible nulls the data segment registers that code at the new,
// less privileged level rpl may not use, after a return to it.
func (e *emu) nullInaccessible(rpl int) {
	for _, r := range [...]segReg{segES, segDS, segFS, segGS} {
		s := e.seg(r)
		dataOrNC := s.Typ&8 == 0 || s.Typ&4 == 0
		if s.Unusable == 0 && dataOrNC && int(s.DPL) < rpl {
			base := s.Base
			*s = nullSegment(0)
			if e.long() && (r == segFS || r == segGS) {
				s.Base = base // 64-bit FS/GS bases live in MSRs
			}
		}
	}
}

// syscall is SYSCALL from 64-bit mode: CS and SS from STAR, RIP from LSTAR,
// RFLAGS masked by SFMASK; RCX and R11 keep the return RIP and RFLAGS.
func (e *emu) syscall(in *inst) error {
	c := e.c
	if e.mode != modeLong64 || c.Sregs.EFER&cpu.EFERSCE == 0 {
		return &exception{vector: vecUD}
	}
	star, err := e.msr(msrSTAR)
	if err != nil {
		return err
	}
	lstar, err := e.msr(msrLSTAR)
	if err != nil {
		return err
	}
	mask, err := e.msr(msrSFMASK)
	if err != nil {
		return err
	}
	c.Regs.RCX = in.next
	c.Regs.R11 = c.Regs.RFLAGS &^ cpu.FlagRF
	sel := uint16(star>>32) &^ 3
	c.Sregs.CS = flatSegment(sel, 0xb, 0, true)
	c.Sregs.SS = flatSegment(sel+8, 0x3, 0, false)
	c.Regs.RFLAGS &^= mask | cpu.FlagRF
	c.Regs.RIP = lstar
	e.setMode()
	return nil
}

// sysret returns to CPL3 from SYSCALL: to 64-bit code with REX.W, to
// compatibility mode without.
func (e *emu) sysret(in *inst) error {
	c := e.c
	if e.mode != modeLong64 || c.Sregs.EFER&cpu.EFERSCE == 0 {
		return &exception{vector: vecUD}
	}
	if e.cpl() != 0 {
		return gpErr(0)
	}
	star, err := e.msr(msrSTAR)
	if err != nil {
		return err
	}
	base := uint16(star >> 48)
	rip := c.Regs.RCX
	if in.x.DataSize == 64 {
		if !e.canonical(rip) {
			return gpErr(0)
		}
		c.Sregs.CS = flatSegment((base+16)|3, 0xb, 3, true)
	} else {
		rip &= 0xffffffff
		c.Sregs.CS = flatSegment(base|3, 0xb, 3, false)
	}
	c.Sregs.SS = flatSegment((base+8)|3, 0x3, 3, false)
	c.Regs.RFLAGS = c.Regs.R11&0x3c7fd7 | flagFixed
	c.Regs.RIP = rip
	e.setMode()
	return nil
}

// msr reads an MSR SYSCALL and SYSRET use; one the environment does not
// know reads as zero.
func (e *emu) msr(idx uint32) (uint64, error) {
	v, ok, err := e.env.ReadMSR(idx)
	if !ok {
		v = 0
	}
	return v, err
}

// flatSegment is the fixed 4 GiB segment SYSCALL and SYSRET load: 64-bit
// code when long, else 32-bit code or data.
func flatSegment(sel uint16, typ uint8, dpl int, long bool) cpu.Segment {
	s := cpu.Segment{Selector: sel, Limit: 0xffffffff, Typ: typ, Present: 1, DPL: uint8(dpl), S: 1, G: 1, DB: 1}
	if long {
		s.L, s.DB = 1, 0
	}
	return s
}
