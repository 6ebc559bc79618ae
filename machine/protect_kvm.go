package machine

import (
	"errors"
	"fmt"
	"slices"

	"vmrr/machine/kvm"
)

// This file write-protects single guest pages by splitting guest RAM into
// several KVM memory slots, some of them read-only (KVM_MEM_READONLY): a
// guest write to such a page exits as an MMIO write that SetRAMWriteHandler's
// function applies. tlbsync uses it to put its "T bit" on page-table pages.
//
// The slot table below is the one place that knows how RAM is installed;
// anything that later works per slot (dirty logging, snapshots re-installing
// RAM) goes through it.

// Slot is one KVM memory slot holding part of guest RAM.
type Slot struct {
	ID       uint32
	GPA      uint64 // guest physical start, 4 KiB aligned
	Size     uint64 // bytes, a multiple of 4 KiB
	ReadOnly bool   // installed with KVM_MEM_READONLY
}

// ErrTooManySlots is returned by SetReadOnlyPages when the pages would need
// more memory slots than KVM has.
var ErrTooManySlots = errors.New("machine: too many memory slots")

// capNRMemslots is KVM_CAP_NR_MEMSLOTS: how many slots an address space has.
const capNRMemslots = 10

// slotTable is the RAM layout of one machine, sorted by GPA, covering RAM
// with no gap and no overlap. It holds no reference to its machine, so the
// registry below does not keep machines alive.
type slotTable struct {
	slots []Slot
	max   int // KVM's slot limit
}

// table returns the machine's slot table, creating the one New installed
// (all of RAM in slot 0, writable) on first use.
func (m *Machine) table() *slotTable {
	if m.slots != nil {
		return m.slots
	}
	t := &slotTable{slots: []Slot{{ID: 0, GPA: 0, Size: m.mem.Size()}}, max: 512}
	if m.kvm != nil {
		if n := m.kvm.vm.CheckExtension(capNRMemslots); n > 0 {
			t.max = n
		}
	}
	m.slots = t
	return t
}

// CanProtectPages reports whether SetReadOnlyPages works here: KVM with
// read-only memory slots (KVM_CAP_READONLY_MEM).
func (m *Machine) CanProtectPages() bool {
	return m.kvm != nil && m.kvm.vm.CheckExtension(kvm.CapReadonlyMem) > 0
}

// Slots lists the memory slots that hold guest RAM now, by address.
func (m *Machine) Slots() []Slot { return slices.Clone(m.table().slots) }

// ReadOnlyPages lists the pages SetReadOnlyPages protected, ascending.
func (m *Machine) ReadOnlyPages() []uint64 {
	var pages []uint64
	for _, s := range m.table().slots {
		if s.ReadOnly {
			for p := s.GPA; p < s.GPA+s.Size; p += 4096 {
				pages = append(pages, p)
			}
		}
	}
	return pages
}

// SetReadOnlyPages makes exactly the given 4 KiB pages (guest physical,
// page aligned, in RAM; any order, duplicates allowed) read-only to the
// guest and the rest of RAM writable. Runs of adjacent pages share a slot.
// Only slots whose range or protection changes are removed and re-added;
// the rest of RAM keeps its slot, and the slot at address 0 keeps ID 0.
//
// Removing a slot makes KVM drop the translations it derived from guest
// memory, so a call that changes anything is also a FlushTLB.
func (m *Machine) SetReadOnlyPages(pages []uint64) error {
	if m.kvm == nil {
		return errors.New("machine: read-only memory slots need KVM (the soft CPU keeps its T bit in its MMU)")
	}
	size := m.mem.Size()
	ps := slices.Clone(pages)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	for _, p := range ps {
		if p%4096 != 0 || p >= size {
			return fmt.Errorf("machine: protect page %#x: not a page-aligned address in %d MiB of RAM", p, size>>20)
		}
	}
	want := layout(ps, size)
	t := m.table()
	if len(want) > t.max-1 { // FlushTLB uses the last slot
		return fmt.Errorf("%w: protecting %d pages needs %d, KVM has %d", ErrTooManySlots, len(ps), len(want), t.max)
	}
	return m.install(t, want)
}

// layout splits RAM of the given size into slots around the sorted,
// distinct read-only pages ps (IDs are not yet assigned).
func layout(ps []uint64, size uint64) []Slot {
	var out []Slot
	at := uint64(0)
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j] == ps[j-1]+4096 {
			j++
		}
		if ps[i] > at {
			out = append(out, Slot{GPA: at, Size: ps[i] - at})
		}
		out = append(out, Slot{GPA: ps[i], Size: ps[j-1] + 4096 - ps[i], ReadOnly: true})
		at = ps[j-1] + 4096
		i = j
	}
	if at < size {
		out = append(out, Slot{GPA: at, Size: size - at})
	}
	return out
}

// install moves KVM from the table's slots to want: it removes the slots
// that are not wanted as they are, then adds the new ones (KVM refuses
// overlapping slots). The table follows every step that succeeded, so after
// an error it still says what KVM has.
func (m *Machine) install(t *slotTable, want []Slot) error {
	same := func(a, b Slot) bool { return a.GPA == b.GPA && a.Size == b.Size && a.ReadOnly == b.ReadOnly }
	keep := t.slots[:0:0]
	for _, s := range t.slots {
		if slices.ContainsFunc(want, func(w Slot) bool { return same(w, s) }) {
			keep = append(keep, s)
			continue
		}
		if err := m.kvm.vm.SetMemoryRegion(s.ID, 0, s.GPA, nil); err != nil {
			t.slots = append(keep, t.slots[len(keep)+1:]...)
			return fmt.Errorf("machine: remove memory slot %d (%#x+%#x): %w", s.ID, s.GPA, s.Size, err)
		}
	}
	t.slots = keep
	used := map[uint32]bool{}
	for _, s := range keep {
		used[s.ID] = true
	}
	next := uint32(1)
	for _, w := range want {
		if slices.ContainsFunc(keep, func(s Slot) bool { return same(w, s) }) {
			continue
		}
		switch {
		case w.GPA == 0 && !used[0]:
			w.ID = 0
		default:
			for used[next] {
				next++
			}
			w.ID = next
		}
		if err := m.addSlot(w); err != nil {
			return err
		}
		used[w.ID] = true
		t.slots = append(t.slots, w)
		slices.SortFunc(t.slots, func(a, b Slot) int { return cmpUint64(a.GPA, b.GPA) })
	}
	return nil
}

// addSlot installs one slot of RAM.
func (m *Machine) addSlot(s Slot) error {
	var flags uint32
	if s.ReadOnly {
		flags |= kvm.MemReadonly
	}
	if err := m.kvm.vm.SetMemoryRegion(s.ID, flags, s.GPA, m.mem.b[s.GPA:s.GPA+s.Size]); err != nil {
		return fmt.Errorf("machine: add memory slot %d (%#x+%#x read-only %v): %w", s.ID, s.GPA, s.Size, s.ReadOnly, err)
	}
	return nil
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// flushSlotGPA is where FlushTLB puts its scratch slot: above all RAM (at
// most 4 GiB) and the TSS pages below 4 GiB.
const flushSlotGPA = 1 << 36

// FlushTLB makes the guest see guest memory as it is now, through
// translations KVM derives afresh: after the VMM changed a page-table entry
// the guest does not see change (tlbsync applying a trapped write, a
// snapshot restore), the guest must not go on using the old translation.
//
// It adds and removes a one-page scratch slot, because removing a slot is
// what makes KVM drop all the shadow and TLB entries. Measured on PVM with
// a CPL3 guest reading through a remapped PTE: KVM_SET_SREGS with CR4.PGE
// toggled or CR3 reloaded (17 us) and toggling dirty logging leave the old
// translation in use; re-adding the RAM slot (59 us) and adding and removing
// the scratch slot (31 us) both drop it. The scratch slot leaves RAM's own
// slots (and any dirty log they carry) alone.
func (m *Machine) FlushTLB() error {
	if m.soft != nil {
		m.soft.flushTLB()
		return nil
	}
	id := uint32(m.table().max - 1)
	if err := m.kvm.vm.SetMemoryRegion(id, kvm.MemReadonly, flushSlotGPA, m.mem.b[:4096]); err != nil {
		return fmt.Errorf("machine: flush TLB: %w", err)
	}
	if err := m.kvm.vm.SetMemoryRegion(id, 0, flushSlotGPA, nil); err != nil {
		return fmt.Errorf("machine: flush TLB: %w", err)
	}
	return nil
}
