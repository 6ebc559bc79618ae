package x86emu

import "testing"

// A ModRM disp32 is signed under 64-bit addressing (x86asm hands it over
// zero-extended): base-relative, RIP-relative and SIB without a base. The
// differential test (cmd/vmrr TestDifftestSoftVsHost) met it first.
func TestNegativeDisp32(t *testing.T) {
	runCases(t, []stepCase{
		{name: "add [r15-0x562], eax", mode: "long64", code: []byte{0x41, 0x01, 0x87, 0x9e, 0xfa, 0xff, 0xff},
			inst: "ADD [R15-0x562], EAX",
			setup: with(func(f *fakeEnv, c *CPU) {
				c.Regs.R15, c.Regs.RAX = dataAddr+0x562, 1
				f.put32(dataAddr, 41)
			}),
			check: memIs(dataAddr, 4, 42, expect(7, fl()))},
		{name: "mov eax, [rip-0x100]", mode: "long64", code: []byte{0x8b, 0x05, 0x00, 0xff, 0xff, 0xff},
			setup: with(func(f *fakeEnv, _ *CPU) { f.put32(codeBase+6-0x100, 0x1234_5678) }),
			check: expect(6, fl(), rRAX(0x1234_5678))},
		{name: "mov eax, [rbx*1-0x10]", mode: "long64", code: []byte{0x8b, 0x04, 0x1d, 0xf0, 0xff, 0xff, 0xff},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr + 0x10; f.put32(dataAddr, 0xabcd) }),
			check: expect(7, fl(), rRAX(0xabcd))},
		{name: "bts qword [r15-0x562], 13", mode: "long64", code: []byte{0x49, 0x0f, 0xba, 0xaf, 0x9e, 0xfa, 0xff, 0xff, 0x0d},
			setup: with(func(_ *fakeEnv, c *CPU) { c.Regs.R15 = dataAddr + 0x562 }),
			check: memIs(dataAddr, 8, 1<<13, expect(9, fl()))},
		{name: "mov eax, [ebx-0x10] with 67", mode: "long64", code: []byte{0x67, 0x8b, 0x83, 0xf0, 0xff, 0xff, 0xff},
			setup: with(func(f *fakeEnv, c *CPU) { c.Regs.RBX = dataAddr + 0x10; f.put32(dataAddr, 0x5a5a) }),
			check: expect(7, fl(), rRAX(0x5a5a))},
	})
}
