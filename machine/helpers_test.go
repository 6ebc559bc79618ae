package machine

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"vmrr/machine/cpu"
)

// nopHooks is an outside world where nothing happens: live device values,
// zero for non-deterministic instructions, no events. BeforeRun stops the
// run once the exit count reaches stopAt (0 = never), which lets tests and
// benchmarks run a looping guest for an exact number of exits.
type nopHooks struct {
	stopAt uint64
}

func (h *nopHooks) BeforeRun(m *Machine) error {
	if h.stopAt != 0 && m.Exits() >= h.stopAt {
		return ErrStop
	}
	return nil
}

// Idle stops: no event will ever come to wake the guest.
func (h *nopHooks) Idle(*Machine) error { return ErrStop }

func (h *nopHooks) Input(_ *Machine, _ Input, live func() uint64) (uint64, error) {
	return live(), nil
}

func (h *nopHooks) NonDet(*Machine, cpu.NonDet) (uint64, error) { return 0, nil }

func (h *nopHooks) Port(*Machine, uint16, bool, []byte) (bool, error) { return false, nil }

func (h *nopHooks) Debug(*Machine, cpu.DebugExit) error { return ErrStop }

func (h *nopHooks) Interrupted(*Machine) error { return nil }

func (h *nopHooks) Now() time.Duration { return 0 }

// needKVM skips tb when this host cannot run a VM.
func needKVM(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		tb.Skipf("needs /dev/kvm: %v", err)
	}
	f.Close()
}

// testAccels are the CPUs tests run guests on: the soft CPU everywhere,
// and KVM where this host has it.
func testAccels() []Accel {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return []Accel{AccelSoft}
	}
	f.Close()
	return []Accel{AccelSoft, AccelKVM}
}

// forEachAccel runs fn as a subtest per CPU in testAccels.
func forEachAccel(t *testing.T, fn func(t *testing.T, accel Accel)) {
	for _, a := range testAccels() {
		t.Run(string(a), func(t *testing.T) { fn(t, a) })
	}
}

// newTestMachine builds a machine with no-op hooks (on the soft CPU unless
// cfg says otherwise) and closes it when the test ends.
func newTestMachine(tb testing.TB, cfg Config) *Machine {
	tb.Helper()
	if cfg.Accel == "" {
		cfg.Accel = AccelSoft
	}
	if cfg.Accel == AccelKVM {
		needKVM(tb)
	}
	if cfg.Hooks == nil {
		cfg.Hooks = &nopHooks{}
	}
	m, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// newChecked is New for bad-input tests: a panic in New is reported as a
// test failure instead of killing the test binary.
func newChecked(t *testing.T, cfg Config) (m *Machine, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, nil
			t.Errorf("New panicked on bad input: %v", r)
		}
	}()
	if cfg.Hooks == nil {
		cfg.Hooks = &nopHooks{}
	}
	if cfg.Accel == "" {
		cfg.Accel = AccelSoft
	}
	m, err = New(cfg)
	if m != nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

// segment is one PT_LOAD program header for elfImage.
type segment struct {
	paddr  uint64
	data   []byte // file contents
	memsz  uint64 // 0 means len(data)
	vaddr  uint64 // 0 means paddr
	typ    elf.ProgType
	filesz uint64 // 0 means len(data); lets a test lie about it
}

// elfSpec describes a minimal ELF executable: a header, program headers,
// and each segment's bytes after them.
type elfSpec struct {
	class   elf.Class   // ELFCLASS64 or ELFCLASS32
	machine elf.Machine // 0 means EM_X86_64 (64-bit) or EM_386 (32-bit)
	entry   uint64
	segs    []segment
}

// elfImage emits a valid little-endian ELF executable for spec. Segment
// contents follow the program headers back to back: the loaders copy by
// physical address, so file offsets need no page alignment.
func elfImage(spec elfSpec) []byte {
	is64 := spec.class != elf.ELFCLASS32
	ehsize, phentsize := 52, 32
	if is64 {
		ehsize, phentsize = 64, 56
	}
	mach := spec.machine
	if mach == 0 {
		mach = elf.EM_386
		if is64 {
			mach = elf.EM_X86_64
		}
	}
	off := uint64(ehsize + phentsize*len(spec.segs))
	img := make([]byte, off)
	le := binary.LittleEndian
	copy(img, elf.ELFMAG)
	img[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	if is64 {
		img[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	}
	img[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	img[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(img[16:], uint16(elf.ET_EXEC))
	le.PutUint16(img[18:], uint16(mach))
	le.PutUint32(img[20:], uint32(elf.EV_CURRENT))
	if is64 {
		le.PutUint64(img[24:], spec.entry)
		le.PutUint64(img[32:], uint64(ehsize)) // e_phoff
		le.PutUint16(img[52:], uint16(ehsize))
		le.PutUint16(img[54:], uint16(phentsize))
		le.PutUint16(img[56:], uint16(len(spec.segs)))
		le.PutUint16(img[58:], 64) // e_shentsize, no sections
	} else {
		le.PutUint32(img[24:], uint32(spec.entry))
		le.PutUint32(img[28:], uint32(ehsize))
		le.PutUint16(img[40:], uint16(ehsize))
		le.PutUint16(img[42:], uint16(phentsize))
		le.PutUint16(img[44:], uint16(len(spec.segs)))
		le.PutUint16(img[46:], 40)
	}
	for i, s := range spec.segs {
		typ := s.typ
		if typ == 0 {
			typ = elf.PT_LOAD
		}
		memsz, filesz, vaddr := s.memsz, s.filesz, s.vaddr
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		if filesz == 0 {
			filesz = uint64(len(s.data))
		}
		if vaddr == 0 {
			vaddr = s.paddr
		}
		ph := img[ehsize+i*phentsize:]
		if is64 {
			le.PutUint32(ph[0:], uint32(typ))
			le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_W|elf.PF_X))
			le.PutUint64(ph[8:], off)
			le.PutUint64(ph[16:], vaddr)
			le.PutUint64(ph[24:], s.paddr)
			le.PutUint64(ph[32:], filesz)
			le.PutUint64(ph[40:], memsz)
			le.PutUint64(ph[48:], 16)
		} else {
			le.PutUint32(ph[0:], uint32(typ))
			le.PutUint32(ph[4:], uint32(off))
			le.PutUint32(ph[8:], uint32(vaddr))
			le.PutUint32(ph[12:], uint32(s.paddr))
			le.PutUint32(ph[16:], uint32(filesz))
			le.PutUint32(ph[20:], uint32(memsz))
			le.PutUint32(ph[24:], uint32(elf.PF_R|elf.PF_W|elf.PF_X))
			le.PutUint32(ph[28:], 16)
		}
		off += uint64(len(s.data))
	}
	for _, s := range spec.segs {
		img = append(img, s.data...)
	}
	return img
}

// elf64Code is an ELF64 image whose one segment holds code at addr, the
// entry point.
func elf64Code(addr uint64, code []byte) []byte {
	return elfImage(elfSpec{class: elf.ELFCLASS64, entry: addr, segs: []segment{{paddr: addr, data: code}}})
}

// multibootHeader is a Multiboot1 header with the given flags and a
// correct checksum; extra words (the a.out kludge addresses) follow.
func multibootHeader(flags uint32, extra ...uint32) []byte {
	words := append([]uint32{multibootMagic, flags, -(multibootMagic + flags)}, extra...)
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// multibootKludge is a Multiboot image loaded through the header's address
// fields (flag 16) at 1 MiB: header first, code right after it, entered at
// the code.
func multibootKludge(code []byte) []byte {
	const load = 0x100000
	const hdrLen = 32
	img := multibootHeader(1<<16, load, load, 0, 0, load+hdrLen)
	return append(img, code...)
}

// multibootELF is a 32-bit ELF image with a Multiboot header (flags 3, as
// testdata/guests use) at the start of its one segment, code after it.
func multibootELF(addr uint64, code []byte) []byte {
	hdr := multibootHeader(3)
	data := append(append([]byte{}, hdr...), code...)
	return elfImage(elfSpec{class: elf.ELFCLASS32, entry: addr + uint64(len(hdr)), segs: []segment{{paddr: addr, data: data}}})
}

// Guest code used by several tests. Each is position-independent.
var (
	// codeExit writes 5 to the debug-exit port: mov al, 5; out 0xf4, al; hlt.
	codeExit = []byte{0xb0, 0x05, 0xe6, 0xf4, 0xf4}
	// codePOSTLoop loops on a write to port 0x80: out 0x80, al; jmp $-2.
	codePOSTLoop = []byte{0xe6, 0x80, 0xeb, 0xfc}
	// codePOPCNTLoop loops on POPCNT: popcnt eax, ecx; jmp $-4. 32-bit
	// code; this host's KVM cannot emulate it, so each one exits to vmrr.
	codePOPCNTLoop = []byte{0xf3, 0x0f, 0xb8, 0xc1, 0xeb, 0xfa}
)

// wantBadImage checks that err is a bad-image error.
func wantBadImage(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want one wrapping ErrBadImage")
	}
	if !errors.Is(err, ErrBadImage) {
		t.Fatalf("error %q does not wrap ErrBadImage", err)
	}
}
