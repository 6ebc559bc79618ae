package nondet

import (
	"vmrr/machine"
)

// Entry is one value in the ring: the instruction kind (a cpu.NonDet),
// an auxiliary word (RDTSCP's IA32_TSC_AUX) and the value.
type Entry struct {
	Kind  uint32
	Aux   uint32
	Value uint64
}

// Ring is the VMM's view of the in-guest ring buffer (docs/guest-abi.md).
// The guest and the VMM share its head index; the VMM only moves it at
// exits, when the guest is not half-way through an append.
type Ring struct {
	mem *machine.Memory
}

// NewRing resets the ring for a recording (recording=true: the guest keeps
// the values it computes) or a replay (the guest takes the ring's values).
func NewRing(mem *machine.Memory, recording bool) *Ring {
	r := &Ring{mem: mem}
	var mask uint64
	if recording {
		mask = ^uint64(0)
	}
	mem.PutUint64(machine.RingBase+machine.RingOffRecMask, mask)
	r.setHead(0)
	return r
}

// Head is the index of the next entry.
func (r *Ring) Head() uint64 {
	return min(r.mem.Uint64(machine.RingBase+machine.RingOffHead), machine.RingCapacity)
}

func (r *Ring) setHead(h uint64) { r.mem.PutUint64(machine.RingBase+machine.RingOffHead, h) }

func entryAddr(i uint64) uint64 {
	return machine.RingBase + machine.RingEntries + i*machine.RingEntrySize
}

// entry reads entry i.
func (r *Ring) entry(i uint64) Entry {
	a := entryAddr(i)
	return Entry{Value: r.mem.Uint64(a), Kind: r.mem.Uint32(a + 8), Aux: r.mem.Uint32(a + 12)}
}

func (r *Ring) setEntry(i uint64, e Entry) {
	a := entryAddr(i)
	r.mem.PutUint64(a, e.Value)
	r.mem.PutUint32(a+8, e.Kind)
	r.mem.PutUint32(a+12, e.Aux)
}

// Put appends a value the VMM produced (a trapped instruction) and reports
// whether the ring is now full and must be drained.
func (r *Ring) Put(e Entry) (full bool) {
	h := r.Head()
	r.setEntry(h, e)
	r.setHead(h + 1)
	return h+1 >= machine.RingCapacity
}

// Drain returns the entries appended since the last drain and empties the
// ring (record side).
func (r *Ring) Drain() []Entry {
	h := r.Head()
	out := make([]Entry, h)
	for i := range out {
		out[i] = r.entry(uint64(i))
	}
	r.setHead(0)
	return out
}

// Fill loads a batch of logged entries and rewinds the head (replay side).
func (r *Ring) Fill(batch []Entry) {
	for i, e := range batch {
		r.setEntry(uint64(i), e)
	}
	r.setHead(0)
}

// Take consumes the entry at the head for a trapped instruction (replay
// side); the caller checks the head against the batch it filled.
func (r *Ring) Take() Entry {
	h := r.Head()
	e := r.entry(h)
	r.setHead(h + 1)
	return e
}
