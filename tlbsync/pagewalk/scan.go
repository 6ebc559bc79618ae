package pagewalk

import (
	"encoding/binary"
	"fmt"
)

// DefaultTableLimit is the table-page limit a scan uses when given a limit of 0 or less. A guest
// mapping 64 GiB with 4 KiB pages needs about 32 Ki tables.
const DefaultTableLimit = 1 << 16

// MaxMappingVisits bounds how many tables Mappings reads in one call. Unlike a scan it cannot
// skip a table it has seen (the same table reached by another path maps other addresses), so a
// table graph full of self-references would otherwise take 512^4 steps.
var MaxMappingVisits = 1 << 18

// Tree summarises the page tables reachable from a CR3.
type Tree struct {
	// Pages holds each page that contains entries a walk may read, once, page-aligned, in
	// depth-first order of ascending entries, root first.
	Pages []uint64
	// Leaves counts the present, well-formed leaf entries, each table entry counted once (a
	// table reached at one level by several paths is read once).
	Leaves int
	// Reserved counts present entries with reserved bits set, which no walk goes through.
	Reserved int
}

// assumed are the flags TablePages and Mappings interpret entries with: those of any OS that sets
// XD or PS bits at all. With NXE assumed, an XD bit is never taken for a reserved bit.
var assumed = Flags{NXE: true, PSE: true}

// TablePages returns every page-table page reachable from cr3, root included, each once, in the
// order of Tree.Pages. It fails with ErrTooManyTables beyond limit pages (DefaultTableLimit if
// limit <= 0) and with a *TableError for a reachable table outside RAM. It interprets entries
// as with EFER.NXE and CR4.PSE set; Scan takes the guest's flags instead.
func TablePages(mem Memory, mode Mode, cr3 uint64, limit int) ([]uint64, error) {
	t, err := Scan(mem, mode, cr3, assumed, limit)
	return t.Pages, err
}

// Scan visits the page tables reachable from cr3 as TablePages does, interpreting entries with
// the given flags, and counts their leaf entries. Self-references and cycles are followed once
// per table and level: a table reached again at another level is reread as that level, since a
// walk through it would read it so, but its page is listed once. Entries with reserved bits are
// not followed (the CPU faults on them). With paging off there are no tables.
func Scan(mem Memory, mode Mode, cr3 uint64, flags Flags, limit int) (Tree, error) {
	if mode == ModeNone {
		return Tree{}, nil
	}
	if err := checkMode(mode); err != nil {
		return Tree{}, err
	}
	if limit <= 0 {
		limit = DefaultTableLimit
	}
	s := scanner{
		mem: mem, mode: mode, flags: flags, limit: limit,
		seen:  map[uint64]bool{},
		visit: map[visitKey]bool{},
	}
	err := s.walk(rootTable(mode, cr3, flags), topLevel(mode))
	return s.tree, err
}

type visitKey struct {
	table uint64
	level int
}

type scanner struct {
	mem   Memory
	mode  Mode
	flags Flags
	limit int
	seen  map[uint64]bool   // pages already listed
	visit map[visitKey]bool // tables already read at a level
	bufs  [5][]byte         // one table buffer per level: recursion holds one table per level
	tree  Tree
}

func (s *scanner) walk(table uint64, level int) error {
	k := visitKey{table, level}
	if s.visit[k] {
		return nil
	}
	s.visit[k] = true
	if page := table &^ 0xfff; !s.seen[page] {
		if len(s.tree.Pages) >= s.limit {
			return fmt.Errorf("%w: more than %d reachable from the root at %#x", ErrTooManyTables, s.limit, s.tree.Pages[0])
		}
		s.seen[page] = true
		s.tree.Pages = append(s.tree.Pages, page)
	}
	buf, err := readTable(s.mem, s.mode, table, level, &s.bufs[level])
	if err != nil {
		return err
	}
	esize := entrySize(s.mode)
	for off := uint64(0); off < uint64(len(buf)); off += esize {
		e := decode(s.mode, level, rawEntry(buf[off:], esize), s.flags)
		switch {
		case !e.present:
		case e.rsvd:
			s.tree.Reserved++
		case e.leaf:
			s.tree.Leaves++
		default:
			if err := s.walk(e.addr, level-1); err != nil {
				return err
			}
		}
	}
	return nil
}

// readTable reads the whole table at addr into *buf, allocating it on first use.
func readTable(mem Memory, m Mode, addr uint64, level int, buf *[]byte) ([]byte, error) {
	n := int(tableEntries(m, level) * entrySize(m))
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if err := mem.ReadPhys(addr, b); err != nil {
		return nil, &TableError{Mode: m, Level: level, Addr: addr, Err: err}
	}
	return b, nil
}

func rawEntry(b []byte, esize uint64) uint64 {
	if esize == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// Mappings calls fn for every present leaf mapping reachable from cr3, in ascending order of
// virtual address (long-mode addresses sign-extended), with its effective permissions; it stops
// early, returning nil, when fn returns false. Entries with reserved bits are skipped, entries
// are interpreted as with EFER.NXE and CR4.PSE set, and a table outside RAM or more than
// MaxMappingVisits tables is an error (after fn has seen the mappings before it). With paging
// off it reports the identity mapping of the 32-bit address space.
func Mappings(mem Memory, mode Mode, cr3 uint64, fn func(va, pa, size uint64, writable, user, nx bool) bool) error {
	return MappingsWith(mem, mode, cr3, assumed, fn)
}

// MappingsWith is Mappings with the guest's flags (only NXE and PSE matter).
func MappingsWith(mem Memory, mode Mode, cr3 uint64, flags Flags, fn func(va, pa, size uint64, writable, user, nx bool) bool) error {
	if mode == ModeNone {
		fn(0, 0, 1<<32, true, true, false)
		return nil
	}
	if err := checkMode(mode); err != nil {
		return err
	}
	l := lister{mem: mem, mode: mode, flags: flags, fn: fn}
	_, err := l.walk(rootTable(mode, cr3, flags), topLevel(mode), 0, true, true, false)
	return err
}

type lister struct {
	mem    Memory
	mode   Mode
	flags  Flags
	fn     func(va, pa, size uint64, writable, user, nx bool) bool
	visits int
	bufs   [5][]byte
}

// walk lists the table at addr, which maps the addresses from va up; it returns false when fn
// asked to stop.
func (l *lister) walk(table uint64, level int, va uint64, w, u, nx bool) (bool, error) {
	if l.visits++; l.visits > MaxMappingVisits {
		return false, fmt.Errorf("pagewalk: more than %d table visits listing mappings (self-referencing tables?)", MaxMappingVisits)
	}
	buf, err := readTable(l.mem, l.mode, table, level, &l.bufs[level])
	if err != nil {
		return false, err
	}
	esize := entrySize(l.mode)
	shift := indexShift(l.mode, level)
	for i := uint64(0); i*esize < uint64(len(buf)); i++ {
		e := decode(l.mode, level, rawEntry(buf[i*esize:], esize), l.flags)
		if !e.present || e.rsvd {
			continue
		}
		eva := va | i<<shift
		if level == 4 { // sign-extend from bit 47
			eva = uint64(int64(eva<<16) >> 16)
		}
		ew, eu, enx := w, u, nx
		if e.perm {
			ew, eu, enx = w && e.rw, u && e.us, nx || e.xd
		}
		if e.leaf {
			if !l.fn(eva, e.addr, e.size, ew, eu, enx) {
				return false, nil
			}
			continue
		}
		// The buffer of this level is reused below it only for lower levels, so buf stays valid.
		more, err := l.walk(e.addr, level-1, eva, ew, eu, enx)
		if err != nil || !more {
			return false, err
		}
	}
	return true, nil
}
