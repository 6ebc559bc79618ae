package machine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
	"testing"

	"vmrr/machine/cpu"
)

// withMultibootAt is a flat image of n bytes with a valid Multiboot header
// at off.
func withMultibootAt(n, off int) []byte {
	img := bytes.Repeat([]byte{0x90}, n)
	copy(img[off:], multibootHeader(0))
	return img
}

// align4 pads a copy of b to a multiple of 4 bytes, where a Multiboot
// header may follow.
func align4(b []byte) []byte {
	return append(append([]byte{}, b...), make([]byte, (4-len(b)%4)%4)...)
}

func TestDetectBoot(t *testing.T) {
	badSum := multibootHeader(0)
	badSum[8]++
	elf64 := elf64Code(0x100000, codeExit)
	elf32 := elfImage(elfSpec{class: elf.ELFCLASS32, entry: 0x100000, segs: []segment{{paddr: 0x100000, data: codeExit}}})
	tests := []struct {
		name    string
		image   []byte
		want    BootProtocol
		wantErr string // substring of a bad-image error
	}{
		{"empty", nil, "", "empty image"},
		{"one byte is flat", []byte{0xf4}, BootFlat, ""},
		{"boot sector is flat", append(bytes.Repeat([]byte{0x90}, 510), 0x55, 0xaa), BootFlat, ""},
		{"three bytes of ELF magic is flat", []byte("\x7fEL"), BootFlat, ""},
		{"truncated ELF header", append([]byte(elf.ELFMAG), make([]byte, 10)...), "", "truncated ELF header"},
		{"ELF64", elf64, BootELF64, ""},
		{"32-bit ELF without Multiboot", elf32, "", "32-bit ELF without a Multiboot header"},
		{"32-bit ELF with Multiboot", multibootELF(0x100000, codeExit), BootMultiboot, ""},
		{"Multiboot header wins over ELF64", append(align4(elf64), multibootHeader(0)...), BootMultiboot, ""},
		{"Multiboot a.out kludge", multibootKludge(codeExit), BootMultiboot, ""},
		{"Multiboot header alone", multibootHeader(0), BootMultiboot, ""},
		{"Multiboot header at the last offset inside 8 KiB", withMultibootAt(9000, 8192-12), BootMultiboot, ""},
		{"Multiboot header crossing 8 KiB is ignored", withMultibootAt(9000, 8192-8), BootFlat, ""},
		{"Multiboot header past 8 KiB is ignored", withMultibootAt(9000, 8192), BootFlat, ""},
		{"unaligned Multiboot header is ignored", withMultibootAt(64, 2), BootFlat, ""},
		{"Multiboot header with a bad checksum is ignored", append(badSum, 0xf4), BootFlat, ""},
		{"Multiboot magic in a short image", binary.LittleEndian.AppendUint32(nil, multibootMagic), BootFlat, ""},
		{"Multiboot magic and flags, checksum cut off", multibootHeader(0)[:11], BootFlat, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectBoot(tt.image)
			if tt.wantErr != "" {
				wantBadImage(t, err)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DetectBoot: %v", err)
			}
			if got != tt.want {
				t.Errorf("DetectBoot = %q, want %q", got, tt.want)
			}
		})
	}
}

// regsOf reads the vCPU's registers and special registers.
func regsOf(t *testing.T, m *Machine) (cpu.Regs, cpu.Sregs) {
	t.Helper()
	r, err := m.Regs()
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	return r, s
}

func readPhys(t *testing.T, m *Machine, gpa uint64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := m.Memory().ReadPhys(gpa, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadELF64(t *testing.T) {
	const mem = 16 << 20
	data := []byte("initialised data")
	img := elfImage(elfSpec{class: elf.ELFCLASS64, entry: 0x100000, segs: []segment{
		{paddr: 0x100000, data: codeExit},
		{typ: elf.PT_NOTE, paddr: 0x300000, data: []byte("not loaded")},
		{paddr: 0x200000, vaddr: 0xffffffff80200000, data: data, memsz: 0x3000},
		{paddr: 0x8000, data: []byte{0xaa}},              // lowest address allowed
		{paddr: mem - 4, data: []byte{1, 2, 3, 4}},       // ends exactly at the end of RAM
		{paddr: RingBase + RingSize, data: []byte{0xbb}}, // right after the ring
		{paddr: RingBase - 1, data: []byte{0xcc}},        // right before the ring
		{paddr: 0x400000, data: nil, memsz: 0},           // empty: skipped
	}})
	m := newTestMachine(t, Config{Image: img, MemoryBytes: mem})
	if m.Boot() != BootELF64 {
		t.Errorf("Boot() = %q, want %q", m.Boot(), BootELF64)
	}
	checks := []struct {
		gpa  uint64
		want []byte
	}{
		{0x100000, codeExit},
		{0x200000, data},
		{0x200000 + uint64(len(data)), make([]byte, 0x3000-len(data))},
		{0x300000, make([]byte, 10)},
		{0x8000, []byte{0xaa}},
		{mem - 4, []byte{1, 2, 3, 4}},
		{RingBase + RingSize, []byte{0xbb}},
		{RingBase - 1, []byte{0xcc}},
	}
	for _, c := range checks {
		if got := readPhys(t, m, c.gpa, len(c.want)); !bytes.Equal(got, c.want) {
			t.Errorf("memory at %#x = % x, want % x", c.gpa, got, c.want)
		}
	}
	if got := m.Memory().Uint32(RingBase + RingOffMagic); got != RingMagic {
		t.Errorf("ring magic %#x, want %#x", got, RingMagic)
	}
	r, s := regsOf(t, m)
	if r.RIP != 0x100000 || r.RSP != mem-0x10 || r.RFLAGS != 2 {
		t.Errorf("RIP %#x RSP %#x RFLAGS %#x, want 0x100000 %#x 0x2", r.RIP, r.RSP, r.RFLAGS, mem-0x10)
	}
	if cpu.Mode(&s) != 64 || s.EFER&cpu.EFERLMA == 0 || s.CR0&cpu.CR0PG == 0 || s.CR4&cpu.CR4PAE == 0 || s.CS.DPL != 0 {
		t.Errorf("not 64-bit CPL0 long mode: CR0 %#x CR4 %#x EFER %#x CS %+v", s.CR0, s.CR4, s.EFER, s.CS)
	}
	for _, va := range []uint64{0, 0x7c00, 0x100000, 0x12345678, 0xfffff000, 0xffffffff} {
		pa, err := m.Translate(&s, va)
		if err != nil || pa != va {
			t.Errorf("Translate(%#x) = %#x, %v; want the identity map", va, pa, err)
		}
	}
	if _, err := m.Translate(&s, 1<<32); err == nil {
		t.Error("Translate(4 GiB) succeeded, want a fault: only the first 4 GiB are mapped")
	}
}

// elf64Seg is an ELF64 image with one segment at paddr of memsz bytes.
func elf64Seg(paddr, memsz uint64) []byte {
	return elfImage(elfSpec{class: elf.ELFCLASS64, entry: paddr, segs: []segment{{paddr: paddr, data: codeExit, memsz: memsz}}})
}

// badLoads are images that detection accepts but loading must refuse; New
// must return an error wrapping ErrBadImage that says why.
func badLoads() []struct {
	name  string
	boot  BootProtocol
	image []byte
	want  string
} {
	const mem = 16 << 20
	wrongMachine := elfImage(elfSpec{class: elf.ELFCLASS64, machine: elf.EM_AARCH64, entry: 0x100000, segs: []segment{{paddr: 0x100000, data: codeExit}}})
	noLoad := elfImage(elfSpec{class: elf.ELFCLASS64, entry: 0x100000, segs: []segment{{typ: elf.PT_NOTE, paddr: 0x100000, data: codeExit}}})
	fileBigger := elfImage(elfSpec{class: elf.ELFCLASS64, entry: 0x100000, segs: []segment{{paddr: 0x100000, data: codeExit, memsz: 2}}})
	cutOff := elf64Code(0x100000, codeExit)
	cutOff = cutOff[:len(cutOff)-2] // segment data runs past the end of the file
	badPhdrs := elf64Code(0x100000, codeExit)
	binary.LittleEndian.PutUint64(badPhdrs[32:], 1<<40) // e_phoff far past the end
	elf32 := elfImage(elfSpec{class: elf.ELFCLASS32, entry: 0x100000, segs: []segment{{paddr: 0x100000, data: codeExit}}})
	return []struct {
		name  string
		boot  BootProtocol
		image []byte
		want  string
	}{
		{"ELF64 segment in the boot area", "", elf64Seg(0x7000, 0x10), "reserved memory"},
		{"ELF64 segment from 0", "", elf64Seg(0, 0x200), "reserved memory"},
		{"ELF64 segment ending in the boot area", "", elf64Seg(0x7ff0, 0x20), "reserved memory"},
		{"ELF64 segment running into the ring", "", elf64Seg(RingBase-0x1000, 0x1001), "reserved memory"},
		{"ELF64 segment inside the ring", "", elf64Seg(RingBase+0x2000, 0x100), "reserved memory"},
		{"ELF64 segment running out of the ring", "", elf64Seg(RingBase+RingSize-1, 0x10), "reserved memory"},
		{"ELF64 segment past the end of RAM", "", elf64Seg(mem-0x10, 0x20), "outside 16 MiB of RAM"},
		{"ELF64 segment far above RAM", "", elf64Seg(1<<32, 0x10), "outside 16 MiB of RAM"},
		{"ELF64 for arm64", "", wrongMachine, "not x86"},
		{"ELF64 without a loadable segment", "", noLoad, "no loadable segment"},
		{"ELF64 file size above memory size", "", fileBigger, "file size"},
		{"ELF64 segment cut off", "", cutOff, "ELF segment 0"},
		{"ELF64 program headers past the end", "", badPhdrs, "ELF"},
		{"32-bit ELF forced to the ELF64 loader", BootELF64, elf32, "ELF class"},
		{"flat image reaching the ring", "", make([]byte, RingBase-flatLoadAddr+1), "does not fit"},
		{"Multiboot kludge below 1 MiB", "", multibootHeader(1<<16, 0x8000, 0x8000, 0, 0, 0x8020), "outside usable RAM"},
		{"Multiboot kludge past RAM", "", multibootHeader(1<<16, 0x100000, 0x100000, 0, 32<<20, 0x100000), "outside usable RAM"},
		{"Multiboot kludge header truncated", "", multibootHeader(1<<16, 0x100000), "truncated"},
		{"Multiboot kludge load after header", "", multibootHeader(1<<16, 0x100000, 0x100010, 0, 0, 0x100020), "load address after header"},
		{"Multiboot kludge load end below load", "", multibootHeader(1<<16, 0x100000, 0x100000, 0xf0000, 0, 0x100020), "load_end_addr"},
		{"Multiboot header in a non-ELF without kludge", "", append(multibootHeader(0), codeExit...), "ELF"},
		{"Multiboot header in an ELF64 without kludge", "", append(align4(elf64Code(0x100000, codeExit)), multibootHeader(0)...), "ELF class"},
		{"Multiboot ELF segment in the boot area", "", multibootELF(0x7000, codeExit), "ELF segment 0 at 0x7000"},
	}
}

// loaderMachine is a Machine with guest memory and a vCPU but no image,
// built without New so that loader errors can be tested apart from New's
// own error handling (see TestNewLoadErrors).
func loaderMachine(t *testing.T, memBytes uint64) *Machine {
	t.Helper()
	m := &Machine{hooks: &nopHooks{}, unknown: map[uint16]bool{}}
	t.Cleanup(func() { m.Close() })
	var err error
	if m.mem, err = newMemory(memBytes); err != nil {
		t.Fatal(err)
	}
	m.soft, m.cpuid = newSoftBackend(m, nil, false)
	m.vcpu = m.soft
	return m
}

// loadChecked detects (unless boot is given) and loads image into m,
// turning a panic into a test failure and a nil error.
func loadChecked(t *testing.T, m *Machine, image []byte, boot BootProtocol) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			err = nil
			t.Errorf("loading panicked on bad input: %v", r)
		}
	}()
	if boot == "" {
		if boot, err = DetectBoot(image); err != nil {
			return err
		}
	}
	return m.load(image, boot)
}

func TestLoadRefusesBadImages(t *testing.T) {
	for _, tt := range badLoads() {
		t.Run(tt.name, func(t *testing.T) {
			m := loaderMachine(t, 16<<20)
			err := loadChecked(t, m, tt.image, tt.boot)
			wantBadImage(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestLoadMultiboot(t *testing.T) {
	const mem = 32 << 20
	tests := []struct {
		name  string
		image []byte
		entry uint64
		code  uint64 // where codeExit must be
	}{
		{"ELF", multibootELF(0x100000, codeExit), 0x10000c, 0x10000c},
		{"a.out kludge", multibootKludge(codeExit), 0x100020, 0x100020},
		{"kludge with load_end and bss_end", append(multibootHeader(1<<16, 0x200000, 0x200000, 0x200020+uint32(len(codeExit)), 0x300000, 0x200020),
			append(codeExit, 0xde, 0xad)...), 0x200020, 0x200020},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, Config{Image: tt.image, MemoryBytes: mem})
			if m.Boot() != BootMultiboot {
				t.Fatalf("Boot() = %q", m.Boot())
			}
			if got := readPhys(t, m, tt.code, len(codeExit)); !bytes.Equal(got, codeExit) {
				t.Errorf("code at %#x = % x, want % x", tt.code, got, codeExit)
			}
			r, s := regsOf(t, m)
			if r.RIP != tt.entry || r.RAX != multibootBootloaderMagic || r.RBX != bootMBInfo {
				t.Errorf("RIP %#x EAX %#x EBX %#x, want %#x %#x %#x", r.RIP, r.RAX, r.RBX, tt.entry, multibootBootloaderMagic, bootMBInfo)
			}
			if cpu.Mode(&s) != 32 || s.CR0&cpu.CR0PG != 0 || s.EFER != 0 || s.CS.Base != 0 || s.CS.Limit != 0xffffffff || s.DS.Base != 0 {
				t.Errorf("not flat 32-bit protected mode without paging: CR0 %#x EFER %#x CS %+v DS %+v", s.CR0, s.EFER, s.CS, s.DS)
			}
			checkMultibootInfo(t, m, mem)
		})
	}
}

func TestLoadMultibootKludgeLoadEnd(t *testing.T) {
	img := append(multibootHeader(1<<16, 0x200000, 0x200000, 0x200020+uint32(len(codeExit)), 0, 0x200020), codeExit...)
	img = append(img, 0xde, 0xad) // past load_end_addr: not loaded
	m := newTestMachine(t, Config{Image: img, MemoryBytes: 32 << 20})
	if got := readPhys(t, m, 0x200020+uint64(len(codeExit)), 2); !bytes.Equal(got, []byte{0, 0}) {
		t.Errorf("bytes past load_end_addr were loaded: % x", got)
	}
}

// checkMultibootInfo checks the boot information structure and memory map
// against the Multiboot 0.6.96 layout.
func checkMultibootInfo(t *testing.T, m *Machine, mem uint64) {
	t.Helper()
	u32 := func(gpa uint64) uint32 { return m.Memory().Uint32(gpa) }
	if got := u32(bootMBInfo); got != 1|1<<6 {
		t.Errorf("info flags %#x, want mem (bit 0) and mmap (bit 6)", got)
	}
	if got := u32(bootMBInfo + 4); got != RingBase/1024 {
		t.Errorf("mem_lower %d KiB, want %d (up to the ring)", got, RingBase/1024)
	}
	if got := u32(bootMBInfo + 8); uint64(got) != (mem-0x100000)/1024 {
		t.Errorf("mem_upper %d KiB, want %d", got, (mem-0x100000)/1024)
	}
	mmapLen, mmapAddr := u32(bootMBInfo+44), u32(bootMBInfo+48)
	if mmapAddr != bootMBMmap || mmapLen != 48 {
		t.Fatalf("mmap_addr %#x mmap_length %d, want %#x 48", mmapAddr, mmapLen, bootMBMmap)
	}
	type entry struct {
		size      uint32
		base, len uint64
		typ       uint32
	}
	want := []entry{
		{20, 0x9000, RingBase - 0x9000, 1},
		{20, 0x100000, mem - 0x100000, 1},
	}
	// Walk it as a guest would: each entry's size field excludes itself.
	var got []entry
	for off := uint64(mmapAddr); off < uint64(mmapAddr)+uint64(mmapLen); {
		e := entry{size: u32(off), base: m.Memory().Uint64(off + 4), len: m.Memory().Uint64(off + 12), typ: u32(off + 20)}
		got = append(got, e)
		off += uint64(e.size) + 4
	}
	if len(got) != len(want) {
		t.Fatalf("memory map %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("memory map entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// No usable region may cover vmrr's boot structures or the ring.
	for _, e := range got {
		for _, reserved := range [][2]uint64{{0, 0x9000}, {RingBase, RingBase + RingSize}} {
			if e.base < reserved[1] && e.base+e.len > reserved[0] {
				t.Errorf("usable region %#x+%#x covers reserved %#x-%#x", e.base, e.len, reserved[0], reserved[1])
			}
		}
	}
}

func TestLoadFlat(t *testing.T) {
	img := append(append([]byte{}, codeExit...), bytes.Repeat([]byte{0x90}, 505)...)
	img = append(img, 0x55, 0xaa)
	m := newTestMachine(t, Config{Image: img, MemoryBytes: 4 << 20})
	if m.Boot() != BootFlat {
		t.Fatalf("Boot() = %q", m.Boot())
	}
	if got := readPhys(t, m, flatLoadAddr, len(img)); !bytes.Equal(got, img) {
		t.Error("image not at 0x7c00")
	}
	r, s := regsOf(t, m)
	if r.RIP != flatLoadAddr || cpu.Mode(&s) != 16 || s.CS.Base != 0 || s.CS.Selector != 0 || s.SS.Base != 0 {
		t.Errorf("RIP %#x mode %d CS %+v SS %+v, want real mode at 0000:7c00", r.RIP, cpu.Mode(&s), s.CS, s.SS)
	}
	// The largest image that fits below the ring loads.
	big := make([]byte, RingBase-flatLoadAddr)
	newTestMachine(t, Config{Image: big, MemoryBytes: 4 << 20})
}

// TestRunEachBootProtocol runs the same instructions entered by each
// loader: the guest's debug-exit value must come back as the result.
func TestRunEachBootProtocol(t *testing.T) {
	tests := []struct {
		name  string
		image []byte
		boot  BootProtocol
	}{
		{"flat real mode", codeExit, BootFlat},
		{"ELF64 long mode", elf64Code(0x100000, codeExit), BootELF64},
		{"Multiboot ELF", multibootELF(0x100000, codeExit), BootMultiboot},
		{"Multiboot kludge", multibootKludge(codeExit), BootMultiboot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachAccel(t, func(t *testing.T, accel Accel) {
				m := newTestMachine(t, Config{Image: tt.image, Boot: tt.boot, MemoryBytes: 16 << 20, Accel: accel})
				res, err := m.Run()
				if err != nil {
					t.Fatal(err)
				}
				if res.Reason != ReasonExited || res.Value != 5 || res.Status != 11 {
					t.Fatalf("result %+v, want exited with value 5, status 11", res)
				}
				if res.Pos.Exit != 1 {
					t.Errorf("exit count %d, want 1 (the debug-exit write)", res.Pos.Exit)
				}
			})
		})
	}
}

// TestLoadRefusesOutOfRange checks images whose addresses or sizes wrap
// around, a forced protocol the image does not fit, and Multiboot segments
// under the boot information vmrr writes at 0x8000: each is refused as a
// bad image, never loaded in part or a panic.
func TestLoadRefusesOutOfRange(t *testing.T) {
	tests := []struct {
		name  string
		boot  BootProtocol
		image []byte
	}{
		{"ELF64 segment address wrapping around", "", elf64Seg(0xfffffffffffff000, 0x2000)},
		{"ELF64 memory size wrapping around", "", elf64Seg(0x100000, 0xfffffffffff00000)},
		{"forced Multiboot on a tiny image", BootMultiboot, []byte{1, 2, 3}},
		{"forced flat boot of an empty image", BootFlat, nil},
		{"Multiboot ELF segment under the boot information", "", multibootELF(0x8000, codeExit)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loaderMachine(t, 16<<20)
			wantBadImage(t, loadChecked(t, m, tt.image, tt.boot))
		})
	}
}
