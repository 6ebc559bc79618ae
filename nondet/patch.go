package nondet

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"

	"vmrr/machine"
)

// Patch is one non-deterministic instruction rewritten to trap.
type Patch struct {
	Addr     uint64 // guest physical (= virtual: vmrr's guests are identity-mapped) address
	Original []byte
	Inst     Inst
}

// Patches is a patch table, sorted by address.
type Patches []Patch

// Find returns the patch whose trap instruction ends at rip (the RIP after
// `out PortTrap, al`), or nil.
func (ps Patches) Find(rip uint64) *Patch {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Addr+trapLen >= rip })
	if i < len(ps) && ps[i].Addr+trapLen == rip {
		return &ps[i]
	}
	return nil
}

// Covering returns the patch containing addr, or nil.
func (ps Patches) Covering(addr uint64) *Patch {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Addr+uint64(len(ps[i].Original)) > addr })
	if i < len(ps) && ps[i].Addr <= addr {
		return &ps[i]
	}
	return nil
}

// Restore rewrites b, read from guest address addr, to show the original
// bytes wherever a patch overlaps it.
func (ps Patches) Restore(addr uint64, b []byte) {
	end := addr + uint64(len(b))
	for _, p := range ps {
		pe := p.Addr + uint64(len(p.Original))
		if pe <= addr || p.Addr >= end {
			continue
		}
		for i, o := range p.Original {
			a := p.Addr + uint64(i)
			if a >= addr && a < end {
				b[a-addr] = o
			}
		}
	}
}

// trapLen is the length of the trap instruction `out imm8, al`.
const trapLen = 2

// trapCode is what a patched instruction becomes: `out PortTrap, al`
// followed by NOPs up to the original length (every non-deterministic
// instruction is at least two bytes).
func trapCode(n int) []byte {
	b := bytes.Repeat([]byte{0x90}, n)
	b[0], b[1] = 0xe6, machine.PortTrap
	return b
}

// FindPatches finds the non-deterministic instructions in the executable
// sections of an ELF image (64- or 32-bit), by their load addresses. A
// non-ELF image has no sections to scan and gets no patches.
func FindPatches(image []byte) (Patches, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, nil
	}
	mode := elfMode(f)
	var ps Patches
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 || s.Name == RingSection {
			continue
		}
		code, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("nondet: section %s: %w", s.Name, err)
		}
		base := loadAddr(f, s.Addr)
		Scan(code, mode, func(off int, in Inst) {
			ps = append(ps, Patch{Addr: base + uint64(off), Original: append([]byte(nil), code[off:off+in.Len]...), Inst: in})
		})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Addr < ps[j].Addr })
	return ps, nil
}

// elfMode is the width an ELF image's code is decoded at: 32 for ELFCLASS32
// (a Multiboot guest starts in 32-bit protected mode), else 64.
func elfMode(f *elf.File) int {
	if f.Class == elf.ELFCLASS32 {
		return 32
	}
	return 64
}

// imageMode is elfMode of an image; a non-ELF image, which has no patches,
// gets 64.
func imageMode(image []byte) int {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return 64
	}
	return elfMode(f)
}

// RingSection is the ELF section holding a paravirtual guest's ring code
// (docs/guest-abi.md): its non-deterministic instructions feed the ring
// themselves, so vmrr neither patches nor traps them.
const RingSection = ".vmrr_ring"

// Range is a half-open range of guest addresses.
type Range struct{ Start, End uint64 }

// RingCode returns the load address ranges of an image's RingSection
// sections (none for a non-ELF image).
func RingCode(image []byte) []Range {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil
	}
	var rs []Range
	for _, s := range f.Sections {
		if s.Name == RingSection && s.Flags&elf.SHF_EXECINSTR != 0 {
			a := loadAddr(f, s.Addr)
			rs = append(rs, Range{a, a + s.Size})
		}
	}
	return rs
}

// loadAddr maps a virtual address to the physical address its segment is
// loaded at.
func loadAddr(f *elf.File, va uint64) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && va >= p.Vaddr && va < p.Vaddr+p.Memsz {
			return va - p.Vaddr + p.Paddr
		}
	}
	return va
}

// Install writes the trap code of every patch into guest memory, after
// checking that the original bytes are there.
func (ps Patches) Install(mem *machine.Memory) error {
	for _, p := range ps {
		cur := make([]byte, len(p.Original))
		if err := mem.ReadPhys(p.Addr, cur); err != nil {
			return fmt.Errorf("nondet: patch at %#x: %w", p.Addr, err)
		}
		if !bytes.Equal(cur, p.Original) {
			return fmt.Errorf("nondet: patch at %#x: guest memory holds % x, not the %s it was made for", p.Addr, cur, p.Inst.Kind)
		}
		if err := mem.WritePhys(p.Addr, trapCode(len(p.Original))); err != nil {
			return err
		}
	}
	return nil
}
