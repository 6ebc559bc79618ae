package x86emu

import (
	"testing"

	"vmrr/machine/cpu"
)

const (
	fl0   = flagFixed | cpu.FlagIF | cpu.FlagCF // RFLAGS before the interrupt
	flOut = flagFixed | cpu.FlagCF              // and in an interrupt-gate handler
)

func withFlags(fl uint64) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) { c.Regs.RFLAGS = fl }
}

func both(fs ...func(*fakeEnv, *CPU)) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, c *CPU) {
		for _, fn := range fs {
			fn(f, c)
		}
	}
}

func gate32(vec int, typ uint8, sel uint16, off uint32, dpl int, present bool) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, _ *CPU) { f.gate32(vec, typ, sel, off, dpl, present) }
}

func gate64(vec int, typ uint8, sel uint16, off uint64, dpl, ist int, present bool) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, _ *CPU) { f.gate64(vec, typ, sel, off, dpl, ist, present) }
}

func idtLimit(l uint16) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) { c.Sregs.IDT.Limit = l }
}

// frame checks the handler's CS:RIP, flags, stack pointer and stack.
func frame(cs uint16, rip, rflags, sp uint64, size int, stack ...uint64) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, f *fakeEnv, _, after *CPU) {
		t.Helper()
		eq(t, "CS", after.Sregs.CS.Selector, cs)
		eq(t, "RIP", after.Regs.RIP, rip)
		eq(t, "RFLAGS", after.Regs.RFLAGS, rflags)
		eq(t, "RSP", after.Regs.RSP, sp)
		wantStack(t, f, after.Regs.RSP, size, stack...)
	}
}

func TestInterruptReal(t *testing.T) {
	ivt := func(vec int, seg, off uint16) func(*fakeEnv, *CPU) {
		return func(f *fakeEnv, _ *CPU) {
			f.put16(uint64(vec)*4, off)
			f.put16(uint64(vec)*4+2, seg)
		}
	}
	const cs = codeBase >> 4
	runCases(t, []stepCase{
		{name: "int 0x10", mode: "real", code: []byte{0xcd, 0x10}, inst: "INT 0x10",
			setup: both(withFlags(fl0), ivt(0x10, 0x1234, 0x5678)),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(0x1234, 0x5678, flOut, 0x6ffa, 2, 2, cs, fl0)(t, f, b, a)
				eq(t, "CS.base", a.Sregs.CS.Base, 0x12340)
			}},
		{name: "int3", mode: "real", code: []byte{0xcc}, inst: "INT3",
			setup: both(withFlags(fl0|cpu.FlagTF), ivt(3, 0x100, 0x10)),
			check: frame(0x100, 0x10, flOut, 0x6ffa, 2, 1, cs, fl0|cpu.FlagTF)},
		{name: "into with OF", mode: "real", code: []byte{0xce}, inst: "INTO",
			setup: both(withFlags(fl0|cpu.FlagOF), ivt(4, 0x100, 0x20)),
			check: frame(0x100, 0x20, flOut|cpu.FlagOF, 0x6ffa, 2, 1, cs, fl0|cpu.FlagOF)},
		{name: "into without OF", mode: "real", code: []byte{0xce},
			setup: withFlags(fl0),
			check: frame(cs, 1, fl0, 0x7000, 2)},
		{name: "stack wraps at 64 KiB", mode: "real", code: []byte{0xcd, 0x10},
			setup: both(ivt(0x10, 0x1234, 0x5678), func(_ *fakeEnv, c *CPU) {
				c.Regs.RSP = 0x1234_0000
				c.Sregs.SS.Base, c.Sregs.SS.Selector = 0x10000, 0x1000
			}),
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "RSP", a.Regs.RSP, 0x1234_fffa)
				wantStack(t, f, 0x1fffa, 2, 2, cs)
			}},
		{name: "vector past the IVT limit raises #GP", mode: "real", code: []byte{0xcd, 0x20},
			setup: both(withFlags(fl0), idtLimit(0x7f)),
			fault: &Fault{Vector: vecGP},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecGP)
				// No error code in real mode; the saved IP is the INT's.
				// RF is bit 16: not in a 16-bit FLAGS image.
				wantStack(t, f, 0x6ffa, 2, 0, cs, fl0)
				eq(t, "SP", a.Regs.RSP, 0x6ffa)
			}},
		{name: "ud2 raises #UD", mode: "real", code: []byte{0x0f, 0x0b}, inst: "UD2",
			fault: &Fault{Vector: vecUD},
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { atHandler(t, a, vecUD) }},
		{name: "push past SS limit: #SS, then #DF", mode: "real", code: []byte{0xcd, 0x10},
			setup: func(_ *fakeEnv, c *CPU) { c.Regs.RSP, c.Sregs.SS.Limit = 0x7000, 0x6ff0 },
			err:   "triple fault"},
	})
}

func TestInterruptProtected(t *testing.T) {
	const next = codeBase + 2
	runCases(t, []stepCase{
		{name: "interrupt gate, same level", mode: "prot32", code: []byte{0xcd, 0x80}, inst: "INT 0x80",
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selCode32, handler, 0, true)),
			check: frame(selCode32, handler, flOut, kernStack-12, 4, next, selCode32, fl0)},
		{name: "trap gate keeps IF", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0|cpu.FlagTF|flagNT), gate32(0x80, 0xf, selCode32, handler, 0, true)),
			check: frame(selCode32, handler, fl0, kernStack-12, 4, next, selCode32, fl0|cpu.FlagTF|flagNT)},
		{name: "16-bit interrupt gate", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0x6, selCode32, 0x12345, 0, true)),
			check: frame(selCode32, 0x2345, flOut, kernStack-6, 2, next&0xffff, selCode32, fl0)},
		{name: "from protected16 with a 16-bit stack", mode: "prot16", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selCode32, handler, 0, true)),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(selCode32, handler, flOut, 0x7000-12, 4, 2, selCode16, fl0)(t, f, b, a)
				eq(t, "mode", Mode(a), "protected32")
			}},
		{name: "CPL3 to CPL0 through the TSS", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selCode32, handler, 3, true)),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(selCode32, handler, flOut, tssStack-20, 4, next, selCode32U, fl0, userStack, selData32U)(t, f, b, a)
				eq(t, "SS", a.Sregs.SS, f.seg(selData32))
				eq(t, "CS", a.Sregs.CS, f.seg(selCode32))
			}},
		{name: "CPL3 to CPL0 through a 16-bit TSS", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selCode32, handler, 3, true), func(f *fakeEnv, c *CPU) {
				c.Sregs.TR.Typ = 3
				f.put16(tssBase+2, 0x9000)
				f.put16(tssBase+4, selData32)
			}),
			check: frame(selCode32, handler, flOut, 0x9000-20, 4, next, selCode32U, fl0, userStack, selData32U)},
		{name: "conforming handler stays at CPL3", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selConform, handler, 3, true)),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(selConform|3, handler, flOut, userStack-12, 4, next, selCode32U, fl0)(t, f, b, a)
				eq(t, "SS", a.Sregs.SS.Selector, selData32U)
			}},
		{name: "accessed bit set in the GDT", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(gate32(0x80, 0xe, selCode32, handler, 0, true), func(f *fakeEnv, _ *CPU) {
				f.ram[gdtBase+selCode32+5] &^= 1
			}),
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "descriptor type", f.ram[gdtBase+selCode32+5]&0xf, 0xb)
				eq(t, "CS.Typ", a.Sregs.CS.Typ, 0xb)
			}},
		{name: "gate DPL below CPL raises #GP(vector*8+2)", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate32(0x80, 0xe, selCode32, handler, 0, true)),
			fault: gp(0x80*8 + 2),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecGP)
				wantStack(t, f, a.Regs.RSP, 4, 0x402, codeBase, selCode32U, fl0|cpu.FlagRF, userStack, selData32U)
			}},
		{name: "int3 checks the gate DPL too", mode: "prot32u", code: []byte{0xcc},
			fault: gp(3*8 + 2)},
		{name: "icebp does not check the gate DPL", mode: "prot32u", code: []byte{0xf1}, inst: "ICEBP",
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecDB)
				wantStack(t, f, a.Regs.RSP, 4, codeBase+1, selCode32U)
			}},
		{name: "gate past the IDT limit raises #GP(vector*8+2)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), idtLimit(32*8-1)),
			fault: gp(0x402),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecGP)
				frame(selCode32, handler+vecGP*16, flOut, kernStack-16, 4, 0x402, codeBase, selCode32, fl0|cpu.FlagRF)(t, f, b, a)
			}},
		{name: "gate limit off by one", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(idtLimit(0x80*8+6), gate32(0x80, 0xe, selCode32, handler, 0, true)),
			fault: gp(0x402)},
		{name: "not-present gate raises #NP(vector*8+2)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, selCode32, handler, 0, false),
			fault: np(0x402),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { atHandler(t, a, vecNP) }},
		{name: "call gate in the IDT raises #GP", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xc, selCode32, handler, 0, true),
			fault: gp(0x402)},
		{name: "task gate is not emulated", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0x5, selTSS32, 0, 0, true),
			err:   "cannot emulate INT 0x80 (bytes cd 80) at RIP 0x40000 in protected32 mode: delivery of vector 0x80: task gate in the IDT"},
		{name: "null handler CS raises #GP(0)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, 0, handler, 0, true),
			fault: gp(0)},
		{name: "handler CS past the GDT raises #GP(sel)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, 0x100, handler, 0, true),
			fault: gp(0x100)},
		{name: "not-present handler CS raises #NP(sel)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, selCodeNP, handler, 0, true),
			fault: np(selCodeNP)},
		{name: "data segment as handler CS raises #GP(sel)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, selDataAsCode, handler, 0, true),
			fault: gp(selDataAsCode)},
		{name: "handler past its CS limit raises #GP(0)", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: gate32(0x80, 0xe, selCode16, 0x10000, 0, true),
			fault: gp(0)},
		{name: "bad SS0 in the TSS raises #TS(sel)", mode: "prot32u", code: []byte{0xcd, 0x80},
			// #TS goes to a conforming handler: a stack switch would need the TSS again.
			setup: both(gate32(0x80, 0xe, selCode32, handler, 3, true), gate32(vecTS, 0xe, selConform, handler, 0, true),
				func(f *fakeEnv, _ *CPU) { f.put16(tssBase+8, selData32U) }),
			fault: &Fault{Vector: vecTS, ErrorCode: selData32U &^ 3, HasErrorCode: true}},
		{name: "then a bad TSS for #TS too: triple fault", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(gate32(0x80, 0xe, selCode32, handler, 3, true), func(_ *fakeEnv, c *CPU) { c.Sregs.TR.Limit = 7 }),
			err:   "triple fault"},
		{name: "TSS too short raises #TS(TR)", mode: "prot32u", code: []byte{0xcd, 0x80},
			setup: both(gate32(0x80, 0xe, selCode32, handler, 3, true), gate32(vecTS, 0xe, selConform, handler, 0, true),
				func(_ *fakeEnv, c *CPU) { c.Sregs.TR.Limit = 7 }),
			fault: &Fault{Vector: vecTS, ErrorCode: selTSS32, HasErrorCode: true}},
		{name: "into with OF", mode: "prot32", code: []byte{0xce},
			setup: withFlags(fl0 | cpu.FlagOF),
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				atHandler(t, a, vecOF)
				wantStack(t, f, a.Regs.RSP, 4, codeBase+1, selCode32, fl0|cpu.FlagOF)
			}},
		{name: "lock prefix raises #UD", mode: "prot32", code: []byte{0xf0, 0xcd, 0x80},
			fault: &Fault{Vector: vecUD}},
	})
}

func TestInterruptLong(t *testing.T) {
	const next = codeBase + 2
	fl := uint64(fl0)
	runCases(t, []stepCase{
		{name: "same level, RSP aligned", mode: "long64", code: []byte{0xcd, 0x80}, inst: "INT 0x80",
			setup: both(withFlags(fl0), gate64(0x80, 0xe, selCode64, handler, 0, 0, true),
				func(_ *fakeEnv, c *CPU) { c.Regs.RSP = kernStack + 8 }),
			check: frame(selCode64, handler, flOut, kernStack-40, 8, next, selCode64, fl, kernStack+8, 0)},
		{name: "trap gate keeps IF", mode: "long64", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate64(0x80, 0xf, selCode64, handler, 0, 0, true)),
			check: frame(selCode64, handler, fl, kernStack-40, 8, next, selCode64, fl, kernStack, 0)},
		{name: "64-bit handler offset", mode: "long64", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0xe, selCode64, 0xffff_8000_0000_1000, 0, 0, true),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "RIP", a.Regs.RIP, 0xffff_8000_0000_1000) }},
		{name: "CPL3 to CPL0 through RSP0", mode: "long64u", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate64(0x80, 0xe, selCode64, handler, 3, 0, true)),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(selCode64, handler, flOut, tssStack-40, 8, next, selCode64U, fl, userStack, selData32U)(t, f, b, a)
				eq(t, "SS", a.Sregs.SS, flatNullSS(0))
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "IST stack", mode: "long64", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate64(0x80, 0xe, selCode64, handler, 0, 1, true)),
			check: frame(selCode64, handler, flOut, istStack-40, 8, next, selCode64, fl, kernStack, 0)},
		{name: "from compat mode", mode: "compat", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), gate64(0x80, 0xe, selCode64, handler, 0, 0, true),
				func(_ *fakeEnv, c *CPU) { c.Regs.RSP = 0xdead_0000_0007_0004 }),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				frame(selCode64, handler, flOut, kernStack-40, 8, next, selCode32, fl, 0xdead_0000_0007_0004, selData32)(t, f, b, a)
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "int3", mode: "long64", code: []byte{0xcc}, inst: "INT3",
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				atHandler(t, a, vecBP)
				wantStack(t, f, a.Regs.RSP, 8, codeBase+1)
			}},
		{name: "into is invalid in 64-bit mode", mode: "long64", code: []byte{0xce},
			fault: &Fault{Vector: vecUD}},
		{name: "gate past the IDT limit raises #GP(vector*8+2)", mode: "long64", code: []byte{0xcd, 0x80},
			setup: both(withFlags(fl0), idtLimit(32*16-1)),
			fault: gp(0x402),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecGP)
				wantStack(t, f, a.Regs.RSP, 8, 0x402, codeBase, selCode64, fl0|cpu.FlagRF, kernStack, 0)
			}},
		{name: "gate DPL below CPL raises #GP", mode: "long64u", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0xe, selCode64, handler, 0, 0, true),
			fault: gp(0x402)},
		{name: "not-present gate raises #NP", mode: "long64", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0xe, selCode64, handler, 0, 0, false),
			fault: np(0x402)},
		{name: "32-bit gate type raises #GP", mode: "long64", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0x6, selCode64, handler, 0, 0, true),
			fault: gp(0x402)},
		{name: "32-bit handler CS raises #GP(sel)", mode: "long64", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0xe, selCode32, handler, 0, 0, true),
			fault: gp(selCode32)},
		{name: "non-canonical handler raises #GP(0)", mode: "long64", code: []byte{0xcd, 0x80},
			setup: gate64(0x80, 0xe, selCode64, 0x0000_8000_0000_0000, 0, 0, true),
			fault: gp(0)},
		{name: "unmapped stack: #PF, whose delivery faults too: #DF", mode: "long64", code: []byte{0xcd, 0x80},
			setup: both(gate64(0x80, 0xe, selCode64, handler, 0, 0, true), gate64(vecDF, 0xe, selCode64, handler+vecDF*16, 0, 1, true),
				func(f *fakeEnv, _ *CPU) { f.unmap(kernStack - 8) }),
			fault: &Fault{Vector: vecDF, HasErrorCode: true},
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				atHandler(t, a, vecDF)
				eq(t, "CR2", a.Sregs.CR2, kernStack-8)
				wantStack(t, f, a.Regs.RSP, 8, 0, codeBase, selCode64)
			}},
	})
}

func TestEscalation(t *testing.T) {
	runCases(t, []stepCase{
		{name: "#NP while delivering #NP gives #DF", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(gate32(0x80, 0xe, selCode32, handler, 0, false), gate32(vecNP, 0xe, selCode32, handler, 0, false)),
			fault: &Fault{Vector: vecDF, HasErrorCode: true},
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecDF)
				wantStack(t, f, a.Regs.RSP, 4, 0, codeBase, selCode32)
			}},
		{name: "then a bad #DF gate: triple fault", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: both(gate32(0x80, 0xe, selCode32, handler, 0, false), gate32(vecNP, 0xe, selCode32, handler, 0, false),
				gate32(vecDF, 0xe, selCode32, handler, 0, false)),
			err: "triple fault"},
		{name: "benign #UD then #NP is handled serially, EXT set", mode: "prot32", code: []byte{0x0f, 0x0b},
			setup: gate32(vecUD, 0xe, selCode32, handler, 0, false),
			fault: np(vecUD*8 + 2 + 1)},
		{name: "#PF then #GP gives #DF", mode: "long64", code: []byte{0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x50, 0, 0},
			setup: both(func(f *fakeEnv, _ *CPU) { f.unmap(0x5000) }, gate64(vecPF, 0xe, selCode32, handler, 0, 0, true)),
			fault: &Fault{Vector: vecDF, HasErrorCode: true},
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "CR2", a.Sregs.CR2, 0x5000) }},
		{name: "#UD then #PF is handled serially", mode: "long64", code: []byte{0x0f, 0x0b},
			setup: both(func(f *fakeEnv, _ *CPU) { f.unmap(kernStack - 8) },
				gate64(vecPF, 0xe, selCode64, handler+vecPF*16, 0, 1, true)),
			fault: &Fault{Vector: vecPF, ErrorCode: 2, HasErrorCode: true}},
		{name: "IDT outside RAM ends the run", mode: "prot32", code: []byte{0xcd, 0x80},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.IDT.Base = 0xfff00000 },
			err:   "outside RAM"},
	})
}
