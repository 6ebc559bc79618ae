package x86emu

import (
	"testing"

	"vmrr/machine/cpu"
)

// onStack writes an interrupt frame of size-byte values at SP-len*size and
// points RSP at it.
func onStack(size int, vals ...uint64) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, c *CPU) {
		sp := c.Regs.RSP - uint64(len(vals)*size)
		lin := c.Sregs.SS.Base + sp
		for i, v := range vals {
			a := lin + uint64(i*size)
			switch size {
			case 2:
				f.put16(a, uint16(v))
			case 4:
				f.put32(a, uint32(v))
			default:
				f.put64(a, v)
			}
		}
		c.Regs.RSP = sp
	}
}

// returned checks CS:RIP, RFLAGS, SS:RSP after an IRET.
func returned(cs uint16, rip, rflags uint64, ss uint16, sp uint64) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, _ *fakeEnv, _, a *CPU) {
		t.Helper()
		eq(t, "CS", a.Sregs.CS.Selector, cs)
		eq(t, "RIP", a.Regs.RIP, rip)
		eq(t, "RFLAGS", a.Regs.RFLAGS, rflags)
		eq(t, "SS", a.Sregs.SS.Selector, ss)
		eq(t, "RSP", a.Regs.RSP, sp)
	}
}

func TestIRETReal(t *testing.T) {
	runCases(t, []stepCase{
		{name: "iret", mode: "real", code: []byte{0xcf}, inst: "IRET",
			// Bit 3 and bit 15 are reserved: dropped. IOPL and NT load in real mode.
			setup: onStack(2, 0x1234, 0x2000, 0xba8b),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(0x2000, 0x1234, 0x3a83, 0, 0x7000)(t, f, b, a)
				eq(t, "CS.base", a.Sregs.CS.Base, 0x20000)
				eq(t, "CS.limit", a.Sregs.CS.Limit, 0xffff)
			}},
		{name: "iretd keeps VM, VIF, VIP", mode: "real", code: []byte{0x66, 0xcf}, inst: "IRETD",
			setup: both(withFlags(flagFixed|flagVIP), onStack(4, 0x1234, 0x2000, 0x0024_0a83|cpu.FlagVM)),
			check: returned(0x2000, 0x1234, 0x0024_0a83|flagVIP, 0, 0x7000)},
		{name: "IP past the CS limit raises #GP", mode: "real", code: []byte{0x66, 0xcf},
			setup: onStack(4, 0x10000, 0x2000, 2),
			fault: &Fault{Vector: vecGP},
			check: func(t *testing.T, _ *fakeEnv, b, a *CPU) {
				atHandler(t, a, vecGP)
				eq(t, "SP", a.Regs.RSP, b.Regs.RSP-6)
			}},
		{name: "stack past the SS limit raises #SS", mode: "real", code: []byte{0xcf},
			setup: func(_ *fakeEnv, c *CPU) { c.Regs.RSP = 0xffff },
			fault: &Fault{Vector: vecSS}},
	})
}

func TestIRETProtected(t *testing.T) {
	const fl = flagFixed | cpu.FlagZF | cpu.FlagIF
	runCases(t, []stepCase{
		{name: "iretd same level", mode: "prot32", code: []byte{0xcf}, inst: "IRETD",
			setup: onStack(4, 0x45678, selCode32, fl|flagAC),
			check: returned(selCode32, 0x45678, fl|flagAC, selData32, kernStack)},
		{name: "iret 16-bit keeps upper flags", mode: "prot32", code: []byte{0x66, 0xcf}, inst: "IRET",
			setup: both(withFlags(flagFixed|flagAC), onStack(2, 0x1111, selCode32, fl)),
			check: returned(selCode32, 0x1111, fl|flagAC, selData32, kernStack)},
		{name: "iretd to CPL3 pops SS:ESP and nulls DS", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32U, fl|flagIOPL, 0x5fff0, selData32U),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode32U, 0x40100, fl|flagIOPL, selData32U, 0x5fff0)(t, f, b, a)
				eq(t, "CS", a.Sregs.CS, f.seg(selCode32U))
				eq(t, "SS", a.Sregs.SS, f.seg(selData32U))
				eq(t, "DS", a.Sregs.DS, nullSegment(0))
				eq(t, "mode", Mode(a), "protected32")
			}},
		{name: "iretd to CPL3 keeps DPL3 data segments", mode: "prot32", code: []byte{0xcf},
			setup: both(onStack(4, 0x40100, selCode32U, fl, 0x5fff0, selData32U),
				func(f *fakeEnv, c *CPU) { c.Sregs.ES = f.seg(selData32U) }),
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) { eq(t, "ES", a.Sregs.ES, f.seg(selData32U)) }},
		{name: "iretd to a 16-bit code segment", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x100, selCode16, fl),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode16, 0x100, fl, selData32, kernStack)(t, f, b, a)
				eq(t, "mode", Mode(a), "protected16")
			}},
		{name: "CPL3 cannot change IF or IOPL", mode: "prot32u", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32U, flagFixed|flagIOPL|cpu.FlagCF),
			check: returned(selCode32U, 0x40100, flagFixed|cpu.FlagIF|cpu.FlagCF, selData32U, userStack)},
		{name: "CPL3 with IOPL3 may change IF", mode: "prot32u", code: []byte{0xcf},
			setup: both(withFlags(flagFixed|flagIOPL|cpu.FlagIF), onStack(4, 0x40100, selCode32U, flagFixed)),
			check: returned(selCode32U, 0x40100, flagFixed|flagIOPL, selData32U, userStack)},
		{name: "data segment as CS raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: both(withFlags(fl0), onStack(4, 0x40100, selDataAsCode, fl)),
			fault: gp(selDataAsCode),
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				atHandler(t, a, vecGP)
				// The handler's frame sits on top of the untouched IRET frame.
				eq(t, "ESP", a.Regs.RSP, kernStack-12-16)
				wantStack(t, f, a.Regs.RSP, 4, selDataAsCode, codeBase, selCode32, fl0|cpu.FlagRF, 0x40100)
			}},
		{name: "null CS raises #GP(0)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, 0, fl), fault: gp(0)},
		{name: "CS past the GDT raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, 0x100, fl), fault: gp(0x100)},
		{name: "CS in a missing LDT raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, 0x0c, fl), fault: gp(0x0c)},
		{name: "not-present CS raises #NP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCodeNP, fl), fault: np(selCodeNP)},
		{name: "CS RPL below CPL raises #GP(sel)", mode: "prot32u", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32, fl), fault: gp(selCode32)},
		{name: "CS DPL not RPL raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32|3, fl, 0x5fff0, selData32U), fault: gp(selCode32)},
		{name: "SS RPL not CS RPL raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32U, fl, 0x5fff0, selData32), fault: gp(selData32)},
		{name: "null SS raises #GP(0)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32U, fl, 0x5fff0, 3), fault: gp(0)},
		{name: "code segment as SS raises #GP(sel)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32U, fl, 0x5fff0, selCode32U), fault: gp(selCode32U &^ 3)},
		{name: "EIP past the CS limit raises #GP(0)", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x10000, selCode16, fl), fault: gp(0)},
		{name: "frame past the SS limit raises #SS(0)", mode: "prot32", code: []byte{0xcf},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.SS.Limit = kernStack + 7 },
			fault: &Fault{Vector: vecSS, HasErrorCode: true}},
		{name: "task return is not emulated", mode: "prot32", code: []byte{0xcf},
			setup: withFlags(flagFixed | flagNT),
			err:   "cannot emulate IRETD (bytes cf) at RIP 0x40000 in protected32 mode: IRET with NT=1"},
		{name: "return to virtual-8086 mode is not emulated", mode: "prot32", code: []byte{0xcf},
			setup: onStack(4, 0x100, 0x1000, flagFixed|cpu.FlagVM),
			err:   "IRET to virtual-8086 mode"},
		{name: "virtual-8086 mode is not emulated", mode: "prot32", code: []byte{0xcf},
			setup: withFlags(flagFixed | cpu.FlagVM),
			err:   "in vm86 mode: virtual-8086 mode"},
	})
}

func TestIRETLong(t *testing.T) {
	const fl = flagFixed | cpu.FlagZF | cpu.FlagIF
	runCases(t, []stepCase{
		{name: "iretq same level pops SS:RSP", mode: "long64", code: []byte{0x48, 0xcf}, inst: "IRETQ",
			setup: onStack(8, 0xffff_8000_0000_1000, selCode64, fl, 0x7fff0, 0),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode64, 0xffff_8000_0000_1000, fl, 0, 0x7fff0)(t, f, b, a)
				eq(t, "SS", a.Sregs.SS, flatNullSS(0))
			}},
		{name: "iretq to CPL3", mode: "long64", code: []byte{0x48, 0xcf},
			setup: onStack(8, 0x40100, selCode64U, fl, 0x5fff0, selData32U),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode64U, 0x40100, fl, selData32U, 0x5fff0)(t, f, b, a)
				eq(t, "CS", a.Sregs.CS, f.seg(selCode64U))
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "iretq to compat mode", mode: "long64", code: []byte{0x48, 0xcf},
			setup: onStack(8, 0x40100, selCode32U, fl, 0x5fff0, selData32U),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode32U, 0x40100, fl, selData32U, 0x5fff0)(t, f, b, a)
				eq(t, "mode", Mode(a), "compat")
			}},
		{name: "iretd in 64-bit mode pops 32-bit SS:ESP", mode: "long64", code: []byte{0xcf}, inst: "IRETD",
			setup: onStack(4, 0x40100, selCode64, fl, 0x7fff0, selData32),
			check: returned(selCode64, 0x40100, fl, selData32, 0x7fff0)},
		{name: "iretd from compat mode pops no SS:ESP at the same level", mode: "compat", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode32, fl),
			check: returned(selCode32, 0x40100, fl, selData32, kernStack)},
		{name: "iretd from compat mode to 64-bit CPL3", mode: "compat", code: []byte{0xcf},
			setup: onStack(4, 0x40100, selCode64U, fl, 0x5fff0, selData32U),
			check: func(t *testing.T, f *fakeEnv, b, a *CPU) {
				returned(selCode64U, 0x40100, fl, selData32U, 0x5fff0)(t, f, b, a)
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "non-canonical RIP raises #GP(0)", mode: "long64", code: []byte{0x48, 0xcf},
			setup: onStack(8, 0x0000_8000_0000_0000, selCode64, fl, 0x7fff0, 0), fault: gp(0)},
		{name: "null SS to CPL3 raises #GP(0)", mode: "long64", code: []byte{0x48, 0xcf},
			setup: onStack(8, 0x40100, selCode64U, fl, 0x5fff0, 3), fault: gp(0)},
		{name: "CS with L and D raises #GP(sel)", mode: "long64", code: []byte{0x48, 0xcf},
			setup: both(onStack(8, 0x40100, selCode64U, fl, 0x5fff0, selData32U),
				func(f *fakeEnv, _ *CPU) { f.ram[gdtBase+selCode64U&^7+6] |= 0x40 }),
			fault: gp(selCode64U &^ 3)},
		{name: "NT=1 raises #GP(0)", mode: "long64", code: []byte{0x48, 0xcf},
			setup: both(withFlags(fl|flagNT), onStack(8, 0x40100, selCode64, fl, 0x7fff0, 0)),
			fault: gp(0)},
		{name: "frame on an unmapped page raises #PF", mode: "long64", code: []byte{0x48, 0xcf},
			setup: both(onStack(8, 0x40100, selCode64, fl, 0x7fff0, 0),
				func(f *fakeEnv, c *CPU) { f.unmap(c.Regs.RSP) },
				gate64(vecPF, 0xe, selCode64, handler+vecPF*16, 0, 1, true)),
			fault: &Fault{Vector: vecPF, ErrorCode: 0, HasErrorCode: true},
			check: func(t *testing.T, _ *fakeEnv, b, a *CPU) { eq(t, "CR2", a.Sregs.CR2, b.Regs.RSP) }},
	})
}
