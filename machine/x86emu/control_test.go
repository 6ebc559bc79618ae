package x86emu

import (
	"testing"

	"vmrr/machine/cpu"
)

func TestControlAndStack(t *testing.T) {
	runCases(t, []stepCase{
		{name: "jmp rel8 back", mode: "real", code: []byte{0xeb, 0xfe},
			check: expect(0, fl(), rRIP(0))},
		{name: "jmp rel16 wraps IP", mode: "real", code: []byte{0xe9, 0xfd, 0xff},
			check: expect(0, fl(), rRIP(0))},
		{name: "jmp beyond the CS limit raises #GP(0)", mode: "prot16", code: []byte{0x66, 0xe9, 0x00, 0x00, 0x01, 0x00},
			fault: gp(0)},
		{name: "je taken", mode: "prot32", code: []byte{0x74, 0x10},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS = fl(fZF) }),
			check: expect(0, fl(fZF), rRIP(codeBase+0x12))},
		{name: "jl not taken", mode: "long64", code: []byte{0x0f, 0x8c, 0, 1, 0, 0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS = fl(fSF, fOF) }),
			check: expect(6, fl(fSF, fOF))},
		{name: "jmp to a non-canonical address raises #GP(0)", mode: "long64", code: []byte{0xff, 0xe0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x8000_0000_0000 }),
			fault: gp(0)},
		{name: "jmp [rax]", mode: "long64", code: []byte{0xff, 0x20},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RAX = dataAddr; f.put64(dataAddr, 0x1234_5678_9a) }),
			check: expect(0, fl(), rRIP(0x1234_5678_9a))},
		{name: "jmp r16 clears the upper EIP", mode: "prot32", code: []byte{0x66, 0xff, 0xe0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0xffff_1234 }),
			check: expect(0, fl(), rRIP(0x1234))},
		{name: "call rel32", mode: "long64", code: []byte{0xe8, 0x00, 0x01, 0x00, 0x00},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(0, fl(), rRIP(codeBase+5+0x100), rRSP(kernStack-8))(t, f, b, a)
				wantStack(t, f, a.Regs.RSP, 8, codeBase+5)
			}},
		{name: "call [ebx] 16-bit in real mode", mode: "real", code: []byte{0xff, 0x17},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataReal; f.put16(dataReal, 0x1234) }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(0, fl(), rRIP(0x1234), rRSP(0x7000-2))(t, f, b, a)
				wantStack(t, f, 0x7000-2, 2, 2)
			}},
		{name: "call to a non-canonical address pushes nothing", mode: "long64", code: []byte{0xff, 0xd0},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RAX = 0x8000_0000_0000 }),
			fault: gp(0)},
		{name: "ret imm16", mode: "prot32", code: []byte{0xc2, 0x08, 0x00},
			setup: onStack(4, 0x41000),
			check: expect(0, anyFlags, rRIP(0x41000), rRSP(kernStack+8))},
		{name: "ret 16-bit with 66 in 32-bit code", mode: "prot32", code: []byte{0x66, 0xc3},
			setup: onStack(2, 0x1234),
			check: expect(0, anyFlags, rRIP(0x1234), rRSP(kernStack))},
		{name: "ret in 64-bit mode ignores 66", mode: "long64", code: []byte{0x66, 0xc3},
			setup: onStack(8, 0x1_0000_1234),
			check: expect(0, anyFlags, rRIP(0x1_0000_1234), rRSP(kernStack))},
		{name: "jrcxz not taken on RCX above 32 bits", mode: "long64", code: []byte{0xe3, 0x05},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 1 << 32 }),
			check: expect(2, fl())},
		{name: "jecxz with 67", mode: "long64", code: []byte{0x67, 0xe3, 0x05},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 1 << 32 }),
			check: expect(0, fl(), rRIP(codeBase+8))},
		{name: "loop uses CX in real mode", mode: "real", code: []byte{0xe2, 0xfe},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 0x1_0001 }),
			check: expect(2, fl(), rRCX(0x1_0000))},
		{name: "loope exits on ZF=0", mode: "prot32", code: []byte{0xe1, 0xfe},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 5 }),
			check: expect(2, fl(), rRCX(4))},
		{name: "loopne loops", mode: "long64", code: []byte{0xe0, 0xfe},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RCX = 0 }),
			check: expect(0, fl(), rRCX(^uint64(0)), rRIP(codeBase))},
		{name: "push imm8 is 64-bit in long mode", mode: "long64", code: []byte{0x6a, 0xff},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(2, fl(), rRSP(kernStack-8))(t, f, b, a)
				wantStack(t, f, a.Regs.RSP, 8, ^uint64(0))
			}},
		{name: "push imm16 with 66 in long mode", mode: "long64", code: []byte{0x66, 0x6a, 0xff},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(3, fl(), rRSP(kernStack-2))(t, f, b, a)
				wantStack(t, f, a.Regs.RSP, 2, 0xffff)
			}},
		{name: "push esp pushes the old value", mode: "prot32", code: []byte{0x54},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) { wantStack(t, f, kernStack-4, 4, kernStack) }},
		{name: "push m16 in real mode", mode: "real", code: []byte{0xff, 0x37},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataReal; f.put16(dataReal, 0xbeef) }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) { wantStack(t, f, 0x7000-2, 2, 0xbeef) }},
		{name: "push into an unmapped stack page", mode: "long64u", code: []byte{0x50},
			setup: with(func(f *fakeEnv, c *CPU) { f.unmap(userStack - 8) }),
			fault: faultPF(6)},
		{name: "pop r/m with an esp base addresses after the pop", mode: "prot32", code: []byte{0x8f, 0x44, 0x24, 0x04},
			setup: onStack(4, 0x11, 0x22, 0x33),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(4, anyFlags, rRSP(kernStack-8))(t, f, b, a)
				wantStack(t, f, kernStack-12, 4, 0x11, 0x22, 0x11)
			}},
		{name: "pop rsp", mode: "long64", code: []byte{0x5c},
			setup: onStack(8, 0x12345),
			check: expect(1, anyFlags, rRSP(0x12345))},
		{name: "pop r16 in long mode", mode: "long64", code: []byte{0x66, 0x58},
			setup: func(f *fakeEnv, c *CPU) { onStack(2, 0xabcd)(f, c); c.Regs.RAX = 0x1111_2222_3333_4444 },
			check: expect(2, anyFlags, rRAX(0x1111_2222_3333_abcd), rRSP(kernStack))},
		{name: "pusha then values", mode: "real", code: []byte{0x60},
			setup: with(func(_ *fakeEnv, c *CPU) {
				c.Regs.RAX, c.Regs.RCX, c.Regs.RDX, c.Regs.RBX, c.Regs.RBP, c.Regs.RSI, c.Regs.RDI = 1, 2, 3, 4, 5, 6, 7
			}),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(1, fl(), rRSP(0x7000-16))(t, f, b, a)
				wantStack(t, f, 0x7000-16, 2, 7, 6, 5, 0x7000, 4, 3, 2, 1)
			}},
		{name: "popad skips esp", mode: "prot32", code: []byte{0x61},
			setup: onStack(4, 7, 6, 5, 0x999, 4, 3, 2, 1),
			check: expect(1, anyFlags, rRAX(1), rRCX(2), rRDX(3), rRBX(4), rRBP(5), rRSI(6), rRDI(7), rRSP(kernStack))},
		{name: "pushfq clears RF and VM in the image", mode: "long64", code: []byte{0x9c},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS |= cpu.FlagRF | fCF }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) { wantStack(t, f, kernStack-8, 8, fl(fCF)) }},
		{name: "popf at CPL0 sets IOPL, never VM or RF", mode: "prot32", code: []byte{0x9d},
			setup: onStack(4, 0xffff_ffff),
			check: expect(1, flagFixed|popfMask, rRSP(kernStack))},
		{name: "popf at CPL3 keeps IOPL and IF", mode: "prot32u", code: []byte{0x9d},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RSP = userStack - 4
				f.put32(userStack-4, 0x3000|fCF)
				c.Regs.RFLAGS = fl()
			},
			check: expect(1, fl(fCF))},
		{name: "popf at CPL3 with IOPL3 clears IF", mode: "prot32u", code: []byte{0x9d},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RSP = userStack - 4
				f.put32(userStack-4, 0)
				c.Regs.RFLAGS = fl() | 0x3000
			},
			check: expect(1, flagFixed|0x3000)},
		{name: "popf 16-bit keeps the upper flags", mode: "prot32", code: []byte{0x66, 0x9d},
			setup: func(f *fakeEnv, c *CPU) {
				onStack(2, 0)(f, c)
				c.Regs.RFLAGS = fl() | cpu.FlagAC
			},
			check: expect(2, flagFixed|cpu.FlagAC)},
		{name: "enter 16, 0", mode: "prot32", code: []byte{0xc8, 0x10, 0x00, 0x00},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.RBP = 0x1234 }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(4, fl(), rRBP(kernStack-4), rRSP(kernStack-4-16))(t, f, b, a)
				wantStack(t, f, kernStack-4, 4, 0x1234)
			}},
		{name: "enter 0, 2 copies a frame pointer", mode: "long64", code: []byte{0xc8, 0x00, 0x00, 0x02},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBP = dataAddr; f.put64(dataAddr-8, 0xaaaa) }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				expect(4, fl(), rRBP(kernStack-8), rRSP(kernStack-24))(t, f, b, a)
				wantStack(t, f, kernStack-24, 8, kernStack-8, 0xaaaa, dataAddr)
			}},
		{name: "leave", mode: "real", code: []byte{0xc9},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBP = 0x6000; f.put16(0x6000, 0x4321) }),
			check: expect(1, fl(), rRBP(0x4321), rRSP(0x6002))},
	})
}

// TestRepString runs REP string instructions one iteration per Step.
func TestRepString(t *testing.T) {
	type stringCase struct {
		name  string
		mode  string
		code  []byte
		setup func(f *fakeEnv, c *CPU)
		steps int // Steps until RIP moves past the instruction
		check func(t *testing.T, f *fakeEnv, c *CPU)
	}
	for _, tc := range []stringCase{
		{name: "rep movsb", mode: "long64", code: []byte{0xf3, 0xa4},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RSI, c.Regs.RDI, c.Regs.RCX = dataAddr, dataAddr+0x100, 3
				f.put(dataAddr, 1, 2, 3, 4)
			},
			steps: 3,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "bytes", [4]byte(f.ram[dataAddr+0x100:]), [4]byte{1, 2, 3, 0})
				eq(t, "RSI", c.Regs.RSI, dataAddr+3)
				eq(t, "RDI", c.Regs.RDI, dataAddr+0x103)
				eq(t, "RCX", c.Regs.RCX, 0)
			}},
		{name: "rep movsb with count 0 in ECX", mode: "long64", code: []byte{0x67, 0xf3, 0xa4},
			setup: func(f *fakeEnv, c *CPU) { c.Regs.RSI, c.Regs.RDI, c.Regs.RCX = dataAddr, dataAddr+0x100, 1<<32 },
			steps: 1,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "RSI", c.Regs.RSI, dataAddr)
				eq(t, "writes", f.writes, 0)
			}},
		{name: "rep movsd backwards with 67 and a 32-bit count", mode: "long64", code: []byte{0x67, 0xf3, 0xa5},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RFLAGS |= fDF
				c.Regs.RSI, c.Regs.RDI, c.Regs.RCX = dataAddr+4, dataAddr+0x104, 0xffff_ffff_0000_0002
				f.put32(dataAddr, 0x11111111)
				f.put32(dataAddr+4, 0x22222222)
			},
			steps: 2,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "dword 0", f.get32(dataAddr+0x100), 0x11111111)
				eq(t, "dword 1", f.get32(dataAddr+0x104), 0x22222222)
				eq(t, "RSI", c.Regs.RSI, dataAddr-4)
				eq(t, "RCX", c.Regs.RCX, 0)
			}},
		{name: "movs with fs source", mode: "prot32", code: []byte{0x64, 0xa4},
			setup: func(f *fakeEnv, c *CPU) {
				c.Sregs.FS.Base = dataAddr
				c.Regs.RSI, c.Regs.RDI = 0x10, dataAddr+0x200
				f.ram[dataAddr+0x10] = 0x99
			},
			steps: 1,
			check: func(t *testing.T, f *fakeEnv, c *CPU) { eq(t, "byte", f.ram[dataAddr+0x200], 0x99) }},
		{name: "repe cmpsb stops at a difference", mode: "prot32", code: []byte{0xf3, 0xa6},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RSI, c.Regs.RDI, c.Regs.RCX = dataAddr, dataAddr+0x100, 10
				f.put(dataAddr, 1, 2, 3)
				f.put(dataAddr+0x100, 1, 2, 4)
			},
			steps: 3,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "RCX", c.Regs.RCX, 7)
				eq(t, "flags", c.Regs.RFLAGS&arithFlags, fCF|fSF|fAF|fPF)
			}},
		{name: "repne scasw finds a word", mode: "real", code: []byte{0xf2, 0xaf},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RDI, c.Regs.RCX, c.Regs.RAX = dataReal, 0xffff_0010, 0x3333
				f.put16(dataReal, 0x1111)
				f.put16(dataReal+2, 0x3333)
			},
			steps: 2,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "RCX", c.Regs.RCX, 0xffff_000e)
				eq(t, "RDI", c.Regs.RDI, dataReal+4)
				eq(t, "ZF", c.Regs.RFLAGS&fZF, fZF)
			}},
		{name: "rep stosw wraps DI at 16 bits", mode: "real", code: []byte{0xf3, 0xab},
			setup: func(f *fakeEnv, c *CPU) { c.Regs.RDI, c.Regs.RCX, c.Regs.RAX = 0xfffe, 2, 0xabcd },
			steps: 2,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "word at ffe", f.get16(0xfffe), 0xabcd)
				eq(t, "word at 0", f.get16(0), 0xabcd)
				eq(t, "RDI", c.Regs.RDI, 2)
			}},
		{name: "lodsq", mode: "long64", code: []byte{0x48, 0xad},
			setup: func(f *fakeEnv, c *CPU) { c.Regs.RSI = dataAddr; f.put64(dataAddr, 0x0102030405060708) },
			steps: 1,
			check: func(t *testing.T, f *fakeEnv, c *CPU) {
				eq(t, "RAX", c.Regs.RAX, 0x0102030405060708)
				eq(t, "RSI", c.Regs.RSI, dataAddr+8)
			}},
	} {
		t.Run(tc.mode+"/"+tc.name, func(t *testing.T) {
			f, c := newState(t, tc.mode)
			installHandlers(f, c)
			f.put(codeBase, tc.code...)
			tc.setup(f, c)
			f.writes = 0
			start := c.Regs.RIP
			for i := 1; ; i++ {
				res, err := Step(c, f)
				if err != nil || res.Fault != nil {
					t.Fatalf("step %d: %v %v", i, err, res.Fault)
				}
				if c.Regs.RIP != start {
					eq(t, "steps", i, tc.steps)
					eq(t, "RIP", c.Regs.RIP, start+uint64(len(tc.code)))
					break
				}
				if i > tc.steps {
					t.Fatalf("still at the instruction after %d steps", i)
				}
			}
			tc.check(t, f, c)
		})
	}
}

// TestRepStringFault checks that a fault in the middle of a REP leaves the
// iterations done so far, and the count that goes with them.
func TestRepStringFault(t *testing.T) {
	f, c := newState(t, "long64")
	installHandlers(f, c)
	f.put(codeBase, 0xf3, 0x48, 0xab) // rep stosq
	f.unmap(dataAddr + 0x1000)
	c.Regs.RDI, c.Regs.RCX, c.Regs.RAX = dataAddr+0xff0, 4, 7
	for i := range 3 {
		res, err := Step(c, f)
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 && res.Fault != nil {
			t.Fatalf("step %d: %v", i, res.Fault)
		}
		if i == 2 {
			eq(t, "fault", *res.Fault, *faultPF(2))
		}
	}
	eq(t, "CR2", c.Sregs.CR2, dataAddr+0x1000)
	eq(t, "qword 0", f.get64(dataAddr+0xff0), 7)
	eq(t, "qword 1", f.get64(dataAddr+0xff8), 7)
	wantStack(t, f, c.Regs.RSP, 8, 2, codeBase)
	// The handler's frame holds the interrupted state; RCX is in the CPU.
	eq(t, "RCX", c.Regs.RCX, 2)
	eq(t, "RDI", c.Regs.RDI, dataAddr+0x1000)
}
