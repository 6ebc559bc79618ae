package x86emu

import (
	"encoding/binary"

	"vmrr/machine/cpu"
)

// desc is a raw 8-byte segment or gate descriptor (SDM vol. 3, 3.4.5).
type desc struct{ lo, hi uint32 }

func (d desc) typ() uint8       { return uint8(d.hi>>8) & 0xf }
func (d desc) system() bool     { return d.hi&(1<<12) == 0 }
func (d desc) dpl() int         { return int(d.hi>>13) & 3 }
func (d desc) present() bool    { return d.hi&(1<<15) != 0 }
func (d desc) code() bool       { return !d.system() && d.typ()&8 != 0 }
func (d desc) conforming() bool { return d.code() && d.typ()&4 != 0 }
func (d desc) l() bool          { return d.hi&(1<<21) != 0 }
func (d desc) db() bool         { return d.hi&(1<<22) != 0 }

// writableData reports a data segment that may be written: the only kind
// SS accepts.
func (d desc) writableData() bool { return !d.system() && d.typ()&8 == 0 && d.typ()&2 != 0 }

func (d desc) base() uint64 {
	return uint64(d.lo>>16) | uint64(d.hi&0xff)<<16 | uint64(d.hi&0xff000000)
}

// limit is the byte-granular limit, scaled by G as KVM reports it.
func (d desc) limit() uint32 {
	l := d.lo&0xffff | d.hi&0xf0000
	if d.hi&(1<<23) != 0 {
		l = l<<12 | 0xfff
	}
	return l
}

// segment is the hidden part of a segment register loaded with sel.
func (d desc) segment(sel uint16) cpu.Segment {
	b := func(bit uint) uint8 { return uint8(d.hi>>bit) & 1 }
	return cpu.Segment{
		Base:     d.base(),
		Limit:    d.limit(),
		Selector: sel,
		Typ:      d.typ(),
		Present:  b(15),
		DPL:      uint8(d.dpl()),
		DB:       b(22),
		S:        b(12),
		L:        b(21),
		G:        b(23),
		AVL:      b(20),
	}
}

// nullSegment is a data segment register loaded with a null selector:
// unusable until reloaded.
func nullSegment(sel uint16) cpu.Segment {
	return cpu.Segment{Selector: sel, Unusable: 1}
}

// realSegment is a segment register loaded in real mode: only selector and
// base change; the limit and attributes stay as they were.
func realSegment(old cpu.Segment, sel uint16) cpu.Segment {
	old.Selector = sel
	old.Base = uint64(sel) << 4
	return old
}

// descAddr is the linear address of selector sel's descriptor, or ok=false
// when the selector points past its table (or into a missing LDT).
func (e *emu) descAddr(sel uint16) (uint64, bool) {
	idx := uint64(sel &^ 7)
	if sel&4 != 0 {
		ldt := &e.c.Sregs.LDT
		if ldt.Unusable != 0 || ldt.Present == 0 || idx+7 > uint64(ldt.Limit) {
			return 0, false
		}
		return ldt.Base + idx, true
	}
	if idx+7 > uint64(e.c.Sregs.GDT.Limit) {
		return 0, false
	}
	return e.c.Sregs.GDT.Base + idx, true
}

// readDesc reads sel's descriptor; ok=false means past the table's limit.
func (e *emu) readDesc(sel uint16) (d desc, ok bool, err error) {
	addr, ok := e.descAddr(sel)
	if !ok {
		return desc{}, false, nil
	}
	b := e.scratch()
	if err := e.readSys(addr, b[:8]); err != nil {
		return desc{}, true, err
	}
	return desc{binary.LittleEndian.Uint32(b[:]), binary.LittleEndian.Uint32(b[4:])}, true, nil
}

// markAccessed sets a segment descriptor's accessed bit in memory, as the
// processor does when it loads the descriptor.
func (e *emu) markAccessed(sel uint16, d *desc) error {
	if d.system() || d.hi&(1<<8) != 0 {
		return nil
	}
	addr, ok := e.descAddr(sel)
	if !ok {
		return nil
	}
	d.hi |= 1 << 8
	return e.writeSys(addr+5, []byte{byte(d.hi >> 8)})
}

func gpErr(code uint32) error { return &exception{vector: vecGP, code: code, hasCode: true} }
func npErr(code uint32) error { return &exception{vector: vecNP, code: code, hasCode: true} }
func ssErr(code uint32) error { return &exception{vector: vecSS, code: code, hasCode: true} }
func tsErr(code uint32) error { return &exception{vector: vecTS, code: code, hasCode: true} }

// selCode is a selector as an error code: index and TI, RPL replaced by EXT.
func selCode(sel uint16, ext uint32) uint32 { return uint32(sel&^3) | ext }

// returnCS checks the CS selector an IRET pops (SDM IRET, "PROTECTED-MODE-
// RETURN") and returns its descriptor.
func (e *emu) returnCS(sel uint16) (desc, error) {
	if sel&^3 == 0 {
		return desc{}, gpErr(0)
	}
	d, ok, err := e.readDesc(sel)
	if err != nil {
		return d, err
	}
	rpl := int(sel & 3)
	switch {
	case !ok, !d.code(), rpl < e.cpl(),
		d.conforming() && d.dpl() > rpl,
		!d.conforming() && d.dpl() != rpl,
		e.long() && d.l() && d.db():
		return d, gpErr(selCode(sel, 0))
	case !d.present():
		return d, npErr(selCode(sel, 0))
	}
	return d, nil
}

// returnSS checks the SS selector an IRET pops when it returns to rpl.
// null64 allows a null selector (a return to 64-bit code below CPL3); the
// segment is then usable with a null selector, as after an interrupt.
func (e *emu) returnSS(sel uint16, rpl int, null64 bool) (cpu.Segment, desc, error) {
	if sel&^3 == 0 {
		if null64 && int(sel&3) == rpl {
			return flatNullSS(rpl), desc{}, nil
		}
		return cpu.Segment{}, desc{}, gpErr(0)
	}
	d, ok, err := e.readDesc(sel)
	if err != nil {
		return cpu.Segment{}, d, err
	}
	switch {
	case !ok, int(sel&3) != rpl, !d.writableData(), d.dpl() != rpl:
		return cpu.Segment{}, d, gpErr(selCode(sel, 0))
	case !d.present():
		return cpu.Segment{}, d, ssErr(selCode(sel, 0))
	}
	return d.segment(sel), d, nil
}

// flatNullSS is SS after a 64-bit interrupt to an inner level or an IRETQ
// with a null SS: a null selector with RPL = CPL and a flat, writable,
// present cache, which both VMX and SVM accept on entry.
func flatNullSS(cpl int) cpu.Segment {
	return cpu.Segment{Selector: uint16(cpl), Limit: 0xffffffff, Typ: 3, Present: 1,
		DPL: uint8(cpl), DB: 1, S: 1, G: 1}
}
