package cpu

import (
	"bytes"
	"testing"
)

// TestDecodeNonDetOutcomes covers the outcomes other than Decoded: the soft
// CPU raises a fetch fault for Truncated bytes and refuses Invalid ones
// (nondet's TestMatch covers the decoded instructions).
func TestDecodeNonDetOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		mode int
		want Decoding
		len  int
	}{
		{"empty", nil, 64, Truncated, 0},
		{"prefixes only", []byte{0x66, 0xf3}, 64, Truncated, 0},
		{"0f", []byte{0x0f}, 64, Truncated, 0},
		{"0f 01", []byte{0x0f, 0x01}, 64, Truncated, 0},
		{"0f c7", []byte{0x0f, 0xc7}, 32, Truncated, 0},
		{"15 prefixes", bytes.Repeat([]byte{0x66}, 15), 64, NotNonDet, 0},
		{"nop", []byte{0x90}, 64, NotNonDet, 0},
		{"0f 01 d0 (xgetbv)", []byte{0x0f, 0x01, 0xd0}, 64, NotNonDet, 0},
		{"cmpxchg8b", []byte{0x0f, 0xc7, 0x0e}, 64, NotNonDet, 0},
		{"0f c7 /5 register form", []byte{0x0f, 0xc7, 0xe8}, 64, NotNonDet, 0},
		{"f2 0f c7 /6", []byte{0xf2, 0x0f, 0xc7, 0xf0}, 64, Invalid, 4},
		{"f3 0f c7 /6", []byte{0x66, 0xf3, 0x0f, 0xc7, 0xf0}, 32, Invalid, 5},
		{"16 bytes", append(bytes.Repeat([]byte{0x66}, 13), 0x0f, 0xc7, 0xf0), 64, Invalid, 15},
		{"rdrand", []byte{0x0f, 0xc7, 0xf0, 0x90}, 32, Decoded, 3},
	} {
		in, got := DecodeNonDet(tc.code, tc.mode)
		if got != tc.want || in.Len != tc.len {
			t.Errorf("%s: DecodeNonDet(% x, %d) = %+v, %d; want outcome %d, length %d", tc.name, tc.code, tc.mode, in, got, tc.want, tc.len)
		}
	}
}
