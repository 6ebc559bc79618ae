//go:build linux

package tlbsync_test

import (
	"encoding/binary"
	"slices"
	"testing"

	"vmrr/machine"
	"vmrr/tlbsync"
)

// tableMachine builds a machine from an image holding code at gBase and
// the layout's tables (see tables); the vCPU still uses vmrr's boot tables.
func tableMachine(t *testing.T, code []byte, h machine.Hooks) *machine.Machine {
	t.Helper()
	needKVM(t)
	img := make([]byte, gSize)
	copy(img, code)
	tables(img)
	if h == nil {
		h = &hooks{}
	}
	m, err := machine.New(machine.Config{Image: elf64(gBase, gBase, img), Hooks: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func setCR3(t *testing.T, m *machine.Machine, cr3 uint64) {
	t.Helper()
	s, err := m.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CR3 = cr3
	if err := m.SetSregs(&s); err != nil {
		t.Fatal(err)
	}
}

// The guest's own tables, ascending.
var guestTables = []uint64{gPML4, gPDPT, gPDID, gPDWin, gPT}

// vmrr's boot tables for ELF64 guests: a PML4, a PDPT and four directories.
var bootTables = []uint64{0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000}

// TestMarks walks hand-built tables and checks which pages get marked.
func TestMarks(t *testing.T) {
	tests := []struct {
		name    string
		cr3     uint64 // 0: keep the boot tables
		edit    func(mem *machine.Memory)
		want    []uint64
		partial uint64
	}{
		{name: "boot tables", want: bootTables},
		{name: "guest tables", cr3: gPML4, want: guestTables},
		{name: "CR3 low bits", cr3: gPML4 | 0x18, want: guestTables},
		{name: "self-referencing PML4", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPML4+511*8, gPML4|3)
		}, want: guestTables},
		{name: "second page table", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPDWin+8, gPT2|3)
		}, want: append(slices.Clone(guestTables), gPT2)},
		{name: "2 MiB page instead of a page table", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPDWin, gPageA&^0x1fffff|0x83)
		}, want: guestTables[:4]},
		{name: "not present", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPDPT+8, gPDWin|2)
		}, want: []uint64{gPML4, gPDPT, gPDID}},
		{name: "reserved bits are not followed", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPDPT+8, gPDWin|3|1<<50)
		}, want: []uint64{gPML4, gPDPT, gPDID}},
		{name: "table outside RAM", cr3: gPML4, edit: func(mem *machine.Memory) {
			mem.PutUint64(gPDWin+8, 0x80000000|3)
		}, want: guestTables, partial: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tableMachine(t, []byte{0xf4}, nil)
			if tt.cr3 != 0 {
				setCR3(t, m, tt.cr3)
			}
			if tt.edit != nil {
				tt.edit(m.Memory())
			}
			s, err := attach(t, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.BeforeRun(m); err != nil {
				t.Fatal(err)
			}
			if got := s.Marked(); !slices.Equal(got, tt.want) {
				t.Fatalf("marked %#x, want %#x", got, tt.want)
			}
			if got := m.ReadOnlyPages(); !slices.Equal(got, tt.want) {
				t.Fatalf("read-only pages %#x, want %#x", got, tt.want)
			}
			st := s.Stats()
			if st.Marked != uint64(len(tt.want)) || st.Walks != 1 || st.Partial != tt.partial {
				t.Fatalf("stats %+v, want %d marked, 1 walk, %d partial", st, len(tt.want), tt.partial)
			}
		})
	}
}

// TestMultibootUnpaged: a guest with paging off has no tables to mark.
func TestMultibootUnpaged(t *testing.T) {
	needKVM(t)
	m, err := machine.New(machine.Config{Image: guestImage(t, "hello-multiboot.elf"), Hooks: &hooks{}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := attach(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BeforeRun(m); err != nil {
		t.Fatal(err)
	}
	if len(s.Marked()) != 0 || len(m.ReadOnlyPages()) != 0 {
		t.Fatalf("marked %#x with paging off", s.Marked())
	}
}

// TestActsOnlyAtNewExits: BeforeRun looks at the machine only when the
// exit count moved (or after Invalidate), never at a stop the other side
// of a recording would not make.
func TestActsOnlyAtNewExits(t *testing.T) {
	m := tableMachine(t, []byte{0xf4}, nil)
	s, err := attach(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BeforeRun(m); err != nil {
		t.Fatal(err)
	}
	setCR3(t, m, gPML4) // as if the guest loaded CR3 and was then kicked
	if err := s.BeforeRun(m); err != nil {
		t.Fatal(err)
	}
	if got := s.Marked(); !slices.Equal(got, bootTables) || s.Stats().Walks != 1 {
		t.Fatalf("BeforeRun at the same exit walked again: marked %#x, %+v", got, s.Stats())
	}
	s.Invalidate()
	if err := s.BeforeRun(m); err != nil {
		t.Fatal(err)
	}
	if got := s.Marked(); !slices.Equal(got, guestTables) || s.Stats().Walks != 2 {
		t.Fatalf("after Invalidate: marked %#x, %+v", got, s.Stats())
	}
}

// le32 is a little-endian 32-bit immediate or displacement.
func le32(v uint64) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// TestTrappedWrites runs a CPL0 guest that edits its marked tables in
// several ways, stopping at `out 0xe5` after each so the test can look at
// the counters, the marks and memory.
func TestTrappedWrites(t *testing.T) {
	snap := []byte{0xe6, 0xe5}                                                                 // out 0xe5, al
	movRAX := func(v uint64) []byte { return cat([]byte{0x48, 0xc7, 0xc0}, le32(v)) }          // mov rax, imm32
	store := func(gpa uint64) []byte { return cat([]byte{0x48, 0x89, 0x04, 0x25}, le32(gpa)) } // mov [gpa], rax
	code := cat(
		movRAX(gPML4), []byte{0x0f, 0x22, 0xd8}, snap, // mov cr3, rax: noticed at the next exit
		snap,
		movRAX(gPageB|7), store(gPT+8), snap, // a leaf entry
		store(gPT+8), snap, // the same value again
		movRAX(gPT2|7), store(gPDWin+8), snap, // a new page table
		[]byte{0x31, 0xc0}, store(gPDWin+8), snap, // and away again
		[]byte{0xc6, 0x04, 0x25}, le32(gPDWin), []byte{0x27}, snap, // mov byte [gPDWin], 0x27: the accessed bit
		[]byte{0x66, 0xc7, 0x04, 0x25}, le32(gPT+16), []byte{0x34, 0x12}, snap, // mov word [gPT+16], 0x1234
		[]byte{0xe6, 0xf4},
	)
	type look struct {
		stats  tlbsync.Stats
		marked []uint64
	}
	var looks []look
	var s *tlbsync.Sync
	h := &loopHooks{n: 1 << 30}
	h.port = func(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
		if port != 0xe5 {
			return false, nil
		}
		looks = append(looks, look{s.Stats(), s.Marked()})
		return true, nil
	}
	m := tableMachine(t, code, h)
	s, err := attach(t, m)
	if err != nil {
		t.Fatal(err)
	}
	h.sync = s
	res, err := m.Run()
	if err != nil || res.Reason != machine.ReasonExited {
		t.Fatalf("run: %v %s", err, res.Message)
	}
	withPT2 := append(slices.Clone(guestTables), gPT2)
	want := []struct {
		what                   string
		writes, walks, flushes uint64
		marked                 []uint64
	}{
		{"CR3 loaded, no exit since", 0, 1, 1, bootTables},
		{"after an exit", 0, 2, 2, guestTables},
		{"leaf entry written", 1, 2, 3, guestTables},
		{"same value written", 2, 2, 3, guestTables},
		{"page table added", 3, 3, 4, withPT2},
		{"page table removed", 4, 4, 5, guestTables},
		{"accessed bit set by a byte write", 5, 4, 6, guestTables},
		{"word written to a page table", 6, 4, 7, guestTables},
	}
	if len(looks) != len(want) {
		t.Fatalf("%d stops, want %d", len(looks), len(want))
	}
	for i, w := range want {
		l := looks[i]
		if l.stats.Writes != w.writes || l.stats.Walks != w.walks || l.stats.Flushes != w.flushes || !slices.Equal(l.marked, w.marked) {
			t.Errorf("%s: %+v marked %#x; want %d writes, %d walks, %d flushes, marked %#x",
				w.what, l.stats, l.marked, w.writes, w.walks, w.flushes, w.marked)
		}
	}
	mem := m.Memory()
	for _, c := range []struct{ gpa, want uint64 }{
		{gPT + 8, gPageB | 7}, {gPDWin + 8, 0}, {gPDWin, gPT | 0x27}, {gPT + 16, 0x1234},
	} {
		if v := mem.Uint64(c.gpa); v != c.want {
			t.Errorf("memory at %#x = %#x, want %#x", c.gpa, v, c.want)
		}
	}
}

// TestChurnCounts runs the churn guest: its leaf-entry rewrites are all
// trapped and flushed, and none of them makes tlbsync walk again. It also
// logs what happens with ptchurn.elf, which loads CR3 and rewrites its
// PTEs with no exit in between: tlbsync never sees those tables marked
// before the end (see the package comment).
func TestChurnCounts(t *testing.T) {
	needKVM(t)
	for _, g := range []struct {
		name  string
		image []byte
	}{{"churn", churn(2000)}, {"ptchurn.elf", guestImage(t, "ptchurn.elf")}} {
		h := &loopHooks{n: 1 << 30}
		m, err := machine.New(machine.Config{Image: g.image, Hooks: h})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if h.sync, err = attach(t, m); err != nil {
			t.Fatal(err)
		}
		res, err := m.Run()
		if err != nil || res.Status != 1 {
			t.Fatalf("%s: run: %v %s", g.name, err, res.Message)
		}
		st := h.sync.Stats()
		t.Logf("%s: %+v, %d exits", g.name, st, m.Exits())
		if g.name == "churn" && (st.Writes != 2000 || st.Flushes < 2000 || st.Walks != 2 || st.Marked != 5) {
			t.Fatalf("%s: stats %+v: want 2000 writes, as many flushes, 2 walks, 5 pages marked", g.name, st)
		}
	}
}
