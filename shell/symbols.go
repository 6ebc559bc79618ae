package shell

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Symbols maps names to addresses and addresses back to name+offset, from
// an ELF image's symbol table. The zero value and a nil *Symbols hold no
// symbols, so callers never need to check whether an image had any.
type Symbols struct {
	byName map[string]uint64
	sorted []symbol // by address, one per address (the best name for it)
	names  []string // sorted, for completion
}

// symbol is one entry kept for address lookup. end bounds how far past addr
// an address still describes as sym+off: the symbol's size when the ELF
// gives one, else the end of its section (assembler labels have no size).
type symbol struct {
	name string
	addr uint64
	end  uint64
	rank int // lower wins when several symbols share an address
}

// LoadSymbols reads the symbol table of an x86 ELF image (32- or 64-bit).
// An image without a symbol table gives empty Symbols, not an error:
// stripped guests still replay, they just show bare addresses.
func LoadSymbols(elfPath string) (*Symbols, error) {
	f, err := elf.Open(elfPath)
	var fe *elf.FormatError
	if errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("symbols: %s: not a valid ELF image: %w", elfPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("symbols: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_386 {
		return nil, fmt.Errorf("symbols: %s: not an x86 ELF (machine %v)", elfPath, f.Machine)
	}
	syms, err := f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		syms, err = f.DynamicSymbols()
	}
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("symbols: %s: %w", elfPath, err)
	}
	return fromELF(f.Sections, syms), nil
}

func fromELF(sections []*elf.Section, syms []elf.Symbol) *Symbols {
	s := &Symbols{byName: map[string]uint64{}}
	type named struct {
		addr   uint64
		global bool
	}
	seen := map[string]named{}
	for _, e := range syms {
		typ := elf.ST_TYPE(e.Info)
		if e.Name == "" || e.Value == 0 || e.Section == elf.SHN_UNDEF {
			continue
		}
		if typ != elf.STT_FUNC && typ != elf.STT_OBJECT && typ != elf.STT_NOTYPE {
			continue
		}
		global := elf.ST_BIND(e.Info) != elf.STB_LOCAL
		// Several local symbols may share a name (one per object file):
		// a global one wins, else the first seen.
		if prev, ok := seen[e.Name]; !ok || (global && !prev.global) {
			seen[e.Name] = named{e.Value, global}
		}
		end := e.Value + e.Size
		if e.Size == 0 {
			end = e.Value + 1
			if int(e.Section) < len(sections) && e.Section < elf.SHN_LORESERVE {
				sec := sections[e.Section]
				if sec.Addr <= e.Value && e.Value < sec.Addr+sec.Size {
					end = sec.Addr + sec.Size
				}
			}
		}
		rank := 2
		switch {
		case typ == elf.STT_FUNC && global:
			rank = 0
		case typ == elf.STT_FUNC, global:
			rank = 1
		}
		s.sorted = append(s.sorted, symbol{name: e.Name, addr: e.Value, end: end, rank: rank})
	}
	for name, n := range seen {
		s.byName[name] = n.addr
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	sort.SliceStable(s.sorted, func(i, j int) bool {
		a, b := s.sorted[i], s.sorted[j]
		if a.addr != b.addr {
			return a.addr < b.addr
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.name < b.name
	})
	// Keep the best-ranked symbol per address, so Describe is one search.
	out := s.sorted[:0]
	for _, e := range s.sorted {
		if len(out) > 0 && out[len(out)-1].addr == e.addr {
			continue
		}
		out = append(out, e)
	}
	s.sorted = out
	return s
}

// Lookup returns the address of a symbol.
func (s *Symbols) Lookup(name string) (uint64, bool) {
	if s == nil {
		return 0, false
	}
	a, ok := s.byName[name]
	return a, ok
}

// Describe names an address as "sym" or "sym+0x12", or returns "" when no
// symbol covers it.
func (s *Symbols) Describe(addr uint64) string {
	name, off, ok := s.find(addr)
	if !ok {
		return ""
	}
	if off == 0 {
		return name
	}
	return fmt.Sprintf("%s+%#x", name, off)
}

// find returns the symbol covering addr and the offset into it.
func (s *Symbols) find(addr uint64) (string, uint64, bool) {
	if s == nil || len(s.sorted) == 0 {
		return "", 0, false
	}
	i := sort.Search(len(s.sorted), func(i int) bool { return s.sorted[i].addr > addr }) - 1
	if i < 0 || addr >= s.sorted[i].end {
		return "", 0, false
	}
	return s.sorted[i].name, addr - s.sorted[i].addr, true
}

// Len is the number of distinct symbol names.
func (s *Symbols) Len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// withPrefix returns the symbol names starting with prefix, in order.
func (s *Symbols) withPrefix(prefix string) []string {
	if s == nil {
		return nil
	}
	i := sort.SearchStrings(s.names, prefix)
	j := i
	for j < len(s.names) && strings.HasPrefix(s.names[j], prefix) {
		j++
	}
	return s.names[i:j]
}
