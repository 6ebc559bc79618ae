package x86emu

import (
	"errors"
	"testing"

	"vmrr/machine/cpu"
)

// Selectors the tests below add to the test GDT.
const (
	selExtra   = 0x78 // whatever a test puts there
	selExtra2  = 0x80
	selSys64   = 0x88 // a 16-byte system descriptor, 0x88-0x97
	extraLimit = 0x97
)

// extraDesc puts descriptor d at sel and extends the GDT over the extras.
func extraDesc(sel uint16, d uint64) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, c *CPU) {
		f.put64(gdtBase+uint64(sel&^7), d)
		c.Sregs.GDT.Limit = extraLimit
	}
}

func segReg16(r segReg) func(c *CPU) uint64 {
	return func(c *CPU) uint64 { return uint64((&emu{c: c}).seg(r).Selector) }
}

// wantSeg checks that a segment register holds sel's descriptor from the
// test GDT.
func wantSeg(r segReg, sel uint16) checkFn {
	return func(t *testing.T, f *fakeEnv, _, a *CPU) {
		t.Helper()
		eq(t, "segment", *(&emu{c: a}).seg(r), f.seg(sel))
	}
}

func eaxSel(sel uint16) func(*fakeEnv, *CPU) {
	return set(func(c *CPU) { c.Regs.RAX = 0xffff0000 | uint64(sel) })
}

func TestDescriptorTables(t *testing.T) {
	pseudo := func(limit uint16, base uint64) func(*fakeEnv, *CPU) {
		return func(f *fakeEnv, c *CPU) {
			f.put16(0x8000, limit)
			f.put64(0x8002, base)
			c.Regs.RAX = 0x8000
		}
	}
	gdtr := func(c *CPU) uint64 { return c.Sregs.GDT.Base<<16 | uint64(c.Sregs.GDT.Limit) }
	idtr := func(c *CPU) uint64 { return c.Sregs.IDT.Base<<16 | uint64(c.Sregs.IDT.Limit) }
	runCases(t, []stepCase{
		{name: "lgdt", mode: "prot32", code: []byte{0x0f, 0x01, 0x10}, inst: "LGDT [EAX]",
			setup: pseudo(0x1ff, 0xaa_12345678), check: checks(advanced(3), reg("GDTR", gdtr, 0x12345678_01ff))},
		{name: "lgdt with a 16-bit operand loads 24 bits", mode: "prot32", code: []byte{0x66, 0x0f, 0x01, 0x10},
			setup: pseudo(0x1ff, 0x12345678), check: reg("GDTR", gdtr, 0x345678_01ff)},
		{name: "lgdt in real mode", mode: "real", code: []byte{0x66, 0x0f, 0x01, 0x17},
			setup: both(pseudo(0x27, 0x9000), set(func(c *CPU) { c.Regs.RBX = 0x8000 })), check: reg("GDTR", gdtr, 0x9000_0027)},
		{name: "lidt 64-bit", mode: "long64", code: []byte{0x0f, 0x01, 0x18}, inst: "LIDT [RAX]",
			setup: pseudo(0xfff, 0xffff8000_00001000), check: reg("IDTR", idtr, 0x8000_00001000_0fff)},
		{name: "lidt non-canonical base", mode: "long64", code: []byte{0x0f, 0x01, 0x18},
			setup: pseudo(0xfff, 0x8000_00001000), fault: gp(0)},
		{name: "lgdt at CPL3", mode: "prot32u", code: []byte{0x0f, 0x01, 0x10}, setup: pseudo(0, 0), fault: gp(0)},
		{name: "lgdt past DS limit", mode: "prot32", code: []byte{0x0f, 0x01, 0x10},
			setup: both(pseudo(0, 0), set(func(c *CPU) { c.Sregs.DS.Limit = 0x8004 })), fault: gp(0)},
		{name: "lidt from a register", mode: "prot32", code: []byte{0x0f, 0x01, 0xd8}, err: "cannot emulate"},
		{name: "sgdt", mode: "prot32u", code: []byte{0x0f, 0x01, 0x00}, inst: "SGDT [EAX]", setup: set(func(c *CPU) { c.Regs.RAX = 0x8000 }),
			check: checks(advanced(3), func(t *testing.T, f *fakeEnv, _, _ *CPU) {
				eq(t, "limit", f.get16(0x8000), gdtLimit)
				eq(t, "base", f.get64(0x8002), gdtBase)
			})},
		{name: "sidt 64-bit", mode: "long64", code: []byte{0x0f, 0x01, 0x08},
			setup: set(func(c *CPU) { c.Regs.RAX = 0x8000; c.Sregs.IDT.Base = 0xffff8000_00002000 }),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) {
				eq(t, "limit", f.get16(0x8000), 256*16-1)
				eq(t, "base", f.get64(0x8002), 0xffff8000_00002000)
			}},
		{name: "sidt with UMIP at CPL3", mode: "long64u", code: []byte{0x0f, 0x01, 0x08},
			setup: set(func(c *CPU) { c.Regs.RAX = 0x8000; c.Sregs.CR4 |= cr4UMIP }), fault: gp(0)},
	})
}

func TestLDTAndTR(t *testing.T) {
	ldt := mkDesc(0x9000, 0x17, 2, false, 0, true, 0)
	tss := mkDesc(tssBase, 0x67, 9, false, 0, true, 0)
	runCases(t, []stepCase{
		{name: "lldt", mode: "prot32", code: []byte{0x0f, 0x00, 0xd0}, inst: "LLDT AX",
			setup: both(extraDesc(selExtra, ldt), eaxSel(selExtra)),
			check: checks(advanced(3), func(t *testing.T, _ *fakeEnv, _, a *CPU) {
				eq(t, "LDT", a.Sregs.LDT, cpu.Segment{Base: 0x9000, Limit: 0x17, Selector: selExtra, Typ: 2, Present: 1})
			})},
		{name: "lldt null", mode: "prot32", code: []byte{0x0f, 0x00, 0xd0}, setup: eaxSel(3),
			check: reg("LDT unusable", func(c *CPU) uint64 { return uint64(c.Sregs.LDT.Unusable) }, 1)},
		{name: "lldt of a data segment", mode: "prot32", code: []byte{0x0f, 0x00, 0xd0}, setup: eaxSel(selData32), fault: gp(selData32)},
		{name: "lldt with TI set", mode: "prot32", code: []byte{0x0f, 0x00, 0xd0}, setup: eaxSel(0x7c), fault: gp(0x7c)},
		{name: "lldt not present", mode: "prot32", code: []byte{0x0f, 0x00, 0xd0},
			setup: both(extraDesc(selExtra, ldt&^(1<<47)), eaxSel(selExtra)), fault: np(selExtra)},
		{name: "lldt in real mode", mode: "real", code: []byte{0x0f, 0x00, 0xd0}, fault: ud()},
		{name: "lldt at CPL3", mode: "prot32u", code: []byte{0x0f, 0x00, 0xd0}, fault: gp(0)},
		{name: "lldt 16-byte descriptor", mode: "long64", code: []byte{0x0f, 0x00, 0xd0},
			setup: both(extraDesc(selSys64, ldt), func(f *fakeEnv, _ *CPU) { f.put64(gdtBase+selSys64+8, 0xffff8000) }, eaxSel(selSys64)),
			check: reg("LDT.base", func(c *CPU) uint64 { return c.Sregs.LDT.Base }, 0xffff8000_00009000)},
		{name: "lldt 16-byte descriptor past the limit", mode: "long64", code: []byte{0x0f, 0x00, 0xd0},
			setup: both(extraDesc(selSys64, ldt), set(func(c *CPU) { c.Sregs.GDT.Limit = selSys64 + 7 }), eaxSel(selSys64)),
			fault: gp(selSys64)},
		{name: "sldt", mode: "prot32", code: []byte{0x0f, 0x00, 0xc0}, inst: "SLDT EAX",
			setup: both(eaxSel(0), set(func(c *CPU) { c.Sregs.LDT.Selector = selExtra })),
			check: reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, selExtra)},
		{name: "str m16", mode: "long64u", code: []byte{0x0f, 0x00, 0x08},
			setup: set(func(c *CPU) { c.Regs.RAX = 0x8000 }),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "memory", f.get16(0x8000), selTSS64) }},
		{name: "str in real mode", mode: "real", code: []byte{0x0f, 0x00, 0xc8}, fault: ud()},
		{name: "ltr marks the TSS busy", mode: "prot32", code: []byte{0x0f, 0x00, 0xd8}, inst: "LTR AX",
			setup: both(extraDesc(selExtra, tss), eaxSel(selExtra)),
			check: checks(advanced(3), func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "TR", a.Sregs.TR, cpu.Segment{Base: tssBase, Limit: 0x67, Selector: selExtra, Typ: 0xb, Present: 1})
				eq(t, "descriptor type", f.ram[gdtBase+selExtra+5]&0xf, 0xb)
			})},
		{name: "ltr of a busy TSS", mode: "prot32", code: []byte{0x0f, 0x00, 0xd8}, setup: eaxSel(selTSS32), fault: gp(selTSS32)},
		{name: "ltr null", mode: "prot32", code: []byte{0x0f, 0x00, 0xd8}, setup: eaxSel(0), fault: gp(0)},
		{name: "ltr of a 16-bit TSS in long mode", mode: "long64", code: []byte{0x0f, 0x00, 0xd8},
			setup: both(extraDesc(selSys64, tss&^(8<<40)), eaxSel(selSys64)), fault: gp(selSys64)},
		{name: "ltr 64-bit", mode: "long64", code: []byte{0x0f, 0x00, 0xd8},
			setup: both(extraDesc(selSys64, tss), func(f *fakeEnv, _ *CPU) { f.put64(gdtBase+selSys64+8, 1) }, eaxSel(selSys64)),
			check: reg("TR.base", func(c *CPU) uint64 { return c.Sregs.TR.Base }, 1<<32|tssBase)},
		{name: "ltr 64-bit with a type in the upper half", mode: "long64", code: []byte{0x0f, 0x00, 0xd8},
			setup: both(extraDesc(selSys64, tss), func(f *fakeEnv, _ *CPU) { f.put64(gdtBase+selSys64+8, 9<<40) }, eaxSel(selSys64)),
			fault: gp(selSys64)},
		{name: "invlpg", mode: "prot32", code: []byte{0x0f, 0x01, 0x38}, inst: "INVLPG [EAX]",
			setup: set(func(c *CPU) { c.Regs.RAX = 0x1234 }),
			check: checks(advanced(3), flushes(FlushPage))},
		{name: "invlpg at CPL3", mode: "long64u", code: []byte{0x0f, 0x01, 0x38}, fault: gp(0)},
		{name: "wbinvd", mode: "long64", code: []byte{0x0f, 0x09}, inst: "WBINVD", check: advanced(2)},
		{name: "invd at CPL3", mode: "prot32u", code: []byte{0x0f, 0x08}, fault: gp(0)},
	})
}

// invlpgAddr records the address of each FlushTLB call.
type invlpgAddr struct {
	*fakeEnv
	addrs []uint64
}

func (f *invlpgAddr) FlushTLB(kind TLBFlush, lin uint64) { f.addrs = append(f.addrs, lin) }

func TestINVLPGAddress(t *testing.T) {
	f, c := newState(t, "long64")
	f.put(codeBase, 0x65, 0x0f, 0x01, 0x38) // invlpg gs:[rax]
	c.Regs.RAX, c.Sregs.GS.Base = 0x1234, 0xffff8000_00000000
	env := &invlpgAddr{fakeEnv: f}
	if _, err := Step(c, env); err != nil || len(env.addrs) != 1 || env.addrs[0] != 0xffff8000_00001234 {
		t.Errorf("INVLPG: %v, flushed %#x", err, env.addrs)
	}
}

func TestLARLSLVERRVERW(t *testing.T) {
	zfSet := func(c *CPU) uint64 { return c.Regs.RFLAGS & cpu.FlagZF }
	rcx := func(c *CPU) uint64 { return c.Regs.RCX }
	ecx := set(func(c *CPU) { c.Regs.RCX = 0xdead_beef_dead_beef })
	runCases(t, []stepCase{
		{name: "lar data", mode: "prot32", code: []byte{0x0f, 0x02, 0xc8}, inst: "LAR ECX, EAX",
			setup: both(ecx, eaxSel(selData32)), check: checks(advanced(3), reg("ZF", zfSet, cpu.FlagZF), reg("ECX", rcx, 0x00c0_9300))},
		{name: "lsl data", mode: "long64", code: []byte{0x0f, 0x03, 0xc8},
			setup: both(ecx, eaxSel(selData32)), check: checks(reg("ZF", zfSet, cpu.FlagZF), reg("ECX", rcx, 0xffffffff))},
		{name: "lsl 16-bit", mode: "prot32", code: []byte{0x66, 0x0f, 0x03, 0xc8},
			setup: both(ecx, eaxSel(selCode16)), check: reg("CX", rcx, 0xdead_beef_dead_ffff)},
		{name: "lar of a more privileged segment", mode: "prot32u", code: []byte{0x0f, 0x02, 0xc8},
			setup: both(ecx, eaxSel(selData32), withFlags(flagFixed|cpu.FlagZF)),
			check: checks(reg("ZF", zfSet, 0), reg("ECX", rcx, 0xdead_beef_dead_beef))},
		{name: "lar of a conforming segment", mode: "prot32u", code: []byte{0x0f, 0x02, 0xc8},
			setup: both(ecx, eaxSel(selConform)), check: reg("ZF", zfSet, cpu.FlagZF)},
		{name: "lar null", mode: "prot32", code: []byte{0x0f, 0x02, 0xc8},
			setup: both(eaxSel(0), withFlags(flagFixed|cpu.FlagZF)), check: reg("ZF", zfSet, 0)},
		{name: "lar past the GDT", mode: "prot32", code: []byte{0x0f, 0x02, 0xc8},
			setup: both(eaxSel(0x100), withFlags(flagFixed|cpu.FlagZF)), check: reg("ZF", zfSet, 0)},
		{name: "lar TSS", mode: "prot32", code: []byte{0x0f, 0x02, 0xc8},
			setup: eaxSel(selTSS32), check: checks(reg("ZF", zfSet, cpu.FlagZF), reg("ECX", rcx, 0x8b00))},
		{name: "lsl call gate", mode: "prot32", code: []byte{0x0f, 0x03, 0xc8},
			setup: both(extraDesc(selExtra, mkDesc(0, 0, 0xc, false, 0, true, 0)), eaxSel(selExtra)), check: reg("ZF", zfSet, 0)},
		{name: "lar 16-bit TSS in long mode", mode: "long64", code: []byte{0x0f, 0x02, 0xc8},
			setup: both(extraDesc(selExtra, mkDesc(0, 0x67, 1, false, 0, true, 0)), eaxSel(selExtra), withFlags(flagFixed|cpu.FlagZF)),
			check: reg("ZF", zfSet, 0)},
		{name: "verr code", mode: "prot32", code: []byte{0x0f, 0x00, 0xe0}, inst: "VERR AX",
			setup: eaxSel(selCode32), check: checks(advanced(3), reg("ZF", zfSet, cpu.FlagZF))},
		{name: "verw code", mode: "prot32", code: []byte{0x0f, 0x00, 0xe8},
			setup: both(eaxSel(selCode32), withFlags(flagFixed|cpu.FlagZF)), check: reg("ZF", zfSet, 0)},
		{name: "verw data", mode: "prot32", code: []byte{0x0f, 0x00, 0xe8}, setup: eaxSel(selData32), check: reg("ZF", zfSet, cpu.FlagZF)},
		{name: "verw data with RPL above DPL", mode: "prot32", code: []byte{0x0f, 0x00, 0xe8},
			setup: both(eaxSel(selData32|3), withFlags(flagFixed|cpu.FlagZF)), check: reg("ZF", zfSet, 0)},
		{name: "verr in real mode", mode: "real", code: []byte{0x0f, 0x00, 0xe0}, fault: ud()},
	})
}

func TestSegmentLoads(t *testing.T) {
	shadow := reg("Shadow", func(c *CPU) uint64 {
		if c.Shadow {
			return 1
		}
		return 0
	}, 1)
	notAccessed := mkDesc(0, 0xfffff, 2, true, 0, true, fDB|fG)
	runCases(t, []stepCase{
		{name: "mov ds, ax", mode: "real", code: []byte{0x8e, 0xd8}, inst: "MOV DS, AX", setup: eaxSel(0x1234),
			check: checks(advanced(2), reg("DS", segReg16(segDS), 0x1234), reg("DS.base", func(c *CPU) uint64 { return c.Sregs.DS.Base }, 0x12340))},
		{name: "mov ds, eax", mode: "prot32", code: []byte{0x8e, 0xd8}, setup: eaxSel(selData32),
			check: checks(advanced(2), wantSeg(segDS, selData32))},
		{name: "mov es sets the accessed bit", mode: "prot32", code: []byte{0x8e, 0xc0},
			setup: both(extraDesc(selExtra, notAccessed), eaxSel(selExtra)),
			check: checks(reg("ES.type", func(c *CPU) uint64 { return uint64(c.Sregs.ES.Typ) }, 3),
				func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "descriptor type", f.ram[gdtBase+selExtra+5]&0xf, 3) })},
		{name: "mov fs, null", mode: "long64", code: []byte{0x8e, 0xe0},
			setup: both(eaxSel(0), set(func(c *CPU) { c.Sregs.FS.Base = 0x1000 })),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "FS", a.Sregs.FS, nullSegment(0)) }},
		{name: "mov ss, null", mode: "prot32", code: []byte{0x8e, 0xd0}, setup: eaxSel(0), fault: gp(0)},
		{name: "mov ss, null in 64-bit mode", mode: "long64", code: []byte{0x8e, 0xd0}, setup: eaxSel(0),
			check: checks(reg("SS", segReg16(segSS), 0), shadow)},
		{name: "mov ss, null at CPL3 in 64-bit mode", mode: "long64u", code: []byte{0x8e, 0xd0}, setup: eaxSel(3), fault: gp(0)},
		{name: "mov ss sets the shadow", mode: "prot32", code: []byte{0x8e, 0xd0}, setup: eaxSel(selData32),
			check: checks(wantSeg(segSS, selData32), shadow)},
		{name: "mov ss with RPL != CPL", mode: "prot32", code: []byte{0x8e, 0xd0}, setup: eaxSel(selData32 | 3), fault: gp(selData32)},
		{name: "mov ss with DPL != CPL", mode: "prot32", code: []byte{0x8e, 0xd0}, setup: eaxSel(selData32U &^ 3), fault: gp(selData32U &^ 3)},
		{name: "mov ss, code", mode: "prot32", code: []byte{0x8e, 0xd0}, setup: eaxSel(selCode32), fault: gp(selCode32)},
		{name: "mov ss not present", mode: "prot32", code: []byte{0x8e, 0xd0},
			setup: both(extraDesc(selExtra, mkDesc(0, 0xfffff, 3, true, 0, false, fDB|fG)), eaxSel(selExtra)), fault: ssf(selExtra)},
		{name: "mov ds not present", mode: "prot32", code: []byte{0x8e, 0xd8}, setup: eaxSel(selCodeNP), fault: np(selCodeNP)},
		{name: "mov ds, more privileged", mode: "prot32u", code: []byte{0x8e, 0xd8}, setup: eaxSel(selData32), fault: gp(selData32)},
		{name: "mov ds, conforming code", mode: "prot32u", code: []byte{0x8e, 0xd8}, setup: eaxSel(selConform),
			check: reg("DS", segReg16(segDS), selConform)},
		{name: "mov ds, execute-only code", mode: "prot32", code: []byte{0x8e, 0xd8},
			setup: both(extraDesc(selExtra, mkDesc(0, 0xfffff, 9, true, 0, true, fDB|fG)), eaxSel(selExtra)), fault: gp(selExtra)},
		{name: "mov ds, TSS", mode: "prot32", code: []byte{0x8e, 0xd8}, setup: eaxSel(selTSS32), fault: gp(selTSS32)},
		{name: "mov ds past the GDT", mode: "prot32", code: []byte{0x8e, 0xd8}, setup: eaxSel(0x100), fault: gp(0x100)},
		{name: "mov ds, m16", mode: "prot32", code: []byte{0x8e, 0x18},
			setup: both(set(func(c *CPU) { c.Regs.RAX = 0x8000 }), func(f *fakeEnv, _ *CPU) { f.put16(0x8000, selData32) }), check: wantSeg(segDS, selData32)},
		{name: "mov cs", mode: "prot32", code: []byte{0x8e, 0xc8}, fault: ud()},
		{name: "mov eax, ds", mode: "prot32", code: []byte{0x8c, 0xd8}, inst: "MOV EAX, DS", setup: eaxSel(0xffff),
			check: checks(advanced(2), reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, selData32))},
		{name: "mov ax, cs", mode: "long64", code: []byte{0x66, 0x8c, 0xc8}, setup: set(func(c *CPU) { c.Regs.RAX = ^uint64(0) }),
			check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0xffffffff_ffff0000|selCode64)},
		{name: "mov m16, ss", mode: "prot32", code: []byte{0x8c, 0x10}, setup: both(set(func(c *CPU) { c.Regs.RAX = 0x8000 }), func(f *fakeEnv, _ *CPU) { f.put32(0x8000, 0xffffffff) }),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "memory", f.get32(0x8000), 0xffff0000|selData32) }},
		{name: "lock mov ds", mode: "prot32", code: []byte{0xf0, 0x8e, 0xd8}, fault: ud()},
	})
}

func TestPushPopSeg(t *testing.T) {
	rsp := func(c *CPU) uint64 { return c.Regs.RSP }
	runCases(t, []stepCase{
		{name: "push ds", mode: "prot32", code: []byte{0x1e}, inst: "PUSH DS",
			check: checks(advanced(1), reg("ESP", rsp, kernStack-4), func(t *testing.T, f *fakeEnv, _, _ *CPU) { wantStack(t, f, kernStack-4, 4, selData32) })},
		{name: "push cs 16-bit", mode: "prot16", code: []byte{0x0e},
			check: checks(reg("SP", rsp, 0x7000-2), func(t *testing.T, f *fakeEnv, _, _ *CPU) { wantStack(t, f, 0x7000-2, 2, selCode16) })},
		{name: "push fs 64-bit", mode: "long64", code: []byte{0x0f, 0xa0}, inst: "PUSH FS",
			setup: set(func(c *CPU) { c.Sregs.FS.Selector = 0x2b }),
			check: checks(reg("RSP", rsp, kernStack-8), func(t *testing.T, f *fakeEnv, _, _ *CPU) { wantStack(t, f, kernStack-8, 8, 0x2b) })},
		{name: "push gs with 66 in 64-bit mode", mode: "long64", code: []byte{0x66, 0x0f, 0xa8}, check: reg("RSP", rsp, kernStack-2)},
		{name: "push es in 64-bit mode", mode: "long64", code: []byte{0x06}, fault: ud()},
		{name: "pop ds in 64-bit mode", mode: "long64", code: []byte{0x1f}, fault: ud()},
		{name: "pop es", mode: "real", code: []byte{0x07}, inst: "POP ES", setup: onStack(2, 0x1234),
			check: checks(advanced(1), reg("ES", segReg16(segES), 0x1234), reg("SP", rsp, 0x7000))},
		{name: "pop ss sets the shadow", mode: "prot32", code: []byte{0x17}, setup: onStack(4, selData32),
			check: checks(reg("ESP", rsp, kernStack), wantSeg(segSS, selData32),
				reg("Shadow", func(c *CPU) uint64 { return map[bool]uint64{true: 1}[c.Shadow] }, 1))},
		{name: "pop fs 64-bit", mode: "long64", code: []byte{0x0f, 0xa1}, setup: onStack(8, selData32),
			check: checks(reg("RSP", rsp, kernStack), wantSeg(segFS, selData32))},
		{name: "pop gs with a bad selector", mode: "prot32", code: []byte{0x0f, 0xa9}, setup: onStack(4, selTSS32), fault: gp(selTSS32)},
	})
}

func TestLoadFarPointer(t *testing.T) {
	ptr := func(off uint64, size int, sel uint16) func(*fakeEnv, *CPU) {
		return func(f *fakeEnv, c *CPU) {
			f.put64(0x8000, off)
			f.put16(0x8000+uint64(size), sel)
			c.Regs.RBX = 0x8000
		}
	}
	runCases(t, []stepCase{
		{name: "les ax, [bx]", mode: "real", code: []byte{0xc4, 0x07}, inst: "LES AX, [BX]",
			setup: both(ptr(0x5678, 2, 0x1234), set(func(c *CPU) { c.Regs.RAX = 0xffff0000 })),
			check: checks(advanced(2), reg("ES", segReg16(segES), 0x1234), reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0xffff5678))},
		{name: "lss esp, [ebx]", mode: "prot32", code: []byte{0x0f, 0xb2, 0x23}, setup: ptr(0x12345, 4, selData32),
			check: checks(advanced(3), wantSeg(segSS, selData32), reg("ESP", func(c *CPU) uint64 { return c.Regs.RSP }, 0x12345))},
		{name: "lds with a bad selector leaves the register", mode: "prot32", code: []byte{0xc5, 0x03},
			setup: ptr(0x1111, 4, selTSS32), fault: gp(selTSS32)},
		{name: "lgs rax, [rbx]", mode: "long64", code: []byte{0x48, 0x0f, 0xb5, 0x03}, setup: ptr(0xffff8000_00000001, 8, selData32),
			check: checks(wantSeg(segGS, selData32), reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0xffff8000_00000001))},
	})
}

func TestFarJmpCall(t *testing.T) {
	ptr := func(off uint64, size int, sel uint16) func(*fakeEnv, *CPU) {
		return func(f *fakeEnv, c *CPU) {
			f.put64(0x8000, off)
			f.put16(0x8000+uint64(size), sel)
			c.Regs.RAX = 0x8000
		}
	}
	at := func(sel uint16, rip uint64, mode string) checkFn {
		return func(t *testing.T, f *fakeEnv, _, a *CPU) {
			t.Helper()
			eq(t, "CS", a.Sregs.CS.Selector, sel)
			eq(t, "RIP", a.Regs.RIP, rip)
			eq(t, "mode", Mode(a), mode)
		}
	}
	jmp32 := func(sel uint16, off uint32) []byte {
		return []byte{0xea, byte(off), byte(off >> 8), byte(off >> 16), byte(off >> 24), byte(sel), byte(sel >> 8)}
	}
	call32 := func(sel uint16, off uint32) []byte { b := jmp32(sel, off); b[0] = 0x9a; return b }
	runCases(t, []stepCase{
		{name: "ljmp", mode: "real", code: []byte{0xea, 0x78, 0x56, 0x34, 0x12}, inst: "LJMP 0x1234, 0x5678",
			check: checks(at(0x1234, 0x5678, "real"), reg("CS.base", func(c *CPU) uint64 { return c.Sregs.CS.Base }, 0x12340))},
		{name: "lcall", mode: "real", code: []byte{0x9a, 0x78, 0x56, 0x34, 0x12},
			check: checks(at(0x1234, 0x5678, "real"), func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "SP", a.Regs.RSP, 0x7000-4)
				wantStack(t, f, 0x7000-4, 2, 5, codeBase>>4)
			})},
		{name: "ljmp past the CS limit", mode: "real", code: []byte{0x66, 0xea, 0, 0, 1, 0, 0, 0}, fault: &Fault{Vector: vecGP}},
		{name: "ljmp to 32-bit code", mode: "prot16", code: []byte{0x66, 0xea, 0x00, 0x10, 0x04, 0x00, selCode32, 0},
			check: checks(at(selCode32, 0x41000, "protected32"), wantSeg(segCS, selCode32))},
		{name: "ljmp to 16-bit code", mode: "prot32", code: jmp32(selCode16, 0x100), check: at(selCode16, 0x100, "protected16")},
		{name: "ljmp past the limit", mode: "prot32", code: jmp32(selCode16, 0x10000), fault: gp(0)},
		{name: "ljmp sets RPL to CPL", mode: "prot32", code: jmp32(selCode32|3, 0x100), fault: gp(selCode32)},
		{name: "ljmp to conforming code", mode: "prot32u", code: jmp32(selConform, 0x100), check: at(selConform|3, 0x100, "protected32")},
		{name: "ljmp to more privileged code", mode: "prot32u", code: jmp32(selCode32, 0x100), fault: gp(selCode32)},
		{name: "ljmp to less privileged code", mode: "prot32", code: jmp32(selCode32U, 0x100), fault: gp(selCode32U &^ 3)},
		{name: "ljmp not present", mode: "prot32", code: jmp32(selCodeNP, 0), fault: np(selCodeNP)},
		{name: "ljmp to data", mode: "prot32", code: jmp32(selData32, 0), fault: gp(selData32)},
		{name: "ljmp null", mode: "prot32", code: jmp32(0, 0), fault: gp(0)},
		{name: "ljmp through a call gate", mode: "prot32", code: jmp32(selExtra, 0),
			setup: extraDesc(selExtra, mkDesc(selCode32<<16, 0, 0xc, false, 0, true, 0)), err: "call gate"},
		{name: "ljmp to a TSS", mode: "prot32", code: jmp32(selExtra, 0),
			setup: extraDesc(selExtra, mkDesc(tssBase, 0x67, 9, false, 0, true, 0)), err: "task switch"},
		{name: "lcall", mode: "prot32", code: call32(selCode32, 0x1000), inst: "LCALL 0x8, 0x1000",
			check: checks(at(selCode32, 0x1000, "protected32"), func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "ESP", a.Regs.RSP, kernStack-8)
				wantStack(t, f, kernStack-8, 4, codeBase+7, selCode32)
			})},
		{name: "ljmp into 64-bit mode", mode: "compat", code: jmp32(selCode64, 0x41000), check: at(selCode64, 0x41000, "long64")},
		{name: "ljmp m16:32 to compatibility mode", mode: "long64", code: []byte{0xff, 0x28}, inst: "LJMP [RAX]",
			setup: ptr(0x1234, 4, selCode32), check: at(selCode32, 0x1234, "compat")},
		{name: "ljmp m16:64", mode: "long64", code: []byte{0x48, 0xff, 0x28}, setup: ptr(0xffff8000_00001234, 8, selCode64),
			check: at(selCode64, 0xffff8000_00001234, "long64")},
		{name: "ljmp m16:64 not canonical", mode: "long64", code: []byte{0x48, 0xff, 0x28}, setup: ptr(0x8000_00001234, 8, selCode64),
			fault: gp(0)},
		{name: "lcall m16:32 in 64-bit mode", mode: "long64", code: []byte{0xff, 0x18}, setup: ptr(0x2000, 4, selCode64),
			check: checks(at(selCode64, 0x2000, "long64"), func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "RSP", a.Regs.RSP, kernStack-8)
				wantStack(t, f, kernStack-8, 4, codeBase+2, selCode64)
			})},
		{name: "ljmp ptr16:32 in 64-bit mode", mode: "long64", code: jmp32(selCode64, 0), fault: ud()},
		{name: "ljmp m16:16", mode: "prot32", code: []byte{0x66, 0xff, 0x28}, setup: ptr(0xffff_0100, 2, selCode16),
			check: at(selCode16, 0x100, "protected16")},
	})
}

func TestRETF(t *testing.T) {
	at := func(sel uint16, rip, sp uint64, mode string) checkFn {
		return func(t *testing.T, f *fakeEnv, _, a *CPU) {
			t.Helper()
			eq(t, "CS", a.Sregs.CS.Selector, sel)
			eq(t, "RIP", a.Regs.RIP, rip)
			eq(t, "RSP", a.Regs.RSP, sp)
			eq(t, "mode", Mode(a), mode)
		}
	}
	runCases(t, []stepCase{
		{name: "retf", mode: "real", code: []byte{0xcb}, inst: "LRET", setup: onStack(2, 0x5678, 0x1234),
			check: checks(at(0x1234, 0x5678, 0x7000, "real"), reg("CS.base", func(c *CPU) uint64 { return c.Sregs.CS.Base }, 0x12340))},
		{name: "retf imm16", mode: "real", code: []byte{0xca, 0x04, 0x00}, setup: onStack(2, 0x5678, 0x1234, 0, 0),
			check: at(0x1234, 0x5678, 0x7000, "real")},
		{name: "retf same level", mode: "prot32", code: []byte{0xcb}, setup: onStack(4, 0x1000, selCode16),
			check: checks(at(selCode16, 0x1000, kernStack, "protected16"), wantSeg(segCS, selCode16))},
		{name: "retf imm16 same level", mode: "prot32", code: []byte{0xca, 0x08, 0x00}, setup: onStack(4, 0x1000, selCode32, 1, 2),
			check: at(selCode32, 0x1000, kernStack, "protected32")},
		{name: "retf to CPL3", mode: "prot32", code: []byte{0xca, 0x04, 0x00},
			setup: onStack(4, 0x1000, selCode32U, 0xaaaa, userStack, selData32U),
			check: checks(at(selCode32U, 0x1000, userStack+4, "protected32"), wantSeg(segSS, selData32U),
				func(t *testing.T, _ *fakeEnv, _, a *CPU) {
					eq(t, "DS unusable", a.Sregs.DS.Unusable, 1)
					eq(t, "CPL", (&emu{c: a, mode: modeOf(a)}).cpl(), 3)
				})},
		{name: "retf to CPL3 with a bad SS", mode: "prot32", code: []byte{0xcb},
			setup: onStack(4, 0x1000, selCode32U, userStack, selData32), fault: gp(selData32)},
		{name: "retf to CPL0 from CPL3", mode: "prot32u", code: []byte{0xcb}, setup: onStack(4, 0x1000, selCode32), fault: gp(selCode32)},
		{name: "retf past the limit", mode: "prot32", code: []byte{0xcb}, setup: onStack(4, 0x10000, selCode16), fault: gp(0)},
		{name: "retf not present", mode: "prot32", code: []byte{0xcb}, setup: onStack(4, 0, selCodeNP), fault: np(selCodeNP)},
		{name: "retfq", mode: "long64", code: []byte{0x48, 0xcb}, inst: "REX.W LRET", setup: onStack(8, 0xffff8000_00001000, selCode64),
			check: at(selCode64, 0xffff8000_00001000, kernStack, "long64")},
		{name: "retf to compatibility mode", mode: "long64", code: []byte{0xcb}, setup: onStack(4, 0x1000, selCode32),
			check: at(selCode32, 0x1000, kernStack, "compat")},
		{name: "retfq to CPL3", mode: "long64", code: []byte{0x48, 0xcb}, setup: onStack(8, 0x1000, selCode64U, userStack, selData32U),
			check: checks(at(selCode64U, 0x1000, userStack, "long64"), wantSeg(segSS, selData32U))},
		{name: "retfq not canonical", mode: "long64", code: []byte{0x48, 0xcb}, setup: onStack(8, 1<<47, selCode64), fault: gp(0)},
	})
}

func TestSWAPGSSyscall(t *testing.T) {
	const star = 0x0023_0010_0000_0000
	sys := func(f *fakeEnv, c *CPU) {
		f.msrs = map[uint32]uint64{msrSTAR: star, msrLSTAR: 0xffffffff_81000000, msrSFMASK: cpu.FlagIF | cpu.FlagTF}
		c.Sregs.EFER |= cpu.EFERSCE
	}
	runCases(t, []stepCase{
		{name: "swapgs", mode: "long64", code: []byte{0x0f, 0x01, 0xf8}, inst: "SWAPGS",
			setup: set(func(c *CPU) { c.Sregs.GS.Base, c.KernelGSBase = 1, 2 }),
			check: checks(advanced(3), reg("GS.base", func(c *CPU) uint64 { return c.Sregs.GS.Base }, 2),
				reg("KernelGSBase", func(c *CPU) uint64 { return c.KernelGSBase }, 1))},
		{name: "swapgs at CPL3", mode: "long64u", code: []byte{0x0f, 0x01, 0xf8}, fault: gp(0)},
		{name: "syscall", mode: "long64u", code: []byte{0x0f, 0x05}, inst: "SYSCALL",
			setup: both(sys, withFlags(flagFixed|cpu.FlagIF|cpu.FlagCF)),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) {
				eq(t, "RIP", a.Regs.RIP, 0xffffffff_81000000)
				eq(t, "RCX", a.Regs.RCX, codeBase+2)
				eq(t, "R11", a.Regs.R11, flagFixed|cpu.FlagIF|cpu.FlagCF)
				eq(t, "RFLAGS", a.Regs.RFLAGS, flagFixed|cpu.FlagCF)
				eq(t, "CS", a.Sregs.CS, flatSegment(0x10, 0xb, 0, true))
				eq(t, "SS", a.Sregs.SS, flatSegment(0x18, 3, 0, false))
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "syscall without SCE", mode: "long64u", code: []byte{0x0f, 0x05}, fault: ud()},
		{name: "sysretq", mode: "long64", code: []byte{0x48, 0x0f, 0x07},
			setup: both(sys, regs(func(r *cpu.Regs) { r.RCX, r.R11 = 0x401000, 0x3c7fd7|1<<30 })),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) {
				eq(t, "RIP", a.Regs.RIP, 0x401000)
				eq(t, "RFLAGS", a.Regs.RFLAGS, 0x3c7fd7)
				eq(t, "CS", a.Sregs.CS.Selector, 0x33)
				eq(t, "SS", a.Sregs.SS.Selector, 0x2b)
				eq(t, "mode", Mode(a), "long64")
			}},
		{name: "sysret to compatibility mode", mode: "long64", code: []byte{0x0f, 0x07},
			setup: both(sys, regs(func(r *cpu.Regs) { r.RCX, r.R11 = 0xffffffff_00401000, 2 })),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) {
				eq(t, "RIP", a.Regs.RIP, 0x401000)
				eq(t, "CS", a.Sregs.CS.Selector, 0x23)
				eq(t, "mode", Mode(a), "compat")
			}},
		{name: "sysretq not canonical", mode: "long64", code: []byte{0x48, 0x0f, 0x07},
			setup: both(sys, regs(func(r *cpu.Regs) { r.RCX = 1 << 47 })), fault: gp(0)},
		{name: "sysret at CPL3", mode: "long64u", code: []byte{0x0f, 0x07}, setup: sys, fault: gp(0)},
	})
}

func TestExternalInterrupt(t *testing.T) {
	t.Run("real", func(t *testing.T) {
		f, c := newState(t, "real")
		f.put16(8*4, 0x5678)
		f.put16(8*4+2, 0x1234)
		c.Regs.RIP, c.Shadow = 0x10, true
		if err := Interrupt(c, f, 8); err != nil {
			t.Fatal(err)
		}
		eq(t, "CS:IP", [2]uint64{uint64(c.Sregs.CS.Selector), c.Regs.RIP}, [2]uint64{0x1234, 0x5678})
		eq(t, "FLAGS", c.Regs.RFLAGS, flagFixed)
		eq(t, "Shadow", c.Shadow, false)
		wantStack(t, f, 0x7000-6, 2, 0x10, codeBase>>4, flagFixed|cpu.FlagIF)
	})
	t.Run("prot32 ignores the gate DPL", func(t *testing.T) {
		f, c := newState(t, "prot32u")
		f.gate32(0x20, 0xe, selCode32, handler, 0, true)
		if err := Interrupt(c, f, 0x20); err != nil {
			t.Fatal(err)
		}
		eq(t, "CS", c.Sregs.CS.Selector, selCode32)
		eq(t, "EIP", c.Regs.RIP, handler)
		wantStack(t, f, tssStack-20, 4, codeBase, selCode32U, flagFixed|cpu.FlagIF, userStack, selData32U)
	})
	t.Run("long64", func(t *testing.T) {
		f, c := newState(t, "long64")
		f.gate64(0x30, 0xe, selCode64, handler, 0, 0, true)
		if err := Interrupt(c, f, 0x30); err != nil {
			t.Fatal(err)
		}
		eq(t, "RIP", c.Regs.RIP, handler)
		wantStack(t, f, kernStack-40, 8, codeBase, selCode64, flagFixed|cpu.FlagIF, kernStack, 0)
	})
	t.Run("a fault while delivering is delivered with EXT", func(t *testing.T) {
		f, c := newState(t, "prot32")
		installHandlers(f, c)
		// Vector 13 as an IRQ is not a #GP: a missing gate gives #NP, not #DF.
		f.gate32(13, 0xe, selCode32, handler, 0, false)
		if err := Interrupt(c, f, 13); err != nil {
			t.Fatal(err)
		}
		atHandler(t, c, vecNP)
		wantStack(t, f, kernStack-16, 4, 13*8+2+1, codeBase, selCode32)
	})
	t.Run("triple fault", func(t *testing.T) {
		f, c := newState(t, "long64")
		c.Sregs.IDT.Limit = 0
		if err := Interrupt(c, f, 0x20); !errors.Is(err, ErrTripleFault) {
			t.Errorf("error %v, want a triple fault", err)
		}
	})
}

// TestModeSwitch runs a Multiboot-style switch from real mode through
// protected mode into 64-bit mode, one Step at a time.
//
//	.code16
//	start:	cli
//		lgdtl %cs:(gdtr - start)
//		mov %cr0, %eax
//		mov $0x11, %eax
//		mov %eax, %cr0
//		ljmpl $0x08, $pm32
//	.code32
//	pm32:	mov $0x10, %ax
//		mov %ax, %ds
//		mov %ax, %es
//		mov %ax, %ss
//		mov $0x20, %eax
//		mov %eax, %cr4
//		mov $0xc0000080, %ecx
//		rdmsr
//		mov $0x100, %eax
//		wrmsr
//		mov $0x1000, %eax
//		mov %eax, %cr3
//		mov $0x80000011, %eax
//		mov %eax, %cr0
//		ljmp $0x28, $lm64
//	.code64
//	lm64:	rdmsr
//		hlt
//	.align 8
//	gdtr:	.word 0x77
//		.long 0x10000
//
// assembled with as --32, linked at 0x40000 and copied out with objcopy.
func TestModeSwitch(t *testing.T) {
	code := []byte{
		0xfa, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0x58, 0x00, 0x0f, 0x20, 0xc0, 0x66,
		0xb8, 0x11, 0x00, 0x00, 0x00, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x1c, 0x00,
		0x04, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0,
		0x8e, 0xd0, 0xb8, 0x20, 0x00, 0x00, 0x00, 0x0f, 0x22, 0xe0, 0xb9, 0x80,
		0x00, 0x00, 0xc0, 0x0f, 0x32, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30,
		0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb8, 0x11, 0x00, 0x00,
		0x80, 0x0f, 0x22, 0xc0, 0xea, 0x53, 0x00, 0x04, 0x00, 0x28, 0x00, 0x0f,
		0x32, 0xf4, 0x66, 0x90, 0x77, 0x00, 0x00, 0x00, 0x01, 0x00,
	}
	f := newMachine()
	c := realCPU()
	f.put(codeBase, code...)
	modes := []string{
		"real", "real", "real", "real", "real", "protected16", // cli .. ljmpl
		"protected32", "protected32", "protected32", "protected32", "protected32", "protected32",
		"protected32", "protected32", "protected32", "protected32", "protected32", "protected32",
		"protected32", "protected32", "compat", // mov %eax, %cr0 enables paging
		"long64", "long64", // rdmsr, hlt
	}
	for i, mode := range modes {
		if got := Mode(c); got != mode {
			t.Fatalf("before step %d: mode %s, want %s", i, got, mode)
		}
		res, err := Step(c, f)
		if err != nil || res.Fault != nil {
			t.Fatalf("step %d (%s): %v, fault %v", i, res.Inst, err, res.Fault)
		}
		if res.Halted != (i == len(modes)-1) {
			t.Fatalf("step %d (%s): halted %v", i, res.Inst, res.Halted)
		}
	}
	eq(t, "RIP", c.Regs.RIP, 0x40056)
	eq(t, "EFER", c.Regs.RAX, cpu.EFERLME|cpu.EFERLMA)
	eq(t, "CR0", c.Sregs.CR0, 0x80000011)
	eq(t, "CS", c.Sregs.CS, f.seg(selCode64))
	eq(t, "SS", c.Sregs.SS, f.seg(selData32))
	eq(t, "GDTR", c.Sregs.GDT.Base<<16|uint64(c.Sregs.GDT.Limit), gdtBase<<16|gdtLimit)
}
