package pagewalk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Fuzz inputs describe guest memory sparsely, so that mutations hit entries rather than zeros:
// each 10-byte record is a little-endian uint16 slot number (slot*8 modulo the RAM size) and the
// uint64 stored there. The RAM is 8 pages, so tables outside RAM are one bit flip away.
const fuzzRAMSize = 8 * 4096

func fuzzRAM(data []byte) RAM {
	r := make(RAM, fuzzRAMSize)
	for ; len(data) >= 10; data = data[10:] {
		off := uint64(binary.LittleEndian.Uint16(data)) * 8 % fuzzRAMSize
		binary.LittleEndian.PutUint64(r[off:], binary.LittleEndian.Uint64(data[2:]))
	}
	return r
}

// sparse encodes the non-zero 8-byte words of the first fuzzRAMSize bytes of r.
func sparse(r RAM) []byte {
	var out []byte
	for off := 0; off+8 <= fuzzRAMSize && off+8 <= len(r); off += 8 {
		if v := binary.LittleEndian.Uint64(r[off:]); v != 0 {
			out = binary.LittleEndian.AppendUint16(out, uint16(off/8))
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	}
	return out
}

func fuzzMode(m uint8) Mode { return Mode(m % 6) } // includes ModeLong5 and one unknown mode

func fuzzFlags(f uint8) Flags { return Flags{WP: f&1 != 0, NXE: f&2 != 0, PSE: f&4 != 0} }

func fuzzAccess(a uint8) Access { return Access{Write: a&1 != 0, User: a&2 != 0, Fetch: a&4 != 0} }

type translateSeed struct {
	name      string
	ram       RAM
	mode      Mode
	cr3, va   uint64
	acc, flag uint8
}

func translateSeeds() []translateSeed {
	return []translateSeed{
		{"long-4k", longRAM(), ModeLong4, lPML4, 0x5123, 0, 3},
		{"long-2m-write", longRAM(), ModeLong4, lPML4, 0x212345, 1, 3},
		{"long-1g-user", longRAM(), ModeLong4, lPML4, 0x4000_1000, 2, 3},
		{"long-kernel", longRAM(), ModeLong4, lPML4, 0xffff_ffff_8000_0000, 0, 3},
		{"long-recursive", longRAM(), ModeLong4, lPML4, recursive, 0, 3},
		{"long-nx-fetch", longRAM(), ModeLong4, lPML4, 0x8000, 4, 3},
		{"pae-4k", paeRAM(), ModePAE, pPDPT, 0x5000, 0, 3},
		{"pae-pdpt3", paeRAM(), ModePAE, pPDPT, 0xc000_0000, 1, 1},
		{"legacy-4k", legacyRAM(), ModeLegacy32, 0x1000, 0x5000, 0, 5},
		{"legacy-pse36", legacyRAM(), ModeLegacy32, 0x1000, 0x800000, 0, 5},
	}
}

func FuzzTranslate(f *testing.F) {
	for _, s := range translateSeeds() {
		f.Add(sparse(s.ram), uint8(s.mode), s.cr3, s.va, s.acc, s.flag)
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, cr3, va uint64, acc, flag uint8) {
		r := fuzzRAM(data)
		m, a, fl := fuzzMode(mode), fuzzAccess(acc), fuzzFlags(flag)
		w, err := Translate(r, m, cr3, va, a, fl)
		w2, err2 := Translate(r, m, cr3, va, a, fl)
		if !reflect.DeepEqual(w, w2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("not deterministic: %+v %v, then %+v %v", w, err, w2, err2)
		}
		if len(w.Tables) != len(w.Entries) || len(w.Tables) > 4 {
			t.Fatalf("tables %#x entries %#x", w.Tables, w.Entries)
		}
		for i, e := range w.Entries {
			if w.Tables[i] != e&^0xfff || e%entrySize(m) != 0 {
				t.Fatalf("entry %#x not in table %#x or unaligned", e, w.Tables[i])
			}
		}
		var pf *PageFault
		var te *TableError
		switch {
		case err == nil:
			if m != ModeNone && len(w.Tables) == 0 {
				t.Fatal("translated without reading a table")
			}
			switch w.PageSize {
			case 4096, 2 << 20, 4 << 20, 1 << 30:
			default:
				t.Fatalf("page size %#x", w.PageSize)
			}
			if w.Phys&(w.PageSize-1) != va&(w.PageSize-1) {
				t.Fatalf("phys %#x does not keep the offset of %#x in a %#x page", w.Phys, va, w.PageSize)
			}
			if w.NX && a.Fetch || a.User && !w.User || a.Write && a.User && !w.Writable {
				t.Fatalf("access %+v allowed on %+v", a, w)
			}
		case errors.As(err, &pf):
			if pf.Addr != va || pf.Level < 1 || pf.Level > 4 || pf.Code&^0x1f != 0 {
				t.Fatalf("fault %+v", *pf)
			}
		case errors.As(err, &te):
			if len(w.Entries) == 0 || te.Addr != w.Entries[len(w.Entries)-1] {
				t.Fatalf("table error %v does not name the last entry of %#x", err, w.Entries)
			}
		}
		// Every table a walk reads is one a scan lists, and a scan that could read every
		// reachable table leaves no walk failing to read one.
		tr, serr := Scan(r, m, cr3, fl, 0)
		other := err != nil && !errors.As(err, &pf) && !errors.As(err, &te)
		if serr != nil || other {
			return
		}
		if err != nil && errors.As(err, &te) {
			t.Fatalf("scan read every table but Translate failed: %v", err)
		}
		listed := map[uint64]bool{}
		for _, p := range tr.Pages {
			listed[p] = true
		}
		for _, p := range w.Tables {
			if !listed[p] {
				t.Fatalf("walk read table %#x, scan listed only %#x", p, tr.Pages)
			}
		}
	})
}

func FuzzTablePages(f *testing.F) {
	for _, s := range translateSeeds() {
		f.Add(sparse(s.ram), uint8(s.mode), s.cr3, s.flag, uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, cr3 uint64, flag uint8, limit uint8) {
		defer func(v int) { MaxMappingVisits = v }(MaxMappingVisits)
		MaxMappingVisits = 64
		r := fuzzRAM(data)
		m, fl := fuzzMode(mode), fuzzFlags(flag)
		tr, err := Scan(r, m, cr3, fl, int(limit))
		tr2, err2 := Scan(r, m, cr3, fl, int(limit))
		if !reflect.DeepEqual(tr, tr2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("not deterministic: %+v %v, then %+v %v", tr, err, tr2, err2)
		}
		max := int(limit)
		if max == 0 {
			max = DefaultTableLimit
		}
		if len(tr.Pages) > max {
			t.Fatalf("%d pages over the limit %d", len(tr.Pages), max)
		}
		seen := map[uint64]bool{}
		for _, p := range tr.Pages {
			if seen[p] || p&0xfff != 0 {
				t.Fatalf("page %#x repeated or unaligned in %#x", p, tr.Pages)
			}
			seen[p] = true
		}
		if len(tr.Pages) > 0 && tr.Pages[0] != rootTable(m, cr3, Flags{})&^0xfff {
			t.Fatalf("root %#x not first in %#x", rootTable(m, cr3, Flags{}), tr.Pages)
		}
		if err != nil {
			return
		}
		// Each listed mapping must translate to what was listed, at both ends of the page.
		n := 0
		_ = MappingsWith(r, m, cr3, fl, func(va, pa, size uint64, wr, us, nx bool) bool {
			for _, off := range []uint64{0, size - 1} {
				w, err := Translate(r, m, cr3, va+off, Access{}, Flags{NXE: fl.NXE, PSE: fl.PSE})
				if m == ModeNone && err == nil {
					continue
				}
				if err != nil || w.Phys != pa+off || w.PageSize != size || w.Writable != wr || w.User != us || w.NX != nx {
					t.Fatalf("listed %#x -> %#x size %#x w=%v u=%v nx=%v; Translate gives %+v, %v", va, pa, size, wr, us, nx, w, err)
				}
			}
			n++
			return n < 64
		})
	})
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpus from the fixtures when
// PAGEWALK_WRITE_SEEDS is set; otherwise it checks the corpus is there.
func TestWriteFuzzSeeds(t *testing.T) {
	write := os.Getenv("PAGEWALK_WRITE_SEEDS") != ""
	for _, s := range translateSeeds() {
		files := map[string]string{
			filepath.Join("testdata", "fuzz", "FuzzTranslate", s.name): fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%d)\nuint64(%d)\nuint64(%d)\nbyte(%d)\nbyte(%d)\n",
				sparse(s.ram), uint8(s.mode), s.cr3, s.va, s.acc, s.flag),
			filepath.Join("testdata", "fuzz", "FuzzTablePages", s.name): fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%d)\nuint64(%d)\nbyte(%d)\nbyte(%d)\n",
				sparse(s.ram), uint8(s.mode), s.cr3, s.flag, 0),
		}
		for path, body := range files {
			if !write {
				if _, err := os.Stat(path); err != nil {
					t.Errorf("seed missing (regenerate with PAGEWALK_WRITE_SEEDS=1): %v", err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
