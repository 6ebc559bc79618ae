package replayer

import (
	"bytes"

	"vmrr/machine"
	"vmrr/position"
)

const pageSize = 4096

// snapshot is the whole replay state at one position: the vCPU, the
// devices, the log cursors, the console length, and the guest pages that
// changed since the snapshot before it.
type snapshot struct {
	pos     position.Pos
	cpu     machine.CPUState
	dev     machine.DeviceState
	eng     engineState
	event   int // index of the next event
	console int
	// pages holds the content, at this snapshot, of every page that
	// differs from the previous snapshot (all pages for the first one).
	pages map[uint64][]byte
	bytes uint64
}

// snapshots is an ordered list of snapshots with copy-on-write memory: each
// stores only the pages that changed since the one before, found by
// comparing guest RAM with a shadow copy of it at the last snapshot. (Dirty
// logging would avoid the compare; at 64 MiB it costs a few milliseconds.)
type snapshots struct {
	// limit bounds the bytes the snapshots hold beyond the first (0: no
	// bound); thin keeps them under it.
	limit  uint64
	list   []*snapshot
	shadow []byte // guest RAM as of the last snapshot in list
}

// take appends a snapshot of the current state.
func (ss *snapshots) take(e replay, console int) (*snapshot, error) {
	m := e.Machine()
	cpu, err := m.SaveCPU()
	if err != nil {
		return nil, err
	}
	_, event := e.Next()
	s := &snapshot{pos: m.Position(), cpu: cpu, dev: m.SaveDevices(), eng: e.saveState(), event: int(event), console: console, pages: map[uint64][]byte{}}
	ram := m.Memory().Bytes()
	dirty, tracked := m.DirtyPages()
	switch {
	case ss.shadow == nil:
		ss.shadow = append([]byte(nil), ram...)
		base := append([]byte(nil), ram...)
		for p := uint64(0); p*pageSize < uint64(len(ram)); p++ {
			s.pages[p] = base[p*pageSize : (p+1)*pageSize]
		}
		s.bytes = uint64(len(ram))
	case tracked:
		// The CPU logged the pages written since the last snapshot: only
		// those can differ from the shadow.
		for _, p := range dirty {
			off := p * pageSize
			cur, old := ram[off:off+pageSize], ss.shadow[off:off+pageSize]
			if !bytes.Equal(cur, old) {
				copy(old, cur)
				s.pages[p] = append([]byte(nil), cur...)
				s.bytes += pageSize
			}
		}
	default:
		for off := 0; off < len(ram); off += pageSize {
			cur, old := ram[off:off+pageSize], ss.shadow[off:off+pageSize]
			if !bytes.Equal(cur, old) {
				copy(old, cur)
				s.pages[uint64(off/pageSize)] = append([]byte(nil), cur...)
				s.bytes += pageSize
			}
		}
	}
	ss.list = append(ss.list, s)
	for ss.limit > 0 && ss.memory() > ss.limit && len(ss.list) > 2 {
		ss.thin()
	}
	return s, nil
}

// before returns the index of the last snapshot at or before p.
func (ss *snapshots) before(p position.Pos) int {
	for i := len(ss.list) - 1; i >= 0; i-- {
		if !p.Less(ss.list[i].pos) {
			return i
		}
	}
	return 0
}

// restore brings the machine back to snapshot i and drops the snapshots
// after it (going forwards again takes new ones).
func (ss *snapshots) restore(e replay, i int) (*snapshot, error) {
	m := e.Machine()
	s := ss.list[i]
	ram := m.Memory().Bytes()
	// Pages that may differ from snapshot i: those changed by later
	// snapshots, and those changed since the last one.
	changed := map[uint64]bool{}
	for _, later := range ss.list[i+1:] {
		for p := range later.pages {
			changed[p] = true
		}
	}
	if dirty, tracked := m.DirtyPages(); tracked {
		for _, p := range dirty {
			changed[p] = true
		}
	} else {
		for off := 0; off < len(ram); off += pageSize {
			if !bytes.Equal(ram[off:off+pageSize], ss.shadow[off:off+pageSize]) {
				changed[uint64(off/pageSize)] = true
			}
		}
	}
	for p := range changed {
		content := ss.pageAt(p, i)
		copy(ram[p*pageSize:], content)
		copy(ss.shadow[p*pageSize:], content)
	}
	ss.list = ss.list[:i+1]
	if err := m.InvalidateMappings(); err != nil {
		return nil, err
	}
	if err := m.RestoreCPU(&s.cpu); err != nil {
		return nil, err
	}
	if err := m.RestoreDevices(&s.dev); err != nil {
		return nil, err
	}
	if err := e.restoreState(&s.eng); err != nil {
		return nil, err
	}
	return s, nil
}

// pageAt is page p's content at snapshot i: from the latest snapshot at or
// before i that stored it (the first snapshot stores every page).
func (ss *snapshots) pageAt(p uint64, i int) []byte {
	for j := i; j >= 0; j-- {
		if c, ok := ss.list[j].pages[p]; ok {
			return c
		}
	}
	return make([]byte, pageSize)
}

// thin drops every other snapshot after the first, to keep the memory the
// snapshots hold under the limit: going back then re-executes twice as far.
// A dropped snapshot's pages move to the next one where it has none of its
// own, since "changed since the previous snapshot" now spans both.
func (ss *snapshots) thin() {
	kept := ss.list[:1]
	for i := 1; i < len(ss.list); i++ {
		s := ss.list[i]
		if i%2 == 1 && i+1 < len(ss.list) {
			next := ss.list[i+1]
			for p, c := range s.pages {
				if _, ok := next.pages[p]; !ok {
					next.pages[p] = c
					next.bytes += pageSize
				}
			}
			continue
		}
		kept = append(kept, s)
	}
	ss.list = kept
}

// memory is the bytes the snapshots hold.
func (ss *snapshots) memory() uint64 {
	var n uint64
	for _, s := range ss.list[1:] {
		n += s.bytes
	}
	return n
}
