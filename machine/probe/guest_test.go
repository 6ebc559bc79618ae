//go:build linux

package probe

import (
	"bytes"
	"debug/elf"
	"slices"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine"
)

// TestImages checks that each generated image is what vmrr's loaders take
// it for, with the code at the entry point.
func TestImages(t *testing.T) {
	code := []byte{0x90, 0xe6, 0xf4}
	for _, mode := range Modes {
		img, boot := image(mode, code)
		got, err := machine.DetectBoot(img)
		if err != nil || got != boot {
			t.Errorf("%s: image detected as %q (%v), want %q", mode, got, err, boot)
		}
		if mode == ModeReal16 {
			if !bytes.Equal(img, code) {
				t.Errorf("real16: flat image % x, want the code", img)
			}
			continue
		}
		if !bytes.Equal(img[codeBase-imageBase:], code) {
			t.Errorf("%s: code not at %#x", mode, codeBase)
		}
	}
	f, err := elf.NewFile(bytes.NewReader(elf64Image(code)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Entry != codeBase || len(f.Progs) != 1 {
		t.Fatalf("ELF: class %v machine %v entry %#x, %d program headers", f.Class, f.Machine, f.Entry, len(f.Progs))
	}
	if p := f.Progs[0]; p.Type != elf.PT_LOAD || p.Paddr != imageBase || p.Filesz != codeBase-imageBase+uint64(len(code)) {
		t.Errorf("ELF segment %+v", p.ProgHeader)
	}
}

// TestTail checks the code every interrupt stub ends in.
func TestTail(t *testing.T) {
	for _, bits := range []int{16, 32, 64} {
		b := tail(bits, 0x2000)
		var ops []x86asm.Op
		for off := 0; off < len(b); {
			in, err := x86asm.Decode(b[off:], bits)
			if err != nil {
				t.Fatalf("%d-bit tail % x: %v", bits, b, err)
			}
			ops = append(ops, in.Op)
			if in.Op == x86asm.JMP && int64(off+in.Len)+int64(in.Args[0].(x86asm.Rel)) != int64(off-1) {
				t.Errorf("%d-bit tail: the jmp does not go back to the hlt", bits)
			}
			off += in.Len
		}
		want := []x86asm.Op{x86asm.POP, x86asm.OUT, x86asm.HLT, x86asm.JMP}
		if !slices.Equal(ops, want) {
			t.Errorf("%d-bit tail: %v, want %v", bits, ops, want)
		}
	}
}
