package fakesession

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
)

// Sym is a symbol of the fake image.
type Sym struct {
	Name    string
	Addr    uint64
	Size    uint64
	Type    elf.SymType
	Bind    elf.SymBind
	Section int // index into the image's sections: 1 .text, 2 .data, 3 .rodata
}

// Syms are the symbols WriteELF puts in the image. _start shares main's
// address (main must win: a sized global function), store is an assembler
// label without a size, and local is a second "counter" that must not
// shadow the global one.
var Syms = []Sym{
	{"_start", Main, 0, elf.STT_NOTYPE, elf.STB_GLOBAL, 1},
	{"main", Main, CodeLen, elf.STT_FUNC, elf.STB_GLOBAL, 1},
	{"store", Store, 0, elf.STT_NOTYPE, elf.STB_LOCAL, 1},
	{"counter", 0x2100, 8, elf.STT_OBJECT, elf.STB_LOCAL, 2},
	{"counter", Counter, 8, elf.STT_OBJECT, elf.STB_GLOBAL, 2},
	{"message", Message, uint64(len(MessageText) + 1), elf.STT_OBJECT, elf.STB_GLOBAL, 3},
	{"fake.c", 0, 0, elf.STT_FILE, elf.STB_LOCAL, int(elf.SHN_ABS)},
}

// WriteELF writes a minimal x86-64 ELF holding the fake image's code, data
// and symbol table (what the shell's LoadSymbols reads).
func WriteELF(path string) error {
	return os.WriteFile(path, ELF(elf.EM_X86_64), 0o644)
}

// ELF builds the image for a machine type (tests use other machines to
// check that non-x86 images are refused).
func ELF(machine elf.Machine) []byte {
	type section struct {
		name    string
		typ     elf.SectionType
		flags   elf.SectionFlag
		addr    uint64
		data    []byte
		link    uint32
		info    uint32
		entsize uint64
		nameOff uint32
		offset  uint64
	}
	le := binary.LittleEndian
	counterData := make([]byte, 0x108)
	rodata := append([]byte(MessageText), 0)

	var strtab bytes.Buffer
	strtab.WriteByte(0)
	var symtab bytes.Buffer
	symtab.Write(make([]byte, 24)) // the null symbol
	// Locals first, as the ELF spec requires; info is the first global.
	firstGlobal := uint32(1)
	var ordered []Sym
	for _, s := range Syms {
		if s.Bind == elf.STB_LOCAL {
			ordered = append(ordered, s)
			firstGlobal++
		}
	}
	for _, s := range Syms {
		if s.Bind != elf.STB_LOCAL {
			ordered = append(ordered, s)
		}
	}
	for _, s := range ordered {
		var e [24]byte
		le.PutUint32(e[0:], uint32(strtab.Len()))
		strtab.WriteString(s.Name)
		strtab.WriteByte(0)
		e[4] = elf.ST_INFO(s.Bind, s.Type)
		le.PutUint16(e[6:], uint16(s.Section))
		le.PutUint64(e[8:], s.Addr)
		le.PutUint64(e[16:], s.Size)
		symtab.Write(e[:])
	}

	secs := []*section{
		{name: ""},
		{name: ".text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, addr: Main, data: OriginalCode},
		{name: ".data", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, addr: Counter, data: counterData},
		{name: ".rodata", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, addr: Message, data: rodata},
		{name: ".symtab", typ: elf.SHT_SYMTAB, data: symtab.Bytes(), link: 5, info: firstGlobal, entsize: 24},
		{name: ".strtab", typ: elf.SHT_STRTAB, data: strtab.Bytes()},
		{name: ".shstrtab", typ: elf.SHT_STRTAB},
	}
	var shstr bytes.Buffer
	shstr.WriteByte(0)
	for _, s := range secs[1:] {
		s.nameOff = uint32(shstr.Len())
		shstr.WriteString(s.name)
		shstr.WriteByte(0)
	}
	secs[6].data = shstr.Bytes()

	var out bytes.Buffer
	out.Write(make([]byte, 64))
	for _, s := range secs[1:] {
		for out.Len()%8 != 0 {
			out.WriteByte(0)
		}
		s.offset = uint64(out.Len())
		out.Write(s.data)
	}
	for out.Len()%8 != 0 {
		out.WriteByte(0)
	}
	shoff := uint64(out.Len())
	for _, s := range secs {
		var h [64]byte
		le.PutUint32(h[0:], s.nameOff)
		le.PutUint32(h[4:], uint32(s.typ))
		le.PutUint64(h[8:], uint64(s.flags))
		le.PutUint64(h[16:], s.addr)
		le.PutUint64(h[24:], s.offset)
		le.PutUint64(h[32:], uint64(len(s.data)))
		le.PutUint32(h[40:], s.link)
		le.PutUint32(h[44:], s.info)
		le.PutUint64(h[48:], 1)
		le.PutUint64(h[56:], s.entsize)
		out.Write(h[:])
	}
	b := out.Bytes()
	copy(b, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(b[24:], Main) // entry
	le.PutUint64(b[40:], shoff)
	le.PutUint16(b[52:], 64) // ehsize
	le.PutUint16(b[58:], 64) // shentsize
	le.PutUint16(b[60:], uint16(len(secs)))
	le.PutUint16(b[62:], 6) // shstrndx
	return b
}
