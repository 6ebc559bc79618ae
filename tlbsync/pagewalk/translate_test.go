package pagewalk

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Entry bits for building tables by hand.
const (
	P  = bitP
	RW = bitRW
	US = bitUS
	PS = bitPS
	XD = uint64(bitXD)
)

func put64(r RAM, addr, v uint64) { binary.LittleEndian.PutUint64(r[addr:], v) }
func put32(r RAM, addr, v uint64) { binary.LittleEndian.PutUint32(r[addr:], uint32(v)) }

// Long-mode fixture layout: the root and its tables, one page each.
const (
	lPML4  = 0x1000
	lPDPT  = 0x2000
	lPD    = 0x3000
	lPT    = 0x4000
	lPDPTk = 0x5000 // kernel half: PML4[511]
	lPDk   = 0x6000
	lPTk   = 0x7000
)

// recursive is the address that walks PML4[510] (which points at the PML4) at every level.
const recursive = 0xffff_ff7f_bfdf_e000

// longRAM builds 4-level tables mapping:
//
//	0x5000     -> 0x50000 4K user RW
//	0x6000     -> 0x51000 4K user RO
//	0x7000     -> 0x52000 4K supervisor RW
//	0x8000     -> 0x53000 4K user RW NX
//	0x200000   -> 0x200000 2M supervisor RW
//	0x40000000 -> 0x40000000 1G user RW
//	0xffffffff80000000 -> 0x60000 4K supervisor RW
//	PML4[510] -> the PML4 itself (a recursive slot)
func longRAM() RAM {
	r := make(RAM, 1<<20)
	put64(r, lPML4+0*8, lPDPT|P|RW|US)
	put64(r, lPDPT+0*8, lPD|P|RW|US)
	put64(r, lPD+0*8, lPT|P|RW|US)
	put64(r, lPT+5*8, 0x50000|P|RW|US)
	put64(r, lPT+6*8, 0x51000|P|US)
	put64(r, lPT+7*8, 0x52000|P|RW)
	put64(r, lPT+8*8, 0x53000|P|RW|US|XD)
	put64(r, lPD+1*8, 0x200000|P|RW|PS)
	put64(r, lPDPT+1*8, 0x40000000|P|RW|US|PS)
	put64(r, lPML4+511*8, lPDPTk|P|RW)
	put64(r, lPDPTk+510*8, lPDk|P|RW)
	put64(r, lPDk+0*8, lPTk|P|RW)
	put64(r, lPTk+0*8, 0x60000|P|RW)
	put64(r, lPML4+510*8, lPML4|P|RW)
	return r
}

type translateCase struct {
	name  string
	mut   func(RAM)
	va    uint64
	acc   Access
	flags *Flags // nil: WP and NXE
	// on success
	phys, size uint64
	w, u, nx   bool
	tables     []uint64
	entries    []uint64
	// on failure
	code  uint32 // a *PageFault with this code ...
	level int    // ... at this level
	err   string // or another error containing this
}

func runTranslate(t *testing.T, mode Mode, cr3 uint64, build func() RAM, cases []translateCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := build()
			if c.mut != nil {
				c.mut(r)
			}
			f := Flags{WP: true, NXE: true}
			if c.flags != nil {
				f = *c.flags
			}
			w, err := Translate(r, mode, cr3, c.va, c.acc, f)
			var pf *PageFault
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				if errors.As(err, &pf) {
					t.Fatalf("err = %v, a page fault, want another error", err)
				}
			case c.code != 0 || c.level != 0:
				if !errors.As(err, &pf) {
					t.Fatalf("err = %v, want a page fault", err)
				}
				if pf.Code != c.code || pf.Level != c.level || pf.Addr != c.va {
					t.Fatalf("fault = %+v, want code %#x level %d addr %#x", *pf, c.code, c.level, c.va)
				}
			default:
				if err != nil {
					t.Fatalf("Translate: %v", err)
				}
				if w.Phys != c.phys || w.PageSize != c.size {
					t.Fatalf("phys %#x size %#x, want %#x %#x", w.Phys, w.PageSize, c.phys, c.size)
				}
				if w.Writable != c.w || w.User != c.u || w.NX != c.nx {
					t.Fatalf("perms w=%v u=%v nx=%v, want %v %v %v", w.Writable, w.User, w.NX, c.w, c.u, c.nx)
				}
			}
			if c.tables != nil && !reflect.DeepEqual(w.Tables, c.tables) {
				t.Errorf("tables %#x, want %#x", w.Tables, c.tables)
			}
			if c.entries != nil && !reflect.DeepEqual(w.Entries, c.entries) {
				t.Errorf("entries %#x, want %#x", w.Entries, c.entries)
			}
		})
	}
}

func TestTranslateLong(t *testing.T) {
	noWP := &Flags{NXE: true}
	noNXE := &Flags{WP: true}
	kernel := uint64(0xffff_ffff_8000_0123)
	cases := []translateCase{
		{name: "4K", va: 0x5abc, phys: 0x50abc, size: 4096, w: true, u: true,
			tables:  []uint64{lPML4, lPDPT, lPD, lPT},
			entries: []uint64{lPML4, lPDPT, lPD, lPT + 5*8}},
		{name: "4K user write", va: 0x5000, acc: Access{Write: true, User: true}, phys: 0x50000, size: 4096, w: true, u: true},
		{name: "2M", va: 0x312345, phys: 0x312345, size: 2 << 20, w: true,
			entries: []uint64{lPML4, lPDPT, lPD + 8}},
		{name: "1G", va: 0x7fff_ffff, phys: 0x7fff_ffff, size: 1 << 30, w: true, u: true,
			tables: []uint64{lPML4, lPDPT}},
		{name: "kernel half", va: kernel, phys: 0x60123, size: 4096, w: true,
			entries: []uint64{lPML4 + 511*8, lPDPTk + 510*8, lPDk, lPTk}},
		{name: "recursive slot maps the PML4", va: recursive + 0x18, phys: lPML4 + 0x18, size: 4096, w: true,
			tables:  []uint64{lPML4, lPML4, lPML4, lPML4},
			entries: []uint64{lPML4 + 510*8, lPML4 + 510*8, lPML4 + 510*8, lPML4 + 510*8}},
		{name: "NX read", va: 0x8000, phys: 0x53000, size: 4096, w: true, u: true, nx: true},
		{name: "CR3 low bits ignored", va: 0x5000, phys: 0x50000, size: 4096, w: true, u: true,
			mut: func(r RAM) {}, tables: []uint64{lPML4, lPDPT, lPD, lPT}},

		// not present, at each level
		{name: "PML4E not present", va: 0x80_0000_0000, code: 0, level: 4},
		{name: "PDPTE not present", va: 0x8000_0000, acc: Access{Write: true}, code: PFWrite, level: 3},
		{name: "PDE not present", va: 0x40_0000, acc: Access{User: true}, code: PFUser, level: 2},
		{name: "PTE not present", va: 0x9000, acc: Access{Fetch: true}, code: PFFetch, level: 1,
			tables: []uint64{lPML4, lPDPT, lPD, lPT}},
		{name: "fetch without NXE has no I/D", va: 0x9000, acc: Access{Fetch: true}, flags: noNXE, code: 0, level: 1},

		// permissions
		{name: "user read of supervisor page", va: 0x7000, acc: Access{User: true}, code: PFPresent | PFUser, level: 1},
		{name: "user read of supervisor PDPTE", va: kernel, acc: Access{User: true}, code: PFPresent | PFUser, level: 1},
		{name: "user write to read-only", va: 0x6000, acc: Access{User: true, Write: true}, code: PFPresent | PFUser | PFWrite, level: 1},
		{name: "user read of read-only", va: 0x6000, acc: Access{User: true}, phys: 0x51000, size: 4096, u: true},
		{name: "supervisor write to read-only, WP", va: 0x6000, acc: Access{Write: true}, code: PFPresent | PFWrite, level: 1},
		{name: "supervisor write to read-only, no WP", va: 0x6000, acc: Access{Write: true}, flags: noWP, phys: 0x51000, size: 4096, u: true},
		{name: "read-only at PD level", va: 0x5000, acc: Access{Write: true},
			mut: func(r RAM) { put64(r, lPD, lPT|P|US) }, code: PFPresent | PFWrite, level: 1},
		{name: "supervisor at PML4 level", va: 0x5000, acc: Access{User: true},
			mut: func(r RAM) { put64(r, lPML4, lPDPT|P|RW) }, code: PFPresent | PFUser, level: 1},
		{name: "fetch from NX page", va: 0x8000, acc: Access{Fetch: true}, code: PFPresent | PFFetch, level: 1},
		{name: "NX at PDPT level", va: 0x5000, acc: Access{Fetch: true, User: true},
			mut: func(r RAM) { put64(r, lPDPT, lPD|P|RW|US|XD) }, code: PFPresent | PFFetch | PFUser, level: 1},
		{name: "fetch from 1G page", va: 0x4000_0000, acc: Access{Fetch: true}, phys: 0x4000_0000, size: 1 << 30, w: true, u: true},

		// reserved bits
		{name: "XD without NXE", va: 0x8000, flags: noNXE, code: PFPresent | PFReserved, level: 1},
		{name: "PTE bit above MAXPHYADDR", va: 0x5000, acc: Access{Write: true},
			mut: func(r RAM) { put64(r, lPT+5*8, 1<<48|0x50000|P|RW) }, code: PFPresent | PFReserved | PFWrite, level: 1},
		{name: "PTE bit 51", va: 0x5000, mut: func(r RAM) { put64(r, lPT+5*8, 1<<51|0x50000|P) },
			code: PFPresent | PFReserved, level: 1},
		{name: "PTE bits 62:52 ignored", va: 0x5000, mut: func(r RAM) { put64(r, lPT+5*8, 0x7ff<<52|0x50000|P) },
			phys: 0x50000, size: 4096},
		{name: "PS in PML4E", va: 0x5000, mut: func(r RAM) { put64(r, lPML4, lPDPT|P|RW|US|PS) },
			code: PFPresent | PFReserved, level: 4},
		{name: "reserved in 2M PDE", va: 0x200000, mut: func(r RAM) { put64(r, lPD+8, 0x200000|1<<13|P|PS) },
			code: PFPresent | PFReserved, level: 2},
		{name: "reserved in 1G PDPTE", va: 0x4000_0000, mut: func(r RAM) { put64(r, lPDPT+8, 0x40000000|1<<29|P|PS) },
			code: PFPresent | PFReserved, level: 3},
		{name: "reserved in PML4E above MAXPHYADDR", va: 0x5000, mut: func(r RAM) { put64(r, lPML4, 1<<50|lPDPT|P) },
			code: PFPresent | PFReserved, level: 4},
		{name: "reserved bits in a non-present entry do not matter", va: 0x9000, mut: func(r RAM) { put64(r, lPT+9*8, 1<<50) },
			code: 0, level: 1},

		// malformed tables and addresses
		{name: "table outside RAM", va: 0x5000, mut: func(r RAM) { put64(r, lPD, 0x4000_0000|P|RW) },
			err: "PT entry at 0x40000028", tables: []uint64{lPML4, lPDPT, lPD, 0x4000_0000}},
		{name: "PML4E points at itself", va: 0x5000, mut: func(r RAM) { put64(r, lPML4, lPML4|P|RW|US) },
			code: 0, level: 1, tables: []uint64{lPML4, lPML4, lPML4, lPML4}},
		{name: "non-canonical", va: 0x0000_8000_0000_0000, err: "non-canonical"},
		{name: "non-canonical high", va: 0xfff0_0000_0000_0000, err: "non-canonical"},
	}
	runTranslate(t, ModeLong4, lPML4|0x18, longRAM, cases)
}

func TestTranslateLongErrors(t *testing.T) {
	r := longRAM()
	_, err := Translate(r, ModeLong4, lPML4, 0x0000_8000_0000_0000, Access{}, Flags{})
	if !errors.Is(err, ErrNonCanonical) {
		t.Errorf("non-canonical: err = %v, want ErrNonCanonical", err)
	}
	_, err = Translate(r, ModeLong4, 0x20_0000_0000, 0x5000, Access{}, Flags{})
	var te *TableError
	if !errors.As(err, &te) || te.Level != 4 || te.Addr != 0x20_0000_0000 || !te.Entry {
		t.Errorf("root outside RAM: err = %v, want a PML4 TableError", err)
	}
	if _, err := Translate(r, ModeLong5, lPML4, 0x5000, Access{}, Flags{}); err == nil || !strings.Contains(err.Error(), "5-level") {
		t.Errorf("5-level: err = %v", err)
	}
	if _, err := Translate(r, Mode(42), lPML4, 0x5000, Access{}, Flags{}); err == nil {
		t.Error("unknown mode: no error")
	}
}

func TestMaxPhysAddr(t *testing.T) {
	r := longRAM()
	put64(r, lPT+5*8, 1<<40|0x50000|P)
	for _, c := range []struct {
		maxPhys int
		fault   bool
	}{{36, true}, {40, true}, {41, false}, {48, false}, {60, false}, {1, true}, {0, false}} {
		w, err := Translate(r, ModeLong4, lPML4, 0x5000, Access{}, Flags{MaxPhysAddr: c.maxPhys})
		if gotFault := err != nil; gotFault != c.fault {
			t.Errorf("MaxPhysAddr %d: err = %v, want fault %v", c.maxPhys, err, c.fault)
		} else if err == nil && w.Phys != 1<<40|0x50000 {
			t.Errorf("MaxPhysAddr %d: phys %#x", c.maxPhys, w.Phys)
		}
	}
}

// PAE fixture: the PDPT sits 32-byte aligned inside page 0x1000 at 0x1020.
const (
	pPDPT = 0x1020
	pPD   = 0x2000
	pPT   = 0x3000
)

// paeRAM maps 0x5000 -> 0x50000 (user RW), 0x6000 -> 0x51000 (user RW NX),
// 0x200000 -> 0x400000 (2M, supervisor RO) and 0xc0000000 -> 0x52000 (PDPT[3]).
func paeRAM() RAM {
	r := make(RAM, 1<<20)
	put64(r, pPDPT, pPD|P)
	put64(r, pPD, pPT|P|RW|US)
	put64(r, pPT+5*8, 0x50000|P|RW|US)
	put64(r, pPT+6*8, 0x51000|P|RW|US|XD)
	put64(r, pPD+8, 0x400000|P|PS)
	put64(r, pPDPT+3*8, 0x4000|P)
	put64(r, 0x4000, 0x8000|P|RW)
	put64(r, 0x8000, 0x52000|P|RW)
	return r
}

func TestTranslatePAE(t *testing.T) {
	noNXE := &Flags{WP: true}
	cases := []translateCase{
		{name: "4K", va: 0x5123, phys: 0x50123, size: 4096, w: true, u: true,
			tables: []uint64{0x1000, pPD, pPT}, entries: []uint64{pPDPT, pPD, pPT + 5*8}},
		{name: "2M", va: 0x3fffff, phys: 0x5fffff, size: 2 << 20},
		{name: "PDPT[3]", va: 0xc000_0abc, phys: 0x52abc, size: 4096, w: true,
			entries: []uint64{pPDPT + 24, 0x4000, 0x8000}},
		{name: "NX", va: 0x6000, acc: Access{Fetch: true}, code: PFPresent | PFFetch, level: 1},
		{name: "XD without NXE", va: 0x6000, flags: noNXE, code: PFPresent | PFReserved, level: 1},
		{name: "write to 2M read-only", va: 0x200000, acc: Access{Write: true}, code: PFPresent | PFWrite, level: 2},
		{name: "PDPTE not present", va: 0x4000_0000, code: 0, level: 3},
		{name: "PDPTE R/W reserved", va: 0x5000, mut: func(r RAM) { put64(r, pPDPT, pPD|P|RW) }, code: PFPresent | PFReserved, level: 3},
		{name: "PDPTE bit 5 reserved", va: 0x5000, mut: func(r RAM) { put64(r, pPDPT, pPD|P|1<<5) }, code: PFPresent | PFReserved, level: 3},
		{name: "PDPTE bit 63 reserved", va: 0x5000, mut: func(r RAM) { put64(r, pPDPT, pPD|P|XD) }, code: PFPresent | PFReserved, level: 3},
		{name: "PTE bit 52 reserved", va: 0x5000, mut: func(r RAM) { put64(r, pPT+5*8, 1<<52|0x50000|P) }, code: PFPresent | PFReserved, level: 1},
		{name: "2M PDE bit 13 reserved", va: 0x200000, mut: func(r RAM) { put64(r, pPD+8, 0x400000|1<<13|P|PS) }, code: PFPresent | PFReserved, level: 2},
		{name: "above 4G", va: 1 << 32, err: "beyond 32 bits"},
		{name: "PD outside RAM", va: 0x5000, mut: func(r RAM) { put64(r, pPDPT, 0x1000_0000|P) }, err: "PD entry at 0x10000000"},
	}
	runTranslate(t, ModePAE, pPDPT|0x8, paeRAM, cases)
}

// Legacy fixture: PD at 0x1000, PT at 0x2000.
func legacyRAM() RAM {
	r := make(RAM, 1<<20)
	put32(r, 0x1000, 0x2000|P|RW|US)
	put32(r, 0x2000+5*4, 0x50000|P|RW|US)
	put32(r, 0x2000+6*4, 0x51000|P|US)
	put32(r, 0x1000+1*4, 0x800000|P|RW|PS)         // 4M at 0x400000 (or, without PSE, a PT at 0x800000)
	put32(r, 0x1000+2*4, 0x3fc00000|0xab<<13|P|PS) // PSE-36: 0xab_3fc00000
	put32(r, 0x1000+1023*4, 0x1000|P|RW)           // recursive
	return r
}

func TestTranslateLegacy32(t *testing.T) {
	noPSE := &Flags{WP: true, NXE: true}
	pse := &Flags{WP: true, NXE: true, PSE: true}
	cases := []translateCase{
		{name: "4K", va: 0x5fff, phys: 0x50fff, size: 4096, w: true, u: true,
			tables: []uint64{0x1000, 0x2000}, entries: []uint64{0x1000, 0x2000 + 20}},
		{name: "4M", va: 0x412345, flags: pse, phys: 0x812345, size: 4 << 20, w: true},
		{name: "PS ignored without PSE", va: 0x400000, flags: noPSE, err: "PT entry at 0x800000"},
		{name: "PSE-36", va: 0x800010, flags: pse, phys: 0xab_3fc0_0010, size: 4 << 20},
		{name: "PSE-36 bit 21 reserved", va: 0x800010, flags: pse,
			mut: func(r RAM) { put32(r, 0x1000+2*4, 0x3fc00000|1<<21|P|PS) }, code: PFPresent | PFReserved, level: 2},
		{name: "no reserved bits in a PTE", va: 0x5000, mut: func(r RAM) { put32(r, 0x2000+5*4, 0x50000|0xe00|P) },
			phys: 0x50000, size: 4096},
		{name: "user write to read-only", va: 0x6000, acc: Access{User: true, Write: true}, code: PFPresent | PFWrite | PFUser, level: 1},
		{name: "fetch: no NX, no I/D", va: 0x7000, acc: Access{Fetch: true}, code: 0, level: 1},
		{name: "fetch allowed", va: 0x5000, acc: Access{Fetch: true}, phys: 0x50000, size: 4096, w: true, u: true},
		{name: "recursive slot", va: 0xffc0_0000 | 1023<<12, phys: 0x1000, size: 4096, w: true},
		{name: "above 4G", va: 1 << 32, err: "beyond 32 bits"},
	}
	runTranslate(t, ModeLegacy32, 0x1000|0x18, legacyRAM, cases)
}

func TestTranslateNoPaging(t *testing.T) {
	w, err := Translate(RAM(nil), ModeNone, 0, 0x1234_5678, Access{Write: true, User: true}, Flags{})
	if err != nil || w.Phys != 0x1234_5678 || !w.Writable || !w.User || len(w.Tables) != 0 {
		t.Fatalf("got %+v, %v", w, err)
	}
}

func TestModeOf(t *testing.T) {
	const pg, pe, pae, la57, lme, lma = 1 << 31, 1, 1 << 5, 1 << 12, 1 << 8, 1 << 10
	for _, c := range []struct {
		cr0, cr4, efer uint64
		want           Mode
	}{
		{0, 0, 0, ModeNone},
		{pe, pae, lme, ModeNone},
		{pg | pe, 0, 0, ModeLegacy32},
		{pg | pe, 1 << 4, 0, ModeLegacy32},
		{pg | pe, pae, 0, ModePAE},
		{pg | pe, pae, lme | lma, ModeLong4},
		{pg | pe, pae, lma, ModeLong4},
		{pg | pe, pae, lme, ModeLong4},
		{pg | pe, pae | la57, lme | lma, ModeLong5},
	} {
		if got := ModeOf(c.cr0, c.cr4, c.efer); got != c.want {
			t.Errorf("ModeOf(%#x, %#x, %#x) = %v, want %v", c.cr0, c.cr4, c.efer, got, c.want)
		}
	}
	if f := FlagsOf(1<<16|1<<31, 1<<4, 1<<11); f != (Flags{WP: true, NXE: true, PSE: true}) {
		t.Errorf("FlagsOf = %+v", f)
	}
	if f := FlagsOf(1<<31, 1<<5, 1<<10); f != (Flags{}) {
		t.Errorf("FlagsOf = %+v", f)
	}
}

func TestRAM(t *testing.T) {
	r := RAM(make([]byte, 16))
	for _, c := range []struct {
		gpa uint64
		n   int
		ok  bool
	}{{0, 16, true}, {8, 8, true}, {16, 0, true}, {9, 8, false}, {17, 0, false}, {^uint64(0) - 3, 8, false}} {
		err := r.ReadPhys(c.gpa, make([]byte, c.n))
		if (err == nil) != c.ok {
			t.Errorf("ReadPhys(%#x, %d) = %v, want ok %v", c.gpa, c.n, err, c.ok)
		}
	}
}

func TestErrorStrings(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&PageFault{Addr: 0x1000, Code: 0, Level: 1}, "page fault at 0x1000: not present at level 1"},
		{&PageFault{Addr: 0x1000, Code: PFPresent | PFReserved, Level: 4}, "reserved bit set at level 4 (error code 0x9)"},
		{&PageFault{Addr: 0x1000, Code: PFPresent | PFWrite, Level: 1}, "protection violation"},
		{&TableError{Mode: ModeLong4, Level: 4, Addr: 0x10, Entry: true, Err: errors.New("x")}, "pagewalk: PML4 entry at 0x10: x"},
		{&TableError{Mode: ModePAE, Level: 3, Addr: 0x20, Err: errors.New("x")}, "pagewalk: PDPT table at 0x20: x"},
		{&TableError{Mode: ModeLegacy32, Level: 3, Addr: 0x20, Err: errors.New("x")}, "level-3 table"},
	} {
		if got := c.err.Error(); !strings.Contains(got, c.want) {
			t.Errorf("%q does not contain %q", got, c.want)
		}
	}
	for m, want := range map[Mode]string{ModeNone: "no paging", ModeLong4: "4-level paging", Mode(9): "Mode(9)"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q", int(m), m.String())
		}
	}
}
