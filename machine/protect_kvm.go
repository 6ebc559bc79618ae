//go:build linux

package machine

import (
	"errors"
	"fmt"
	"slices"

	"vmrr/machine/kvm"
)

// maxSlots is KVM's slot limit (KVM_CAP_NR_MEMSLOTS), 0 if unknown.
func (m *Machine) maxSlots() int {
	if m.kvm == nil {
		return 0
	}
	return m.kvm.vm.CheckExtension(capNRMemslots)
}

// This file write-protects single guest pages by splitting guest RAM into
// several KVM memory slots, some of them read-only (KVM_MEM_READONLY): a
// guest write to such a page exits as an MMIO write that SetRAMWriteHandler's
// function applies. tlbsync uses it to put its "T bit" on page-table pages.
//
// The slot table below is the one place that knows how RAM is installed;
// anything that later works per slot (dirty logging, snapshots re-installing
// RAM) goes through it.

// capNRMemslots is KVM_CAP_NR_MEMSLOTS: how many slots an address space has.
const capNRMemslots = 10

// CanProtectPages reports whether SetReadOnlyPages works here: KVM with
// read-only memory slots (KVM_CAP_READONLY_MEM).
func (m *Machine) CanProtectPages() bool {
	return m.kvm != nil && m.kvm.vm.CheckExtension(kvm.CapReadonlyMem) > 0
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
