package x86emu

import (
	"testing"

	"vmrr/machine/cpu"
)

// Table-driven tests of the general-purpose instructions in each mode, with
// memory operands, prefixes and faults. Register-only results and flags are
// also compared with the host CPU in oracle_test.go.

const dataAddr = 0x90000 // free RAM in every test mode (real mode uses dataReal)

const dataReal = 0x9000

// rv is one register the check expects.
type rv struct {
	name string
	get  func(*cpu.Regs) uint64
	v    uint64
}

func rRAX(v uint64) rv { return rv{"RAX", rax, v} }
func rRBX(v uint64) rv { return rv{"RBX", rbx, v} }
func rRCX(v uint64) rv { return rv{"RCX", rcx, v} }
func rRDX(v uint64) rv { return rv{"RDX", rdx, v} }
func rRSP(v uint64) rv { return rv{"RSP", func(r *cpu.Regs) uint64 { return r.RSP }, v} }
func rRBP(v uint64) rv { return rv{"RBP", func(r *cpu.Regs) uint64 { return r.RBP }, v} }
func rRSI(v uint64) rv { return rv{"RSI", func(r *cpu.Regs) uint64 { return r.RSI }, v} }
func rRDI(v uint64) rv { return rv{"RDI", rdi, v} }
func rRIP(v uint64) rv { return rv{"RIP", func(r *cpu.Regs) uint64 { return r.RIP }, v} }

// anyFlags skips the RFLAGS check.
const anyFlags = ^uint64(0)

// expect checks that RIP advanced by n (unless an rRIP is given), RFLAGS
// (unless anyFlags) and the given registers.
func expect(n uint64, flags uint64, regs ...rv) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, _ *fakeEnv, before, after *CPU) {
		t.Helper()
		ripSet := false
		for _, r := range regs {
			eq(t, r.name, r.get(&after.Regs), r.v)
			ripSet = ripSet || r.name == "RIP"
		}
		if !ripSet {
			eq(t, "RIP", after.Regs.RIP, before.Regs.RIP+n)
		}
		if flags != anyFlags {
			eq(t, "RFLAGS", after.Regs.RFLAGS, flags)
		}
	}
}

// mem32 checks a dword in RAM after the instruction, then runs more checks.
func memIs(addr uint64, size int, v uint64, more func(*testing.T, *fakeEnv, *CPU, *CPU)) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, f *fakeEnv, before, after *CPU) {
		t.Helper()
		var got uint64
		switch size {
		case 1:
			got = uint64(f.ram[addr])
		case 2:
			got = uint64(f.get16(addr))
		case 4:
			got = uint64(f.get32(addr))
		default:
			got = f.get64(addr)
		}
		eq(t, "memory", got, v)
		if more != nil {
			more(t, f, before, after)
		}
	}
}

// unchanged checks that a faulting instruction left the registers alone.
func unchanged(vec int) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, _ *fakeEnv, before, after *CPU) {
		t.Helper()
		atHandler(t, after, vec)
		eq(t, "RAX", after.Regs.RAX, before.Regs.RAX)
		eq(t, "RCX", after.Regs.RCX, before.Regs.RCX)
		eq(t, "RDX", after.Regs.RDX, before.Regs.RDX)
		eq(t, "RBX", after.Regs.RBX, before.Regs.RBX)
	}
}

// with is a setup function.
func with(f func(f *fakeEnv, c *CPU)) func(*fakeEnv, *CPU) { return f }

// Flag constants: fl(...) builds flagFixed|IF plus the given status flags.
func fl(flags ...uint64) uint64 {
	v := uint64(flagFixed | cpu.FlagIF)
	for _, f := range flags {
		v |= f
	}
	return v
}

const (
	fCF = cpu.FlagCF
	fPF = cpu.FlagPF
	fAF = cpu.FlagAF
	fZF = cpu.FlagZF
	fSF = cpu.FlagSF
	fOF = cpu.FlagOF
	fDF = cpu.FlagDF
)

var faultDE = &Fault{Vector: vecDE}
var faultUD = &Fault{Vector: vecUD}

func faultPF(code uint32) *Fault { return &Fault{Vector: vecPF, ErrorCode: code, HasErrorCode: true} }
func faultSS(code uint32) *Fault { return &Fault{Vector: vecSS, ErrorCode: code, HasErrorCode: true} }

func TestDataMovement(t *testing.T) {
	runCases(t, []stepCase{
		{name: "mov r64, imm64", mode: "long64", code: []byte{0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11},
			inst: "MOV RAX, 0x1122334455667788", check: expect(10, fl(), rRAX(0x1122334455667788))},
		{name: "mov rax, moffs64", mode: "long64", code: []byte{0x48, 0xa1, 0x00, 0x00, 0x09, 0, 0, 0, 0, 0},
			setup: with(func(f *fakeEnv, _ *CPU) { f.put64(dataAddr, 0xdeadbeefcafe) }),
			check: expect(10, fl(), rRAX(0xdeadbeefcafe))},
		{name: "mov moffs8, al with fs", mode: "prot32", code: []byte{0x64, 0xa2, 0x10, 0, 0, 0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Sregs.FS.Base, c.Regs.RAX = dataAddr, 0x1234 }),
			check: memIs(dataAddr+0x10, 1, 0x34, expect(6, fl()))},
		{name: "mov [bx+si+4], ax", mode: "real", code: []byte{0x89, 0x40, 0x04}, inst: "MOV [BX+SI+0x4], AX",
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RSI, c.Regs.RAX = dataReal, 0x10, 0xffff_abcd }),
			check: memIs(dataReal+0x14, 2, 0xabcd, expect(3, fl()))},
		{name: "mov [bp], al uses SS", mode: "real", code: []byte{0x88, 0x46, 0x00},
			setup: with(func(_ *fakeEnv, c *CPU) {
				c.Sregs.SS.Base, c.Sregs.SS.Selector, c.Regs.RBP, c.Regs.RAX = 0x8000, 0x800, 0x10, 0x5a
			}),
			check: memIs(0x8010, 1, 0x5a, nil)},
		{name: "mov r32 zero-extends", mode: "long64", code: []byte{0x89, 0xc8},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RCX = ^uint64(0), 0x1_0000_0005 }),
			check: expect(2, fl(), rRAX(5))},
		{name: "mov ah keeps the rest", mode: "long64", code: []byte{0xb4, 0x12}, inst: "MOV AH, 0x12",
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff_ffff_ffff_ffff }),
			check: expect(2, fl(), rRAX(0xffff_ffff_ffff_12ff))},
		{name: "mov spl with REX", mode: "long64", code: []byte{0x40, 0xb4, 0x12}, inst: "MOV SPB, 0x12",
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff }),
			check: expect(3, fl(), rRAX(0xffff), rRSP(kernStack|0x12))},
		{name: "mov r/m64, imm32 sign-extends", mode: "long64", code: []byte{0x48, 0xc7, 0x03, 0xfe, 0xff, 0xff, 0xff},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr }),
			check: memIs(dataAddr, 8, 0xffff_ffff_ffff_fffe, nil)},
		{name: "mov to a read-only segment raises #GP(0)", mode: "prot32", code: []byte{0x89, 0x03},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Sregs.DS.Typ = 1; c.Regs.RBX = dataAddr }),
			fault: gp(0), check: unchanged(vecGP)},
		{name: "mov to a non-canonical [rbp] raises #SS(0)", mode: "long64", code: []byte{0x89, 0x45, 0x00},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBP = 0x8000_0000_0000 }),
			fault: faultSS(0)},
		{name: "mov to an unmapped page raises #PF(W)", mode: "long64", code: []byte{0x89, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { f.unmap(dataAddr); c.Regs.RBX = dataAddr + 8 }),
			fault: faultPF(2), check: func(t *testing.T, _ *fakeEnv, _, after *CPU) { eq(t, "CR2", after.Sregs.CR2, dataAddr+8) }},
		{name: "movsx r32, m8", mode: "prot32", code: []byte{0x0f, 0xbe, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.ram[dataAddr] = 0x80 }),
			check: expect(3, fl(), rRAX(0xffffff80))},
		{name: "movzx r16, m8", mode: "real", code: []byte{0x0f, 0xb6, 0x07},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataReal, 0xdead_0000; f.ram[dataReal] = 0x80 }),
			check: expect(3, fl(), rRAX(0xdead_0080))},
		{name: "movsxd r64, m32", mode: "long64", code: []byte{0x48, 0x63, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.put32(dataAddr, 0x8000_0001) }),
			check: expect(3, fl(), rRAX(0xffff_ffff_8000_0001))},
		{name: "lea wraps at 16 bits", mode: "real", code: []byte{0x8d, 0x40, 0xfe}, inst: "LEA AX, [BX+SI-0x2]",
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RSI, c.Regs.RAX = 0, 1, 0x5555_0000 }),
			check: expect(3, fl(), rRAX(0x5555_ffff))},
		{name: "lea r16 with 32-bit address", mode: "prot32", code: []byte{0x66, 0x8d, 0x04, 0x4b},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RCX = 0x1_2345, 0x10 }),
			check: expect(4, fl(), rRAX(0x2365))},
		{name: "lea rip-relative", mode: "long64", code: []byte{0x48, 0x8d, 0x05, 0x10, 0, 0, 0},
			check: expect(7, fl(), rRAX(codeBase+7+0x10))},
		{name: "lea r32 with 64-bit address truncates", mode: "long64", code: []byte{0x8d, 0x04, 0x0b},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RCX = 0xffff_ffff, 2 }),
			check: expect(3, fl(), rRAX(1))},
		{name: "xchg m32, r32", mode: "prot32", code: []byte{0x87, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataAddr, 7; f.put32(dataAddr, 9) }),
			check: memIs(dataAddr, 4, 7, expect(2, fl(), rRAX(9)))},
		{name: "xchg eax, eax zero-extends", mode: "long64", code: []byte{0x87, 0xc0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff_ffff_0000_0001 }),
			check: expect(2, fl(), rRAX(1))},
		{name: "nop keeps rax", mode: "long64", code: []byte{0x90},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff_ffff_0000_0001 }),
			check: expect(1, fl(), rRAX(0xffff_ffff_0000_0001))},
		{name: "xchg r8d, eax", mode: "long64", code: []byte{0x41, 0x90},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.R8 = 0xffff_ffff_0000_0001, 2 }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(2, fl(), rRAX(2))(t, f, b, a)
				eq(t, "R8", a.Regs.R8, 1)
			}},
		{name: "multi-byte nop does not touch memory", mode: "long64", code: []byte{0x0f, 0x1f, 0x44, 0x00, 0x00},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RAX = 0x8000_0000_0000 }),
			check: expect(5, fl())},
		{name: "pause", mode: "prot32", code: []byte{0xf3, 0x90}, inst: "PAUSE", check: expect(2, fl())},
		{name: "lock xadd m32", mode: "prot32", code: []byte{0xf0, 0x0f, 0xc1, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataAddr, 5; f.put32(dataAddr, 0xffff_ffff) }),
			check: memIs(dataAddr, 4, 4, expect(4, fl(fCF, fAF), rRAX(0xffff_ffff)))},
		{name: "xadd same register", mode: "long64", code: []byte{0x0f, 0xc1, 0xc0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 3 }),
			check: expect(3, fl(fPF), rRAX(6))},
		{name: "cmpxchg m32 equal", mode: "prot32", code: []byte{0x0f, 0xb1, 0x0b},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX, c.Regs.RCX = dataAddr, 5, 9; f.put32(dataAddr, 5) }),
			check: memIs(dataAddr, 4, 9, expect(3, fl(fZF, fPF), rRAX(5)))},
		{name: "cmpxchg m32 different", mode: "prot32", code: []byte{0x0f, 0xb1, 0x0b},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX, c.Regs.RCX = dataAddr, 5, 9; f.put32(dataAddr, 6) }),
			check: memIs(dataAddr, 4, 6, expect(3, fl(fCF, fPF, fAF, fSF), rRAX(6)))},
		{name: "cmpxchg different still writes memory", mode: "prot32", code: []byte{0x0f, 0xb1, 0x0b},
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Sregs.DS.Typ = 1
				c.Regs.RBX, c.Regs.RAX = dataAddr, 5
				f.put32(dataAddr, 6)
			}),
			fault: gp(0)},
		{name: "cmpxchg8b equal", mode: "prot32", code: []byte{0x0f, 0xc7, 0x0f}, inst: "CMPXCHG8B [EDI]",
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Regs.RDI, c.Regs.RDX, c.Regs.RAX, c.Regs.RCX, c.Regs.RBX = dataAddr, 1, 2, 3, 4
				f.put64(dataAddr, 1<<32|2)
			}),
			check: memIs(dataAddr, 8, 3<<32|4, expect(3, fl(fZF), rRAX(2), rRDX(1)))},
		{name: "cmpxchg8b different", mode: "long64", code: []byte{0x0f, 0xc7, 0x0f},
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Regs.RDI, c.Regs.RDX, c.Regs.RAX = dataAddr, 0xffff_ffff_0000_0001, 2
				c.Regs.RFLAGS |= fZF
				f.put64(dataAddr, 7<<32|8)
			}),
			check: memIs(dataAddr, 8, 7<<32|8, expect(3, fl(), rRAX(8), rRDX(7)))},
		{name: "cmpxchg16b equal", mode: "long64", code: []byte{0x48, 0x0f, 0xc7, 0x0f},
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Regs.RDI, c.Regs.RDX, c.Regs.RAX, c.Regs.RCX, c.Regs.RBX = dataAddr, 1, 2, 3, 4
				f.put64(dataAddr, 2)
				f.put64(dataAddr+8, 1)
			}),
			check: memIs(dataAddr+8, 8, 3, memIs(dataAddr, 8, 4, expect(4, fl(fZF))))},
		{name: "cmpxchg16b misaligned raises #GP(0)", mode: "long64", code: []byte{0x48, 0x0f, 0xc7, 0x0f},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDI = dataAddr + 8 }),
			fault: gp(0)},
		{name: "bswap r32", mode: "prot32", code: []byte{0x0f, 0xc8},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x11223344 }),
			check: expect(2, fl(), rRAX(0x44332211))},
		{name: "cwd", mode: "real", code: []byte{0x99},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RDX = 0x8000, 0x1234_0000 }),
			check: expect(1, fl(), rRDX(0x1234_ffff))},
		{name: "cdqe", mode: "long64", code: []byte{0x48, 0x98},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x8000_0000 }),
			check: expect(2, fl(), rRAX(0xffff_ffff_8000_0000))},
		{name: "cbw", mode: "prot32", code: []byte{0x66, 0x98},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x1234_5680 }),
			check: expect(2, fl(), rRAX(0x1234_ff80))},
		{name: "xlat", mode: "real", code: []byte{0xd7},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataReal, 0x1205; f.ram[dataReal+5] = 0x77 }),
			check: expect(1, fl(), rRAX(0x1277))},
		{name: "xlat with es override", mode: "prot32", code: []byte{0x26, 0xd7},
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Sregs.ES.Base, c.Regs.RBX, c.Regs.RAX = dataAddr, 0x100, 0xff
				f.ram[dataAddr+0x1ff] = 0x42
			}),
			check: expect(2, fl(), rRAX(0x42))},
		{name: "lahf", mode: "long64", code: []byte{0x9f},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS = allStatus | fDF }),
			check: expect(1, allStatus|fDF, rRAX(0xd7<<8))},
		{name: "sahf", mode: "prot32", code: []byte{0x9e},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xff00; c.Regs.RFLAGS |= fOF }),
			check: expect(1, fl(fOF, fCF, fPF, fAF, fZF, fSF))},
		{name: "cmc stc clc", mode: "prot32", code: []byte{0xf5},
			check: expect(1, fl(fCF))},
		{name: "std", mode: "prot32", code: []byte{0xfd}, check: expect(1, fl(fDF))},
		{name: "cmov false zero-extends", mode: "long64", code: []byte{0x0f, 0x44, 0xc1},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RCX = 0xffff_ffff_0000_0001, 2 }),
			check: expect(3, fl(), rRAX(1))},
		{name: "cmov true", mode: "long64", code: []byte{0x48, 0x0f, 0x44, 0xc1},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RCX, c.Regs.RFLAGS = 1, 0x1_0000_0002, fl(fZF) }),
			check: expect(4, fl(fZF), rRAX(0x1_0000_0002))},
		{name: "cmov false still reads memory", mode: "prot32", code: []byte{0x0f, 0x44, 0x03},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Sregs.DS.Limit, c.Regs.RBX = 0xfff, 0x1000 }),
			fault: gp(0)},
		{name: "sete m8", mode: "prot32", code: []byte{0x0f, 0x94, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RFLAGS = dataAddr, fl(fZF); f.ram[dataAddr] = 0x55 }),
			check: memIs(dataAddr, 1, 1, nil)},
		{name: "setg ah", mode: "prot32", code: []byte{0x0f, 0x9f, 0xc4},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0xffff, fl(fSF, fOF) }),
			check: expect(3, fl(fSF, fOF), rRAX(0x01ff))},
		{name: "lock on a register destination raises #UD", mode: "long64", code: []byte{0xf0, 0x01, 0xc0}, fault: faultUD},
		{name: "lock mov raises #UD", mode: "long64", code: []byte{0xf0, 0x89, 0x03}, fault: faultUD},
		{name: "lock add m32", mode: "long64", code: []byte{0xf0, 0x01, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataAddr, 1; f.put32(dataAddr, 0x7fff_ffff) }),
			check: memIs(dataAddr, 4, 0x8000_0000, expect(3, fl(fOF, fSF, fAF, fPF)))},
	})
}

func TestArithmetic(t *testing.T) {
	runCases(t, []stepCase{
		{name: "add m32, imm8 sign-extended", mode: "prot32", code: []byte{0x83, 0x03, 0xff},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.put32(dataAddr, 1) }),
			check: memIs(dataAddr, 4, 0, expect(3, fl(fCF, fZF, fPF, fAF)))},
		{name: "add m16, imm8 with 66", mode: "long64", code: []byte{0x66, 0x83, 0x03, 0x01},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.put32(dataAddr, 0x1_ffff) }),
			check: memIs(dataAddr, 4, 0x1_0000, expect(4, fl(fCF, fZF, fPF, fAF)))},
		{name: "adc r8, r8", mode: "real", code: []byte{0x10, 0xe0}, inst: "ADC AL, AH",
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0x7f00, fl(fCF) }),
			check: expect(2, fl(fOF, fSF, fAF), rRAX(0x7f80))},
		{name: "sbb r64, imm32", mode: "long64", code: []byte{0x48, 0x81, 0xd8, 0, 0, 0, 0x80},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0, fl(fCF) }),
			check: expect(7, fl(fCF, fPF, fAF), rRAX(0x7fff_ffff))},
		{name: "cmp m8, imm8 does not write", mode: "prot32", code: []byte{0x80, 0x3b, 0x05},
			setup: with(func(f *fakeEnv, c *CPU) { c.Sregs.DS.Typ = 1; c.Regs.RBX = dataAddr; f.ram[dataAddr] = 5 }),
			check: expect(3, fl(fZF, fPF))},
		{name: "test r/m, imm", mode: "long64", code: []byte{0x48, 0xf7, 0xc0, 0, 0, 0, 0x80},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 1<<63, fl(fCF, fOF, fAF) }),
			check: expect(7, fl(fSF, fPF))},
		{name: "inc keeps CF", mode: "prot32", code: []byte{0x40},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0x7fff_ffff, fl(fCF) }),
			check: expect(1, fl(fCF, fOF, fSF, fAF, fPF), rRAX(0x8000_0000))},
		{name: "dec r16", mode: "real", code: []byte{0x49},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 0x1_0000 }),
			check: expect(1, fl(fSF, fAF, fPF), rRCX(0x1_ffff))},
		{name: "neg zero clears CF", mode: "long64", code: []byte{0x48, 0xf7, 0xd8},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS = fl(fCF) }),
			check: expect(3, fl(fZF, fPF), rRAX(0))},
		{name: "not m16", mode: "real", code: []byte{0xf7, 0x17},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataReal; f.put16(dataReal, 0x00ff) }),
			check: memIs(dataReal, 2, 0xff00, expect(2, fl()))},
		{name: "inc m8 on an unmapped page reports a write", mode: "long64", code: []byte{0xfe, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { f.unmap(dataAddr); c.Regs.RBX = dataAddr }),
			fault: faultPF(2)},
		{name: "add m32 on a read-only page", mode: "long64", code: []byte{0x01, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) {
				f.put64(0x4000+(dataAddr>>12)*8, dataAddr|ptP|ptUS)
				c.Regs.RBX = dataAddr
			}),
			fault: faultPF(3)},
		{name: "add m32 across pages, second unmapped", mode: "long64", code: []byte{0x01, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { f.unmap(dataAddr + 0x1000); c.Regs.RBX = dataAddr + 0xffe }),
			fault: faultPF(2), check: func(t *testing.T, f *fakeEnv, _, after *CPU) {
				eq(t, "CR2", after.Sregs.CR2, dataAddr+0x1000)
			}},
		{name: "mul r/m8", mode: "prot32", code: []byte{0xf6, 0xe3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = 0x1234_0080, 4 }),
			check: expect(2, fl(fCF, fOF, fPF), rRAX(0x1234_0200))},
		{name: "mul m32", mode: "long64", code: []byte{0xf7, 0x23},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = 0xffff_ffff, dataAddr; f.put32(dataAddr, 0x10) }),
			check: expect(2, fl(fCF, fOF, fSF, fPF), rRAX(0xffff_fff0), rRDX(0xf))},
		{name: "imul r64, r/m64, imm8", mode: "long64", code: []byte{0x48, 0x6b, 0xc3, 0xfd},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBX = 3 }),
			check: expect(4, fl(fSF), rRAX(0xffff_ffff_ffff_fff7))},
		{name: "imul r16, r/m16 overflow", mode: "real", code: []byte{0x0f, 0xaf, 0xc3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = 0x4000, 2 }),
			check: expect(3, fl(fCF, fOF, fSF, fPF), rRAX(0x8000))},
		{name: "imul r/m64 one operand", mode: "long64", code: []byte{0x48, 0xf7, 0xeb},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = ^uint64(0), 1<<63 }),
			check: expect(3, fl(fCF, fOF, fPF, fSF), rRAX(1<<63), rRDX(0))},
		{name: "div r/m16", mode: "real", code: []byte{0xf7, 0xf3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDX, c.Regs.RAX, c.Regs.RBX = 1, 5, 2 }),
			check: expect(2, fl(), rRAX(0x8002), rRDX(1))},
		{name: "div by zero raises #DE", mode: "prot32", code: []byte{0xf7, 0xf3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 5 }),
			fault: faultDE, check: unchanged(vecDE)},
		{name: "div overflow raises #DE", mode: "long64", code: []byte{0x48, 0xf7, 0xf3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDX, c.Regs.RBX = 2, 2 }),
			fault: faultDE, check: unchanged(vecDE)},
		{name: "div r/m8", mode: "real", code: []byte{0xf6, 0xf3},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = 0x0107, 2 }),
			check: expect(2, fl(), rRAX(0x0183))},
		{name: "idiv -128 / -1 (8-bit) raises #DE", mode: "prot32", code: []byte{0xf6, 0xfb},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RBX = 0xff80, 0xff }),
			fault: faultDE},
		{name: "idiv 64-bit negative", mode: "long64", code: []byte{0x48, 0xf7, 0xfb},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDX, c.Regs.RAX, c.Regs.RBX = ^uint64(0), ^uint64(6), 2 }),
			check: expect(3, fl(), rRAX(^uint64(2)), rRDX(^uint64(0)))},
		{name: "idiv 64-bit most negative quotient", mode: "long64", code: []byte{0x48, 0xf7, 0xfb},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDX, c.Regs.RAX, c.Regs.RBX = ^uint64(0), 1<<63, 1 }),
			check: expect(3, fl(), rRAX(1<<63), rRDX(0))},
		{name: "idiv 64-bit overflow", mode: "long64", code: []byte{0x48, 0xf7, 0xfb},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RDX, c.Regs.RAX, c.Regs.RBX = ^uint64(0), 1<<63, ^uint64(0) }),
			fault: faultDE},
		{name: "shl m32, cl", mode: "prot32", code: []byte{0xd3, 0x23},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RCX = dataAddr, 4; f.put32(dataAddr, 0x1800_0001) }),
			check: memIs(dataAddr, 4, 0x8000_0010, expect(2, fl(fCF, fSF)))},
		{name: "shl by 0 changes no flags", mode: "prot32", code: []byte{0xc1, 0xe0, 0x20},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 3, allStatus }),
			check: expect(3, allStatus, rRAX(3))},
		{name: "shld m16 by 20", mode: "real", code: []byte{0x0f, 0xa4, 0x07, 20},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RAX = dataReal, 0x8421; f.put16(dataReal, 0xc001) }),
			check: memIs(dataReal, 2, 0x421c, nil)},
		{name: "rcr r/m8 by 9 changes nothing", mode: "prot32", code: []byte{0xc0, 0xd8, 9},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0x81, fl(fOF) }),
			check: expect(3, fl(fOF), rRAX(0x81))},
		{name: "bt m32, r32 with a negative offset", mode: "prot32", code: []byte{0x0f, 0xa3, 0x0b},
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Regs.RBX, c.Regs.RCX = dataAddr, 0xffff_ffff
				f.put32(dataAddr-4, 0x8000_0000)
			}),
			check: expect(3, fl(fCF))},
		{name: "bts m16, r16 beyond the operand", mode: "real", code: []byte{0x0f, 0xab, 0x0f},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX, c.Regs.RCX = dataReal, 35 }),
			check: memIs(dataReal+4, 2, 8, expect(3, fl()))},
		{name: "btr m64, imm8 masks the offset", mode: "long64", code: []byte{0x48, 0x0f, 0xba, 0x33, 0x41},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.put64(dataAddr, 3) }),
			check: memIs(dataAddr, 8, 1, expect(5, fl(fCF)))},
		{name: "btc r32, r32 masks the offset", mode: "long64", code: []byte{0x0f, 0xbb, 0xc8},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RCX = 0xffff_ffff_0000_0000, 33 }),
			check: expect(3, fl(), rRAX(2))},
		{name: "bsf m32", mode: "prot32", code: []byte{0x0f, 0xbc, 0x03},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr; f.put32(dataAddr, 0x100) }),
			check: expect(3, fl(), rRAX(8))},
		{name: "bsr zero source keeps the destination", mode: "long64", code: []byte{0x0f, 0xbd, 0xc1},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff_ffff_1234_5678 }),
			check: expect(3, fl(fZF, fPF), rRAX(0xffff_ffff_1234_5678))},
		{name: "daa", mode: "prot32", code: []byte{0x27},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xae }),
			check: expect(1, fl(fCF, fAF, fPF), rRAX(0x14))},
		{name: "das", mode: "real", code: []byte{0x2f},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX, c.Regs.RFLAGS = 0xee, fl(fCF, fAF) }),
			check: expect(1, fl(fCF, fAF, fSF, fPF), rRAX(0x88))},
		{name: "aaa", mode: "real", code: []byte{0x37},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x000e }),
			check: expect(1, fl(fCF, fAF), rRAX(0x0104))},
		{name: "aas", mode: "prot32", code: []byte{0x3f},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x0200 | 0xff }),
			check: expect(1, fl(fCF, fAF, fPF), rRAX(0x0109))},
		{name: "aam", mode: "real", code: []byte{0xd4, 0x0a},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x3f }),
			check: expect(2, fl(fPF), rRAX(0x0603))},
		{name: "aam 0 raises #DE", mode: "real", code: []byte{0xd4, 0x00}, fault: faultDE},
		{name: "aad", mode: "compat", code: []byte{0xd5, 0x0a},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x0603 }),
			check: expect(2, fl(fPF), rRAX(0x3f))},
	})
}

// generalHot are ordinary instructions: each Step of them may allocate only
// Step's own working state, nothing per operand, flag or memory access.
var generalHot = []struct {
	name string
	code []byte
}{
	{"add-r-m", []byte{0x03, 0x03}},
	{"mov-m-r", []byte{0x89, 0x03}},
	{"inc-m", []byte{0xff, 0x03}},
	{"shl-r-cl", []byte{0xd3, 0xe0}},
	{"jne", []byte{0x75, 0x00}},
	{"push-pop", []byte{0x50}},
	{"call", []byte{0xe8, 0, 0, 0, 0}},
	{"rep-movsb", []byte{0xf3, 0xa4}},
	{"cmpxchg", []byte{0xf0, 0x0f, 0xb1, 0x0b}},
	{"imul", []byte{0x0f, 0xaf, 0xc3}},
	{"div", []byte{0xf7, 0xf1}},
}

func hotState(tb testing.TB, code []byte) (*fakeEnv, *CPU) {
	f, c := newState(tb, "long64")
	f.put(codeBase, code...)
	c.Regs.RBX, c.Regs.RSI, c.Regs.RDI, c.Regs.RCX = dataAddr, dataAddr, dataAddr+0x100, 1<<20
	return f, c
}

func TestGeneralAllocs(t *testing.T) {
	for _, h := range generalHot {
		f, tmpl := hotState(t, h.code)
		c := *tmpl
		if _, err := Step(&c, f); err != nil {
			t.Fatalf("%s: %v", h.name, err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			c = *tmpl
			Step(&c, f)
		})
		if allocs > 1 {
			t.Errorf("%s: %v allocations a Step, want at most Step's own 1", h.name, allocs)
		}
	}
}

func BenchmarkGeneral(b *testing.B) {
	for _, h := range generalHot {
		b.Run(h.name, func(b *testing.B) {
			f, tmpl := hotState(b, h.code)
			var c CPU
			b.ReportAllocs()
			for range b.N {
				c = *tmpl
				if _, err := Step(&c, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
