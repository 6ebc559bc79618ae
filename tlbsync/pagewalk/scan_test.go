package pagewalk

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	long := []uint64{lPML4, lPDPT, lPD, lPT, lPDPTk, lPDk, lPTk}
	cases := []struct {
		name     string
		mode     Mode
		build    func() RAM
		mut      func(RAM)
		cr3      uint64
		flags    Flags
		limit    int
		pages    []uint64
		leaves   int
		reserved int
		err      string
	}{
		// The recursive slot PML4[510] adds no page, but rereads each table one level lower:
		// PDPT@3 1G; PD@2 2M; PT@1 4; PML4@1 3; PDPT@1 2 (read as a PT); PD@1 2; PDPT@2 1 (its
		// 1G entry read as a 2M one); PDPTk@1 1; PDk@1 1; PTk@1 1: 17 leaves.
		{name: "long", mode: ModeLong4, build: longRAM, cr3: lPML4, flags: assumed, pages: long, leaves: 17},
		{name: "long, no NXE: XD is reserved", mode: ModeLong4, build: longRAM, cr3: lPML4, pages: long, leaves: 16, reserved: 1},
		{name: "limit exactly", mode: ModeLong4, build: longRAM, cr3: lPML4, limit: 7, pages: long, leaves: 17, flags: assumed},
		{name: "limit exceeded", mode: ModeLong4, build: longRAM, cr3: lPML4, limit: 6, pages: long[:6], err: "too many page-table pages: more than 6"},
		{name: "self-loop at every entry", mode: ModeLong4, build: func() RAM {
			r := make(RAM, 0x2000)
			for i := uint64(0); i < 512; i++ {
				put64(r, 0x1000+i*8, 0x1000|P|RW)
			}
			return r
		}, cr3: 0x1000, pages: []uint64{0x1000}, leaves: 512},
		{name: "two tables pointing at each other", mode: ModeLong4, build: func() RAM {
			r := make(RAM, 0x3000)
			put64(r, 0x1000, 0x2000|P)
			put64(r, 0x2000, 0x1000|P)
			return r
		}, cr3: 0x1000, pages: []uint64{0x1000, 0x2000}, leaves: 1},
		{name: "PS in PML4 is not followed", mode: ModeLong4, build: longRAM, cr3: lPML4,
			mut: func(r RAM) { put64(r, lPML4, lPDPT|P|PS) },
			// Reserved: PML4E 0 at levels 4, 3 (bit 13 in a 1G entry) and 2 (bit 13 in a 2M one).
			pages: []uint64{lPML4, lPDPTk, lPDk, lPTk}, leaves: 6, reserved: 3},
		{name: "table outside RAM", mode: ModeLong4, build: longRAM, cr3: lPML4,
			mut:   func(r RAM) { put64(r, lPD, 0x10_0000|P) },
			pages: []uint64{lPML4, lPDPT, lPD, 0x10_0000}, err: "PT table at 0x100000"},
		{name: "root outside RAM", mode: ModeLong4, build: longRAM, cr3: 0x10_0000,
			pages: []uint64{0x10_0000}, err: "PML4 table at 0x100000"},
		{name: "PAE", mode: ModePAE, build: paeRAM, cr3: pPDPT, flags: assumed,
			pages: []uint64{0x1000, pPD, pPT, 0x4000, 0x8000}, leaves: 4},
		{name: "PAE PDPTE reserved", mode: ModePAE, build: paeRAM, cr3: pPDPT, flags: assumed,
			mut:   func(r RAM) { put64(r, pPDPT, pPD|P|RW) },
			pages: []uint64{0x1000, 0x4000, 0x8000}, leaves: 1, reserved: 1},
		{name: "legacy, PSE", mode: ModeLegacy32, build: legacyRAM, cr3: 0x1000, flags: assumed,
			pages: []uint64{0x1000, 0x2000}, leaves: 2 + 2 + 4},
		{name: "legacy, no PSE: the PS entry is a table", mode: ModeLegacy32, build: func() RAM {
			r := legacyRAM()
			put32(r, 0x1000+2*4, 0)
			return r
		}, cr3: 0x1000, limit: 10, pages: []uint64{0x1000, 0x2000, 0x800000}, err: "PT table at 0x800000"},
		{name: "no paging", mode: ModeNone, build: longRAM},
		{name: "5-level", mode: ModeLong5, build: longRAM, err: "5-level"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.build()
			if c.mut != nil {
				c.mut(r)
			}
			tr, err := Scan(r, c.mode, c.cr3, c.flags, c.limit)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
			} else if err != nil {
				t.Fatalf("Scan: %v", err)
			} else if tr.Leaves != c.leaves || tr.Reserved != c.reserved {
				t.Errorf("leaves %d reserved %d, want %d %d", tr.Leaves, tr.Reserved, c.leaves, c.reserved)
			}
			if !reflect.DeepEqual(tr.Pages, c.pages) {
				t.Errorf("pages %#x, want %#x", tr.Pages, c.pages)
			}
		})
	}
}

func TestScanErrors(t *testing.T) {
	r := longRAM()
	put64(r, lPD, 0x10_0000|P)
	_, err := TablePages(r, ModeLong4, lPML4, 0)
	var te *TableError
	if !errors.As(err, &te) || te.Level != 1 || te.Addr != 0x10_0000 || te.Entry {
		t.Errorf("err = %v, want a PT TableError", err)
	}
	_, err = TablePages(longRAM(), ModeLong4, lPML4, 1)
	if !errors.Is(err, ErrTooManyTables) {
		t.Errorf("err = %v, want ErrTooManyTables", err)
	}
}

// A full tree of 1 + 512 + 512 tables, to check the limit default and the visiting cost.
func TestTablePagesWide(t *testing.T) {
	const n = 1 + 2 + 2*512
	r := make(RAM, (n+1)*4096)
	next := uint64(0x2000)
	put64(r, 0x1000, 0) // PML4 at 0x1000 has two PDPTs
	var pdpts []uint64
	for i := uint64(0); i < 2; i++ {
		put64(r, 0x1000+i*8, next|P)
		pdpts = append(pdpts, next)
		next += 0x1000
	}
	for _, pdpt := range pdpts {
		for i := uint64(0); i < 512; i++ {
			put64(r, pdpt+i*8, next|P)
			next += 0x1000
		}
	}
	pages, err := TablePages(r, ModeLong4, 0x1000, 0)
	if err != nil || len(pages) != n {
		t.Fatalf("got %d pages, %v; want %d", len(pages), err, n)
	}
	seen := map[uint64]bool{}
	for _, p := range pages {
		if seen[p] || p&0xfff != 0 {
			t.Fatalf("page %#x repeated or unaligned", p)
		}
		seen[p] = true
	}
	if _, err := TablePages(r, ModeLong4, 0x1000, n-1); !errors.Is(err, ErrTooManyTables) {
		t.Fatalf("limit n-1: err = %v", err)
	}
}

type mapping struct {
	va, pa, size uint64
	w, u, nx     bool
}

func collect(t *testing.T, mem Memory, mode Mode, cr3 uint64, flags Flags, stopAfter int) ([]mapping, error) {
	t.Helper()
	var got []mapping
	err := MappingsWith(mem, mode, cr3, flags, func(va, pa, size uint64, w, u, nx bool) bool {
		got = append(got, mapping{va, pa, size, w, u, nx})
		return len(got) != stopAfter
	})
	return got, err
}

func TestMappings(t *testing.T) {
	pml4 := func(i uint64) uint64 { return recursive&^(0x1ff<<12) | i<<12 }
	longWant := []mapping{
		{0x5000, 0x50000, 4096, true, true, false},
		{0x6000, 0x51000, 4096, false, true, false},
		{0x7000, 0x52000, 4096, true, false, false},
		{0x8000, 0x53000, 4096, true, true, true},
		{0x200000, 0x200000, 2 << 20, true, false, false},
		{0x4000_0000, 0x4000_0000, 1 << 30, true, true, false},
		// PML4[510] -> PML4[510] -> PML4[510] -> PML4 read as a PT
		{pml4(0), lPDPT, 4096, true, false, false},
		{pml4(510), lPML4, 4096, true, false, false},
		{pml4(511), lPDPTk, 4096, true, false, false},
		{0xffff_ffff_8000_0000, 0x60000, 4096, true, false, false},
	}
	// The recursive slot also maps the PDPTs at PD level etc.; keep only the entries above and
	// check order over everything.
	t.Run("long", func(t *testing.T) {
		got, err := collect(t, longRAM(), ModeLong4, lPML4, assumed, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(got); i++ {
			if got[i].va <= got[i-1].va {
				t.Fatalf("not ascending at %d: %#x after %#x", i, got[i].va, got[i-1].va)
			}
		}
		idx := map[uint64]mapping{}
		for _, m := range got {
			idx[m.va] = m
		}
		for _, w := range longWant {
			if idx[w.va] != w {
				t.Errorf("mapping at %#x = %+v, want %+v", w.va, idx[w.va], w)
			}
		}
		// Each listed mapping must agree with Translate.
		for _, m := range got {
			for _, off := range []uint64{0, m.size - 1} {
				tw, err := Translate(longRAM(), ModeLong4, lPML4, m.va+off, Access{}, assumed)
				if err != nil || tw.Phys != m.pa+off || tw.PageSize != m.size || tw.Writable != m.w || tw.User != m.u || tw.NX != m.nx {
					t.Errorf("Translate(%#x) = %+v, %v; listed %+v", m.va+off, tw, err, m)
				}
			}
		}
	})
	cases := []struct {
		name      string
		mode      Mode
		ram       RAM
		cr3       uint64
		flags     Flags
		stopAfter int
		want      []mapping
		err       string
	}{
		{name: "stop early", mode: ModeLong4, ram: longRAM(), cr3: lPML4, flags: assumed, stopAfter: 2, want: longWant[:2]},
		{name: "PAE", mode: ModePAE, ram: paeRAM(), cr3: pPDPT, flags: assumed, want: []mapping{
			{0x5000, 0x50000, 4096, true, true, false},
			{0x6000, 0x51000, 4096, true, true, true},
			{0x200000, 0x400000, 2 << 20, false, false, false},
			{0xc000_0000, 0x52000, 4096, true, false, false},
		}},
		{name: "legacy", mode: ModeLegacy32, ram: legacyRAM(), cr3: 0x1000, flags: assumed, want: []mapping{
			{0x5000, 0x50000, 4096, true, true, false},
			{0x6000, 0x51000, 4096, false, true, false},
			{0x400000, 0x800000, 4 << 20, true, false, false},
			{0x800000, 0xab_3fc0_0000, 4 << 20, false, false, false},
			{0xffc0_0000, 0x2000, 4096, true, false, false},
			{0xffc0_0000 | 1<<12, 0x800000, 4096, true, false, false},
			{0xffc0_0000 | 2<<12, 0x3fc00000 | 0xab<<13, 4096, false, false, false},
			{0xffc0_0000 | 1023<<12, 0x1000, 4096, true, false, false},
		}},
		{name: "no paging", mode: ModeNone, want: []mapping{{0, 0, 1 << 32, true, true, false}}},
		{name: "table outside RAM", mode: ModeLong4, ram: longRAM()[:0x4000], cr3: lPML4, err: "PT table at 0x4000"},
		{name: "bad mode", mode: Mode(-1), err: "unknown paging mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := collect(t, c.ram, c.mode, c.cr3, c.flags, c.stopAfter)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got\n%s\nwant\n%s", fmtMappings(got), fmtMappings(c.want))
			}
		})
	}
}

func fmtMappings(ms []mapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  %#x -> %#x size %#x w=%v u=%v nx=%v\n", m.va, m.pa, m.size, m.w, m.u, m.nx)
	}
	return b.String()
}

func TestMappingsVisitCap(t *testing.T) {
	defer func(v int) { MaxMappingVisits = v }(MaxMappingVisits)
	MaxMappingVisits = 1000
	r := make(RAM, 0x2000)
	for i := uint64(0); i < 512; i++ {
		put64(r, 0x1000+i*8, 0x1000|P|RW)
	}
	n := 0
	err := Mappings(r, ModeLong4, 0x1000, func(va, pa, size uint64, w, u, nx bool) bool { n++; return true })
	if err == nil || !strings.Contains(err.Error(), "more than 1000 table visits") {
		t.Fatalf("err = %v after %d mappings", err, n)
	}
}
