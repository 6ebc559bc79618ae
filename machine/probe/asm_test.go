//go:build linux

package probe

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestAsm decodes what the encoder emits and compares it with the
// instruction meant.
func TestAsm(t *testing.T) {
	tests := []struct {
		bits int
		emit func(a *asm)
		want string
	}{
		{16, func(a *asm) { a.movSP(0x7c00) }, "mov sp, 0x7c00"},
		{32, func(a *asm) { a.movSP(0x80000) }, "mov esp, 0x80000"},
		{64, func(a *asm) { a.movSP(0x80000) }, "mov rsp, 0x80000"},
		{16, func(a *asm) { a.movR32(regECX, 0x12345) }, "mov ecx, 0x12345"},
		{64, func(a *asm) { a.movR32(regESI, 7) }, "mov esi, 0x7"},
		{16, func(a *asm) { a.dec(regECX) }, "dec ecx"},
		{64, func(a *asm) { a.dec(regESI) }, "dec esi"},
		{32, func(a *asm) { a.out(0xea) }, "out 0xea, al"},
		{64, func(a *asm) { a.pushImm8(0x1b) }, "push 0x1b"},
		{64, func(a *asm) { a.pushImm32(0x3002) }, "push 0x3002"},
		{16, func(a *asm) { a.pushImm32(0x7c00) }, "push 0x7c00"},
		{64, func(a *asm) { a.pop0() }, "pop rax"},
		{32, func(a *asm) { a.pop0() }, "pop eax"},
		{64, func(a *asm) { a.store64(0x200000) }, "mov qword ptr [0x200000], rax"},
		{64, func(a *asm) { a.load64(0x200000) }, "mov rbx, qword ptr [0x200000]"},
		{64, func(a *asm) { a.movabs(0x1122334455667788) }, "mov rax, 0x1122334455667788"},
		{64, func(a *asm) { a.hlt() }, "hlt"},
	}
	for _, tt := range tests {
		a := newAsm(tt.bits, 0x1000)
		tt.emit(a)
		in, err := x86asm.Decode(a.b, tt.bits)
		if err != nil || in.Op == 0 {
			t.Errorf("%d-bit %q: % x does not decode: %v", tt.bits, tt.want, a.b, err)
			continue
		}
		if got := x86asm.IntelSyntax(in, 0, nil); got != tt.want || in.Len != len(a.b) {
			t.Errorf("%d-bit: % x decodes as %q (%d of %d bytes), want %q", tt.bits, a.b, got, in.Len, len(a.b), tt.want)
		}
	}
}

// TestAsmJumps checks that jumps land where they were aimed, in every code
// size.
func TestAsmJumps(t *testing.T) {
	for _, bits := range []int{16, 32, 64} {
		a := newAsm(bits, 0x7c00)
		a.loop(3, func() { a.nop() })
		top := uint64(0x7c00 + 5)
		if bits == 16 {
			top++ // operand-size prefix of mov ecx
		}
		jnzAt := a.pc() - 2
		in, err := x86asm.Decode(a.b[jnzAt-0x7c00:], bits)
		if err != nil || in.Op != x86asm.JNE {
			t.Fatalf("%d-bit: no JNE at the loop's end: %v %v", bits, in, err)
		}
		if got := jnzAt + 2 + uint64(int64(in.Args[0].(x86asm.Rel))); got != top {
			t.Errorf("%d-bit: loop jumps to %#x, want %#x", bits, got, top)
		}
		from := a.pc()
		a.jmp(0x9000)
		in, err = x86asm.Decode(a.b[from-0x7c00:], bits)
		if err != nil || in.Op != x86asm.JMP {
			t.Fatalf("%d-bit: no JMP: %v %v", bits, in, err)
		}
		if got := uint64(int64(a.pc()) + int64(in.Args[0].(x86asm.Rel))); got != 0x9000 {
			t.Errorf("%d-bit: jmp lands at %#x, want 0x9000", bits, got)
		}
	}
}

func TestAsmJnzOutOfRange(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a jnz 300 bytes back did not panic")
		}
	}()
	a := newAsm(64, 0x1000)
	a.pad(0x1000 + 300)
	a.jnz(0x1000)
}
