package x86emu

import (
	"testing"

	"vmrr/machine/cpu"
)

// allStatus has every status flag set, to see which ones an instruction clears.
const allStatus = flagFixed | arithFlags | cpu.FlagIF

func regs(set func(r *cpu.Regs)) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) {
		c.Regs.RFLAGS = allStatus
		set(&c.Regs)
	}
}

// wantRegs checks RIP advanced by n, the flags and one register.
func wantRegs(n uint64, flags uint64, reg func(r *cpu.Regs) uint64, val uint64) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, _ *fakeEnv, before, after *CPU) {
		t.Helper()
		eq(t, "RIP", after.Regs.RIP, before.Regs.RIP+n)
		eq(t, "RFLAGS", after.Regs.RFLAGS, flags)
		if reg != nil {
			eq(t, "destination", reg(&after.Regs), val)
		}
	}
}

func rax(r *cpu.Regs) uint64 { return r.RAX }
func rbx(r *cpu.Regs) uint64 { return r.RBX }
func rcx(r *cpu.Regs) uint64 { return r.RCX }
func rdx(r *cpu.Regs) uint64 { return r.RDX }
func rdi(r *cpu.Regs) uint64 { return r.RDI }
func r9(r *cpu.Regs) uint64  { return r.R9 }

// Flags after POPCNT/LZCNT/TZCNT: the status flags cleared, ZF and CF as given.
const (
	cleared = flagFixed | cpu.FlagIF
	zf      = cleared | cpu.FlagZF
	cf      = cleared | cpu.FlagCF
)

func TestBitCount(t *testing.T) {
	runCases(t, []stepCase{
		{name: "popcnt r32", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0xc1}, inst: "POPCNT EAX, ECX",
			setup: regs(func(r *cpu.Regs) { r.RCX = 0xf0f0 }),
			check: wantRegs(4, cleared, rax, 8)},
		{name: "popcnt zero sets ZF", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0xc1},
			setup: regs(func(r *cpu.Regs) { r.RAX = 5 }),
			check: wantRegs(4, zf, rax, 0)},
		{name: "popcnt r64", mode: "long64", code: []byte{0xf3, 0x48, 0x0f, 0xb8, 0xc1}, inst: "POPCNT RAX, RCX",
			setup: regs(func(r *cpu.Regs) { r.RCX = ^uint64(0) }),
			check: wantRegs(5, cleared, rax, 64)},
		{name: "popcnt r32 zero-extends", mode: "long64", code: []byte{0xf3, 0x0f, 0xb8, 0xc1},
			setup: regs(func(r *cpu.Regs) { r.RAX, r.RCX = 0xdead0000_00000000, 0xffff0000_00000007 }),
			check: wantRegs(4, cleared, rax, 3)},
		{name: "popcnt r64 REX.R REX.B", mode: "long64", code: []byte{0xf3, 0x4d, 0x0f, 0xb8, 0xc9}, inst: "POPCNT R9, R9",
			setup: regs(func(r *cpu.Regs) { r.R9 = 0x1_0000_0001 }),
			check: wantRegs(5, cleared, r9, 2)},
		{name: "popcnt r16 keeps upper bits", mode: "prot32", code: []byte{0x66, 0xf3, 0x0f, 0xb8, 0xc1}, inst: "POPCNT AX, CX",
			setup: regs(func(r *cpu.Regs) { r.RAX, r.RCX = 0x12345678, 0xffff0003 }),
			check: wantRegs(5, cleared, rax, 0x12340002)},
		{name: "popcnt m16 [bp+2] uses SS", mode: "real", code: []byte{0xf3, 0x0f, 0xb8, 0x46, 0x02},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RBP = 0x100
				c.Sregs.SS.Base, c.Sregs.SS.Selector = 0x2000, 0x200
				f.put16(0x2102, 0x0707)
			},
			check: wantRegs(5, cleared|cpu.FlagIF, rax, 6)},
		{name: "popcnt m32 rip-relative", mode: "long64", code: []byte{0xf3, 0x0f, 0xb8, 0x05, 0x10, 0, 0, 0},
			setup: func(f *fakeEnv, _ *CPU) { f.put32(codeBase+8+0x10, 0x80000001) },
			check: wantRegs(8, cleared, rax, 2)},
		{name: "popcnt m32 gs override", mode: "prot32", code: []byte{0x65, 0xf3, 0x0f, 0xb8, 0x03},
			setup: func(f *fakeEnv, c *CPU) {
				c.Sregs.GS.Base, c.Regs.RBX = 0x3000, 0x10
				f.put32(0x3010, 0x7)
			},
			check: wantRegs(5, cleared, rax, 3)},
		{name: "popcnt m32 sib base+index*4", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0x44, 0x8b, 0x04},
			setup: func(f *fakeEnv, c *CPU) {
				c.Regs.RBX, c.Regs.RCX = 0x3000, 2
				f.put32(0x3000+8+4, 0xff)
			},
			check: wantRegs(6, cleared, rax, 8)},
		{name: "popcnt m64 fs base", mode: "long64", code: []byte{0x64, 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x08, 0, 0, 0},
			setup: func(f *fakeEnv, c *CPU) {
				c.Sregs.FS.Base = 0x3000
				f.put64(0x3008, 0xffff_0000_0000_0000)
			},
			check: wantRegs(11, cleared, rax, 16)},
		{name: "popcnt past DS limit raises #GP(0)", mode: "prot32",
			code:  []byte{0xf3, 0x0f, 0xb8, 0x05, 0xfe, 0xff, 0xff, 0xff},
			fault: gp(0),
			check: func(t *testing.T, f *fakeEnv, before, after *CPU) {
				atHandler(t, after, vecGP)
				eq(t, "ESP", after.Regs.RSP, kernStack-16)
				wantStack(t, f, after.Regs.RSP, 4, 0, codeBase, selCode32, before.Regs.RFLAGS|cpu.FlagRF)
				eq(t, "RAX", after.Regs.RAX, before.Regs.RAX)
				eq(t, "IF", after.Regs.RFLAGS&cpu.FlagIF, 0)
			}},
		{name: "popcnt from unusable DS raises #GP(0)", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0x03},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.DS = nullSegment(0) },
			fault: gp(0)},
		{name: "popcnt [esp] past SS limit raises #SS(0)", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0x04, 0x24},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.SS.Limit, c.Regs.RSP = 0x7ffff, 0x7fffe },
			fault: &Fault{Vector: vecSS, HasErrorCode: true}},
		{name: "popcnt from an unmapped page raises #PF", mode: "long64",
			code:  []byte{0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x50, 0, 0},
			setup: func(f *fakeEnv, _ *CPU) { f.unmap(0x5000) },
			fault: &Fault{Vector: vecPF, ErrorCode: 0, HasErrorCode: true},
			check: func(t *testing.T, f *fakeEnv, before, after *CPU) {
				atHandler(t, after, vecPF)
				eq(t, "CR2", after.Sregs.CR2, 0x5000)
				wantStack(t, f, after.Regs.RSP, 8, 0, codeBase, selCode64, before.Regs.RFLAGS|cpu.FlagRF, kernStack, 0)
			}},
		{name: "popcnt from a supervisor page at CPL3 raises #PF", mode: "long64u",
			code: []byte{0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x50, 0, 0},
			setup: func(f *fakeEnv, _ *CPU) {
				f.put64(0x4000+5*8, 0x5000|ptP|ptRW)
			},
			fault: &Fault{Vector: vecPF, ErrorCode: 5, HasErrorCode: true}},
		{name: "popcnt non-canonical raises #GP(0)", mode: "long64",
			code:  []byte{0xf3, 0x0f, 0xb8, 0x03},
			setup: func(_ *fakeEnv, c *CPU) { c.Regs.RBX = 0x0000_8000_0000_0000 },
			fault: gp(0)},
		{name: "lzcnt", mode: "prot32", code: []byte{0xf3, 0x0f, 0xbd, 0xc1}, inst: "LZCNT EAX, ECX",
			setup: regs(func(r *cpu.Regs) { r.RCX = 0x00010000 }),
			check: wantRegs(4, cleared, rax, 15)},
		{name: "lzcnt zero", mode: "prot32", code: []byte{0xf3, 0x0f, 0xbd, 0xc1},
			setup: regs(func(r *cpu.Regs) {}),
			check: wantRegs(4, cf, rax, 32)},
		{name: "lzcnt top bit", mode: "long64", code: []byte{0x66, 0xf3, 0x0f, 0xbd, 0xc1},
			setup: regs(func(r *cpu.Regs) { r.RCX = 0x8000 }),
			check: wantRegs(5, zf, rax, 0)},
		{name: "tzcnt", mode: "long64", code: []byte{0xf3, 0x48, 0x0f, 0xbc, 0xc1},
			setup: regs(func(r *cpu.Regs) { r.RCX = 1 << 40 }),
			check: wantRegs(5, cleared, rax, 40)},
		{name: "tzcnt zero", mode: "prot32", code: []byte{0xf3, 0x0f, 0xbc, 0xc1},
			setup: regs(func(r *cpu.Regs) {}),
			check: wantRegs(4, cf, rax, 32)},
		{name: "tzcnt bit 0", mode: "real", code: []byte{0xf3, 0x0f, 0xbc, 0xc1},
			setup: regs(func(r *cpu.Regs) { r.RCX = 1 }),
			check: wantRegs(4, zf, rax, 0)},
	})
}

func values(v ...uint64) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, c *CPU) {
		f.values = v
		c.Regs.RFLAGS = allStatus
		c.TSCAux = 0xa5
		c.Regs.RAX, c.Regs.RCX, c.Regs.RDX = 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff
	}
}

// asked checks which values Step asked for, and the result.
func asked(n uint64, flags uint64, reg func(r *cpu.Regs) uint64, val uint64, kinds ...cpu.NonDet) func(*testing.T, *fakeEnv, *CPU, *CPU) {
	return func(t *testing.T, f *fakeEnv, before, after *CPU) {
		t.Helper()
		wantRegs(n, flags, reg, val)(t, f, before, after)
		if len(f.asked) != len(kinds) {
			t.Fatalf("asked for %v, want %v", f.asked, kinds)
		}
		for i := range kinds {
			eq(t, "kind", f.asked[i], kinds[i])
		}
	}
}

const rdrandOK = cleared | cpu.FlagCF

func TestNonDeterministic(t *testing.T) {
	const v = 0x1122334455667788
	runCases(t, []stepCase{
		{name: "rdtsc", mode: "prot32", code: []byte{0x0f, 0x31}, inst: "RDTSC", setup: values(v),
			check: func(t *testing.T, f *fakeEnv, before, after *CPU) {
				asked(2, allStatus, rax, 0x55667788, cpu.RDTSC)(t, f, before, after)
				eq(t, "RDX", after.Regs.RDX, 0x11223344)
			}},
		{name: "rdtscp", mode: "long64", code: []byte{0x0f, 0x01, 0xf9}, inst: "RDTSCP", setup: values(v),
			check: func(t *testing.T, f *fakeEnv, before, after *CPU) {
				asked(3, allStatus, rax, 0x55667788, cpu.RDTSCP)(t, f, before, after)
				eq(t, "RDX", after.Regs.RDX, 0x11223344)
				eq(t, "RCX", after.Regs.RCX, 0xa5)
			}},
		{name: "rdtscp at CPL3", mode: "prot32u", code: []byte{0x0f, 0x01, 0xf9}, setup: values(v),
			check: asked(3, allStatus, rcx, 0xa5, cpu.RDTSCP)},
		{name: "rdtsc with CR4.TSD at CPL3 raises #GP(0)", mode: "prot32u", code: []byte{0x0f, 0x31},
			setup: func(f *fakeEnv, c *CPU) { values(v)(f, c); c.Sregs.CR4 |= cr4TSD },
			fault: gp(0),
			check: func(t *testing.T, f *fakeEnv, _, after *CPU) {
				eq(t, "values asked", len(f.asked), 0)
				atHandler(t, after, vecGP)
				eq(t, "CS", after.Sregs.CS.Selector, selCode32)
			}},
		{name: "rdtsc with CR4.TSD at CPL0", mode: "prot32", code: []byte{0x0f, 0x31},
			setup: func(f *fakeEnv, c *CPU) { values(v)(f, c); c.Sregs.CR4 |= cr4TSD },
			check: asked(2, allStatus, rax, 0x55667788, cpu.RDTSC)},
		{name: "rdrand r32", mode: "prot32", code: []byte{0x0f, 0xc7, 0xf0}, inst: "RDRAND EAX", setup: values(v),
			check: asked(3, rdrandOK, rax, 0x55667788, cpu.RDRAND)},
		{name: "rdrand r16", mode: "prot32", code: []byte{0x66, 0x0f, 0xc7, 0xf3}, inst: "RDRAND BX",
			setup: func(f *fakeEnv, c *CPU) { values(v)(f, c); c.Regs.RBX = 0xaaaa_bbbb },
			check: asked(4, rdrandOK, rbx, 0xaaaa_7788, cpu.RDRAND)},
		{name: "rdrand r16 by default", mode: "real", code: []byte{0x0f, 0xc7, 0xf1}, inst: "RDRAND CX", setup: values(v),
			check: asked(3, rdrandOK, rcx, 0xffff_ffff_ffff_7788, cpu.RDRAND)},
		{name: "rdrand r32 with 66", mode: "real", code: []byte{0x66, 0x0f, 0xc7, 0xf1}, inst: "RDRAND ECX", setup: values(v),
			check: asked(4, rdrandOK, rcx, 0x55667788, cpu.RDRAND)},
		{name: "rdrand r16 in protected16", mode: "prot16", code: []byte{0x0f, 0xc7, 0xf2}, inst: "RDRAND DX", setup: values(v),
			check: asked(3, rdrandOK, rdx, 0xffff_ffff_ffff_7788, cpu.RDRAND)},
		{name: "rdrand r64", mode: "long64", code: []byte{0x48, 0x0f, 0xc7, 0xf0}, inst: "RDRAND RAX", setup: values(v),
			check: asked(4, rdrandOK, rax, v, cpu.RDRAND)},
		{name: "rdrand r64 REX.B", mode: "long64", code: []byte{0x49, 0x0f, 0xc7, 0xf1}, inst: "RDRAND R9", setup: values(v),
			check: asked(4, rdrandOK, r9, v, cpu.RDRAND)},
		{name: "rdrand r32 in compat", mode: "compat", code: []byte{0x0f, 0xc7, 0xf0}, inst: "RDRAND EAX", setup: values(v),
			check: asked(3, rdrandOK, rax, 0x55667788, cpu.RDRAND)},
		{name: "rex before 66 is dropped", mode: "long64", code: []byte{0x48, 0x66, 0x0f, 0xc7, 0xf0}, inst: "RDRAND AX", setup: values(v),
			check: asked(5, rdrandOK, rax, 0xffff_ffff_ffff_7788, cpu.RDRAND)},
		{name: "rdseed r32", mode: "prot32", code: []byte{0x0f, 0xc7, 0xfa}, inst: "RDSEED EDX", setup: values(v),
			check: asked(3, rdrandOK, rdx, 0x55667788, cpu.RDSEED)},
		{name: "rdseed r64", mode: "long64", code: []byte{0x48, 0x0f, 0xc7, 0xff}, inst: "RDSEED RDI", setup: values(v),
			check: asked(4, rdrandOK, rdi, v, cpu.RDSEED)},
		{name: "rdpid r64", mode: "long64", code: []byte{0xf3, 0x0f, 0xc7, 0xf8}, inst: "RDPID RAX", setup: values(),
			check: asked(4, allStatus, rax, 0xa5)},
		{name: "rdpid r32", mode: "prot32", code: []byte{0xf3, 0x0f, 0xc7, 0xf9}, inst: "RDPID ECX", setup: values(),
			check: asked(4, allStatus, rcx, 0xa5)},
		{name: "no value to replay", mode: "prot32", code: []byte{0x0f, 0xc7, 0xf0}, setup: values(),
			err: "RDRAND value: fake: no value left"},
		{name: "f2 0f c7 /6 is not rdrand", mode: "long64", code: []byte{0xf2, 0x0f, 0xc7, 0xf0}, setup: values(v),
			err: "cannot emulate"},
		{name: "cmpxchg8b is not group 9's", mode: "prot32", code: []byte{0x0f, 0xc7, 0x0e}, inst: "CMPXCHG8B [ESI]",
			setup: func(_ *fakeEnv, c *CPU) { c.Regs.RSI, c.Regs.RAX = 0x90000, 1 },
			check: asked(3, cleared, rax, 0)},
	})
}
