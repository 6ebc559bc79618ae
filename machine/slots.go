package machine

import (
	"errors"
	"slices"
)

// Guest RAM as memory slots. On KVM, protect_kvm.go installs RAM as several
// slots, some of them read-only, to write-protect single pages; the soft CPU
// keeps RAM in one piece (its T bit lives in its MMU).

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
	if n := m.maxSlots(); n > 0 {
		t.max = n
	}
	m.slots = t
	return t
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

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
