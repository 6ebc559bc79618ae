//go:build linux

package machine

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"vmrr/machine/cpu"
)

func TestLayout(t *testing.T) {
	const ram = 0x10000
	tests := []struct {
		name  string
		pages []uint64
		want  []Slot
	}{
		{"none", nil, []Slot{{GPA: 0, Size: ram}}},
		{"middle", []uint64{0x3000}, []Slot{{GPA: 0, Size: 0x3000}, {GPA: 0x3000, Size: 0x1000, ReadOnly: true}, {GPA: 0x4000, Size: 0xc000}}},
		{"first", []uint64{0}, []Slot{{GPA: 0, Size: 0x1000, ReadOnly: true}, {GPA: 0x1000, Size: 0xf000}}},
		{"last", []uint64{0xf000}, []Slot{{GPA: 0, Size: 0xf000}, {GPA: 0xf000, Size: 0x1000, ReadOnly: true}}},
		{"run", []uint64{0x2000, 0x3000, 0x4000}, []Slot{{GPA: 0, Size: 0x2000}, {GPA: 0x2000, Size: 0x3000, ReadOnly: true}, {GPA: 0x5000, Size: 0xb000}}},
		{"two runs", []uint64{0x1000, 0x2000, 0x8000}, []Slot{{GPA: 0, Size: 0x1000}, {GPA: 0x1000, Size: 0x2000, ReadOnly: true},
			{GPA: 0x3000, Size: 0x5000}, {GPA: 0x8000, Size: 0x1000, ReadOnly: true}, {GPA: 0x9000, Size: 0x7000}}},
		{"all", []uint64{0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000, 0x9000, 0xa000, 0xb000, 0xc000, 0xd000, 0xe000, 0xf000},
			[]Slot{{GPA: 0, Size: ram, ReadOnly: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := layout(tt.pages, ram); !slices.Equal(got, tt.want) {
				t.Fatalf("layout(%#x) = %+v, want %+v", tt.pages, got, tt.want)
			}
		})
	}
}

// protHooks is an outside world where nothing happens; port, if set, is
// offered the ports no device claims.
type protHooks struct {
	port func(m *Machine, port uint16, out bool, data []byte) (bool, error)
}

func (h *protHooks) BeforeRun(*Machine) error { return nil }
func (h *protHooks) Idle(*Machine) error      { return ErrStop }
func (h *protHooks) Input(_ *Machine, _ Input, live func() uint64) (uint64, error) {
	return live(), nil
}
func (h *protHooks) NonDet(*Machine, cpu.NonDet) (uint64, error) { return 0, nil }
func (h *protHooks) Port(m *Machine, port uint16, out bool, data []byte) (bool, error) {
	if h.port == nil {
		return false, nil
	}
	return h.port(m, port, out, data)
}
func (h *protHooks) Debug(*Machine, cpu.DebugExit) error { return ErrStop }
func (h *protHooks) Interrupted(*Machine) error          { return nil }
func (h *protHooks) Now() time.Duration                  { return 0 }

// Physical layout of the hand-built guests below.
const (
	pPML4   = 0x300000
	pPDPT   = 0x301000
	pPDID   = 0x302000 // identity map of the first GiB, 2 MiB pages
	pPDWin  = 0x303000
	pPT     = 0x304000 // maps the window
	pPageA  = 0x305000
	pPageB  = 0x306000
	pCode   = 0x310000
	pWindow = 0x40000000 // virtual address the PT's entry 0 maps
)

// protMachine builds a machine whose vCPU runs code at pCode with its own
// tables (window page 0 mapped to page A, everything user-accessible) and
// RSI = the window, RDI = the PT, RDX = a PTE for page B. With user set
// the code runs at CPL3 with IOPL 3: this host runs CPL3 code natively
// through shadow page tables, while it emulates CPL0 code and walks the
// guest's tables at every access (so nothing is stale there).
func protMachine(tb testing.TB, h Hooks, code []byte, user bool) *Machine {
	tb.Helper()
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		tb.Skipf("needs /dev/kvm: %v", err)
	} else {
		f.Close()
	}
	img, err := os.ReadFile("../testdata/guests/hello.elf")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := New(Config{Image: img, Hooks: h})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	mem := m.Memory()
	for i := uint64(0); i < 512; i++ {
		mem.PutUint64(pPDID+i*8, i<<21|0x87)
	}
	mem.PutUint64(pPML4, pPDPT|7)
	mem.PutUint64(pPDPT, pPDID|7)
	mem.PutUint64(pPDPT+8, pPDWin|7)
	mem.PutUint64(pPDWin, pPT|7)
	mem.PutUint64(pPT, pPageA|7)
	mem.PutUint64(pPageA, 'A')
	mem.PutUint64(pPageB, 'B')
	mem.WritePhys(pCode, code)
	s, err := m.vcpu.Sregs()
	if err != nil {
		tb.Fatal(err)
	}
	s.CR3 = pPML4
	if user {
		s.CS.DPL, s.CS.Selector = 3, 0x1b
		for _, g := range []*cpu.Segment{&s.SS, &s.DS, &s.ES} {
			g.DPL, g.Selector = 3, 0x23
		}
	}
	if err := m.vcpu.SetSregs(&s); err != nil {
		tb.Fatal(err)
	}
	r, err := m.vcpu.Regs()
	if err != nil {
		tb.Fatal(err)
	}
	r.RIP, r.RSI, r.RDI, r.RDX = pCode, pWindow, pPT, pPageB|7
	if user {
		r.RFLAGS |= 3 << 12
	}
	if err := m.vcpu.SetRegs(&r); err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestSetReadOnlyPages changes the protected set step by step: the slots
// always tile RAM, only the slots around a change are replaced, and the
// slot at address 0 keeps ID 0.
func TestSetReadOnlyPages(t *testing.T) {
	m := protMachine(t, &protHooks{}, []byte{0xf4}, false)
	size := m.Memory().Size()
	steps := []struct {
		pages []uint64
		kept  []uint64 // GPAs of slots that must keep their ID from the step before
	}{
		{[]uint64{0x5000}, nil},
		{[]uint64{0x5000, 0x6000}, []uint64{0}},
		{[]uint64{0x6000, 0x5000, 0x100000, 0x5000}, []uint64{0, 0x5000}},
		{[]uint64{0x100000}, []uint64{0x100000, 0x101000}},
		{[]uint64{0}, nil},
		{nil, nil},
	}
	prev := m.Slots()
	for i, st := range steps {
		if err := m.SetReadOnlyPages(st.pages); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		slots := m.Slots()
		at := uint64(0)
		ids := map[uint32]bool{}
		for _, s := range slots {
			if s.GPA != at || s.Size == 0 || ids[s.ID] {
				t.Fatalf("step %d: slots do not tile RAM with distinct IDs: %+v", i, slots)
			}
			ids[s.ID] = true
			at += s.Size
			if s.GPA == 0 && !s.ReadOnly && s.ID != 0 {
				t.Errorf("step %d: the slot at 0 has ID %d", i, s.ID)
			}
		}
		if at != size {
			t.Fatalf("step %d: slots cover %#x of %#x bytes: %+v", i, at, size, slots)
		}
		want := slices.Clone(st.pages)
		slices.Sort(want)
		want = slices.Compact(want)
		if got := m.ReadOnlyPages(); !slices.Equal(got, want) {
			t.Fatalf("step %d: read-only pages %#x, want %#x", i, got, want)
		}
		for _, gpa := range st.kept {
			a, b := slotAt(prev, gpa), slotAt(slots, gpa)
			if a != b {
				t.Errorf("step %d: slot at %#x replaced: %+v -> %+v", i, gpa, a, b)
			}
		}
		prev = slots
	}
	for _, bad := range [][]uint64{{0x5001}, {size}, {1 << 40}} {
		err := m.SetReadOnlyPages(bad)
		if err == nil || !strings.Contains(err.Error(), "page-aligned") {
			t.Errorf("SetReadOnlyPages(%#x) = %v, want a page-aligned error", bad, err)
		}
	}
}

func slotAt(slots []Slot, gpa uint64) Slot {
	for _, s := range slots {
		if s.GPA == gpa {
			return s
		}
	}
	return Slot{}
}

// TestReadOnlyWrites runs a guest that writes 8, 4, 2 and 1 bytes into a
// protected page and 8 into the unprotected page after it: the protected
// writes reach the handler with their size and leave memory alone, the
// other one lands in memory; reads of the protected page see memory.
func TestReadOnlyWrites(t *testing.T) {
	const prot = 0x200000
	code := []byte{
		0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, // mov rdi, prot
		0x48, 0xc7, 0xc0, 0x11, 0x22, 0x33, 0x44, // mov rax, 0x44332211
		0x48, 0x89, 0x07, // mov [rdi], rax
		0x89, 0x47, 0x08, // mov [rdi+8], eax
		0x66, 0x89, 0x47, 0x10, // mov [rdi+16], ax
		0x88, 0x47, 0x18, // mov [rdi+24], al
		0x48, 0x89, 0x87, 0x00, 0x10, 0x00, 0x00, // mov [rdi+0x1000], rax
		0x48, 0x8b, 0x5f, 0x20, // mov rbx, [rdi+32]
		0xe6, 0xf4, // out 0xf4, al
	}
	m := protMachine(t, &protHooks{}, code, false)
	m.Memory().PutUint64(prot+32, 0x5555)
	if err := m.SetReadOnlyPages([]uint64{prot}); err != nil {
		t.Fatal(err)
	}
	type write struct {
		gpa uint64
		n   int
	}
	var got []write
	m.SetRAMWriteHandler(func(gpa uint64, data []byte) error {
		got = append(got, write{gpa, len(data)})
		return nil
	})
	res, err := m.Run()
	if err != nil || res.Reason != ReasonExited {
		t.Fatalf("run: %v %s", err, res.Message)
	}
	want := []write{{prot, 8}, {prot + 8, 4}, {prot + 16, 2}, {prot + 24, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("handler saw %+v, want %+v", got, want)
	}
	if v := m.Memory().Uint64(prot); v != 0 {
		t.Errorf("protected memory changed to %#x", v)
	}
	if v := m.Memory().Uint64(prot + 0x1000); v != 0x44332211 {
		t.Errorf("unprotected write: memory %#x, want 0x44332211", v)
	}
	if r, _ := m.vcpu.Regs(); r.RBX != 0x5555 {
		t.Errorf("read of the protected page gave %#x, want 0x5555", r.RBX)
	}
}

// staleGuest reads window page 0 twice (page A), stops at `out 0xe5`
// (where the VMM points the PTE at page B), reads it again into RBX and
// exits.
var staleGuest = []byte{
	0x48, 0x8b, 0x06, // mov rax, [rsi]
	0x48, 0x8b, 0x06, // mov rax, [rsi]
	0xe6, 0xe5, // out 0xe5, al
	0x48, 0x8b, 0x1e, // mov rbx, [rsi]
	0xe6, 0xf4, // out 0xf4, al
}

// flushWays are the ways of making the guest drop a translation that were
// tried; only FlushTLB's works for a VMM write on PVM.
var flushWays = []struct {
	name  string
	flush func(m *Machine) error
}{
	{"nothing", func(*Machine) error { return nil }},
	{"KVM_SET_SREGS toggling CR4.PGE", func(m *Machine) error {
		s, err := m.vcpu.Sregs()
		if err != nil {
			return err
		}
		s.CR4 ^= cpu.CR4PGE
		if err := m.vcpu.SetSregs(&s); err != nil {
			return err
		}
		s.CR4 ^= cpu.CR4PGE
		return m.vcpu.SetSregs(&s)
	}},
	{"KVM_SET_SREGS reloading CR3", func(m *Machine) error {
		s, err := m.vcpu.Sregs()
		if err != nil {
			return err
		}
		cr3 := s.CR3
		s.CR3 = bootPML4
		if err := m.vcpu.SetSregs(&s); err != nil {
			return err
		}
		s.CR3 = cr3
		return m.vcpu.SetSregs(&s)
	}},
	{"FlushTLB", (*Machine).FlushTLB},
}

// TestFlushTLB rewrites a PTE from the VMM while the guest has the old
// translation cached and checks which flush makes the guest see the new
// one. At CPL0 this host emulates the guest and sees it whatever happens;
// at CPL3 (native, shadow paging) only FlushTLB is required to work.
func TestFlushTLB(t *testing.T) {
	for _, user := range []bool{false, true} {
		for _, w := range flushWays {
			h := &protHooks{}
			m := protMachine(t, h, staleGuest, user)
			h.port = func(m *Machine, port uint16, out bool, data []byte) (bool, error) {
				if port != 0xe5 {
					return false, nil
				}
				m.Memory().PutUint64(pPT, pPageB|7)
				// The flush runs once the port exit is complete.
				m.AfterIO(func() error { return w.flush(m) })
				return true, nil
			}
			res, err := m.Run()
			if err != nil || res.Reason != ReasonExited {
				t.Fatalf("%s: run: %v %s", w.name, err, res.Message)
			}
			r, _ := m.vcpu.Regs()
			cpl := map[bool]int{false: 0, true: 3}[user]
			t.Logf("CPL%d, VMM rewrote the PTE, then %s: the guest read %c", cpl, w.name, rune(r.RBX))
			if w.name == "FlushTLB" && r.RBX != 'B' {
				t.Errorf("CPL%d, %s: the guest read %c, want B", cpl, w.name, rune(r.RBX))
			}
		}
	}
}

// flushTLBReadOnly checks FlushTLB with the PT protected: the guest's PTE
// write traps, the handler applies it, and after the flush the guest reads
// through the new entry, at CPL3 too. TestFlushTLBReadOnly (in
// protect_probe_test.go) runs it where the host's KVM runs guests on page
// tables in read-only slots at all (probe.ReadOnlyPageTables).
func flushTLBReadOnly(t *testing.T) {
	code := []byte{
		0x48, 0x8b, 0x06, // mov rax, [rsi]
		0x48, 0x8b, 0x06, // mov rax, [rsi]
		0x48, 0x89, 0x17, // mov [rdi], rdx
		0x48, 0x8b, 0x1e, // mov rbx, [rsi]
		0xe6, 0xf4, // out 0xf4, al
	}
	m := protMachine(t, &protHooks{}, code, true)
	if err := m.SetReadOnlyPages([]uint64{pPT}); err != nil {
		t.Fatal(err)
	}
	trapped := 0
	m.SetRAMWriteHandler(func(gpa uint64, data []byte) error {
		trapped++
		if err := m.Memory().WritePhys(gpa, data); err != nil {
			return err
		}
		m.AfterIO(m.FlushTLB)
		return nil
	})
	res, err := m.Run()
	if err != nil || res.Reason != ReasonExited {
		t.Fatalf("run: %v %s", err, res.Message)
	}
	if r, _ := m.vcpu.Regs(); trapped != 1 || r.RBX != 'B' {
		t.Fatalf("trapped %d writes, read %c; want 1 and B", trapped, rune(r.RBX))
	}
}

// BenchmarkFlushTLB measures FlushTLB against a KVM_GET_SREGS (the
// cheapest vCPU ioctl the exit path makes) and the CR4.PGE toggle that
// does not work here, reporting each as a multiple of the baseline.
func BenchmarkFlushTLB(b *testing.B) {
	m := protMachine(b, &protHooks{}, []byte{0xf4}, false)
	var base float64
	b.Run("baseline-getsregs", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.vcpu.Sregs(); err != nil {
				b.Fatal(err)
			}
		}
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, w := range flushWays[1:] {
		b.Run(strings.ReplaceAll(w.name, " ", "-"), func(b *testing.B) {
			for b.Loop() {
				if err := w.flush(m); err != nil {
					b.Fatal(err)
				}
			}
			if base > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
			}
		})
	}
	b.Run("SetReadOnlyPages-toggle", func(b *testing.B) {
		sets := [][]uint64{{pPT}, nil}
		i := 0
		for b.Loop() {
			if err := m.SetReadOnlyPages(sets[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if base > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
		}
	})
}
