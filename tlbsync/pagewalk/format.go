package pagewalk

// This file holds the table geometry and entry layout of each mode (SDM 4.3, 4.4, 4.5), so the
// walkers above it are mode-independent.

// Entry bits common to all modes.
const (
	bitP  = 1 << 0
	bitRW = 1 << 1
	bitUS = 1 << 2
	bitPS = 1 << 7
	bitXD = 1 << 63
)

// bitRange returns a mask of bits lo..hi inclusive; empty when lo > hi.
func bitRange(lo, hi uint) uint64 {
	if lo > hi {
		return 0
	}
	return (^uint64(0) >> (63 - hi)) &^ (1<<lo - 1)
}

// maxPhys returns f.MaxPhysAddr (or the default) clamped to what the architecture allows.
func (f Flags) maxPhys() uint {
	switch m := f.MaxPhysAddr; {
	case m == 0:
		return DefaultMaxPhysAddr
	case m < 32:
		return 32
	case m > 52:
		return 52
	default:
		return uint(m)
	}
}

// topLevel is the level of the root table.
func topLevel(m Mode) int {
	switch m {
	case ModeLong4:
		return 4
	case ModePAE:
		return 3
	}
	return 2
}

// entrySize is the size of one entry in bytes.
func entrySize(m Mode) uint64 {
	if m == ModeLegacy32 {
		return 4
	}
	return 8
}

// indexShift is the lowest virtual-address bit that indexes a table of this level.
func indexShift(m Mode, level int) uint {
	if m == ModeLegacy32 {
		return 12 + 10*uint(level-1)
	}
	return 12 + 9*uint(level-1)
}

// tableEntries is how many entries a table of this level has.
func tableEntries(m Mode, level int) uint64 {
	switch {
	case m == ModeLegacy32:
		return 1024
	case m == ModePAE && level == 3:
		return 4
	}
	return 512
}

// rootTable is the physical address of the root table CR3 designates. Low CR3 bits (PCD, PWT,
// a PCID) and bits above MAXPHYADDR are not part of it.
func rootTable(m Mode, cr3 uint64, f Flags) uint64 {
	switch m {
	case ModeLegacy32:
		return cr3 & 0xfffff000
	case ModePAE:
		return cr3 & 0xffffffe0 // the PDPT is 32-byte aligned
	}
	return cr3 & bitRange(12, f.maxPhys()-1)
}

// entry is one decoded paging entry.
type entry struct {
	present bool
	rsvd    bool   // a reserved bit is set: a walk through it faults with RSVD
	leaf    bool   // maps a page rather than pointing at a table
	addr    uint64 // the next table, or the page frame of a leaf
	size    uint64 // the page size of a leaf
	perm    bool   // this level carries R/W, U/S and XD (PAE PDPTEs do not)
	rw, us  bool
	xd      bool // execute-disable in force (XD set and EFER.NXE)
}

// decode interprets the raw entry e read from a table of the given level.
func decode(m Mode, level int, e uint64, f Flags) entry {
	d := entry{present: e&bitP != 0}
	mp := f.maxPhys()
	switch m {
	case ModeLegacy32:
		d.perm, d.rw, d.us = true, e&bitRW != 0, e&bitUS != 0
		if level == 2 && e&bitPS != 0 && f.PSE {
			// PSE-36: PDE bits 20:13 carry physical-address bits 39:32, bit 21 is reserved.
			d.leaf, d.size = true, 4<<20
			d.addr = e&0xffc00000 | (e>>13&0xff)<<32
			rsvd := uint64(1 << 21)
			if mp < 40 {
				rsvd |= bitRange(mp-19, 20)
			}
			d.rsvd = e&rsvd != 0
			return d
		}
		d.addr = e & 0xfffff000
		d.leaf, d.size = level == 1, 4096
		return d
	case ModePAE:
		if level == 3 {
			// PDPTEs have no permission bits: 2:1 and 8:5 are reserved, as are bits from
			// MAXPHYADDR up (there is no XD here).
			d.addr = e & bitRange(12, mp-1)
			d.rsvd = e&(0x6|0x1e0|bitRange(mp, 63)) != 0
			return d
		}
		d.rsvd = e&bitRange(mp, 62) != 0
	default: // ModeLong4; bits 62:52 are ignored (protection keys are not modelled)
		d.rsvd = e&bitRange(mp, 51) != 0
	}
	if !f.NXE && e&bitXD != 0 {
		d.rsvd = true
	}
	d.perm, d.rw, d.us, d.xd = true, e&bitRW != 0, e&bitUS != 0, f.NXE && e&bitXD != 0
	frame := bitRange(12, mp-1)
	switch {
	case level == 1:
		d.leaf, d.size = true, 4096
	case e&bitPS == 0:
	case level == 2:
		d.leaf, d.size = true, 2<<20
		d.rsvd = d.rsvd || e&bitRange(13, 20) != 0
	case level == 3: // only long mode reaches here: PAE level 3 returned above
		d.leaf, d.size = true, 1<<30
		d.rsvd = d.rsvd || e&bitRange(13, 29) != 0
	default: // PS in a PML4E is reserved
		d.rsvd = true
	}
	if d.leaf {
		frame &^= d.size - 1
	}
	d.addr = e & frame
	return d
}
