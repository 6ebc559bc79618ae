package x86emu

import (
	"errors"
	"testing"

	"vmrr/machine/cpu"
)

func at(rip uint64) func(*fakeEnv, *CPU) {
	return func(_ *fakeEnv, c *CPU) { c.Regs.RIP = rip }
}

func code(gpa uint64, b ...byte) func(*fakeEnv, *CPU) {
	return func(f *fakeEnv, _ *CPU) { f.put(gpa, b...) }
}

func TestFetch(t *testing.T) {
	popcnt := []byte{0xf3, 0x0f, 0xb8, 0xc1}
	runCases(t, []stepCase{
		{name: "instruction across two pages", mode: "long64",
			setup: both(at(0x40ffe), code(0x40ffe, popcnt...)),
			inst:  "POPCNT EAX, ECX",
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "RIP", a.Regs.RIP, 0x41002) }},
		{name: "second page unmapped raises #PF on fetch", mode: "long64",
			setup: both(at(0x40ffe), code(0x40ffe, popcnt...), func(f *fakeEnv, _ *CPU) { f.unmap(0x41000) }),
			fault: &Fault{Vector: vecPF, ErrorCode: 0x10, HasErrorCode: true},
			check: func(t *testing.T, f *fakeEnv, _, a *CPU) {
				eq(t, "CR2", a.Sregs.CR2, 0x41000)
				wantStack(t, f, a.Regs.RSP, 8, 0x10, 0x40ffe)
			}},
		{name: "VEX prefix cut by an unmapped page raises #PF", mode: "long64",
			setup: both(at(0x40ffe), code(0x40ffe, 0xc4, 0xe2, 0x79, 0x18, 0x00), func(f *fakeEnv, _ *CPU) { f.unmap(0x41000) }),
			fault: &Fault{Vector: vecPF, ErrorCode: 0x10, HasErrorCode: true}},
		{name: "operand across pages, second unmapped", mode: "long64",
			code:  []byte{0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0xfc, 0x4f, 0, 0},
			setup: func(f *fakeEnv, _ *CPU) { f.unmap(0x5000) },
			fault: &Fault{Vector: vecPF, ErrorCode: 0, HasErrorCode: true},
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "CR2", a.Sregs.CR2, 0x5000) }},
		{name: "instruction ending at an unmapped page", mode: "long64",
			setup: both(at(0x40ffc), code(0x40ffc, popcnt...), func(f *fakeEnv, _ *CPU) { f.unmap(0x41000) }),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "RIP", a.Regs.RIP, 0x41000) }},
		{name: "first page unmapped", mode: "long64",
			setup: func(f *fakeEnv, _ *CPU) { f.unmap(codeBase) },
			fault: &Fault{Vector: vecPF, ErrorCode: 0x10, HasErrorCode: true}},
		{name: "no-execute page", mode: "long64", code: popcnt,
			setup: func(f *fakeEnv, _ *CPU) { f.put64(0x4000+(codeBase>>12)*8, codeBase|ptP|ptRW|ptNX) },
			fault: &Fault{Vector: vecPF, ErrorCode: 0x11, HasErrorCode: true}},
		{name: "supervisor page at CPL3", mode: "long64u", code: popcnt,
			setup: func(f *fakeEnv, _ *CPU) { f.put64(0x4000+(codeBase>>12)*8, codeBase|ptP|ptRW) },
			fault: &Fault{Vector: vecPF, ErrorCode: 0x15, HasErrorCode: true}},
		{name: "non-canonical RIP", mode: "long64",
			setup: at(0x0000_8000_0000_0000), fault: gp(0)},
		{name: "instruction past the CS limit", mode: "prot32", code: popcnt,
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.CS.Limit = codeBase + 2 },
			fault: gp(0)},
		{name: "instruction ending at the CS limit", mode: "prot32", code: popcnt,
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.CS.Limit = codeBase + 3 },
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "EIP", a.Regs.RIP, codeBase+4) }},
		{name: "RIP past the CS limit", mode: "prot16", setup: at(0x10000), fault: gp(0)},
		{name: "IP wraps in 16-bit code", mode: "real", code: nil,
			setup: both(at(0xfffe), code(codeBase+0xfffe, 0x0f, 0x31), values(7)),
			check: func(t *testing.T, _ *fakeEnv, _, a *CPU) { eq(t, "IP", a.Regs.RIP, 0) }},
		{name: "code outside RAM ends the run", mode: "prot32",
			setup: at(0x1000_0000), err: "outside RAM"},
		{name: "unknown instruction", mode: "prot32", code: []byte{0xf3, 0x0f, 0x58, 0xc1},
			err: "cannot emulate ADDSS X0, X1 (bytes f3 0f 58 c1) at RIP 0x40000 in protected32 mode"},
		{name: "undecodable bytes", mode: "long64", code: []byte{0x0f, 0x04},
			err: "cannot emulate (undecodable) (bytes 0f 04 00"},
		{name: "undecodable bytes up to the CS limit raise #GP(0)", mode: "prot32", code: []byte{0x0f, 0x04},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.CS.Limit = codeBase + 1 },
			fault: gp(0)},
		{name: "undecodable bytes before an unmapped page raise #PF", mode: "long64",
			setup: both(at(0x40ffe), code(0x40ffe, 0x0f, 0x04), func(f *fakeEnv, _ *CPU) { f.unmap(0x41000) }),
			fault: &Fault{Vector: vecPF, ErrorCode: 0x10, HasErrorCode: true}},
		{name: "... and are reported once the page is there", mode: "long64",
			setup: both(at(0x40ffe), code(0x40ffe, 0x0f, 0x04)),
			err:   "cannot emulate (undecodable) (bytes 0f 04 00"},
		{name: "truncated group 9 at the CS limit", mode: "prot32", code: []byte{0x0f, 0xc7},
			setup: func(_ *fakeEnv, c *CPU) { c.Sregs.CS.Limit = codeBase + 1 },
			fault: gp(0)},
	})
}

func TestUnsupportedError(t *testing.T) {
	f, c := newState(t, "prot32")
	f.put(codeBase, 0x0f, 0xae, 0x20) // XSAVE [EAX]
	before := *c
	_, err := Step(c, f)
	var u *UnsupportedError
	if !errors.As(err, &u) {
		t.Fatalf("Step error = %v, want *UnsupportedError", err)
	}
	want := "cannot emulate XSAVE [EAX] (bytes 0f ae 20) at RIP 0x40000 in protected32 mode"
	eq(t, "Error()", u.Error(), want)
	eq(t, "RIP", u.RIP, codeBase)
	eq(t, "Mode", u.Mode, "protected32")
	if *c != before {
		t.Error("cpu changed")
	}
}

func TestMode(t *testing.T) {
	f := newMachine()
	vm86 := protCPU(f, 0)
	vm86.Regs.RFLAGS |= cpu.FlagVM
	compat16 := longCPU(f, 0)
	compat16.Sregs.CS = f.seg(selCode16)
	for _, tc := range []struct {
		cpu  *CPU
		want string
	}{
		{realCPU(), "real"},
		{protCPU(f, 0), "protected32"},
		{func() *CPU { _, c := newState(t, "prot16"); return c }(), "protected16"},
		{vm86, "vm86"},
		{longCPU(f, 3), "long64"},
		{func() *CPU { _, c := newState(t, "compat"); return c }(), "compat"},
		{compat16, "compat"},
	} {
		eq(t, "Mode", Mode(tc.cpu), tc.want)
	}
}

func TestFaultString(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Vector: 13, ErrorCode: 0x402, HasErrorCode: true}, "#GP(0x402)"},
		{Fault{Vector: 6}, "#UD"},
		{Fault{Vector: 0x80}, "vector 0x80"},
	} {
		eq(t, "String", tc.f.String(), tc.want)
	}
}
