//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"vmrr/machine/kvm"
)

// MechROPageTables is the mechanism tlbsync stands on: the guest's page
// tables in read-only memory slots, so that the guest's writes to them exit
// while its page walks through them go on as before.
const MechROPageTables = "read-only page tables"

// Where the read-only page tables guest keeps its window: virtual 1 GiB
// (PDPT entry 1) through a page directory and a page table of its own, the
// page table in a read-only slot. Entry 0 of the table maps the window's
// first page, so a read of the window's first word and the walk's read of
// that entry are at the same offset in their pages.
const (
	rptPD    = 0x33000
	rptPT    = 0x34000
	rptPageA = 0x35000
	rptPageB = 0x36000
	rptVA    = 0x40000000
	rptA     = 0x4141414141414141
	rptB     = 0x4242424242424242
	rptC     = 0x4343434343434343
)

// roPageTables checks at CPL0 and CPL3 that a guest reads and writes
// through page tables that lie in read-only memory slots, as tlbsync puts
// them all, as through any others: the read through the window returns the
// page the entry maps, the guest's write of a new entry exits as an MMIO
// write of that entry, and after the VMM applied it and flushed the TLB the
// guest reads the new page and writes to it.
//
// AMD nested paging treats every access of a guest page walk as a write
// (the hardware may set accessed and dirty bits), so a walk through a
// read-only slot faults to KVM, which emulates the guest's instruction;
// KVM's emulator then takes the faulting address, which is the page-table
// entry's, for the instruction's data when the two share their offset in
// the page. The guest reads its page-table entry instead of its data, and
// its writes go to the page table: this probe sees it.
//
// Every entry has its accessed and dirty bits clear, as an operating
// system writes them, so the walks must set them in the read-only slots.
// With KVM's shadow paging (AMD with npt=0) a walk at CPL3 then never
// completes: KVM re-enters the guest at the same instruction for ever,
// without an exit, and the probe's watchdog sees it.
func (p *prober) roPageTables() Mechanism {
	m := p.cpl(MechROPageTables, roPageTablesAt)
	m.Note = "tlbsync marks page tables this way"
	return m
}

func roPageTablesAt(mode Mode) Level {
	a := newAsmFor(mode)
	a.load64(rptVA)           // rbx = the window's first word
	a.raw(0x48, 0x89, 0xd9)   // mov rcx, rbx
	a.movabs(rptPageB | 0x07) // the entry for page B, accessed and dirty clear
	a.store64(rptPT)          // trapped: an MMIO write of the entry
	a.out(portMark)           // the VMM has applied it and flushed
	a.load64(rptVA)           // rbx = the window's first word again
	a.movabs(rptC)            // a write through the new entry, which
	a.store64(rptVA)          // sets its dirty bit
	a.load64(rptVA + 8)       // rbx = the window's second word
	a.out(portExit)
	g, err := startRaw(mode, a, 0, 2*time.Second)
	if err != nil {
		return broken(err)
	}
	defer g.close()
	mem := g.m.Memory()
	mem.PutUint64(pdptAddr+8, rptPD|7)
	mem.PutUint64(rptPD, rptPT|7)
	mem.PutUint64(rptPT, rptPageA|0x67) // present, writable, user, accessed, dirty
	mem.PutUint64(rptPageA, rptA)
	mem.PutUint64(rptPageB, rptB)
	mem.PutUint64(rptPageB+8, rptB)
	if g.m.KVMVM().CheckExtension(kvm.CapReadonlyMem) <= 0 {
		return no("KVM_CAP_READONLY_MEM is missing")
	}
	// Every page table, as tlbsync marks them: the guest's code and stack
	// are reached through them too, and their entries have the accessed
	// and dirty bits clear.
	tables := []uint64{pml4Addr, pdptAddr, pdAddr, rptPD, rptPT}
	if err := g.m.SetReadOnlyPages(tables); err != nil {
		return no("%v", err)
	}
	var writes []string
	err = g.until(portMark, func(r uint32) (bool, error) {
		mm := g.v.MMIO()
		if r != kvm.ExitMMIO || mm.IsWrite == 0 {
			return false, g.unexpected(r)
		}
		v := binary.LittleEndian.Uint64(mm.Data[:])
		writes = append(writes, fmt.Sprintf("%#x at %#x", v, mm.PhysAddr))
		if mm.PhysAddr != rptPT || mm.Len != 8 {
			return true, nil
		}
		mem.PutUint64(rptPT, v)
		return true, g.m.FlushTLB()
	})
	if err != nil {
		return no("%v", err)
	}
	regs, _ := g.v.Regs()
	first := regs.RCX
	err = g.until(portExit, func(r uint32) (bool, error) {
		if mm := g.v.MMIO(); r == kvm.ExitMMIO && mm.IsWrite != 0 && slices.Contains(tables, mm.PhysAddr&^0xfff) {
			v := binary.LittleEndian.Uint64(mm.Data[:])
			if v == rptC {
				return false, fmt.Errorf("the guest's write of %#x through the window went to its page table at %#x: KVM emulated the store at the page walk's address", v, mm.PhysAddr)
			}
			return false, fmt.Errorf("a write of %#x to the page table at %#x, where the guest stores nothing", v, mm.PhysAddr)
		}
		return false, g.unexpected(r)
	})
	if err != nil {
		return no("after the page-table write, a write through the new entry: %v", err)
	}
	regs, _ = g.v.Regs()
	switch {
	case first == rptPageA|0x67:
		return no("a read through the window returned the page-table entry %#x, not the page it maps: KVM emulated the access at the page walk's address", first)
	case first != rptA:
		return no("a read through the window returned %#x, want %#x", first, uint64(rptA))
	case len(writes) != 1 || mem.Uint64(rptPT)&^0x60 != rptPageB|0x07:
		return no("the guest's write of a page-table entry came as MMIO writes %v, want one of %#x at %#x", writes, uint64(rptPageB|0x07), rptPT)
	case regs.RBX != rptB || mem.Uint64(rptPageB) != rptC:
		return no("after the new entry and a TLB flush the guest read %#x, want %#x, and wrote %#x, want %#x", regs.RBX, uint64(rptB), mem.Uint64(rptPageB), uint64(rptC))
	}
	return Level{Works: Yes}
}

var (
	roPTOnce sync.Once
	roPTErr  error
)

// ReadOnlyPageTables checks, once per process, that this host's KVM runs
// guests whose page tables lie in read-only memory slots correctly at CPL0
// and CPL3 (what tlbsync needs; see roPageTables). The error says what
// went wrong.
func ReadOnlyPageTables() error {
	roPTOnce.Do(func() {
		if err := kvmUsable(); err != nil {
			roPTErr = err
			return
		}
		for _, mode := range []Mode{ModeLong64, ModeUser64} {
			if l := roPageTablesAt(mode); l.Works != Yes {
				roPTErr = fmt.Errorf("%s at CPL%d: %s", MechROPageTables, cplOf(mode), l.Detail)
				return
			}
		}
	})
	return roPTErr
}
