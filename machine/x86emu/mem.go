package x86emu

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// emu is one Step's working state. c is a copy of the caller's vCPU, so an
// instruction that faults half-way leaves nothing behind but the memory it
// already wrote (as on hardware, which also writes before a later fault).
type emu struct {
	c    *CPU
	env  Env
	mode cpuMode
	buf  [16]byte
	// halted is set by HLT for Step's Result.
	halted bool
}

// scratch is a zeroed buffer for one memory access at a time. Slices passed
// to Env escape, so a buffer on the stack would cost an allocation each.
func (e *emu) scratch() *[16]byte {
	e.buf = [16]byte{}
	return &e.buf
}

// segReg numbers the segment registers in encoding order.
type segReg int

const (
	segES segReg = iota
	segCS
	segSS
	segDS
	segFS
	segGS
)

func (e *emu) seg(r segReg) *cpu.Segment {
	s := &e.c.Sregs
	switch r {
	case segES:
		return &s.ES
	case segCS:
		return &s.CS
	case segSS:
		return &s.SS
	case segFS:
		return &s.FS
	case segGS:
		return &s.GS
	}
	return &s.DS
}

// cpl is the current privilege level. KVM (like VMX) keeps it in SS.DPL,
// which unlike CS.DPL is right for conforming code segments too.
func (e *emu) cpl() int {
	switch e.mode {
	case modeReal:
		return 0
	case modeVM86:
		return 3
	}
	return int(e.c.Sregs.SS.DPL & 3)
}

// setMode recomputes the mode after CS (or CR0/EFER) changed.
func (e *emu) setMode() { e.mode = modeOf(e.c) }

func (e *emu) long() bool { return e.c.Sregs.EFER&cpu.EFERLMA != 0 }

func (e *emu) paging() bool {
	return e.c.Sregs.CR0&cpu.CR0PG != 0 && e.c.Sregs.CR0&cpu.CR0PE != 0
}

// canonical reports whether a is a canonical linear address (48-bit, or
// 57-bit with CR4.LA57).
func (e *emu) canonical(a uint64) bool {
	bits := uint(48)
	if e.c.Sregs.CR4&(1<<12) != 0 {
		bits = 57
	}
	top := int64(a) >> (bits - 1)
	return top == 0 || top == -1
}

// linMask is the width of linear addresses: 32 bits outside long mode.
func (e *emu) linMask() uint64 {
	if e.long() {
		return ^uint64(0)
	}
	return 0xffffffff
}

// phys translates one linear address, raising #PF where it does not map.
func (e *emu) phys(lin uint64, write, user, fetch bool) (uint64, error) {
	if !e.paging() {
		return lin & 0xffffffff, nil
	}
	gpa, code, ok := e.env.Translate(e.c, lin, write, user, fetch)
	if !ok {
		return 0, &exception{vector: vecPF, code: code, hasCode: true, addr: lin}
	}
	return gpa, nil
}

// accessLin reads or writes len(b) <= 4096 bytes at a linear address. Every
// page is translated before any byte moves, so a page fault on the second
// page of a write leaves the first untouched.
func (e *emu) accessLin(lin uint64, b []byte, write, user bool) error {
	if w := e.c.Watch; w != nil {
		w.access(lin, len(b), write)
	}
	type chunk struct {
		gpa    uint64
		off, n int
	}
	var parts [2]chunk
	np := 0
	mask := e.linMask()
	for off := 0; off < len(b); {
		a := (lin + uint64(off)) & mask
		n := min(len(b)-off, 4096-int(a&0xfff))
		gpa, err := e.phys(a, write, user, false)
		if err != nil {
			return err
		}
		if np == len(parts) {
			return fmt.Errorf("x86emu: internal: access of %d bytes spans too many pages", len(b))
		}
		parts[np] = chunk{gpa, off, n}
		np++
		off += n
	}
	for _, p := range parts[:np] {
		var err error
		if write {
			err = e.env.WritePhys(p.gpa, b[p.off:p.off+p.n])
		} else {
			err = e.env.ReadPhys(p.gpa, b[p.off:p.off+p.n])
		}
		if err != nil {
			op := "read"
			if write {
				op = "write"
			}
			return fmt.Errorf("x86emu: %s of %d bytes at guest physical %#x: %w", op, p.n, p.gpa, err)
		}
	}
	return nil
}

// Descriptor tables, the TSS and the IVT are read with supervisor rights
// whatever the CPL ("implicit supervisor accesses").
func (e *emu) readSys(lin uint64, b []byte) error  { return e.accessLin(lin, b, false, false) }
func (e *emu) writeSys(lin uint64, b []byte) error { return e.accessLin(lin, b, true, false) }

func segFault(r segReg, code uint32) error {
	if r == segSS {
		return &exception{vector: vecSS, code: code, hasCode: true}
	}
	return &exception{vector: vecGP, code: code, hasCode: true}
}

// linear applies segmentation to an access of size bytes at offset off
// (already truncated to the address size): type and limit checks outside
// 64-bit mode (#GP(0), or #SS(0) for SS), canonical checks in it.
func (e *emu) linear(r segReg, off uint64, size int, write bool) (uint64, error) {
	s := e.seg(r)
	last := off + uint64(size) - 1
	if e.mode == modeLong64 {
		lin := off
		if r == segFS || r == segGS {
			lin += s.Base
		}
		if !e.canonical(lin) || !e.canonical(lin+uint64(size)-1) {
			return 0, segFault(r, 0)
		}
		return lin, nil
	}
	if e.mode == modeReal {
		if last > uint64(s.Limit) || last < off {
			return 0, segFault(r, 0)
		}
		return (s.Base + off) & 0xffffffff, nil
	}
	if s.Unusable != 0 || s.Present == 0 || s.S == 0 {
		return 0, segFault(r, 0)
	}
	code := s.Typ&8 != 0
	if write && (code || s.Typ&2 == 0) || !write && code && s.Typ&2 == 0 {
		return 0, segFault(r, 0)
	}
	if !code && s.Typ&4 != 0 {
		// Expand-down: valid offsets lie above the limit.
		upper := uint64(0xffff)
		if s.DB != 0 {
			upper = 0xffffffff
		}
		if off <= uint64(s.Limit) || last > upper || last < off {
			return 0, segFault(r, 0)
		}
	} else if last > uint64(s.Limit) || last < off {
		return 0, segFault(r, 0)
	}
	return (s.Base + off) & 0xffffffff, nil
}

func (e *emu) userAccess() bool { return e.cpl() == 3 }

// readMem reads size bytes at r:off as a little-endian value.
func (e *emu) readMem(r segReg, off uint64, size int) (uint64, error) {
	lin, err := e.linear(r, off, size, false)
	if err != nil {
		return 0, err
	}
	buf := e.scratch()
	if err := e.accessLin(lin, buf[:size], false, e.userAccess()); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(buf[:]), nil
}

// stackBits is the stack address size.
func (e *emu) stackBits() int {
	switch {
	case e.mode == modeLong64:
		return 64
	case e.c.Sregs.SS.DB != 0:
		return 32
	}
	return 16
}

func truncate(v uint64, bits int) uint64 {
	if bits >= 64 {
		return v
	}
	return v & (1<<uint(bits) - 1)
}

// setSP stores a stack pointer of the given width; a 16-bit stack keeps the
// upper bits of RSP, as hardware does.
func (e *emu) setSP(v uint64, bits int) {
	switch bits {
	case 64:
		e.c.Regs.RSP = v
	case 32:
		e.c.Regs.RSP = v & 0xffffffff
	default:
		e.c.Regs.RSP = e.c.Regs.RSP&^0xffff | v&0xffff
	}
}

// push pushes the low n bytes of v.
func (e *emu) push(v uint64, n int) error {
	bits := e.stackBits()
	sp := truncate(e.c.Regs.RSP-uint64(n), bits)
	lin, err := e.linear(segSS, sp, n, true)
	if err != nil {
		return err
	}
	buf := e.scratch()
	binary.LittleEndian.PutUint64(buf[:], v)
	if err := e.accessLin(lin, buf[:n], true, e.userAccess()); err != nil {
		return err
	}
	e.setSP(sp, bits)
	return nil
}

// pop pops n bytes.
func (e *emu) pop(n int) (uint64, error) {
	bits := e.stackBits()
	sp := truncate(e.c.Regs.RSP, bits)
	v, err := e.readMem(segSS, sp, n)
	if err != nil {
		return 0, err
	}
	e.setSP(sp+uint64(n), bits)
	return v, nil
}

// gpr returns general register i in encoding order (RAX, RCX, RDX, RBX,
// RSP, RBP, RSI, RDI, R8..R15).
func (e *emu) gpr(i int) *uint64 {
	r := &e.c.Regs
	switch i & 15 {
	case 0:
		return &r.RAX
	case 1:
		return &r.RCX
	case 2:
		return &r.RDX
	case 3:
		return &r.RBX
	case 4:
		return &r.RSP
	case 5:
		return &r.RBP
	case 6:
		return &r.RSI
	case 7:
		return &r.RDI
	case 8:
		return &r.R8
	case 9:
		return &r.R9
	case 10:
		return &r.R10
	case 11:
		return &r.R11
	case 12:
		return &r.R12
	case 13:
		return &r.R13
	case 14:
		return &r.R14
	}
	return &r.R15
}

// setGPR writes a register the way a mov of that width does: 32-bit writes
// zero the upper half, 16-bit writes keep it.
func (e *emu) setGPR(i, bits int, v uint64) {
	p := e.gpr(i)
	switch bits {
	case 64:
		*p = v
	case 32:
		*p = v & 0xffffffff
	default:
		*p = *p&^0xffff | v&0xffff
	}
}

// gprOf maps an x86asm 16/32/64-bit register to its number and width.
func gprOf(r x86asm.Reg) (idx, bits int, ok bool) {
	switch {
	case r >= x86asm.AX && r <= x86asm.R15W:
		return int(r - x86asm.AX), 16, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return int(r - x86asm.EAX), 32, true
	case r >= x86asm.RAX && r <= x86asm.R15:
		return int(r - x86asm.RAX), 64, true
	}
	return 0, 0, false
}

// effAddr computes the segment and offset of a memory operand; next is the
// address of the following instruction, the base of RIP-relative operands.
func (e *emu) effAddr(m x86asm.Mem, addrBits int, next uint64) (segReg, uint64, error) {
	var a uint64
	seg := segDS
	switch m.Base {
	case 0:
	case x86asm.RIP, x86asm.EIP:
		a = next
	default:
		i, bits, ok := gprOf(m.Base)
		if !ok {
			return 0, 0, fmt.Errorf("x86emu: internal: base register %v", m.Base)
		}
		a = truncate(*e.gpr(i), bits)
		if i == 4 || i == 5 {
			seg = segSS
		}
	}
	if m.Index != 0 && m.Scale != 0 {
		i, bits, ok := gprOf(m.Index)
		if !ok {
			return 0, 0, fmt.Errorf("x86emu: internal: index register %v", m.Index)
		}
		a += truncate(*e.gpr(i), bits) * uint64(m.Scale)
	}
	a = truncate(a+uint64(m.Disp), addrBits)
	if m.Segment != 0 {
		if m.Segment < x86asm.ES || m.Segment > x86asm.GS {
			return 0, 0, fmt.Errorf("x86emu: internal: segment register %v", m.Segment)
		}
		seg = segReg(m.Segment - x86asm.ES)
	}
	return seg, a, nil
}
