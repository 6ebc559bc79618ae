// Package tlbsync keeps the guest's TLB in step with its page tables, the
// same way in record and in replay: every page that holds page-table
// entries reachable from CR3 is marked (the "T bit") by mapping it
// read-only, so a guest write to it exits, is applied by the VMM, and the
// translations it changes are flushed at once.
//
// Determinism. Marks decide which guest writes exit, and exits are counted
// positions, so the set of marked pages must be the same function of guest
// state in record and in replay. The recorder stops where replay does not
// (kicks for timer ticks) and the replayer stops where the recorder did not
// (breakpoints placing events), so Sync acts only when the deterministic
// exit count has moved since it last looked, before the guest runs on from
// that exit; everything it does there depends on guest registers and memory
// alone. A trapped write is an MMIO exit of its own in both.
//
// What it costs. The page tables are walked at the first entry, when CR3 or
// the paging mode changed at an exit, and after a trapped write changed an
// entry of an upper-level table (PML4, PDPT, page directory) in a way that
// can add or remove a table; writes to last-level page tables never cause a
// walk. Every trapped write that changes memory costs a TLB flush
// (machine.FlushTLB).
//
// Known gaps: a CR3 load between two exits is noticed at the second one,
// and until then writes to tables only the new CR3 reaches are not trapped;
// writes the VMM itself makes to page tables (its instruction emulator, a
// snapshot restore) are not trapped (call Invalidate after the latter); the
// host does not set accessed and dirty bits in marked tables.
package tlbsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"vmrr/machine"
	"vmrr/machine/probe"
	"vmrr/tlbsync/pagewalk"
)

// Stats counts what tlbsync did.
type Stats struct {
	Marked  uint64 // page-table pages marked now
	Writes  uint64 // guest writes to marked pages trapped and applied
	Flushes uint64 // TLB flushes forced
	Walks   uint64 // page-table walks from CR3
	// Partial counts walks that stopped early: a table outside RAM, more
	// tables than pagewalk.DefaultTableLimit, or 5-level paging. The pages
	// found before are marked; the guest's own walks would fault there.
	Partial uint64
}

// paging is what a walk depends on besides memory.
type paging struct {
	mode  pagewalk.Mode
	cr3   uint64
	flags pagewalk.Flags
}

// Sync tracks one machine's page tables.
type Sync struct {
	m     *machine.Machine
	stats Stats
	soft  bool // the soft CPU's MMU does the work

	looked  bool   // BeforeRun has looked at the machine at least once
	exits   uint64 // the exit count it last looked at
	paging  paging // the paging state of the last walk
	pages   []uint64
	upper   map[uint64]bool // marked pages used as a table above the last level
	dirty   bool            // a trapped write may have added or removed a table
	flush   bool            // a trapped write waits for its TLB flush
	invalid bool            // Invalidate was called
}

// Attach starts tracking a machine's page tables: it takes the machine's
// handler for writes to read-only RAM. The first walk happens at the first
// BeforeRun.
//
// On the soft CPU the MMU keeps the T bit itself (machine.Config.TLBSync):
// Attach checks it is on, and Stats reports the MMU's counters.
func Attach(m *machine.Machine) (*Sync, error) {
	if m.Accel() == machine.AccelSoft {
		if !m.SoftTLBSync() {
			return nil, errors.New("tlbsync: the soft CPU was built without its T bit (machine.Config.TLBSync)")
		}
		return &Sync{m: m, soft: true}, nil
	}
	if !m.CanProtectPages() {
		return nil, fmt.Errorf("tlbsync: this KVM has no read-only memory slots (KVM_CAP_READONLY_MEM); record with --tlbsync=off")
	}
	// On AMD nested paging (the nested KVM of docs/nested-kvm.md) a guest
	// walking page tables in read-only slots reads its page-table entries
	// as data and livelocks: tlbsync cannot work there.
	if err := probe.ReadOnlyPageTables(); err != nil {
		return nil, fmt.Errorf("tlbsync: this host's KVM cannot run guests on page tables in read-only memory slots (%v); use --accel soft, or --tlbsync=off", err)
	}
	s := &Sync{m: m}
	m.SetRAMWriteHandler(s.write)
	return s, nil
}

// BeforeRun brings the marks up to date when the exit count moved: it
// re-walks the page tables when CR3, the paging mode or a table entry
// changed, and flushes the TLB after trapped writes. The recorder and the
// replayer call it before every entry; at a stop that is not a new exit
// (a kick, a breakpoint) it does nothing, not even a system call.
func (s *Sync) BeforeRun(m *machine.Machine) error {
	if s.soft {
		return nil
	}
	exits := m.Exits()
	if s.looked && exits == s.exits && !s.dirty && !s.flush && !s.invalid {
		return nil
	}
	// The exit count goes backwards only when a snapshot was restored:
	// memory may have changed behind our back.
	back := s.looked && exits < s.exits
	s.looked, s.exits = true, exits
	sr, err := m.Sregs()
	if err != nil {
		return fmt.Errorf("tlbsync: read control registers at exit %d: %w", exits, err)
	}
	p := paging{
		mode:  pagewalk.ModeOf(sr.CR0, sr.CR4, sr.EFER),
		cr3:   sr.CR3,
		flags: pagewalk.FlagsOf(sr.CR0, sr.CR4, sr.EFER),
	}
	if s.stats.Walks == 0 || p != s.paging || s.dirty || s.invalid || back {
		if err := s.walk(p); err != nil {
			return err
		}
	}
	if s.flush {
		if err := m.FlushTLB(); err != nil {
			return fmt.Errorf("tlbsync: at exit %d: %w", exits, err)
		}
		s.stats.Flushes++
		s.flush = false
	}
	return nil
}

// Invalidate makes the next BeforeRun walk the page tables again whatever
// changed: call it after the VMM rewrote guest memory (snapshot restore).
func (s *Sync) Invalidate() { s.invalid = true }

// Stats reports the counters.
func (s *Sync) Stats() Stats {
	if s.soft {
		t := s.m.SoftTLBStats()
		return Stats{Marked: t.Marked, Writes: t.Dropped, Flushes: t.Dropped, Walks: t.Walks}
	}
	return s.stats
}

// Marked lists the marked pages, ascending.
func (s *Sync) Marked() []uint64 { return slices.Clone(s.pages) }

// walk finds the page-table pages reachable with p and marks exactly them.
func (s *Sync) walk(p paging) error {
	mem := s.m.Memory()
	tree, err := pagewalk.Scan(mem, p.mode, p.cr3, p.flags, 0)
	s.stats.Walks++
	if err != nil {
		// Guest data, not our failure: mark what was found, as a replay will.
		s.stats.Partial++
	}
	pages := tree.Pages[:0:0]
	for _, pg := range tree.Pages {
		if pg < mem.Size() {
			pages = append(pages, pg)
		}
	}
	slices.Sort(pages)
	s.paging, s.dirty, s.invalid = p, false, false
	s.upper = upperTables(mem, p, pages)
	if slices.Equal(pages, s.pages) {
		return nil
	}
	if pages, err = s.protect(pages); err != nil {
		return fmt.Errorf("tlbsync: mark %d page-table pages: %w", len(pages), err)
	}
	// Changing the slots dropped every translation: that was the flush.
	s.stats.Flushes++
	s.flush = false
	s.pages = pages
	s.stats.Marked = uint64(len(pages))
	return nil
}

// protect makes pages read-only. When they need more memory slots than
// KVM has, it keeps the upper-level tables and halves the rest until they
// fit (the same choice in record and replay), and counts a partial walk:
// writes to the pages left out are not trapped.
func (s *Sync) protect(pages []uint64) ([]uint64, error) {
	err := s.m.SetReadOnlyPages(pages)
	if !errors.Is(err, machine.ErrTooManySlots) {
		return pages, err
	}
	s.stats.Partial++
	var upper, rest []uint64
	for _, p := range pages {
		if s.upper[p] {
			upper = append(upper, p)
		} else {
			rest = append(rest, p)
		}
	}
	for errors.Is(err, machine.ErrTooManySlots) && len(rest) > 0 {
		rest = rest[:len(rest)/2]
		pages = slices.Concat(upper, rest)
		slices.Sort(pages)
		err = s.m.SetReadOnlyPages(pages)
	}
	return pages, err
}

// write applies a guest write to a marked page and notes what it changed.
// The guest does not run again before BeforeRun, which flushes.
func (s *Sync) write(gpa uint64, data []byte) error {
	mem := s.m.Memory()
	old := make([]byte, len(data))
	if err := mem.ReadPhys(gpa, old); err != nil {
		return fmt.Errorf("tlbsync: trapped write of %d bytes at %#x: %w", len(data), gpa, err)
	}
	if err := mem.WritePhys(gpa, data); err != nil {
		return fmt.Errorf("tlbsync: trapped write of %d bytes at %#x: %w", len(data), gpa, err)
	}
	s.stats.Writes++
	if slices.Equal(old, data) {
		return nil
	}
	s.flush = true
	if !s.dirty && s.upper[gpa&^0xfff] && structural(mem, s.paging.mode, gpa, old, data) {
		s.dirty = true
	}
	return nil
}

// attrBits are the entry bits that never decide whether an entry points
// at a table or where: R/W, U/S, PWT, PCD, accessed, dirty, global and the
// three bits software may use.
const attrBits = 0xf7e

// structural reports whether a write that replaced old with data at gpa
// may have changed an entry's target or whether it is a table pointer (any
// change but to attribute bits; in PAE mode any change at all, since PDPTE
// attribute bits are reserved and stop a walk).
func structural(mem *machine.Memory, mode pagewalk.Mode, gpa uint64, old, data []byte) bool {
	if mode == pagewalk.ModePAE {
		return true
	}
	esize := uint64(8)
	if mode == pagewalk.ModeLegacy32 {
		esize = 4
	}
	first := gpa &^ (esize - 1)
	last := (gpa + uint64(len(data)) - 1) &^ (esize - 1)
	for e := first; e <= last; e += esize {
		var now [8]byte
		if err := mem.ReadPhys(e, now[:esize]); err != nil {
			return true
		}
		before := now
		for i := range old { // the entry as it was: old bytes over the new entry
			if a := gpa + uint64(i); a >= e && a < e+esize {
				before[a-e] = old[i]
			}
		}
		if (binary.LittleEndian.Uint64(before[:])^binary.LittleEndian.Uint64(now[:]))&^attrBits != 0 {
			return true
		}
	}
	return false
}

// upperTables returns the pages among the marked ones that a walk reads as
// a table above the last level (whose entries may point at tables). It
// follows every present entry that is not a large-page leaf, including
// ones with reserved bits: counting a page as upper when it is not only
// costs a walk too many after a write to it.
func upperTables(mem *machine.Memory, p paging, marked []uint64) map[uint64]bool {
	upper := map[uint64]bool{}
	var top int
	var root uint64
	switch p.mode {
	case pagewalk.ModeLong4:
		top, root = 4, p.cr3&frameMask()
	case pagewalk.ModePAE:
		top, root = 3, p.cr3&0xffffffe0
	case pagewalk.ModeLegacy32:
		top, root = 2, p.cr3&0xfffff000
	default:
		return upper
	}
	type table struct {
		addr  uint64
		level int
	}
	seen := map[table]bool{}
	todo := []table{{root, top}}
	buf := make([]byte, 4096)
	for len(todo) > 0 {
		t := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if t.level < 2 || seen[t] {
			continue
		}
		seen[t] = true
		if _, ok := slices.BinarySearch(marked, t.addr&^0xfff); !ok {
			continue // not a table the scan reached (outside RAM)
		}
		upper[t.addr&^0xfff] = true
		n, esize := 512, 8
		switch {
		case p.mode == pagewalk.ModeLegacy32:
			n, esize = 1024, 4
		case p.mode == pagewalk.ModePAE && t.level == 3:
			n = 4
		}
		b := buf[:n*esize]
		if mem.ReadPhys(t.addr, b) != nil {
			continue
		}
		for i := 0; i < n; i++ {
			var e, addr uint64
			if esize == 4 {
				e = uint64(binary.LittleEndian.Uint32(b[i*4:]))
				addr = e & 0xfffff000
			} else {
				e = binary.LittleEndian.Uint64(b[i*8:])
				addr = e & frameMask()
			}
			if e&1 == 0 {
				continue
			}
			large := e&0x80 != 0
			switch {
			case p.mode == pagewalk.ModeLong4 && t.level == 4: // PS is reserved here
				large = false
			case p.mode == pagewalk.ModePAE && t.level == 3: // no PS in a PDPTE
				large = false
			case p.mode == pagewalk.ModeLegacy32:
				large = large && p.flags.PSE
			}
			if !large {
				todo = append(todo, table{addr, t.level - 1})
			}
		}
	}
	return upper
}

// frameMask selects an entry's physical frame bits, up to MAXPHYADDR as
// pagewalk reads them with the Flags tlbsync passes (FlagsOf: the default).
func frameMask() uint64 {
	mp := pagewalk.DefaultMaxPhysAddr
	return (uint64(1)<<mp - 1) &^ 0xfff
}
