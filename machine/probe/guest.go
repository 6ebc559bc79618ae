//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"

	"vmrr/machine"
	"vmrr/machine/cpu"
)

// Mode is a CPU mode (and privilege level) a probe guest runs its code in.
type Mode string

// The modes probed. User64 is long mode at CPL3, entered from CPL0 by IRETQ.
const (
	ModeReal16 Mode = "real16"
	ModeProt32 Mode = "prot32"
	ModeLong64 Mode = "long64"
	ModeUser64 Mode = "user64"
)

// Modes lists the modes in table order.
var Modes = []Mode{ModeReal16, ModeProt32, ModeLong64, ModeUser64}

func (m Mode) bits() int {
	switch m {
	case ModeReal16:
		return 16
	case ModeProt32:
		return 32
	}
	return 64
}

// Where probe guests keep their structures. Everything is identity-mapped;
// the addresses avoid vmrr's boot area (0x1000-0x7fff, used in every mode
// but real mode) and its ring (0x90000).
const (
	imageBase   = 0x100000 // ELF64 and Multiboot load address
	codeBase    = 0x100080 // code follows the headers
	realOrg     = 0x7c00   // flat images
	realStubs   = 0x0600   // real-mode interrupt stubs (IVT at 0)
	realFrame   = 0x7000   // IRET frames for 16-bit code (SP is 16 bits)
	gdtAddr     = 0x20000
	idtAddr     = 0x21000
	stubAddr    = 0x23000 // 8 bytes a vector, then the common tail
	tssAddr     = 0x24000
	pml4Addr    = 0x30000
	pdptAddr    = 0x31000
	pdAddr      = 0x32000
	userStack   = 0x78000
	frameAddr   = 0x7e000
	tssRSP0     = 0x7f000
	kernelStack = 0x80000
	guestMemory = 4 << 20
)

// Probe ports: a mark (the hooks note the position), and the port every
// interrupt and exception stub writes its vector to.
const (
	portMark  = 0xea
	portFault = 0xeb
	portExit  = machine.PortDebugExit
)

// Selectors of the probe GDT.
const (
	selCode     = 0x08
	selData     = 0x10
	selUserData = 0x1b
	selUserCode = 0x23
	selTSS      = 0x28
	userRFLAGS  = 0x3002 // IOPL 3 so that user code may write the probe ports
)

// newAsmFor starts the code of a guest in mode: the stack, and for user64
// the drop to CPL3 (the rest of the code runs there).
func newAsmFor(mode Mode) *asm { return newAsmFlags(mode, userRFLAGS) }

// newAsmFlags is newAsmFor with the RFLAGS user64 code starts with.
func newAsmFlags(mode Mode, rflags uint32) *asm {
	if mode == ModeReal16 {
		a := newAsm(16, realOrg)
		a.movSP(realOrg)
		return a
	}
	a := newAsm(mode.bits(), codeBase)
	a.movSP(kernelStack)
	if mode == ModeUser64 {
		a.pushImm8(selUserData).pushImm32(userStack).pushImm32(rflags).pushImm8(selUserCode)
		user := a.pc() + 5 + 2
		a.pushImm32(uint32(user)).raw(0x48, 0xcf) // iretq
	}
	return a
}

// image wraps code assembled by newAsmFor into a bootable image.
func image(mode Mode, code []byte) ([]byte, machine.BootProtocol) {
	switch mode {
	case ModeReal16:
		return code, machine.BootFlat
	case ModeProt32:
		return multibootImage(code), machine.BootMultiboot
	}
	return elf64Image(code), machine.BootELF64
}

// elf64Image is a one-segment ELF64 executable loaded at imageBase with its
// code (and entry point) at codeBase.
func elf64Image(code []byte) []byte {
	b := make([]byte, codeBase-imageBase, codeBase-imageBase+len(code))
	copy(b, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], codeBase)
	le.PutUint64(b[32:], 64) // program headers follow the ELF header
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	ph := b[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 7) // RWX
	le.PutUint64(ph[16:], imageBase)
	le.PutUint64(ph[24:], imageBase)
	size := uint64(len(b) + len(code))
	le.PutUint64(ph[32:], size)
	le.PutUint64(ph[40:], size)
	le.PutUint64(ph[48:], 0x1000)
	return append(b, code...)
}

// multibootImage is a Multiboot1 image using the a.out kludge (address
// fields in the header), loaded at imageBase and entered at codeBase.
func multibootImage(code []byte) []byte {
	b := make([]byte, codeBase-imageBase, codeBase-imageBase+len(code))
	le := binary.LittleEndian
	var magic, flags uint32 = 0x1BADB002, 1 << 16
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], flags)
	le.PutUint32(b[8:], -(magic + flags))
	le.PutUint32(b[12:], imageBase) // header_addr
	le.PutUint32(b[16:], imageBase) // load_addr
	le.PutUint32(b[28:], codeBase)  // entry_addr
	return append(b, code...)
}

// newGuest builds a machine that runs code in mode, with a GDT, TSS and
// page tables that allow CPL3, and an IDT whose every vector writes its
// number to portFault. MemoryBytes 0 means guestMemory.
func newGuest(mode Mode, code []byte, hooks machine.Hooks, memBytes uint64) (*machine.Machine, error) {
	if memBytes == 0 {
		memBytes = guestMemory
	}
	img, boot := image(mode, code)
	m, err := machine.New(machine.Config{MemoryBytes: memBytes, Image: img, Boot: boot, Hooks: hooks})
	if err != nil {
		return nil, err
	}
	if err := setupTables(m, mode); err != nil {
		m.Close()
		return nil, fmt.Errorf("probe: %s guest: %w", mode, err)
	}
	return m, nil
}

// setupTables writes the descriptor tables into guest memory and points
// the vCPU at them, as a guest's own start-up code would.
func setupTables(m *machine.Machine, mode Mode) error {
	mem := m.Memory()
	if mode == ModeReal16 {
		common := uint64(realStubs + 256*8)
		for v := uint64(0); v < 256; v++ {
			stub := realStubs + v*8
			a := newAsm(16, stub)
			a.pushImm8(byte(v)).jmp(common)
			mem.WritePhys(stub, a.b)
			mem.PutUint32(v*4, uint32(stub)) // offset, segment 0
		}
		mem.WritePhys(common, tail(16, common))
		return nil // the vCPU's IDTR is the IVT at 0 after reset
	}
	bits := mode.bits()
	common := uint64(stubAddr + 256*8)
	for v := uint64(0); v < 256; v++ {
		stub := stubAddr + v*8
		a := newAsm(bits, stub)
		a.pushImm8(byte(v)).jmp(common)
		mem.WritePhys(stub, a.b)
		lo := stub&0xffff | selCode<<16 | (stub&0xffff0000)<<32 | 0xee00<<32 // present, DPL 3, interrupt gate
		if bits == 32 {
			mem.PutUint64(idtAddr+v*8, lo)
		} else {
			mem.PutUint64(idtAddr+v*16, lo)
			mem.PutUint64(idtAddr+v*16+8, stub>>32)
		}
	}
	mem.WritePhys(common, tail(bits, common))
	s, err := m.KVMVCPU().Sregs()
	if err != nil {
		return err
	}
	if bits == 32 {
		gdt := []uint64{0, 0x00cf9b000000ffff, 0x00cf93000000ffff, 0x00cff3000000ffff, 0x00cffb000000ffff}
		for i, d := range gdt {
			mem.PutUint64(gdtAddr+uint64(i)*8, d)
		}
		s.GDT = cpu.Descriptor{Base: gdtAddr, Limit: uint16(len(gdt)*8 - 1)}
		s.IDT = cpu.Descriptor{Base: idtAddr, Limit: 256*8 - 1}
		return m.KVMVCPU().SetSregs(&s)
	}
	tss := uint64(tssAddr)
	gdt := []uint64{0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cff3000000ffff, 0x00affb000000ffff,
		0x67 | (tss&0xffffff)<<16 | 0x89<<40 | (tss>>24&0xff)<<56, tss >> 32}
	for i, d := range gdt {
		mem.PutUint64(gdtAddr+uint64(i)*8, d)
	}
	mem.PutUint64(tssAddr+4, tssRSP0)
	// One GiB identity-mapped with 2 MiB pages, user-accessible: vmrr's own
	// boot tables leave the U bit clear.
	mem.PutUint64(pml4Addr, pdptAddr|7)
	mem.PutUint64(pdptAddr, pdAddr|7)
	for i := uint64(0); i < 512; i++ {
		mem.PutUint64(pdAddr+i*8, i<<21|0x87)
	}
	s.GDT = cpu.Descriptor{Base: gdtAddr, Limit: uint16(len(gdt)*8 - 1)}
	s.IDT = cpu.Descriptor{Base: idtAddr, Limit: 256*16 - 1}
	s.TR = cpu.Segment{Base: tssAddr, Limit: 0x67, Selector: selTSS, Typ: 11, Present: 1}
	s.CR3 = pml4Addr
	return m.KVMVCPU().SetSregs(&s)
}

// tail is the code every interrupt stub jumps to: it pops the vector the
// stub pushed, writes it to portFault and halts.
func tail(bits int, at uint64) []byte {
	a := newAsm(bits, at)
	a.pop0().out(portFault)
	h := a.pc()
	a.hlt().raw(0xeb, byte(int8(int64(h)-int64(a.pc()+2))))
	return a.b
}
