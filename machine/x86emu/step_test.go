package x86emu

import (
	"errors"
	"strings"
	"testing"

	"vmrr/machine/cpu"
)

// stepCase is one instruction run from a known machine state.
type stepCase struct {
	name  string
	mode  string // real, prot16, prot32, prot32u, long64, long64u, compat, compatu
	code  []byte // placed at codeBase, where every mode starts executing
	setup func(f *fakeEnv, c *CPU)
	// inst is the expected disassembly, fault the expected delivered
	// exception, err a substring of the expected error ("" for none).
	inst  string
	fault *Fault
	err   string
	check func(t *testing.T, f *fakeEnv, before, after *CPU)
}

func newState(t testing.TB, mode string) (*fakeEnv, *CPU) {
	f := newMachine()
	var c *CPU
	switch mode {
	case "real":
		c = realCPU()
	case "prot16":
		c = protCPU(f, 0)
		c.Sregs.CS = f.seg(selCode16)
		c.Sregs.SS = f.seg(selData16)
		c.Regs.RIP = 0
		c.Regs.RSP = 0x7000
	case "prot32":
		c = protCPU(f, 0)
	case "prot32u":
		c = protCPU(f, 3)
	case "long64":
		c = longCPU(f, 0)
	case "long64u":
		c = longCPU(f, 3)
	case "compat", "compatu":
		cpl := 0
		code, data := uint16(selCode32), uint16(selData32)
		if mode == "compatu" {
			cpl, code, data = 3, selCode32U, selData32U
		}
		c = longCPU(f, cpl)
		c.Sregs.CS = f.seg(code)
		c.Sregs.SS = f.seg(data)
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	return f, c
}

// installHandlers points the exception vectors 0-31 at handler+vector*16
// through CPL0 interrupt gates, in the IDT format of the mode.
func installHandlers(f *fakeEnv, c *CPU) {
	for v := range 32 {
		off := uint64(handler + v*16)
		switch {
		case c.Sregs.CR0&cpu.CR0PE == 0:
			f.put16(uint64(v)*4, uint16(off&0xf))
			f.put16(uint64(v)*4+2, uint16(off>>4))
		case c.Sregs.EFER&cpu.EFERLMA != 0:
			f.gate64(v, 0xe, selCode64, off, 0, 0, true)
		default:
			f.gate32(v, 0xe, selCode32, uint32(off), 0, true)
		}
	}
}

func runCases(t *testing.T, cases []stepCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.mode+"/"+tc.name, func(t *testing.T) {
			f, c := newState(t, tc.mode)
			installHandlers(f, c)
			f.put(codeBase, tc.code...)
			if tc.setup != nil {
				tc.setup(f, c)
			}
			before := *c
			res, err := Step(c, f)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Step: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Step error = %v, want one containing %q", err, tc.err)
			}
			if err != nil && !errors.Is(err, ErrTripleFault) && *c != before {
				t.Errorf("cpu changed by a failed Step:\nbefore %+v\nafter  %+v", before, *c)
			}
			if tc.inst != "" && res.Inst != tc.inst {
				t.Errorf("Inst = %q, want %q", res.Inst, tc.inst)
			}
			switch {
			case tc.fault == nil && res.Fault != nil:
				t.Errorf("unexpected fault %v", res.Fault)
			case tc.fault != nil && (res.Fault == nil || *res.Fault != *tc.fault):
				t.Errorf("fault = %v, want %v", res.Fault, tc.fault)
			}
			if err == nil && c.Regs.RFLAGS&flagFixed == 0 {
				t.Errorf("RFLAGS bit 1 clear: %#x", c.Regs.RFLAGS)
			}
			if tc.check != nil {
				tc.check(t, f, &before, c)
			}
		})
	}
}

func gp(code uint32) *Fault { return &Fault{Vector: vecGP, ErrorCode: code, HasErrorCode: true} }
func np(code uint32) *Fault { return &Fault{Vector: vecNP, ErrorCode: code, HasErrorCode: true} }

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// wantStack checks the values at RSP upwards, each size bytes.
func wantStack(t *testing.T, f *fakeEnv, sp uint64, size int, want ...uint64) {
	t.Helper()
	for i, w := range want {
		a := sp + uint64(i*size)
		var got uint64
		switch size {
		case 2:
			got = uint64(f.get16(a))
		case 4:
			got = uint64(f.get32(a))
		default:
			got = f.get64(a)
		}
		if got != w {
			t.Errorf("stack[%#x] = %#x, want %#x", a, got, w)
		}
	}
}

// atHandler checks that exception vec's handler (installHandlers) runs.
func atHandler(t *testing.T, c *CPU, vec int) {
	t.Helper()
	eq(t, "CS.base+RIP", c.Sregs.CS.Base+c.Regs.RIP, uint64(handler+vec*16))
}
