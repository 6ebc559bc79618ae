package nondet

import (
	"bytes"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine"
	"vmrr/machine/cpu"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		name   string
		code   []byte
		mode   int
		ok     bool
		kind   cpu.NonDet
		length int
		reg    int
		size   int
	}{
		{"rdtsc", []byte{0x0f, 0x31}, 64, true, cpu.RDTSC, 2, 0, 0},
		{"rdtsc 32-bit", []byte{0x0f, 0x31}, 32, true, cpu.RDTSC, 2, 0, 0},
		{"rdtscp", []byte{0x0f, 0x01, 0xf9}, 64, true, cpu.RDTSCP, 3, 0, 0},
		{"rdrand eax", []byte{0x0f, 0xc7, 0xf0}, 64, true, cpu.RDRAND, 3, 0, 32},
		{"rdrand rax", []byte{0x48, 0x0f, 0xc7, 0xf0}, 64, true, cpu.RDRAND, 4, 0, 64},
		{"rdrand r9", []byte{0x49, 0x0f, 0xc7, 0xf1}, 64, true, cpu.RDRAND, 4, 9, 64},
		{"rdrand ax", []byte{0x66, 0x0f, 0xc7, 0xf0}, 64, true, cpu.RDRAND, 4, 0, 16},
		{"rdrand ax real mode", []byte{0x0f, 0xc7, 0xf0}, 16, true, cpu.RDRAND, 3, 0, 16},
		{"rdrand eax real mode", []byte{0x66, 0x0f, 0xc7, 0xf0}, 16, true, cpu.RDRAND, 4, 0, 32},
		{"rdseed ecx", []byte{0x0f, 0xc7, 0xf9}, 64, true, cpu.RDSEED, 3, 1, 32},
		{"rdseed r15", []byte{0x49, 0x0f, 0xc7, 0xff}, 64, true, cpu.RDSEED, 4, 15, 64},
		{"rdpid rax", []byte{0xf3, 0x0f, 0xc7, 0xf8}, 64, true, cpu.RDPID, 4, 0, 64},
		{"rdpid eax 32-bit", []byte{0xf3, 0x0f, 0xc7, 0xf8}, 32, true, cpu.RDPID, 4, 0, 32},
		{"cmpxchg8b (memory form)", []byte{0x0f, 0xc7, 0x0e}, 64, false, 0, 0, 0, 0},
		{"vmptrld (memory form /6)", []byte{0x0f, 0xc7, 0x36}, 64, false, 0, 0, 0, 0},
		{"nop", []byte{0x90}, 64, false, 0, 0, 0, 0},
		{"truncated 0f", []byte{0x0f}, 64, false, 0, 0, 0, 0},
		{"truncated group", []byte{0x0f, 0xc7}, 64, false, 0, 0, 0, 0},
		{"empty", nil, 64, false, 0, 0, 0, 0},
		{"legacy prefix after REX cancels it", []byte{0x48, 0x66, 0x0f, 0xc7, 0xf0}, 64, true, cpu.RDRAND, 5, 0, 16},
		{"rdtsc ignores prefixes", []byte{0x48, 0x66, 0x0f, 0x31}, 64, true, cpu.RDTSC, 4, 0, 0},
		{"f2 0f c7 /6 is not rdrand", []byte{0xf2, 0x0f, 0xc7, 0xf0}, 64, false, 0, 0, 0, 0},
		{"f3 0f c7 /6 is not rdrand", []byte{0xf3, 0x0f, 0xc7, 0xf0}, 64, false, 0, 0, 0, 0},
		{"the last of f2 and f3 counts", []byte{0xf2, 0xf3, 0x0f, 0xc7, 0xf8}, 64, true, cpu.RDPID, 5, 0, 64},
		{"over 15 bytes", append(bytes.Repeat([]byte{0x66}, 13), 0x0f, 0xc7, 0xf0), 64, false, 0, 0, 0, 0},
		{"REX is inc in 32-bit mode", []byte{0x48, 0x0f, 0x31}, 32, false, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, ok := Match(tt.code, tt.mode)
			if ok != tt.ok {
				t.Fatalf("Match(% x, %d) ok = %v, want %v (%+v)", tt.code, tt.mode, ok, tt.ok, in)
			}
			if !ok {
				return
			}
			if in.Kind != tt.kind || in.Len != tt.length || in.Reg != tt.reg || in.OpSize != tt.size {
				t.Errorf("Match(% x) = %+v, want kind %d len %d reg %d size %d", tt.code, in, tt.kind, tt.length, tt.reg, tt.size)
			}
		})
	}
}

func TestApply(t *testing.T) {
	r := cpu.Regs{RAX: 0xffffffffffffffff, RDX: 7, RCX: 9, R9: 0x1111222233334444, RIP: 0x1000, RFLAGS: 2 | cpu.FlagZF | cpu.FlagOF}
	Apply(Inst{Kind: cpu.RDTSC, Len: 2}, &r, 0x0000000a_0000000b, 0, 64)
	if r.RAX != 0xb || r.RDX != 0xa || r.RIP != 0x1002 || r.RCX != 9 {
		t.Errorf("rdtsc: %+v", r)
	}
	Apply(Inst{Kind: cpu.RDTSCP, Len: 3}, &r, 0x5_00000006, 42, 64)
	if r.RAX != 6 || r.RDX != 5 || r.RCX != 42 || r.RIP != 0x1005 {
		t.Errorf("rdtscp: %+v", r)
	}
	Apply(Inst{Kind: cpu.RDRAND, Len: 4, Reg: 9, OpSize: 16}, &r, 0xabcdef, 0, 64)
	if r.R9 != 0x111122223333cdef || r.RFLAGS != 2|cpu.FlagCF {
		t.Errorf("rdrand r9w: r9 %#x rflags %#x", r.R9, r.RFLAGS)
	}
	Apply(Inst{Kind: cpu.RDSEED, Len: 3, Reg: 9, OpSize: 32}, &r, 0xffffffff_12345678, 0, 64)
	if r.R9 != 0x12345678 {
		t.Errorf("rdseed r9d: %#x (a 32-bit write zeroes the upper half)", r.R9)
	}
	r.RIP = 0xfffffffe
	Apply(Inst{Kind: cpu.RDTSC, Len: 2}, &r, 1, 0, 32)
	if r.RIP != 0 {
		t.Errorf("32-bit RIP wraps: %#x", r.RIP)
	}
}

func TestPatches(t *testing.T) {
	ps := Patches{
		{Addr: 0x100010, Original: []byte{0x0f, 0x31}, Inst: Inst{Kind: cpu.RDTSC, Len: 2}},
		{Addr: 0x100020, Original: []byte{0x48, 0x0f, 0xc7, 0xf0}, Inst: Inst{Kind: cpu.RDRAND, Len: 4}},
	}
	if p := ps.Find(0x100012); p == nil || p.Addr != 0x100010 {
		t.Errorf("Find(after the first trap) = %v", p)
	}
	if p := ps.Find(0x100022); p == nil || p.Addr != 0x100020 {
		t.Errorf("Find(after the second trap) = %v", p)
	}
	if p := ps.Find(0x100024); p != nil {
		t.Errorf("Find(after the NOPs) = %v, want nil", p)
	}
	if p := ps.Covering(0x100023); p == nil || p.Addr != 0x100020 {
		t.Errorf("Covering = %v", p)
	}
	// What gdb reads at 0x10000f..0x100025 shows the original bytes.
	b := bytes.Repeat([]byte{0xcc}, 0x16)
	copy(b[1:], trapCode(2))
	copy(b[0x11:], trapCode(4))
	ps.Restore(0x10000f, b)
	if !bytes.Equal(b[1:3], []byte{0x0f, 0x31}) || !bytes.Equal(b[0x11:0x15], []byte{0x48, 0x0f, 0xc7, 0xf0}) || b[0] != 0xcc || b[0x15] != 0xcc {
		t.Errorf("Restore: % x", b)
	}
	if got := trapCode(4); !bytes.Equal(got, []byte{0xe6, machine.PortTrap, 0x90, 0x90}) {
		t.Errorf("trapCode(4) = % x", got)
	}
}

// The test guests are what fast mode patches in the tests; the patch table
// must find every non-deterministic instruction they contain and nothing
// in their ring section.
func TestFindPatchesGuests(t *testing.T) {
	tests := []struct {
		image string
		min   int
	}{
		{"../testdata/guests/nondet.elf", 4},
		{"../testdata/guests/hello.elf", 0},
		{"../testdata/guests/paravirt.elf", 0},
	}
	for _, tt := range tests {
		img := readGuest(t, tt.image)
		ps, err := FindPatches(img)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) < tt.min {
			t.Errorf("%s: %d patches, want at least %d", tt.image, len(ps), tt.min)
		}
		for _, r := range RingCode(img) {
			for _, p := range ps {
				if p.Addr >= r.Start && p.Addr < r.End {
					t.Errorf("%s: patch at %#x inside the ring section", tt.image, p.Addr)
				}
			}
		}
	}
	if ps, err := FindPatches([]byte("not an elf")); err != nil || len(ps) != 0 {
		t.Errorf("FindPatches(non-ELF) = %v, %v", ps, err)
	}
}

// FuzzMatch checks the hand decoder against x86asm where both decode, and
// that it never panics or claims more bytes than it has.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][]byte{{0x0f, 0x31}, {0x48, 0x0f, 0xc7, 0xf0}, {0xf3, 0x0f, 0xc7, 0xf8}, {0x0f, 0x01, 0xf9}, {0x66, 0x0f, 0xc7, 0xf3}} {
		f.Add(seed, uint8(64))
	}
	f.Fuzz(func(t *testing.T, code []byte, mode uint8) {
		m := []int{16, 32, 64}[int(mode)%3]
		in, ok := Match(code, m)
		if !ok {
			return
		}
		if in.Len > len(code) || in.Len < 2 {
			t.Fatalf("Match(% x, %d) = %+v: length outside the bytes", code, m, in)
		}
		if in.Kind == cpu.RDTSC {
			inst, err := x86asm.Decode(code, m)
			if err == nil && inst.Op != 0 && inst.Op != x86asm.RDTSC {
				t.Fatalf("Match says rdtsc, x86asm says %v for % x", inst, code)
			}
		}
	})
}
