package x86emu

import (
	"errors"
	"testing"

	"vmrr/machine/cpu"
)

// fullCPUID is a CPUID table advertising every feature x86emu checks, so
// that tests run the instructions; tests of absent features delete bits.
func fullCPUID() map[[2]uint32][4]uint32 {
	return map[[2]uint32][4]uint32{
		{1, 0}:          {0, 0, 1<<30 | 1<<23 | 1<<13 | 1<<17 | 1<<26, 1<<0 | 1<<23 | 1<<25},
		{7, 0}:          {0, 1<<18 | 1<<3 | 1<<0 | 1<<7 | 1<<20, 1<<22 | 1<<2 | 1<<16 | 1<<3, 0},
		{0x80000001, 0}: {0, 0, 1 << 5, 1<<27 | 1<<11 | 1<<20 | 1<<29},
		{0x80000008, 0}: {0x3028, 0, 0, 0},
	}
}

// withoutFeature clears one CPUID feature bit.
func withoutFeature(f *fakeEnv, ft feat) {
	r := f.cpuid[[2]uint32{ft.leaf, ft.sub}]
	r[ft.reg] &^= 1 << ft.bit
	f.cpuid[[2]uint32{ft.leaf, ft.sub}] = r
}

type checkFn = func(t *testing.T, f *fakeEnv, before, after *CPU)

func ud() *Fault             { return &Fault{Vector: vecUD} }
func ssf(code uint32) *Fault { return &Fault{Vector: vecSS, ErrorCode: code, HasErrorCode: true} }

// checks runs several checks.
func checks(cs ...checkFn) checkFn {
	return func(t *testing.T, f *fakeEnv, b, a *CPU) {
		t.Helper()
		for _, c := range cs {
			c(t, f, b, a)
		}
	}
}

// advanced checks that RIP moved past an n-byte instruction.
func advanced(n uint64) checkFn {
	return func(t *testing.T, _ *fakeEnv, b, a *CPU) {
		t.Helper()
		eq(t, "RIP", a.Regs.RIP, b.Regs.RIP+n)
	}
}

// reg checks one register (or any value) of the CPU after the Step.
func reg(what string, get func(c *CPU) uint64, want uint64) checkFn {
	return func(t *testing.T, _ *fakeEnv, _, a *CPU) {
		t.Helper()
		eq(t, what, get(a), want)
	}
}

func set(fn func(c *CPU)) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) { fn(c) }
}

func flags(c *CPU) uint64 { return c.Regs.RFLAGS }

func TestCLISTIHLT(t *testing.T) {
	const iopl3 = 3 << 12
	shadow := func(want bool) checkFn {
		return func(t *testing.T, _ *fakeEnv, _, a *CPU) { t.Helper(); eq(t, "Shadow", a.Shadow, want) }
	}
	runCases(t, []stepCase{
		{name: "cli", mode: "real", code: []byte{0xfa}, inst: "CLI",
			check: checks(advanced(1), reg("RFLAGS", flags, flagFixed))},
		{name: "cli", mode: "prot32", code: []byte{0xfa},
			check: checks(advanced(1), reg("RFLAGS", flags, flagFixed))},
		{name: "cli above IOPL", mode: "prot32u", code: []byte{0xfa}, fault: gp(0)},
		{name: "cli at IOPL", mode: "prot32u", code: []byte{0xfa}, setup: withFlags(flagFixed | cpu.FlagIF | iopl3),
			check: reg("RFLAGS", flags, flagFixed|iopl3)},
		{name: "cli with PVI clears VIF", mode: "prot32u", code: []byte{0xfa},
			setup: both(withFlags(flagFixed|cpu.FlagIF|flagVIF), set(func(c *CPU) { c.Sregs.CR4 |= cr4PVI })),
			check: reg("RFLAGS", flags, flagFixed|cpu.FlagIF)},
		{name: "sti with PVI and VIP", mode: "prot32u", code: []byte{0xfb},
			setup: both(withFlags(flagFixed|flagVIP), set(func(c *CPU) { c.Sregs.CR4 |= cr4PVI })),
			fault: gp(0)},
		{name: "sti with PVI sets VIF", mode: "prot32u", code: []byte{0xfb},
			setup: both(withFlags(flagFixed), set(func(c *CPU) { c.Sregs.CR4 |= cr4PVI })),
			check: checks(reg("RFLAGS", flags, flagFixed|flagVIF), shadow(false))},
		{name: "sti sets the shadow", mode: "prot32", code: []byte{0xfb}, inst: "STI", setup: withFlags(flagFixed),
			check: checks(advanced(1), reg("RFLAGS", flags, flagFixed|cpu.FlagIF), shadow(true))},
		{name: "sti with IF set leaves no shadow", mode: "long64", code: []byte{0xfb},
			setup: set(func(c *CPU) { c.Shadow = true }),
			check: checks(reg("RFLAGS", flags, flagFixed|cpu.FlagIF), shadow(false))},
		{name: "any instruction clears the shadow", mode: "real", code: []byte{0xfa},
			setup: set(func(c *CPU) { c.Shadow = true }), check: shadow(false)},
		{name: "a fault clears the shadow", mode: "prot32u", code: []byte{0xfa},
			setup: set(func(c *CPU) { c.Shadow = true }), fault: gp(0), check: shadow(false)},
		{name: "sti above IOPL", mode: "long64u", code: []byte{0xfb}, setup: withFlags(flagFixed), fault: gp(0)},
		{name: "lock cli", mode: "prot32", code: []byte{0xf0, 0xfa}, fault: ud()},
		{name: "hlt", mode: "prot32", code: []byte{0xf4}, inst: "HLT", check: advanced(1)},
		{name: "hlt at CPL3", mode: "long64u", code: []byte{0xf4}, fault: gp(0)},
	})
}

func TestHLTResult(t *testing.T) {
	for _, mode := range []string{"real", "prot16", "prot32", "long64", "compat"} {
		f, c := newState(t, mode)
		f.put(c.Sregs.CS.Base+c.Regs.RIP, 0xf4)
		rip := c.Regs.RIP
		res, err := Step(c, f)
		if err != nil || !res.Halted || c.Regs.RIP != rip+1 {
			t.Errorf("%s: HLT: %+v, %v, RIP %#x", mode, res, err, c.Regs.RIP)
		}
		f.put(c.Sregs.CS.Base+c.Regs.RIP, 0xfa)
		if res, err := Step(c, f); err != nil || res.Halted {
			t.Errorf("%s: CLI after HLT: %+v, %v", mode, res, err)
		}
	}
}

// ioBitmap gives the TSS an I/O permission bitmap at offset 0x68 that
// denies the given ports, and a limit covering all 64 Ki ports.
func ioBitmap(deny ...uint16) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, c *CPU) {
		base := c.Sregs.TR.Base
		f.put16(base+102, 0x68)
		for _, p := range deny {
			f.ram[base+0x68+uint64(p/8)] |= 1 << (p % 8)
		}
		c.Sregs.TR.Limit = 0x68 + 0x2000
	}
}

func ports(v map[uint16]uint32) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, _ *CPU) { f.ports = v }
}

func outs(want ...portWrite) checkFn {
	return func(t *testing.T, f *fakeEnv, _, _ *CPU) {
		t.Helper()
		if len(f.outs) != len(want) {
			t.Fatalf("Out calls %+v, want %+v", f.outs, want)
		}
		for i := range want {
			eq(t, "Out", f.outs[i], want[i])
		}
	}
}

func TestINOUT(t *testing.T) {
	const rax0 = 0x1122334455667788
	withRAX := regs(func(r *cpu.Regs) { r.RAX, r.RDX = rax0, 0x3f8 })
	p := ports(map[uint16]uint32{0x60: 0xaabbccdd, 0x3f8: 0x12345678, 0x3f9: 0x9a})
	runCases(t, []stepCase{
		{name: "in al, imm8", mode: "real", code: []byte{0xe4, 0x60}, inst: "IN AL, 0x60",
			setup: both(withRAX, p), check: checks(advanced(2), reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0x11223344556677dd))},
		{name: "in ax, imm8", mode: "prot32", code: []byte{0x66, 0xe5, 0x60},
			setup: both(withRAX, p), check: checks(advanced(3), reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0x112233445566ccdd))},
		{name: "in eax, imm8 zero-extends", mode: "long64", code: []byte{0xe5, 0x60},
			setup: both(withRAX, p), check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0xaabbccdd)},
		{name: "in al, dx", mode: "prot16", code: []byte{0xec}, inst: "IN AL, DX",
			setup: both(withRAX, p), check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0x1122334455667778)},
		{name: "in eax, dx", mode: "prot32", code: []byte{0xed},
			setup: both(withRAX, p), check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0x12345678)},
		{name: "out imm8, al", mode: "prot32", code: []byte{0xe6, 0x80}, inst: "OUT 0x80, AL",
			setup: withRAX, check: checks(advanced(2), outs(portWrite{0x80, 1, 0x88}))},
		{name: "out dx, ax", mode: "real", code: []byte{0xef}, inst: "OUT DX, AX",
			setup: withRAX, check: outs(portWrite{0x3f8, 2, 0x7788})},
		{name: "out dx, eax", mode: "long64", code: []byte{0xef},
			setup: withRAX, check: outs(portWrite{0x3f8, 4, 0x55667788})},
		{name: "in above IOPL without a bitmap", mode: "prot32u", code: []byte{0xec}, setup: withRAX, fault: gp(0)},
		{name: "in above IOPL, port allowed", mode: "prot32u", code: []byte{0xec},
			setup: both(withRAX, p, ioBitmap(0x3f7, 0x3f9)), check: reg("AL", func(c *CPU) uint64 { return c.Regs.RAX & 0xff }, 0x78)},
		{name: "in ax above IOPL, second port denied", mode: "prot32u", code: []byte{0x66, 0xed},
			setup: both(withRAX, p, ioBitmap(0x3f9)), fault: gp(0)},
		{name: "out above IOPL, port denied", mode: "long64u", code: []byte{0xe6, 0x80},
			setup: both(withRAX, ioBitmap(0x80)), fault: gp(0), check: outs()},
		{name: "out above IOPL, port allowed", mode: "long64u", code: []byte{0xe6, 0x80},
			setup: both(withRAX, ioBitmap(0x81)), check: outs(portWrite{0x80, 1, 0x88})},
		{name: "bitmap past the TSS limit", mode: "prot32u", code: []byte{0xe6, 0x80},
			setup: both(withRAX, ioBitmap(), set(func(c *CPU) { c.Sregs.TR.Limit = 0x68 + 0x80/8 })), fault: gp(0)},
		{name: "16-bit TSS has no bitmap", mode: "long64u", code: []byte{0xe6, 0x80},
			setup: both(withRAX, ioBitmap(), set(func(c *CPU) { c.Sregs.TR.Typ = 1 })), fault: gp(0)},
		{name: "in at IOPL", mode: "prot32u", code: []byte{0xec},
			setup: both(withRAX, p, withFlags(flagFixed|3<<12)), check: advanced(1)},
	})
}

// ioErrEnv fails every port access, as the soft CPU's environment does to
// leave the interpreter for the device models, and counts the reads.
type ioErrEnv struct {
	*fakeEnv
	reads int
}

var errDeviceExit = errors.New("device exit")

func (f *ioErrEnv) In(uint16, int) (uint32, error) { f.reads++; return 0, errDeviceExit }
func (f *ioErrEnv) Out(uint16, int, uint32) error  { return errDeviceExit }

func TestIOErrorLeavesCPU(t *testing.T) {
	for _, tc := range []struct {
		mode string
		code []byte
	}{
		{"prot32", []byte{0xec}},
		{"prot32", []byte{0xe6, 0x80}},
		{"long64", []byte{0xf3, 0x6c}},
		{"real", []byte{0xf3, 0x6f}},
	} {
		f, c := newState(t, tc.mode)
		f.put(c.Sregs.CS.Base+c.Regs.RIP, tc.code...)
		c.Regs.RCX, c.Regs.RDI, c.Regs.RSI = 2, 0x8000, 0x8000
		f.put32(0x8000, 0xdeadbeef)
		before := *c
		env := &ioErrEnv{fakeEnv: f}
		writes := f.writes
		_, err := Step(c, env)
		if !errors.Is(err, errDeviceExit) {
			t.Errorf("% x: error %v, want the device exit", tc.code, err)
		}
		if *c != before || f.writes != writes || f.get32(0x8000) != 0xdeadbeef {
			t.Errorf("% x: state changed by an aborted I/O instruction", tc.code)
		}
	}
}

func TestStringIO(t *testing.T) {
	// rep insb at ES:EDI = 0x8000, three bytes from port 0x60.
	f, c := newState(t, "prot32")
	f.put(codeBase, 0xf3, 0x6c, 0xf4)
	f.ports = map[uint16]uint32{0x60: 0xab}
	c.Regs.RCX, c.Regs.RDX, c.Regs.RDI = 3, 0x60, 0x8000
	for i := range 3 {
		res, err := Step(c, f)
		if err != nil || res.Fault != nil {
			t.Fatalf("element %d: %+v, %v", i, res, err)
		}
		eq(t, "ECX", c.Regs.RCX, uint64(2-i))
		eq(t, "EDI", c.Regs.RDI, uint64(0x8001+i))
		want := uint64(codeBase)
		if i == 2 {
			want += 2
		}
		eq(t, "RIP", c.Regs.RIP, want)
	}
	eq(t, "memory", f.get32(0x8000), 0x00ababab)

	runCases(t, []stepCase{
		{name: "rep with count zero does nothing", mode: "prot32", code: []byte{0xf3, 0x6e},
			setup: regs(func(r *cpu.Regs) { r.RCX, r.RSI = 0, 0x8000 }),
			check: checks(advanced(2), outs(), reg("ESI", func(c *CPU) uint64 { return c.Regs.RSI }, 0x8000))},
		{name: "outsd without rep", mode: "long64", code: []byte{0x6f}, inst: "OUTSD DX, [RSI]",
			setup: both(func(f *fakeEnv, c *CPU) { f.put32(0x8000, 0xcafef00d) },
				regs(func(r *cpu.Regs) { r.RCX, r.RSI, r.RDX = 5, 0x8000, 0x3f8 })),
			check: checks(advanced(1), outs(portWrite{0x3f8, 4, 0xcafef00d}),
				reg("RSI", func(c *CPU) uint64 { return c.Regs.RSI }, 0x8004),
				reg("RCX", func(c *CPU) uint64 { return c.Regs.RCX }, 5))},
		{name: "outsw backwards with fs override", mode: "prot32", code: []byte{0x64, 0x66, 0xf3, 0x6f},
			setup: both(func(f *fakeEnv, c *CPU) { f.put16(0xa000, 0x1234); c.Sregs.FS.Base = 0x2000 },
				regs(func(r *cpu.Regs) { r.RCX, r.RSI, r.RDX = 2, 0x8000, 0x80; r.RFLAGS |= cpu.FlagDF })),
			check: checks(advanced(0), outs(portWrite{0x80, 2, 0x1234}),
				reg("ESI", func(c *CPU) uint64 { return c.Regs.RSI }, 0x7ffe),
				reg("ECX", func(c *CPU) uint64 { return c.Regs.RCX }, 1))},
		{name: "insw with a 16-bit address keeps the upper bits", mode: "real", code: []byte{0x6d},
			setup: both(ports(map[uint16]uint32{0x70: 0x4321}),
				regs(func(r *cpu.Regs) { r.RDI, r.RDX = 0xabcd_fffe, 0x70 })),
			check: checks(advanced(1), func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "memory", f.get16(0xfffe), 0x4321)
				eq(t, "EDI", a.Regs.RDI, 0xabcd_0000)
			})},
		{name: "ins at CPL3 denied by the bitmap", mode: "prot32u", code: []byte{0x6c},
			setup: both(ioBitmap(0x60), regs(func(r *cpu.Regs) { r.RDX, r.RDI = 0x60, 0x8000 })), fault: gp(0)},
		{name: "ins into a read-only ES", mode: "prot32", code: []byte{0x6c},
			setup: set(func(c *CPU) { c.Sregs.ES.Typ = 1; c.Regs.RDI = 0x8000 }), fault: gp(0)},
	})

	// A page fault on the destination comes before the port is read.
	f, c = newState(t, "long64")
	installHandlers(f, c)
	f.put(codeBase, 0x6c)
	f.unmap(0x5000)
	c.Regs.RDI = 0x5000
	env := &ioErrEnv{fakeEnv: f}
	res, err := Step(c, env)
	if err != nil || res.Fault == nil || res.Fault.Vector != vecPF || env.reads != 0 {
		t.Errorf("INSB to an unmapped page: %+v, %v, %d port reads", res, err, env.reads)
	}
}

func TestCPUID(t *testing.T) {
	runCases(t, []stepCase{
		{name: "cpuid leaf 7 subleaf 0", mode: "long64", code: []byte{0x0f, 0xa2}, inst: "CPUID",
			setup: both(func(f *fakeEnv, _ *CPU) { f.cpuid[[2]uint32{7, 0}] = [4]uint32{1, 2, 3, 4} },
				regs(func(r *cpu.Regs) {
					r.RAX, r.RCX, r.RBX, r.RDX = 0xffffffff_00000007, 0xffffffff_00000000, ^uint64(0), ^uint64(0)
				})),
			check: checks(advanced(2), func(t *testing.T, _ *fakeEnv, _, a *CPU) {
				eq(t, "regs", [4]uint64{a.Regs.RAX, a.Regs.RBX, a.Regs.RCX, a.Regs.RDX}, [4]uint64{1, 2, 3, 4})
			})},
		{name: "absent leaf", mode: "real", code: []byte{0x0f, 0xa2},
			setup: regs(func(r *cpu.Regs) { r.RAX = 0x40000000 }),
			check: reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0)},
	})
}

func msrArgs(idx uint32, v uint64) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) {
		c.Regs.RCX = uint64(idx)
		c.Regs.RAX = 0xffffffff_00000000 | v&0xffffffff
		c.Regs.RDX = 0xffffffff_00000000 | v>>32
	}
}

// edxeax checks RDMSR's result, zero-extended into RDX and RAX.
func edxeax(v uint64) checkFn {
	return func(t *testing.T, _ *fakeEnv, _, a *CPU) {
		t.Helper()
		eq(t, "RAX", a.Regs.RAX, v&0xffffffff)
		eq(t, "RDX", a.Regs.RDX, v>>32)
	}
}

func flushes(want ...TLBFlush) checkFn {
	return func(t *testing.T, f *fakeEnv, _, _ *CPU) {
		t.Helper()
		if len(f.flushes) != len(want) {
			t.Errorf("TLB flushes %v, want %v", f.flushes, want)
			return
		}
		for i := range want {
			eq(t, "flush", f.flushes[i], want[i])
		}
	}
}

func TestMSR(t *testing.T) {
	rdmsr, wrmsr := []byte{0x0f, 0x32}, []byte{0x0f, 0x30}
	envMSR := func(f *fakeEnv, _ *CPU) { f.msrs = map[uint32]uint64{0x1b: 0xfee00900, msrSTAR: 0} }
	runCases(t, []stepCase{
		{name: "rdmsr EFER", mode: "long64", code: rdmsr, inst: "RDMSR", setup: msrArgs(msrEFER, 0),
			check: checks(advanced(2), edxeax(cpu.EFERLME|cpu.EFERLMA|cpu.EFERNXE))},
		{name: "rdmsr at CPL3", mode: "long64u", code: rdmsr, setup: msrArgs(msrEFER, 0), fault: gp(0)},
		{name: "rdmsr FS_BASE", mode: "long64", code: rdmsr,
			setup: both(msrArgs(msrFSBase, 0), set(func(c *CPU) { c.Sregs.FS.Base = 0xffff8000_12345678 })),
			check: edxeax(0xffff8000_12345678)},
		{name: "rdmsr TSC_AUX", mode: "prot32", code: rdmsr,
			setup: both(msrArgs(msrTSCAux, 0), set(func(c *CPU) { c.TSCAux = 7 })), check: edxeax(7)},
		{name: "rdmsr TSC", mode: "real", code: rdmsr, setup: both(values(0x1_0000_0002), msrArgs(msrTSC, 0)),
			check: checks(edxeax(0x1_0000_0002), func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "asked", f.asked[0], cpu.RDTSC) })},
		{name: "rdmsr TSC without a value", mode: "real", code: rdmsr, setup: msrArgs(msrTSC, 0), err: "no value left"},
		{name: "rdmsr from the environment", mode: "prot32", code: rdmsr, setup: both(envMSR, msrArgs(0x1b, 0)),
			check: edxeax(0xfee00900)},
		{name: "rdmsr unknown", mode: "prot32", code: rdmsr, setup: msrArgs(0x1234, 0), fault: gp(0)},
		{name: "wrmsr EFER.NXE flushes", mode: "long64", code: wrmsr, inst: "WRMSR",
			setup: msrArgs(msrEFER, cpu.EFERLME|cpu.EFERLMA|cpu.EFERSCE),
			check: checks(advanced(2), flushes(FlushAll),
				reg("EFER", func(c *CPU) uint64 { return c.Sregs.EFER }, cpu.EFERLME|cpu.EFERLMA|cpu.EFERSCE))},
		{name: "wrmsr EFER keeps LMA", mode: "prot32", code: wrmsr, setup: msrArgs(msrEFER, cpu.EFERLME|cpu.EFERLMA),
			check: checks(flushes(FlushAll), reg("EFER", func(c *CPU) uint64 { return c.Sregs.EFER }, cpu.EFERLME))},
		{name: "wrmsr EFER unchanged does not flush", mode: "prot32", code: wrmsr, setup: msrArgs(msrEFER, 0),
			check: flushes()},
		{name: "wrmsr EFER reserved bit", mode: "prot32", code: wrmsr, setup: msrArgs(msrEFER, 1<<9), fault: gp(0)},
		{name: "wrmsr EFER NXE without NX", mode: "prot32", code: wrmsr,
			setup: both(msrArgs(msrEFER, cpu.EFERNXE), func(f *fakeEnv, _ *CPU) { withoutFeature(f, featNX) }), fault: gp(0)},
		{name: "wrmsr EFER.LME with paging on", mode: "long64", code: wrmsr,
			setup: msrArgs(msrEFER, cpu.EFERLMA|cpu.EFERNXE), fault: gp(0)},
		{name: "wrmsr GS_BASE", mode: "long64", code: wrmsr, setup: msrArgs(msrGSBase, 0xffffffff_ffff0000),
			check: reg("GS.base", func(c *CPU) uint64 { return c.Sregs.GS.Base }, 0xffffffff_ffff0000)},
		{name: "wrmsr KERNEL_GS_BASE", mode: "long64", code: wrmsr, setup: msrArgs(msrKernelGSBase, 0x1000),
			check: reg("KernelGSBase", func(c *CPU) uint64 { return c.KernelGSBase }, 0x1000)},
		{name: "wrmsr FS_BASE not canonical", mode: "long64", code: wrmsr, setup: msrArgs(msrFSBase, 1<<47), fault: gp(0)},
		{name: "wrmsr TSC_AUX", mode: "prot32", code: wrmsr, setup: msrArgs(msrTSCAux, 5),
			check: reg("TSCAux", func(c *CPU) uint64 { return c.TSCAux }, 5)},
		{name: "wrmsr TSC_AUX reserved half", mode: "prot32", code: wrmsr, setup: msrArgs(msrTSCAux, 1<<32), fault: gp(0)},
		{name: "wrmsr to the environment", mode: "prot32", code: wrmsr, setup: both(envMSR, msrArgs(msrSTAR, 0x0023_0010_0000_0000)),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "STAR", f.msrs[msrSTAR], 0x0023_0010_0000_0000) }},
		{name: "wrmsr unknown", mode: "prot32", code: wrmsr, setup: msrArgs(0x1234, 0), fault: gp(0)},
		{name: "wrmsr at CPL3", mode: "prot32u", code: wrmsr, setup: msrArgs(msrTSCAux, 0), fault: gp(0)},
	})
}

func cr0(c *CPU) uint64 { return c.Sregs.CR0 }
func cr4(c *CPU) uint64 { return c.Sregs.CR4 }

func TestMOVCR(t *testing.T) {
	eax := func(v uint64) func(*fakeEnv, *CPU) { return set(func(c *CPU) { c.Regs.RAX = v }) }
	const pe, pg, et = cpu.CR0PE, cpu.CR0PG, cpu.CR0ET
	runCases(t, []stepCase{
		{name: "mov eax, cr0", mode: "prot32", code: []byte{0x0f, 0x20, 0xc0}, inst: "MOV EAX, CR0",
			setup: eax(^uint64(0)), check: checks(advanced(3), reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, pe|et))},
		{name: "mov rax, cr4", mode: "long64", code: []byte{0x0f, 0x20, 0xe0},
			check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, cpu.CR4PAE)},
		{name: "mov cr0 at CPL3", mode: "prot32u", code: []byte{0x0f, 0x20, 0xc0}, fault: gp(0)},
		{name: "mov cr1", mode: "prot32", code: []byte{0x0f, 0x20, 0xc8}, fault: ud()},
		{name: "mov cr1 at CPL3 is #UD first", mode: "prot32u", code: []byte{0x0f, 0x22, 0xc8}, fault: ud()},
		{name: "mov cr0 sets PE", mode: "real", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(0x11),
			check: checks(advanced(3), reg("CR0", cr0, pe|et), func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "mode", Mode(a), "protected16") })},
		{name: "mov cr0 clears PE", mode: "prot16", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(0),
			check: checks(reg("CR0", cr0, et), func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "mode", Mode(a), "real") })},
		{name: "mov cr0 PG without PE", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pg), fault: gp(0)},
		{name: "mov cr0 NW without CD", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pe | cpu.CR0NW), fault: gp(0)},
		{name: "mov cr0 upper bits", mode: "long64", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(1<<32 | pe | pg), fault: gp(0)},
		{name: "mov cr0 ignores low reserved bits", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pe | 1<<8),
			check: checks(reg("CR0", cr0, pe|et), flushes())},
		{name: "mov cr0 WP flushes", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pe | cpu.CR0WP),
			check: flushes(FlushAll)},
		{name: "paging with LME and PAE enters long mode", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0},
			setup: both(eax(pe|pg), set(func(c *CPU) {
				c.Sregs.CR4, c.Sregs.EFER, c.Sregs.CR3 = cpu.CR4PAE, cpu.EFERLME, pml4Base
			})),
			check: checks(flushes(FlushAll), reg("EFER", func(c *CPU) uint64 { return c.Sregs.EFER }, cpu.EFERLME|cpu.EFERLMA),
				func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "mode", Mode(a), "compat") })},
		{name: "paging with LME without PAE", mode: "prot32", code: []byte{0x0f, 0x22, 0xc0},
			setup: both(eax(pe|pg), set(func(c *CPU) { c.Sregs.EFER = cpu.EFERLME })), fault: gp(0)},
		{name: "paging off in 64-bit mode", mode: "long64", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pe), fault: gp(0)},
		{name: "paging off with PCIDE", mode: "compat", code: []byte{0x0f, 0x22, 0xc0}, setup: both(eax(pe), set(func(c *CPU) { c.Sregs.CR4 |= cr4PCIDE })),
			fault: gp(0)},
		{name: "paging off in compatibility mode leaves long mode", mode: "compat", code: []byte{0x0f, 0x22, 0xc0}, setup: eax(pe),
			check: checks(flushes(FlushAll), reg("EFER", func(c *CPU) uint64 { return c.Sregs.EFER }, cpu.EFERLME|cpu.EFERNXE),
				func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "mode", Mode(a), "protected32") })},
		{name: "mov cr2", mode: "long64", code: []byte{0x0f, 0x22, 0xd0}, setup: eax(0xffff8000_00001000),
			check: reg("CR2", func(c *CPU) uint64 { return c.Sregs.CR2 }, 0xffff8000_00001000)},
		{name: "mov cr3 flushes non-global", mode: "long64", code: []byte{0x0f, 0x22, 0xd8}, setup: eax(0x5000),
			check: checks(flushes(FlushNonGlobal), reg("CR3", func(c *CPU) uint64 { return c.Sregs.CR3 }, 0x5000))},
		{name: "mov cr3 beyond MAXPHYADDR", mode: "long64", code: []byte{0x0f, 0x22, 0xd8}, setup: eax(1 << 40), fault: gp(0)},
		{name: "mov cr3 at CPL3", mode: "long64u", code: []byte{0x0f, 0x22, 0xd8}, fault: gp(0)},
		{name: "mov cr4 PGE flushes", mode: "long64", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(cpu.CR4PAE | cpu.CR4PGE),
			check: checks(flushes(FlushAll), reg("CR4", cr4, cpu.CR4PAE|cpu.CR4PGE))},
		{name: "mov cr4 TSD does not flush", mode: "long64", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(cpu.CR4PAE | cpu.CR4TSD),
			check: flushes()},
		{name: "mov cr4 clearing PAE in long mode", mode: "long64", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(0), fault: gp(0)},
		{name: "mov cr4 LA57 in long mode", mode: "long64", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(cpu.CR4PAE | cpu.CR4LA57), fault: gp(0)},
		{name: "mov cr4 reserved bit", mode: "prot32", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(1 << 15), fault: gp(0)},
		{name: "mov cr4 SMEP with the feature", mode: "prot32", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(cr4SMEP),
			check: checks(reg("CR4", cr4, cr4SMEP), flushes(FlushAll))},
		{name: "mov cr4 SMEP without the feature", mode: "prot32", code: []byte{0x0f, 0x22, 0xe0},
			setup: both(eax(cr4SMEP), func(f *fakeEnv, _ *CPU) { withoutFeature(f, feat{7, 0, cpuidEBX, 7}) }), fault: gp(0)},
		{name: "mov cr4 PCIDE outside long mode", mode: "prot32", code: []byte{0x0f, 0x22, 0xe0}, setup: eax(cr4PCIDE), fault: gp(0)},
		{name: "mov cr8", mode: "long64", code: []byte{0x44, 0x0f, 0x22, 0xc0}, inst: "MOV CR8, RAX", setup: eax(0xf),
			check: reg("CR8", func(c *CPU) uint64 { return c.Sregs.CR8 }, 0xf)},
		{name: "mov cr8 reserved", mode: "long64", code: []byte{0x44, 0x0f, 0x22, 0xc0}, setup: eax(0x10), fault: gp(0)},
		{name: "lock mov cr", mode: "long64", code: []byte{0xf0, 0x0f, 0x20, 0xc0}, fault: ud()},
		{name: "lmsw sets PE, cannot clear it", mode: "real", code: []byte{0x0f, 0x01, 0xf0}, inst: "LMSW AX",
			setup: both(eax(0xfffd), set(func(c *CPU) { c.Sregs.CR0 |= cpu.CR0NE })),
			check: checks(advanced(3), reg("CR0", cr0, pe|et|cpu.CR0EM|cpu.CR0TS|cpu.CR0NE))},
		{name: "lmsw keeps PE", mode: "prot32", code: []byte{0x0f, 0x01, 0x30}, setup: both(eax(0x8000), func(f *fakeEnv, _ *CPU) { f.put16(0x8000, 2) }),
			check: reg("CR0", cr0, pe|et|cpu.CR0MP)},
		{name: "lmsw at CPL3", mode: "prot32u", code: []byte{0x0f, 0x01, 0xf0}, fault: gp(0)},
		{name: "smsw r32", mode: "prot32", code: []byte{0x0f, 0x01, 0xe0}, inst: "SMSW EAX", setup: eax(^uint64(0)),
			check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, pe|et)},
		{name: "smsw m16 at CPL3", mode: "prot32u", code: []byte{0x0f, 0x01, 0x20}, setup: eax(0x8000),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "memory", f.get32(0x8000), pe|et) }},
		{name: "smsw with UMIP at CPL3", mode: "prot32u", code: []byte{0x0f, 0x01, 0xe0},
			setup: set(func(c *CPU) { c.Sregs.CR4 |= cr4UMIP }), fault: gp(0)},
		{name: "clts", mode: "prot32", code: []byte{0x0f, 0x06}, inst: "CLTS",
			setup: set(func(c *CPU) { c.Sregs.CR0 |= cpu.CR0TS }), check: checks(advanced(2), reg("CR0", cr0, pe|et))},
		{name: "clts at CPL3", mode: "prot32u", code: []byte{0x0f, 0x06}, fault: gp(0)},
	})
}

func TestMOVDR(t *testing.T) {
	eax := func(v uint64) func(*fakeEnv, *CPU) { return set(func(c *CPU) { c.Regs.RAX = v }) }
	runCases(t, []stepCase{
		{name: "mov dr0, rax", mode: "long64", code: []byte{0x0f, 0x23, 0xc0}, inst: "MOV DR0, RAX", setup: eax(0xffff8000_00001234),
			check: checks(advanced(3), reg("DR0", func(c *CPU) uint64 { return c.DR.DB[0] }, 0xffff8000_00001234))},
		{name: "mov dr7, eax", mode: "prot32", code: []byte{0x0f, 0x23, 0xf8}, setup: eax(0xffff_f003),
			check: reg("DR7", func(c *CPU) uint64 { return c.DR.DR7 }, 0xffff_2403)},
		{name: "mov dr6, eax", mode: "prot32", code: []byte{0x0f, 0x23, 0xf0}, setup: eax(0x4001),
			check: reg("DR6", func(c *CPU) uint64 { return c.DR.DR6 }, 0xffff_4ff1)},
		{name: "mov dr7 upper bits", mode: "long64", code: []byte{0x0f, 0x23, 0xf8}, setup: eax(1 << 32), fault: gp(0)},
		{name: "mov eax, dr4 aliases dr6", mode: "prot32", code: []byte{0x0f, 0x21, 0xe0},
			setup: set(func(c *CPU) { c.DR.DR6 = 0xffff0ff1 }), check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0xffff0ff1)},
		{name: "mov eax, dr5 with CR4.DE", mode: "prot32", code: []byte{0x0f, 0x21, 0xe8},
			setup: set(func(c *CPU) { c.Sregs.CR4 |= cr4DE }), fault: ud()},
		{name: "mov rax, dr3", mode: "long64", code: []byte{0x0f, 0x21, 0xd8},
			setup: set(func(c *CPU) { c.DR.DB[3] = 0x1234_5678_9abc }), check: reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 0x1234_5678_9abc)},
		{name: "mov dr at CPL3", mode: "long64u", code: []byte{0x0f, 0x21, 0xf8}, fault: gp(0)},
	})
}

func TestFeatureGates(t *testing.T) {
	without := func(ft feat) func(*fakeEnv, *CPU) {
		return func(f *fakeEnv, _ *CPU) { withoutFeature(f, ft) }
	}
	runCases(t, []stepCase{
		{name: "rdtscp", mode: "long64", code: []byte{0x0f, 0x01, 0xf9}, setup: without(featRDTSCP), fault: ud()},
		{name: "rdrand", mode: "prot32", code: []byte{0x0f, 0xc7, 0xf0}, setup: without(featRDRAND), fault: ud()},
		{name: "rdseed", mode: "prot32", code: []byte{0x0f, 0xc7, 0xf8}, setup: without(featRDSEED), fault: ud()},
		{name: "rdpid", mode: "long64", code: []byte{0xf3, 0x0f, 0xc7, 0xf8}, setup: without(featRDPID), fault: ud()},
		{name: "popcnt", mode: "prot32", code: []byte{0xf3, 0x0f, 0xb8, 0xc1}, setup: without(featPOPCNT), fault: ud()},
		{name: "cmpxchg16b", mode: "long64", code: []byte{0x48, 0x0f, 0xc7, 0x08}, setup: without(featCX16), fault: ud()},
		{name: "rdrand does not take a value without the feature", mode: "long64", code: []byte{0x0f, 0xc7, 0xf0},
			setup: both(without(featRDRAND), values(1)), fault: ud(),
			check: func(t *testing.T, f *fakeEnv, _, _ *CPU) { eq(t, "values asked", len(f.asked), 0) }},
	})
}

func TestLZCNTWithoutFeatureIsBSR(t *testing.T) {
	runCases(t, []stepCase{
		{name: "lzcnt is bsr", mode: "prot32", code: []byte{0xf3, 0x0f, 0xbd, 0xc1},
			setup: both(func(f *fakeEnv, _ *CPU) { withoutFeature(f, featLZCNT) }, set(func(c *CPU) { c.Regs.RCX = 0x10 })),
			check: checks(advanced(4), reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, 4))},
		{name: "tzcnt is bsf", mode: "long64", code: []byte{0xf3, 0x48, 0x0f, 0xbc, 0xc1},
			setup: both(func(f *fakeEnv, _ *CPU) { withoutFeature(f, featBMI1) }, set(func(c *CPU) { c.Regs.RCX = 0x10 })),
			check: checks(advanced(5), reg("RAX", func(c *CPU) uint64 { return c.Regs.RAX }, 4))},
		{name: "lzcnt with the feature", mode: "prot32", code: []byte{0xf3, 0x0f, 0xbd, 0xc1},
			setup: set(func(c *CPU) { c.Regs.RCX = 0x10 }), check: reg("EAX", func(c *CPU) uint64 { return c.Regs.RAX }, 27)},
	})
}

// quietEnv records nothing, so that it allocates nothing.
type quietEnv struct{ *fakeEnv }

func (quietEnv) Out(uint16, int, uint32) error { return nil }
func (quietEnv) FlushTLB(TLBFlush, uint64)     {}
func (quietEnv) CPUID(leaf, sub uint32) (a, b, c, d uint32) {
	return 0x28, ^uint32(0), ^uint32(0), ^uint32(0)
}

// TestSystemAllocs checks that system instructions allocate nothing beyond
// Step's one working state.
func TestSystemAllocs(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		code       []byte
		setup      func(*fakeEnv, *CPU)
	}{
		{"cli", "prot32", []byte{0xfa}, nil},
		{"in", "prot32", []byte{0xec}, nil},
		{"out above IOPL", "prot32u", []byte{0xee}, ioBitmap()},
		{"rep outsb", "long64", []byte{0xf3, 0x6e}, set(func(c *CPU) { c.Regs.RCX, c.Regs.RSI = 2, 0x8000 })},
		{"rep insb", "long64", []byte{0xf3, 0x6c}, set(func(c *CPU) { c.Regs.RCX, c.Regs.RDI = 2, 0x8000 })},
		{"cpuid", "long64", []byte{0x0f, 0xa2}, nil},
		{"mov cr3", "long64", []byte{0x0f, 0x22, 0xd8}, set(func(c *CPU) { c.Regs.RAX = pml4Base })},
		{"mov cr4", "long64", []byte{0x0f, 0x22, 0xe0}, set(func(c *CPU) { c.Regs.RAX = cpu.CR4PAE | cpu.CR4PGE | cr4SMEP })},
		{"wrmsr fs", "long64", []byte{0x0f, 0x30}, msrArgs(msrFSBase, 0x1000)},
		{"mov ds", "prot32", []byte{0x8e, 0xd8}, eaxSel(selData32)},
		{"pop ss", "prot32", []byte{0x17}, onStack(4, selData32)},
		{"ljmp", "prot32", []byte{0xea, 0, 0x10, 4, 0, selCode32, 0}, nil},
		{"retf to CPL3", "prot32", []byte{0xcb}, onStack(4, 0x1000, selCode32U, userStack, selData32U)},
		{"popcnt", "prot32", []byte{0xf3, 0x0f, 0xb8, 0xc1}, nil},
		{"lgdt", "long64", []byte{0x0f, 0x01, 0x10}, set(func(c *CPU) { c.Regs.RAX = 0x8000 })},
		{"swapgs", "long64", []byte{0x0f, 0x01, 0xf8}, nil},
	} {
		f, tmpl := newState(t, tc.mode)
		f.put(codeBase, tc.code...)
		if tc.setup != nil {
			tc.setup(f, tmpl)
		}
		env := quietEnv{f}
		var c CPU
		var err error
		var res Result
		n := testing.AllocsPerRun(100, func() {
			c = *tmpl
			res, err = Step(&c, env)
		})
		if err != nil || res.Fault != nil {
			t.Errorf("%s: %v, fault %v", tc.name, err, res.Fault)
		}
		if n > 1 {
			t.Errorf("%s: %v allocations a Step, want 1", tc.name, n)
		}
	}
}
