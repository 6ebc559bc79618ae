package x86emu

import (
	"encoding/binary"
	"errors"
	"fmt"

	"vmrr/machine/cpu"
)

// fakeEnv is guest RAM in a byte slice, a 4-level page walker over it, and
// a queue of non-deterministic values.
type fakeEnv struct {
	ram    []byte
	values []uint64     // NonDet hands these out in order
	asked  []cpu.NonDet // kinds NonDet was asked for
	writes int          // WritePhys calls

	ports   map[uint16]uint32 // what In returns per port (0 if absent)
	outs    []portWrite       // Out calls, in order
	cpuid   map[[2]uint32][4]uint32
	msrs    map[uint32]uint64 // MSRs ReadMSR and WriteMSR know; others #GP
	flushes []TLBFlush        // FlushTLB calls, in order
}

// portWrite is one Out call.
type portWrite struct {
	port uint16
	size int
	v    uint32
}

var errNoValue = errors.New("fake: no value left")

func newFakeEnv(size int) *fakeEnv { return &fakeEnv{ram: make([]byte, size), cpuid: fullCPUID()} }

func (f *fakeEnv) span(gpa uint64, n int) ([]byte, error) {
	if gpa > uint64(len(f.ram)) || uint64(len(f.ram))-gpa < uint64(n) {
		return nil, fmt.Errorf("fake: %d bytes at %#x outside RAM", n, gpa)
	}
	return f.ram[gpa : gpa+uint64(n)], nil
}

func (f *fakeEnv) ReadPhys(gpa uint64, b []byte) error {
	s, err := f.span(gpa, len(b))
	if err != nil {
		return err
	}
	copy(b, s)
	return nil
}

func (f *fakeEnv) WritePhys(gpa uint64, b []byte) error {
	s, err := f.span(gpa, len(b))
	if err != nil {
		return err
	}
	f.writes++
	copy(s, b)
	return nil
}

func (f *fakeEnv) NonDet(kind cpu.NonDet) (uint64, error) {
	f.asked = append(f.asked, kind)
	if len(f.values) == 0 {
		return 0, errNoValue
	}
	v := f.values[0]
	f.values = f.values[1:]
	return v, nil
}

func (f *fakeEnv) In(port uint16, size int) (uint32, error) {
	return f.ports[port] & uint32(uint64(1)<<(8*size)-1), nil
}

func (f *fakeEnv) Out(port uint16, size int, v uint32) error {
	f.outs = append(f.outs, portWrite{port, size, v})
	return nil
}

func (f *fakeEnv) CPUID(leaf, subleaf uint32) (a, b, c, d uint32) {
	r := f.cpuid[[2]uint32{leaf, subleaf}]
	return r[0], r[1], r[2], r[3]
}

func (f *fakeEnv) ReadMSR(index uint32) (uint64, bool, error) {
	v, ok := f.msrs[index]
	return v, ok, nil
}

func (f *fakeEnv) WriteMSR(index uint32, v uint64) (bool, error) {
	if _, ok := f.msrs[index]; !ok {
		return false, nil
	}
	f.msrs[index] = v
	return true, nil
}

func (f *fakeEnv) FlushTLB(kind TLBFlush, linear uint64) { f.flushes = append(f.flushes, kind) }

// PTE bits.
const (
	ptP  = 1 << 0
	ptRW = 1 << 1
	ptUS = 1 << 2
	ptPS = 1 << 7
	ptNX = 1 << 63
)

// Translate walks 4-level page tables (4 KiB, 2 MiB and 1 GiB pages) the
// way the MMU does, with the SDM's #PF error code bits.
func (f *fakeEnv) Translate(c *CPU, lin uint64, write, user, fetch bool) (uint64, uint32, bool) {
	var code uint32
	if write {
		code |= 2
	}
	if user {
		code |= 4
	}
	if fetch && c.Sregs.EFER&cpu.EFERNXE != 0 {
		code |= 16
	}
	table := c.Sregs.CR3 &^ 0xfff
	rw, us, nx := true, true, false
	for level := 4; level >= 1; level-- {
		shift := uint(12 + 9*(level-1))
		var b [8]byte
		if f.ReadPhys(table+(lin>>shift&511)*8, b[:]) != nil {
			return 0, code, false
		}
		pte := binary.LittleEndian.Uint64(b[:])
		if pte&ptP == 0 {
			return 0, code, false
		}
		rw = rw && pte&ptRW != 0
		us = us && pte&ptUS != 0
		nx = nx || pte&ptNX != 0
		if level == 1 || (level <= 3 && pte&ptPS != 0) {
			code |= 1
			wp := c.Sregs.CR0&cpu.CR0WP != 0
			switch {
			case user && !us,
				write && !rw && (user || wp),
				fetch && nx && c.Sregs.EFER&cpu.EFERNXE != 0:
				return 0, code, false
			}
			mask := uint64(1)<<shift - 1
			return pte&0x000ffffffffff000&^mask | lin&mask, 0, true
		}
		table = pte & 0x000ffffffffff000
	}
	return 0, code, false
}

func (f *fakeEnv) put(gpa uint64, b ...byte) { copy(f.ram[gpa:], b) }

func (f *fakeEnv) put16(gpa uint64, v uint16) { binary.LittleEndian.PutUint16(f.ram[gpa:], v) }
func (f *fakeEnv) put32(gpa uint64, v uint32) { binary.LittleEndian.PutUint32(f.ram[gpa:], v) }
func (f *fakeEnv) put64(gpa uint64, v uint64) { binary.LittleEndian.PutUint64(f.ram[gpa:], v) }
func (f *fakeEnv) get16(gpa uint64) uint16    { return binary.LittleEndian.Uint16(f.ram[gpa:]) }
func (f *fakeEnv) get32(gpa uint64) uint32    { return binary.LittleEndian.Uint32(f.ram[gpa:]) }
func (f *fakeEnv) get64(gpa uint64) uint64    { return binary.LittleEndian.Uint64(f.ram[gpa:]) }

// The test machine's memory map.
const (
	ramSize   = 4 << 20
	pml4Base  = 0x1000 // then PDPT 0x2000, PD 0x3000, PT 0x4000 (first 2 MiB)
	gdtBase   = 0x10000
	idtBase   = 0x20000
	tssBase   = 0x30000 // 32-bit TSS
	tss64Base = 0x31000 // 64-bit TSS
	codeBase  = 0x40000
	handler   = 0x50000
	userStack = 0x60000
	kernStack = 0x70000 // the interrupted code's CPL0 stack
	tssStack  = 0x80000 // ESP0 / RSP0 in the TSS
	istStack  = 0x88000 // IST1
)

// GDT selectors.
const (
	selCode32     = 0x08
	selData32     = 0x10
	selCode32U    = 0x18 | 3
	selData32U    = 0x20 | 3
	selCode64     = 0x28
	selCode64U    = 0x30 | 3
	selCode16     = 0x38
	selData16     = 0x40
	selTSS32      = 0x48
	selTSS64      = 0x50 // 16 bytes
	selCodeNP     = 0x60
	selDataAsCode = 0x68
	selConform    = 0x70
	gdtLimit      = 0x77
)

// mkDesc encodes a segment descriptor. flags: bit 0 AVL, 1 L, 2 DB, 3 G.
func mkDesc(base, limit uint32, typ uint8, s bool, dpl int, present bool, flags uint8) uint64 {
	d := uint64(limit&0xffff) | uint64(base&0xffffff)<<16 | uint64(typ&0xf)<<40
	if s {
		d |= 1 << 44
	}
	d |= uint64(dpl&3) << 45
	if present {
		d |= 1 << 47
	}
	d |= uint64(limit>>16&0xf) << 48
	d |= uint64(flags&0xf) << 52
	d |= uint64(base>>24) << 56
	return d
}

const (
	fAVL = 1
	fL   = 2
	fDB  = 4
	fG   = 8
)

// newMachine lays out GDT, TSS, identity page tables and an empty IDT.
func newMachine() *fakeEnv {
	f := newFakeEnv(ramSize)
	gdt := map[uint16]uint64{
		selCode32:     mkDesc(0, 0xfffff, 0xb, true, 0, true, fDB|fG),
		selData32:     mkDesc(0, 0xfffff, 0x3, true, 0, true, fDB|fG),
		selCode32U:    mkDesc(0, 0xfffff, 0xb, true, 3, true, fDB|fG),
		selData32U:    mkDesc(0, 0xfffff, 0x3, true, 3, true, fDB|fG),
		selCode64:     mkDesc(0, 0xfffff, 0xb, true, 0, true, fL|fG),
		selCode64U:    mkDesc(0, 0xfffff, 0xb, true, 3, true, fL|fG),
		selCode16:     mkDesc(codeBase, 0xffff, 0xb, true, 0, true, 0),
		selData16:     mkDesc(0, 0xffff, 0x3, true, 0, true, 0),
		selTSS32:      mkDesc(tssBase, 0x67, 0xb, false, 0, true, 0),
		selTSS64:      mkDesc(tss64Base, 0x67, 0xb, false, 0, true, 0),
		selCodeNP:     mkDesc(0, 0xfffff, 0xb, true, 0, false, fDB|fG),
		selDataAsCode: mkDesc(0, 0xfffff, 0x3, true, 0, true, fDB|fG),
		selConform:    mkDesc(0, 0xfffff, 0xf, true, 0, true, fDB|fG),
	}
	for sel, d := range gdt {
		f.put64(gdtBase+uint64(sel&^7), d)
	}
	f.put64(gdtBase+selTSS64+8, 0)    // upper half of the 64-bit TSS descriptor
	f.put32(tssBase+4, tssStack)      // ESP0
	f.put32(tssBase+8, selData32)     // SS0
	f.put64(tss64Base+4, tssStack)    // RSP0
	f.put64(tss64Base+0x24, istStack) // IST1
	// Identity map of the first 4 MiB: 4 KiB pages below 2 MiB, so tests
	// can unmap single pages, then one 2 MiB page.
	all := uint64(ptP | ptRW | ptUS)
	f.put64(pml4Base, 0x2000|all)
	f.put64(0x2000, 0x3000|all)
	f.put64(0x3000, 0x4000|all)
	f.put64(0x3008, 0x200000|all|ptPS)
	for i := uint64(0); i < 512; i++ {
		f.put64(0x4000+i*8, i<<12|all)
	}
	return f
}

// unmap clears the PTE of the 4 KiB page holding gpa (< 2 MiB).
func (f *fakeEnv) unmap(gpa uint64) { f.put64(0x4000+(gpa>>12)*8, 0) }

// seg loads a selector from the test GDT the way a test expects to see it.
func (f *fakeEnv) seg(sel uint16) cpu.Segment {
	if sel&^3 == 0 {
		return nullSegment(sel)
	}
	off := gdtBase + uint64(sel&^7)
	return desc{f.get32(off), f.get32(off + 4)}.segment(sel)
}

// gate32 writes an 8-byte IDT gate. typ: 0xe interrupt, 0xf trap, 0x6/0x7
// their 16-bit forms, 0x5 task.
func (f *fakeEnv) gate32(vec int, typ uint8, sel uint16, off uint32, dpl int, present bool) {
	lo := off&0xffff | uint32(sel)<<16
	hi := off&0xffff0000 | uint32(typ)<<8 | uint32(dpl)<<13
	if present {
		hi |= 1 << 15
	}
	f.put32(idtBase+uint64(vec)*8, lo)
	f.put32(idtBase+uint64(vec)*8+4, hi)
}

// gate64 writes a 16-byte long-mode IDT gate.
func (f *fakeEnv) gate64(vec int, typ uint8, sel uint16, off uint64, dpl, ist int, present bool) {
	lo := uint32(off&0xffff) | uint32(sel)<<16
	hi := uint32(off&0xffff0000) | uint32(typ)<<8 | uint32(dpl)<<13 | uint32(ist)
	if present {
		hi |= 1 << 15
	}
	a := idtBase + uint64(vec)*16
	f.put32(a, lo)
	f.put32(a+4, hi)
	f.put64(a+8, off>>32)
}

// realCPU is real mode with CS:IP = 0x4000:0 (codeBase) and SS:SP = 0:0x7000.
func realCPU() *CPU {
	c := &CPU{}
	seg := func(sel uint16, typ uint8) cpu.Segment {
		return cpu.Segment{Base: uint64(sel) << 4, Limit: 0xffff, Selector: sel, Typ: typ, Present: 1, S: 1}
	}
	c.Sregs.CS = seg(codeBase>>4, 0xb)
	for _, s := range []*cpu.Segment{&c.Sregs.DS, &c.Sregs.ES, &c.Sregs.FS, &c.Sregs.GS, &c.Sregs.SS} {
		*s = seg(0, 3)
	}
	c.Sregs.TR = cpu.Segment{Limit: 0xffff, Typ: 0xb, Present: 1}
	c.Sregs.LDT = cpu.Segment{Limit: 0xffff, Typ: 2, Present: 1}
	c.Sregs.IDT = cpu.Descriptor{Base: 0, Limit: 0x3ff}
	c.Sregs.GDT = cpu.Descriptor{Base: 0, Limit: 0xffff}
	c.Sregs.CR0 = cpu.CR0ET
	c.Regs.RSP = 0x7000
	c.Regs.RFLAGS = flagFixed | cpu.FlagIF
	return c
}

// protCPU is 32-bit protected mode without paging at cpl (0 or 3), running
// at codeBase with the flat segments of that level.
func protCPU(f *fakeEnv, cpl int) *CPU {
	c := &CPU{}
	code, data, sp := uint16(selCode32), uint16(selData32), uint64(kernStack)
	if cpl == 3 {
		code, data, sp = selCode32U, selData32U, userStack
	}
	c.Sregs.CS = f.seg(code)
	for _, s := range []*cpu.Segment{&c.Sregs.DS, &c.Sregs.ES, &c.Sregs.FS, &c.Sregs.GS, &c.Sregs.SS} {
		*s = f.seg(data)
	}
	c.Sregs.TR = f.seg(selTSS32)
	c.Sregs.LDT = cpu.Segment{Unusable: 1}
	c.Sregs.GDT = cpu.Descriptor{Base: gdtBase, Limit: gdtLimit}
	c.Sregs.IDT = cpu.Descriptor{Base: idtBase, Limit: 256*8 - 1}
	c.Sregs.CR0 = cpu.CR0PE | cpu.CR0ET
	c.Regs.RIP = codeBase
	c.Regs.RSP = sp
	c.Regs.RFLAGS = flagFixed | cpu.FlagIF
	return c
}

// longCPU is 64-bit mode with the identity page tables at cpl (0 or 3).
func longCPU(f *fakeEnv, cpl int) *CPU {
	c := protCPU(f, cpl)
	c.Sregs.CS = f.seg(selCode64)
	c.Sregs.SS = flatNullSS(0)
	if cpl == 3 {
		c.Sregs.CS = f.seg(selCode64U)
		c.Sregs.SS = f.seg(selData32U)
	}
	c.Sregs.TR = f.seg(selTSS64)
	c.Sregs.IDT = cpu.Descriptor{Base: idtBase, Limit: 256*16 - 1}
	c.Sregs.CR0 |= cpu.CR0PG | cpu.CR0WP
	c.Sregs.CR3 = pml4Base
	c.Sregs.CR4 = cpu.CR4PAE
	c.Sregs.EFER = cpu.EFERLME | cpu.EFERLMA | cpu.EFERNXE
	return c
}
