package pagewalk

import (
	"encoding/binary"
	"fmt"
)

// Translate walks the tables rooted at cr3 to translate the linear address va for the access
// acc, as the CPU would (SDM 4.6 for permissions, 4.7 for the error code).
//
// A not-present entry, a reserved bit or a permission failure returns a *PageFault; a table
// outside RAM returns a *TableError naming the level and entry address; a non-canonical
// long-mode address returns ErrNonCanonical; a 32-bit mode address above 4 GiB is an error. On
// failure the returned Walk still lists the tables and entries read so far. With paging off
// (ModeNone) the address is its own translation. Accessed and dirty bits are not set: that is
// the caller's business if it emulates the access. A PAE PDPTE with reserved bits is reported
// as a reserved-bit fault at level 3, although the CPU raises #GP when it loads CR3 instead.
func Translate(mem Memory, mode Mode, cr3 uint64, va uint64, acc Access, flags Flags) (Walk, error) {
	if mode == ModeNone {
		return Walk{Phys: va, PageSize: 4096, Writable: true, User: true}, nil
	}
	if err := checkMode(mode); err != nil {
		return Walk{}, err
	}
	switch mode {
	case ModeLong4:
		if uint64(int64(va<<16)>>16) != va {
			return Walk{}, fmt.Errorf("%w %#x", ErrNonCanonical, va)
		}
	default:
		if va > 0xffffffff {
			return Walk{}, fmt.Errorf("pagewalk: address %#x beyond 32 bits in %v", va, mode)
		}
	}

	top := topLevel(mode)
	esize := entrySize(mode)
	// One backing array for both lists; the capacity limits keep their appends apart.
	lists := make([]uint64, 2*top)
	w := Walk{Writable: true, User: true, Tables: lists[:0:top], Entries: lists[top : top : 2*top]}
	var buf [8]byte
	table := rootTable(mode, cr3, flags)
	for level := top; ; level-- {
		idx := va >> indexShift(mode, level) & (tableEntries(mode, level) - 1)
		ea := table + idx*esize
		w.Tables = append(w.Tables, table&^0xfff)
		w.Entries = append(w.Entries, ea)
		if err := mem.ReadPhys(ea, buf[:esize]); err != nil {
			return w, &TableError{Mode: mode, Level: level, Addr: ea, Entry: true, Err: err}
		}
		raw := binary.LittleEndian.Uint64(buf[:])
		if esize == 4 {
			raw = uint64(binary.LittleEndian.Uint32(buf[:]))
		}
		e := decode(mode, level, raw, flags)
		if !e.present {
			return w, fault(mode, va, acc, flags, 0, level)
		}
		if e.rsvd {
			return w, fault(mode, va, acc, flags, PFPresent|PFReserved, level)
		}
		if e.perm {
			w.Writable = w.Writable && e.rw
			w.User = w.User && e.us
			w.NX = w.NX || e.xd
		}
		if !e.leaf {
			table = e.addr
			continue
		}
		w.Phys = e.addr | va&(e.size-1)
		w.PageSize = e.size
		if !allowed(w, acc, flags) {
			return w, fault(mode, va, acc, flags, PFPresent, level)
		}
		return w, nil
	}
}

// allowed applies the permission rules for a supervisor or user access (SMEP/SMAP not modelled).
func allowed(w Walk, acc Access, f Flags) bool {
	if acc.User && !w.User {
		return false
	}
	if acc.Write && !w.Writable && (acc.User || f.WP) {
		return false
	}
	return !(acc.Fetch && w.NX)
}

// fault builds the #PF for va with the access bits added to code.
func fault(m Mode, va uint64, acc Access, f Flags, code uint32, level int) *PageFault {
	if acc.Write {
		code |= PFWrite
	}
	if acc.User {
		code |= PFUser
	}
	// I/D is reported only where NX exists and is enabled (or with SMEP, not modelled).
	if acc.Fetch && f.NXE && m != ModeLegacy32 {
		code |= PFFetch
	}
	return &PageFault{Addr: va, Code: code, Level: level}
}
