package machine

import (
	"errors"

	"vmrr/machine/cpu"
	"vmrr/machine/x86emu"
	"vmrr/tlbsync/pagewalk"
)

// softMMU is the soft CPU's TLB. It caches translations as hardware does:
// a cached translation survives a write to the entry it came from until
// INVLPG, a CR3 load (non-global entries) or a paging-mode change, so a
// guest that forgets INVLPG sees stale data on soft too, the same way every
// run. With the T bit on (tlbsync), the physical pages a page walk read are
// marked, and a write to a marked page drops the cached translations, so a
// stale translation is never used.
type softMMU struct {
	mem     *Memory
	tbit    bool
	entries x86emu.TLB
	// marked holds one byte per guest page: non-zero when a cached
	// translation was built from a table in that page (T bit).
	marked    []byte
	markedSet []uint64 // the marked pages, to clear them on a full flush
	stats     SoftTLBStats
}

// SoftTLBStats counts what the soft MMU's T bit did.
type SoftTLBStats struct {
	Marked  uint64 // page-table pages marked (a page counts again after a flush cleared it)
	Dropped uint64 // guest writes to a marked page that dropped cached translations
	Walks   uint64 // page walks (TLB misses)
}

// The entries are x86emu's TLB type, so the interpreter's fast path reads
// them directly; the perms bits are x86emu.TLBWritable and following.
const (
	tlbSize     = x86emu.TLBSize
	tlbWritable = x86emu.TLBWritable
	tlbUser     = x86emu.TLBUser
	tlbNX       = x86emu.TLBNX
	tlbGlobal   = x86emu.TLBGlobal
	tlbDirty    = x86emu.TLBDirty
	tlbSupWrite = x86emu.TLBSupWrite
)

type tlbEntry = x86emu.TLBEntry

func (t *softMMU) init(mem *Memory, tbit bool) {
	t.mem, t.tbit = mem, tbit
	if tbit {
		t.marked = make([]byte, mem.Size()/4096)
	}
}

// translate maps a linear address for an access, raising #PF (ok=false,
// with the error code) as the processor would.
func (t *softMMU) translate(s *cpu.Sregs, lin uint64, write, user, fetch bool) (uint64, uint32, bool) {
	if s.CR0&cpu.CR0PG == 0 {
		return lin & 0xffffffff, 0, true
	}
	vpn := lin >> 12
	e := &t.entries[vpn%tlbSize]
	if e.Tag == vpn+1 && t.allows(e, write, user, fetch) {
		return e.PPN<<12 | lin&0xfff, 0, true
	}
	return t.walk(s, lin, write, user, fetch)
}

// allows reports whether a cached entry grants the access; a denied one
// goes to a page walk, which raises the fault (or sets D first).
func (t *softMMU) allows(e *tlbEntry, write, user, fetch bool) bool {
	switch {
	case user && e.Perms&tlbUser == 0:
		return false
	case fetch && e.Perms&tlbNX != 0:
		return false
	case write && e.Perms&tlbDirty == 0:
		return false
	case write && user && e.Perms&tlbWritable == 0:
		return false
	case write && !user && e.Perms&tlbSupWrite == 0:
		return false
	}
	return true
}

func (t *softMMU) walk(s *cpu.Sregs, lin uint64, write, user, fetch bool) (uint64, uint32, bool) {
	t.stats.Walks++
	mode := pagewalk.ModeOf(s.CR0, s.CR4, s.EFER)
	flags := pagewalk.FlagsOf(s.CR0, s.CR4, s.EFER)
	w, err := pagewalk.Translate(t.mem, mode, s.CR3, lin, pagewalk.Access{Write: write, User: user, Fetch: fetch}, flags)
	if err != nil {
		var pf *pagewalk.PageFault
		if errors.As(err, &pf) {
			return 0, pf.Code, false
		}
		// A table outside RAM: the processor would read all ones there,
		// which is a reserved-bit fault.
		return 0, pagewalk.PFPresent | pagewalk.PFReserved, false
	}
	leaf := t.setAccessed(mode, w.Entries, write)
	perms := uint8(tlbDirty)
	if !write && leaf&(1<<6) == 0 {
		perms = 0
	}
	if w.Writable {
		perms |= tlbWritable | tlbSupWrite
	}
	if !flags.WP {
		perms |= tlbSupWrite
	}
	if w.User {
		perms |= tlbUser
	}
	if w.NX {
		perms |= tlbNX
	}
	if leaf&(1<<8) != 0 && s.CR4&cpu.CR4PGE != 0 {
		perms |= tlbGlobal
	}
	vpn := lin >> 12
	ppn := w.Phys >> 12
	t.entries[vpn%tlbSize] = tlbEntry{Tag: vpn + 1, PPN: ppn, Perms: perms}
	if t.tbit {
		for _, tab := range w.Tables {
			if p := tab >> 12; p < uint64(len(t.marked)) && t.marked[p] == 0 {
				t.marked[p] = 1
				t.markedSet = append(t.markedSet, p)
				t.stats.Marked++
			}
		}
	}
	return w.Phys, 0, true
}

// setAccessed sets the accessed bit of every entry of a walk, and the dirty
// bit of the leaf for a write, as the processor does; it returns the leaf
// entry. These writes are the MMU's own and drop no translation.
func (t *softMMU) setAccessed(mode pagewalk.Mode, entries []uint64, write bool) uint64 {
	var leaf uint64
	wide := mode != pagewalk.ModeLegacy32
	for i, a := range entries {
		var v uint64
		if wide {
			v = t.mem.Uint64(a)
		} else {
			v = uint64(t.mem.Uint32(a))
		}
		nv := v | 1<<5
		last := i == len(entries)-1
		if last && write {
			nv |= 1 << 6
		}
		if mode == pagewalk.ModePAE && i == 0 && len(entries) == 3 {
			nv = v // PAE PDPTEs have no accessed bit
		}
		if nv != v {
			if wide {
				t.mem.PutUint64(a, nv)
			} else {
				t.mem.PutUint32(a, uint32(nv))
			}
		}
		if last {
			leaf = nv
		}
	}
	return leaf
}

// written is told of every guest write: one to a marked page drops the
// cached translations. All of them go, not only those built from the page:
// page-table writes are rare next to instructions, and a full flush of the
// small TLB costs about what finding the dependent entries would.
func (t *softMMU) written(gpa uint64, n int) {
	if !t.tbit {
		return
	}
	first, last := gpa>>12, (gpa+uint64(n)-1)>>12
	for p := first; p <= last && p < uint64(len(t.marked)); p++ {
		if t.marked[p] != 0 {
			t.stats.Dropped++
			t.flush(x86emu.FlushAll, 0)
			return
		}
	}
}

// flush drops cached translations as INVLPG, a CR3 load or a paging
// change does.
func (t *softMMU) flush(kind x86emu.TLBFlush, lin uint64) {
	switch kind {
	case x86emu.FlushPage:
		vpn := lin >> 12
		if e := &t.entries[vpn%tlbSize]; e.Tag == vpn+1 {
			*e = tlbEntry{}
		}
	case x86emu.FlushNonGlobal:
		for i := range t.entries {
			if t.entries[i].Perms&tlbGlobal == 0 {
				t.entries[i] = tlbEntry{}
			}
		}
	default:
		t.entries = x86emu.TLB{}
		for _, p := range t.markedSet {
			t.marked[p] = 0
		}
		t.markedSet = t.markedSet[:0]
	}
}

// SoftTLBStats is what the soft CPU's T bit did (zero on KVM).
func (m *Machine) SoftTLBStats() SoftTLBStats {
	if m.soft == nil {
		return SoftTLBStats{}
	}
	return m.soft.mmu.stats
}

// SoftTLBSync reports whether the soft CPU's MMU keeps the T bit.
func (m *Machine) SoftTLBSync() bool { return m.soft != nil && m.soft.mmu.tbit }
