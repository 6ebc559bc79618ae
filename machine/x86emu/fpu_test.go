package x86emu

import (
	"errors"
	"testing"
)

// TestFloatingPointAbsent: x87, MMX and SSE instructions raise #UD where
// the guest's CPUID does not advertise the unit (the soft CPU's never
// does), and end the run as unsupported where it does (KVM's fallback,
// whose guest has them).
func TestFloatingPointAbsent(t *testing.T) {
	tests := []struct {
		name string
		code []byte
		unit feat
	}{
		{"movaps xmm0, xmm1", []byte{0x0f, 0x28, 0xc1}, featSSE},
		{"paddd mm0, mm1", []byte{0x0f, 0xfe, 0xc1}, featMMX},
		{"fld1", []byte{0xd9, 0xe8}, featFPU},
		{"fld dword [rax]", []byte{0xd9, 0x00}, featFPU},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newState(t, "long64")
			installHandlers(f, c)
			withoutFeature(f, tc.unit)
			f.put(codeBase, tc.code...)
			res, err := Step(c, f)
			if err != nil || res.Fault == nil || res.Fault.Vector != vecUD {
				t.Errorf("without the unit: fault %v, error %v; want #UD", res.Fault, err)
			}
			f, c = newState(t, "long64")
			f.put(codeBase, tc.code...)
			var u *UnsupportedError
			if _, err := Step(c, f); !errors.As(err, &u) {
				t.Errorf("with the unit: %v; want an unsupported instruction", err)
			}
		})
	}
}
