package logfmt

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"vmrr/machine/cpu"
	"vmrr/position"
)

// testHeader is a header with every field set.
func testHeader() *Header {
	img := []byte("\x7fELF test image")
	return &Header{
		VMRRVersion: "0.1.0-test",
		ImagePath:   "testdata/guests/tick.elf",
		ImageSHA256: HashImage(img),
		ImageSize:   uint64(len(img)),
		Image:       img,
		MemoryBytes: 64 << 20,
		Boot:        "elf64",
		Mode:        "fast",
		CPUID: []CPUIDEntry{
			{Function: 0, EAX: 0xd, EBX: 0x756e6547, ECX: 0x6c65746e, EDX: 0x49656e69},
			{Function: 7, Index: 0, Flags: 1, EBX: 0x40000},
		},
		Patches:   []Patch{{Addr: 0x101234, Len: 2, Original: []byte{0x0f, 0x31}, Instr: cpu.RDTSC}},
		TLBSync:   true,
		Accel:     "soft",
		ExitsOnly: true,
		Args:      "console=ttyS0",
		StartTime: time.Date(2026, 11, 26, 6, 0, 0, 123456789, time.UTC),
		Host:      "Linux 6.8 / Test CPU / PVM",
	}
}

// fakeClock is a WriterOptions.Now that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

// allKinds is one event of every kind, positions increasing.
func allKinds() []*Event {
	return []*Event{
		{Kind: KindNonDet, Pos: position.Pos{Exit: 1}, Instr: cpu.RDTSC, Values: []uint64{1_000_000}},
		{Kind: KindNonDet, Pos: position.Pos{Exit: 2}, Instr: cpu.RDTSCP, Values: []uint64{1_015_000, 3}},
		{Kind: KindNonDet, Pos: position.Pos{Exit: 3}, Instr: cpu.RDRAND, Values: []uint64{0xdeadbeefcafef00d}},
		{Kind: KindNonDet, Pos: position.Pos{Exit: 3}, Instr: cpu.RDSEED, Values: []uint64{^uint64(0)}},
		{Kind: KindNonDet, Pos: position.Pos{Exit: 4, Insn: 7}, Instr: cpu.RDPID, Values: []uint64{0}},
		{Kind: KindPortIn, Pos: position.Pos{Exit: 5}, Port: 0x3fd, Size: 1, Values: []uint64{0x61}},
		{Kind: KindMMIORead, Pos: position.Pos{Exit: 9, Insn: 3}, Addr: 0xfed00000, Size: 4, Values: []uint64{0x12345678}},
		{Kind: KindInterrupt, Pos: position.Pos{Exit: 9, Insn: 4000}, Vector: 0x20, Landing: Landing{
			RIP: 0xffffffff81001234, RegHash: 0x1111, MemHash: 0x2222, Pages: []uint64{0x100, 0x9f, 0x2000}}},
		{Kind: KindInterrupt, Pos: position.Pos{Exit: 10}, Vector: 0x24, Landing: Landing{RIP: 0x1000}},
		{Kind: KindInject, Pos: position.Pos{Exit: 11}, Vector: 0x21, Landing: Landing{
			RIP: 0x101010, RegHash: 0x3333, MemHash: 0x4444, Pages: []uint64{0x7, 0x7, 0x3}}},
		{Kind: KindInject, Pos: position.Pos{Exit: 11}, Vector: 0x20},
		{Kind: KindSerialRX, Pos: position.Pos{Exit: 12}, Data: []byte("hello\n"), Landing: Landing{
			RIP: 0x101020, RegHash: 0x5555, MemHash: 0x6666, Pages: []uint64{0x200}}},
		{Kind: KindCheckpoint, Pos: position.Pos{Exit: 12, Insn: 1}, RIP: 0x101000, RegHash: 7, MemHash: 8},
		{Kind: KindCheckpoint, Pos: position.Pos{Exit: 12, Insn: 2}, RIP: 0x101004, RegHash: 9, MemHash: 10,
			Values: testRegs(1), Landing: Landing{Pages: []uint64{0x100<<32 | 0xdeadbeef, 0x101<<32 | 1, 0x9f<<32 | 0xffffffff,
				0xffffffff<<32 | 5, 0}}},
		{Kind: KindCheckpoint, Pos: position.Pos{Exit: 12, Insn: 3}, RIP: 0x101008, Values: testRegs(2)},
		{Kind: KindCheckpoint, Pos: position.Pos{Exit: 12, Insn: 4}, Values: testRegs(2)[:5]},
		{Kind: KindCheckpoint, Pos: position.Pos{Exit: 12, Insn: 5}, Values: make([]uint64, 64)},
		{Kind: KindRingFlush, Pos: position.Pos{Exit: 13}, Ring: []RingEntry{
			{Kind: 1, Value: 2_000_000}, {Kind: 1, Value: 2_000_040}, {Kind: 2, Aux: 1, Value: 2_000_090},
			{Kind: 3, Value: 0x0123456789abcdef}, {Kind: 99, Aux: 5, Value: 42}}},
		{Kind: KindRingFlush, Pos: position.Pos{Exit: 13}},
		{Kind: KindSerialRX, Pos: position.Pos{Exit: 20}},
	}
}

// testRegs is a checkpoint's 18 registers at step i: a counter, a stack
// pointer that moves, the rest fixed or random-looking.
func testRegs(i uint64) []uint64 {
	v := make([]uint64, 18) // as many as the recorder stores
	for j := range v {
		v[j] = 0x1000*uint64(j) + 7
	}
	v[0] = i                            // rax: a counter
	v[3] = 0x9e3779b97f4a7c15 * i       // rdx: changes every bit
	v[6] = 0x7000 - 8*i                 // rsp
	v[16] = 0xffffffff81000000 + 0x40*i // rip
	v[17] = 0x202 | (i&1)<<6            // rflags: ZF toggles
	return v
}

// genStream is a realistic recording of n events: mostly trapped RDTSCs
// (one exit each, TSC about 15000 cycles apart), serial status reads,
// timer interrupts with landings, the odd RDRAND, serial input, flushes of
// the paravirtual ring, and a checkpoint every 5000 events.
func genStream(n int, seed uint64) []*Event {
	rng := rand.New(rand.NewPCG(seed, 1))
	evs := make([]*Event, 0, n)
	var exit, insn uint64
	tsc := uint64(7_000_000_000)
	for len(evs) < n {
		at := exit
		var e *Event
		switch x := rng.IntN(100); {
		case len(evs)%5000 == 4999:
			insn++
			pages := make([]uint64, rng.IntN(300))
			pfn := uint64(0x100)
			for i := range pages {
				pfn += 1 + rng.Uint64N(3)
				pages[i] = pfn<<32 | uint64(rng.Uint32())
			}
			e = &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: exit, Insn: insn}, RIP: 0x100000 + rng.Uint64N(1<<16),
				RegHash: rng.Uint64(), MemHash: rng.Uint64(), Values: testRegs(uint64(len(evs))), Landing: Landing{Pages: pages}}
		case x < 70:
			exit++
			tsc += 14000 + rng.Uint64N(2000)
			e = &Event{Kind: KindNonDet, Pos: position.Pos{Exit: exit}, Instr: cpu.RDTSC, Values: []uint64{tsc}}
		case x < 73:
			exit++
			tsc += 14000 + rng.Uint64N(2000)
			e = &Event{Kind: KindNonDet, Pos: position.Pos{Exit: exit}, Instr: cpu.RDTSCP, Values: []uint64{tsc, 0}}
		case x < 76:
			exit++
			e = &Event{Kind: KindNonDet, Pos: position.Pos{Exit: exit}, Instr: cpu.RDRAND, Values: []uint64{rng.Uint64()}}
		case x < 86:
			exit += 1 + rng.Uint64N(3)
			e = &Event{Kind: KindPortIn, Pos: position.Pos{Exit: exit}, Port: 0x3fd, Size: 1, Values: []uint64{0x60 | rng.Uint64N(2)}}
		case x < 87:
			exit++
			e = &Event{Kind: KindMMIORead, Pos: position.Pos{Exit: exit}, Addr: 0xfed000f0, Size: 8, Values: []uint64{tsc / 100}}
		case x < 93:
			if d := rng.Uint64N(3); d > 0 {
				exit, insn = exit+d, 0
			}
			insn += 1 + rng.Uint64N(5000)
			pages := make([]uint64, rng.IntN(6))
			for i := range pages {
				pages[i] = 0x100 + rng.Uint64N(64)
			}
			kind := KindInterrupt
			if x == 92 {
				kind = KindInject // a kick: the injection needs its own event
			}
			e = &Event{Kind: kind, Pos: position.Pos{Exit: exit, Insn: insn}, Vector: 0x20,
				Landing: Landing{RIP: 0x101000 + rng.Uint64N(4096), RegHash: rng.Uint64(), MemHash: rng.Uint64(), Pages: pages}}
		case x < 95:
			exit++
			data := make([]byte, 1+rng.IntN(8))
			for i := range data {
				data[i] = byte('a' + rng.IntN(26))
			}
			e = &Event{Kind: KindSerialRX, Pos: position.Pos{Exit: exit}, Data: data,
				Landing: Landing{RIP: 0x101000 + rng.Uint64N(4096), RegHash: rng.Uint64(), MemHash: rng.Uint64()}}
		default:
			exit++
			ring := make([]RingEntry, 16+rng.IntN(48))
			for i := range ring {
				tsc += 30 + rng.Uint64N(200)
				ring[i] = RingEntry{Kind: 1, Value: tsc}
			}
			e = &Event{Kind: KindRingFlush, Pos: position.Pos{Exit: exit}, Ring: ring}
		}
		if exit != at && e.Kind != KindInterrupt && e.Kind != KindInject {
			insn = 0
		}
		evs = append(evs, e)
	}
	return evs
}

// normalize is the event as a reader returns it: the fields of its kind
// only, nil for empty slices.
func normalize(e *Event) Event {
	n := Event{Kind: e.Kind, Pos: e.Pos}
	switch e.Kind {
	case KindNonDet:
		n.Instr, n.Values = e.Instr, append([]uint64(nil), e.Values...)
	case KindPortIn:
		n.Port, n.Size, n.Values = e.Port, e.Size, append([]uint64(nil), e.Values...)
	case KindMMIORead:
		n.Addr, n.Size, n.Values = e.Addr, e.Size, append([]uint64(nil), e.Values...)
	case KindInterrupt, KindInject:
		n.Vector, n.Landing = e.Vector, e.Landing
	case KindSerialRX:
		n.Landing = e.Landing
		if len(e.Data) > 0 {
			n.Data = e.Data
		}
	case KindCheckpoint:
		n.RIP, n.RegHash, n.MemHash = e.RIP, e.RegHash, e.MemHash
		n.Landing.Pages = e.Landing.Pages
		if len(e.Values) > 0 {
			n.Values = e.Values
		}
	case KindRingFlush:
		if len(e.Ring) > 0 {
			n.Ring = e.Ring
		}
	case KindEnd:
		end := *e.End
		n.End = &end
	}
	if len(n.Landing.Pages) == 0 {
		n.Landing.Pages = nil
	}
	return n
}

func sameEvent(a, b *Event) bool {
	na, nb := normalize(a), normalize(b)
	return reflect.DeepEqual(&na, &nb)
}

// writeLog writes evs to a log in memory, closing it with end unless end
// is nil.
func writeLog(t testing.TB, h *Header, evs []*Event, opt WriterOptions, end *EndRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if end != nil {
		if err := w.Close(end); err != nil {
			t.Fatal(err)
		}
	} else if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads every event of a log; err is what ended the reading.
func readAll(b []byte) (h *Header, evs []*Event, err error) {
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	for {
		e, err := r.Next()
		if err != nil {
			return r.Header(), evs, err
		}
		evs = append(evs, e)
	}
}

// fixCRCs rewrites every checksum of a log-shaped byte slice to match its
// contents, leaving the lengths alone, so the fuzzer can get past the
// checksums into the decoders.
func fixCRCs(in []byte) []byte {
	b := append([]byte(nil), in...)
	le := binary.LittleEndian
	fixRec := func(off int) int {
		if len(b)-off < recHeaderSize {
			return -1
		}
		n := int(le.Uint32(b[off+4:]))
		if n <= len(b)-off-recHeaderSize {
			le.PutUint32(b[off+8:], crc(b[off+recHeaderSize:off+recHeaderSize+n]))
		}
		le.PutUint32(b[off+12:], crc(b[off:off+12]))
		if n > len(b)-off-recHeaderSize {
			return -1
		}
		return off + recHeaderSize + n
	}
	off := fixRec(preludeSize)
	for off >= 0 && len(b)-off >= 4 {
		switch [4]byte(b[off : off+4]) {
		case tagFrame:
			if len(b)-off < frameHeaderSize {
				return b
			}
			n := int(le.Uint32(b[off+fhCompLen:]))
			if n <= len(b)-off-frameHeaderSize {
				le.PutUint32(b[off+fhPayloadCRC:], crc(b[off+frameHeaderSize:off+frameHeaderSize+n]))
			}
			le.PutUint32(b[off+fhHeaderCRC:], crc(b[off:off+fhHeaderCRC]))
			if n > len(b)-off-frameHeaderSize {
				return b
			}
			off += frameHeaderSize + n
		case tagFooter:
			foot := off
			off = fixRec(off)
			if off >= 0 && len(b)-off >= trailerSize {
				le.PutUint64(b[off:], uint64(foot))
				le.PutUint32(b[off+8:], crc(b[off:off+8]))
			}
			return b
		default:
			return b
		}
	}
	return b
}

// exercise drives a reader over arbitrary bytes the way the fuzzer does and
// fails on anything but a clean error.
func exercise(t *testing.T, data []byte) {
	r, err := NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		if err.Error() == "" {
			t.Fatal("empty error")
		}
		return
	}
	var n uint64
	var last error
	for {
		e, err := r.Next()
		if err != nil {
			last = err
			break
		}
		if e == nil || r.Index() != n+1 {
			t.Fatalf("event %d: nil event or index %d", n, r.Index())
		}
		n++
	}
	if _, err := r.Next(); err == nil || err.Error() != last.Error() {
		t.Fatalf("error not sticky: %v, then %v", last, err)
	}
	for _, i := range []uint64{0, n / 2, n, n + 1} {
		if err := r.SeekEvent(i); err == nil {
			if r.Index() != i {
				t.Fatalf("SeekEvent(%d): index %d", i, r.Index())
			}
			r.Next()
		}
	}
	r.SeekPosition(position.Pos{Exit: 3})
	r.Next()
	r.SeekPosition(position.Pos{Exit: ^uint64(0), Insn: ^uint64(0)})
	r.Next()
}

// equalHeaders is used by tests and the fuzzer: reflect.DeepEqual would
// tell a nil slice from an empty one and compare time.Location pointers.
func equalHeaders(a, b *Header) bool {
	if a.VMRRVersion != b.VMRRVersion || a.ImagePath != b.ImagePath || a.ImageSHA256 != b.ImageSHA256 ||
		a.ImageSize != b.ImageSize || !bytes.Equal(a.Image, b.Image) || a.MemoryBytes != b.MemoryBytes ||
		a.Boot != b.Boot || a.Accel != b.Accel || a.Mode != b.Mode || a.TLBSync != b.TLBSync || a.ExitsOnly != b.ExitsOnly || a.Args != b.Args ||
		!a.StartTime.Equal(b.StartTime) || a.Host != b.Host || len(a.CPUID) != len(b.CPUID) ||
		len(a.Patches) != len(b.Patches) {
		return false
	}
	for i := range a.CPUID {
		if a.CPUID[i] != b.CPUID[i] {
			return false
		}
	}
	for i, p := range a.Patches {
		q := b.Patches[i]
		if p.Addr != q.Addr || p.Len != q.Len || p.Instr != q.Instr || !bytes.Equal(p.Original, q.Original) {
			return false
		}
	}
	return true
}
