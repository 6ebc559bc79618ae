package machine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"vmrr/machine/cpu"
)

// BootProtocol is how an image is loaded and entered.
type BootProtocol string

// The boot protocols vmrr understands (shared/DESIGN.md, "Guest contract").
const (
	BootELF64     BootProtocol = "elf64"     // 64-bit long mode at e_entry
	BootMultiboot BootProtocol = "multiboot" // Multiboot1, 32-bit protected mode
	BootFlat      BootProtocol = "flat"      // raw bytes, real mode at 0x7c00
)

// Where vmrr keeps its boot structures: below 0x8000, which guests must not
// use (testdata/guests/README.md says so too).
const (
	bootGDT                  = 0x1000
	bootPML4                 = 0x2000
	bootPDPT                 = 0x3000
	bootPD                   = 0x4000 // four page directories, 0x4000-0x7fff
	bootMBInfo               = 0x8000
	bootMBMmap               = 0x8100
	flatLoadAddr             = 0x7c00
	multibootMagic           = 0x1BADB002
	multibootBootloaderMagic = 0x2BADB002
)

// ErrBadImage is wrapped by every loader error caused by the image itself.
var ErrBadImage = errors.New("bad image")

func badImage(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadImage, fmt.Sprintf(format, args...))
}

// DetectBoot picks the boot protocol for an image: a Multiboot header wins
// (so the same image boots in qemu -kernel), then ELF64, else flat.
func DetectBoot(image []byte) (BootProtocol, error) {
	if _, ok := findMultiboot(image); ok {
		return BootMultiboot, nil
	}
	if len(image) >= 4 && bytes.Equal(image[:4], []byte(elf.ELFMAG)) {
		if len(image) < 20 {
			return "", badImage("truncated ELF header")
		}
		if elf.Class(image[elf.EI_CLASS]) != elf.ELFCLASS64 {
			return "", badImage("32-bit ELF without a Multiboot header")
		}
		return BootELF64, nil
	}
	if len(image) == 0 {
		return "", badImage("empty image")
	}
	return BootFlat, nil
}

func findMultiboot(image []byte) (int, bool) {
	limit := min(len(image), 8192) - 12
	for off := 0; off <= limit; off += 4 {
		magic := binary.LittleEndian.Uint32(image[off:])
		if magic != multibootMagic {
			continue
		}
		flags := binary.LittleEndian.Uint32(image[off+4:])
		sum := binary.LittleEndian.Uint32(image[off+8:])
		if magic+flags+sum == 0 {
			return off, true
		}
	}
	return 0, false
}

// load puts the image in guest memory and sets the vCPU's entry state.
func (m *Machine) load(image []byte, proto BootProtocol) error {
	if len(image) == 0 {
		return badImage("empty image")
	}
	regs := cpu.Regs{RFLAGS: 2}
	sregs, err := m.vcpu.Sregs()
	if err != nil {
		return err
	}
	switch proto {
	case BootELF64:
		entry, err := m.loadELF(image, elf.ELFCLASS64)
		if err != nil {
			return err
		}
		m.setupLongMode(&sregs)
		regs.RIP = entry
		regs.RSP = m.mem.Size() - 0x10
	case BootMultiboot:
		entry, err := m.loadMultiboot(image)
		if err != nil {
			return err
		}
		setupProtected32(m, &sregs)
		regs.RIP = entry
		regs.RAX = multibootBootloaderMagic
		regs.RBX = bootMBInfo
	case BootFlat:
		if uint64(len(image)) > 0x90000-flatLoadAddr {
			return badImage("flat image of %d bytes does not fit below the ring at %#x", len(image), RingBase)
		}
		m.mem.WritePhys(flatLoadAddr, image)
		for _, s := range []*cpu.Segment{&sregs.CS, &sregs.DS, &sregs.ES, &sregs.FS, &sregs.GS, &sregs.SS} {
			s.Base, s.Selector = 0, 0
		}
		regs.RIP = flatLoadAddr
		regs.RSP = flatLoadAddr
	default:
		return fmt.Errorf("machine: unknown boot protocol %q", proto)
	}
	if err := m.vcpu.SetSregs(&sregs); err != nil {
		return err
	}
	return m.vcpu.SetRegs(&regs)
}

// loadELF copies the PT_LOAD segments to their physical addresses.
func (m *Machine) loadELF(image []byte, class elf.Class) (uint64, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return 0, badImage("ELF: %v", err)
	}
	if f.Class != class {
		return 0, badImage("ELF class %v, want %v", f.Class, class)
	}
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_386 {
		return 0, badImage("ELF for %v, not x86", f.Machine)
	}
	loaded := 0
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return 0, badImage("ELF segment %d: file size %d > memory size %d", i, p.Filesz, p.Memsz)
		}
		if p.Paddr < 0x8000 || p.Paddr > m.mem.Size() || p.Memsz > m.mem.Size()-p.Paddr || (p.Paddr < RingBase+RingSize && p.Paddr+p.Memsz > RingBase) {
			return 0, badImage("ELF segment %d at %#x+%#x overlaps vmrr's reserved memory or lies outside %d MiB of RAM", i, p.Paddr, p.Memsz, m.mem.Size()>>20)
		}
		data := make([]byte, p.Memsz)
		// A segment with nothing in the file (a .bss-only segment) is all
		// zeros; reading zero bytes at its offset would say EOF.
		if p.Filesz > 0 {
			if _, err := p.ReadAt(data[:p.Filesz], 0); err != nil {
				return 0, badImage("ELF segment %d: %v", i, err)
			}
		}
		m.mem.WritePhys(p.Paddr, data)
		loaded++
	}
	if loaded == 0 {
		return 0, badImage("ELF has no loadable segment")
	}
	return f.Entry, nil
}

// setupLongMode builds a GDT and an identity map of the first 4 GiB with
// 2 MiB pages, and puts the vCPU in 64-bit mode at CPL0.
func (m *Machine) setupLongMode(s *cpu.Sregs) {
	gdt := []uint64{0, 0x00af9b000000ffff, 0x00cf93000000ffff} // null, code64, data
	for i, d := range gdt {
		m.mem.PutUint64(bootGDT+uint64(i)*8, d)
	}
	m.mem.PutUint64(bootPML4, bootPDPT|3)
	for i := uint64(0); i < 4; i++ {
		m.mem.PutUint64(bootPDPT+i*8, (bootPD+i*0x1000)|3)
		for j := uint64(0); j < 512; j++ {
			m.mem.PutUint64(bootPD+i*0x1000+j*8, (i<<30|j<<21)|0x83) // present, writable, 2 MiB
		}
	}
	code := cpu.Segment{Base: 0, Limit: 0xffffffff, Selector: 8, Typ: 11, Present: 1, S: 1, L: 1, G: 1}
	data := cpu.Segment{Base: 0, Limit: 0xffffffff, Selector: 16, Typ: 3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.GDT = cpu.Descriptor{Base: bootGDT, Limit: uint16(len(gdt)*8 - 1)}
	s.CR3 = bootPML4
	s.CR4 = cpu.CR4PAE
	s.CR0 = cpu.CR0PE | cpu.CR0MP | cpu.CR0ET | cpu.CR0NE | cpu.CR0WP | cpu.CR0PG
	s.EFER = cpu.EFERLME | cpu.EFERLMA | cpu.EFERSCE
}

// setupProtected32 enters flat 32-bit protected mode with paging off, as
// the Multiboot spec requires.
func setupProtected32(m *Machine, s *cpu.Sregs) {
	gdt := []uint64{0, 0x00cf9b000000ffff, 0x00cf93000000ffff}
	for i, d := range gdt {
		m.mem.PutUint64(bootGDT+uint64(i)*8, d)
	}
	code := cpu.Segment{Base: 0, Limit: 0xffffffff, Selector: 8, Typ: 11, Present: 1, S: 1, DB: 1, G: 1}
	data := cpu.Segment{Base: 0, Limit: 0xffffffff, Selector: 16, Typ: 3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.GDT = cpu.Descriptor{Base: bootGDT, Limit: uint16(len(gdt)*8 - 1)}
	s.CR0 = cpu.CR0PE | cpu.CR0ET
	s.CR4, s.EFER, s.CR3 = 0, 0, 0
}

// loadMultiboot loads a Multiboot1 image (ELF, or the a.out kludge) and
// writes the boot information structure.
func (m *Machine) loadMultiboot(image []byte) (uint64, error) {
	off, ok := findMultiboot(image)
	if !ok {
		return 0, badImage("no Multiboot header")
	}
	flags := binary.LittleEndian.Uint32(image[off+4:])
	var entry uint64
	if flags&(1<<16) != 0 {
		if off+32 > len(image) {
			return 0, badImage("Multiboot header truncated")
		}
		h := func(i int) uint32 { return binary.LittleEndian.Uint32(image[off+i:]) }
		headerAddr, loadAddr, loadEnd, bssEnd, entryAddr := h(12), h(16), h(20), h(24), h(28)
		if loadAddr > headerAddr || uint32(off) < headerAddr-loadAddr {
			return 0, badImage("Multiboot load address after header address")
		}
		start := uint32(off) - (headerAddr - loadAddr)
		n := uint32(len(image)) - start
		if loadEnd != 0 {
			if loadEnd < loadAddr {
				return 0, badImage("Multiboot load_end_addr below load_addr")
			}
			n = min(n, loadEnd-loadAddr)
		}
		end := uint64(loadAddr) + uint64(n)
		if bssEnd > 0 {
			end = max(end, uint64(bssEnd))
		}
		if loadAddr < 0x100000 || end > m.mem.Size() {
			return 0, badImage("Multiboot image at %#x-%#x outside usable RAM", loadAddr, end)
		}
		m.mem.WritePhys(uint64(loadAddr), image[start:start+n])
		entry = uint64(entryAddr)
	} else {
		f, err := elf.NewFile(bytes.NewReader(image))
		if err == nil {
			for i, p := range f.Progs {
				if p.Type == elf.PT_LOAD && p.Memsz > 0 && p.Paddr < 0x9000 {
					return 0, badImage("ELF segment %d at %#x overlaps the Multiboot information", i, p.Paddr)
				}
			}
		}
		e, err := m.loadELF(image, elf.ELFCLASS32)
		if err != nil {
			return 0, err
		}
		entry = e
	}
	// Boot information: memory (flag 0) and a memory map (flag 6) that
	// leaves out vmrr's boot area and the ring.
	memLower := uint32(RingBase / 1024)
	memUpper := uint32((m.mem.Size() - 0x100000) / 1024)
	info := make([]byte, 52)
	binary.LittleEndian.PutUint32(info[0:], 1|1<<6)
	binary.LittleEndian.PutUint32(info[4:], memLower)
	binary.LittleEndian.PutUint32(info[8:], memUpper)
	type region struct{ base, length uint64 }
	usable := []region{{0x8000 + 0x1000, RingBase - 0x9000}, {0x100000, m.mem.Size() - 0x100000}}
	var mm []byte
	for _, r := range usable {
		e := make([]byte, 24)
		binary.LittleEndian.PutUint32(e[0:], 20)
		binary.LittleEndian.PutUint64(e[4:], r.base)
		binary.LittleEndian.PutUint64(e[12:], r.length)
		binary.LittleEndian.PutUint32(e[20:], 1)
		mm = append(mm, e...)
	}
	binary.LittleEndian.PutUint32(info[44:], uint32(len(mm)))
	binary.LittleEndian.PutUint32(info[48:], bootMBMmap)
	m.mem.WritePhys(bootMBInfo, info)
	m.mem.WritePhys(bootMBMmap, mm)
	return entry, nil
}
