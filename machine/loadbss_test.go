package machine

import (
	"bytes"
	"debug/elf"
	"testing"
)

// TestLoadBSSOnlySegment loads an ELF whose second LOAD segment has
// nothing in the file (FileSiz 0), as ld makes for a .bss-only segment and
// objcopy -O elf32-i386 keeps: it is zero-filled, as QEMU loads it, in
// both ELF classes.
func TestLoadBSSOnlySegment(t *testing.T) {
	for _, class := range []elf.Class{elf.ELFCLASS64, elf.ELFCLASS32} {
		t.Run(class.String(), func(t *testing.T) {
			code := codeExit
			if class == elf.ELFCLASS32 {
				code = append(multibootHeader(3), codeExit...)
			}
			img := elfImage(elfSpec{class: class, entry: 0x100000, segs: []segment{
				{paddr: 0x100000, data: code},
				{paddr: 0x200000, memsz: 0x2000},
			}})
			m := newTestMachine(t, Config{Image: img, MemoryBytes: 16 << 20})
			if got := readPhys(t, m, 0x200000, 0x2000); !bytes.Equal(got, make([]byte, 0x2000)) {
				t.Errorf("bss segment not zero-filled")
			}
		})
	}
}
