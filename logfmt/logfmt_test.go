package logfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"

	"vmrr/machine/cpu"
	"vmrr/position"
)

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindNonDet: "nondet", KindPortIn: "port-in", KindMMIORead: "mmio-read", KindInterrupt: "irq",
		KindSerialRX: "serial-rx", KindCheckpoint: "checkpoint", KindRingFlush: "ring-flush", KindEnd: "end",
		KindInject: "inject", 0: "kind(0)", 10: "kind(10)", 15: "kind(15)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		evs  []*Event
		opt  WriterOptions
	}{
		{"empty", nil, WriterOptions{}},
		{"all kinds, one frame", allKinds(), WriterOptions{}},
		{"all kinds, tiny frames", allKinds(), WriterOptions{FrameBytes: 1}},
		{"stream, 4 KiB frames", genStream(5000, 1), WriterOptions{FrameBytes: 4 << 10}},
		{"stream, default frames", genStream(20000, 2), WriterOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := &EndRecord{Reason: "guest exited", Status: 3, RIP: 0x1234, StateHash: 99, Pos: position.Pos{Exit: 1 << 40}}
			b := writeLog(t, testHeader(), tt.evs, tt.opt, end)
			for _, strip := range []bool{false, true} {
				data := b
				if strip {
					data = stripFooter(t, b)
				}
				h, got, err := readAll(data)
				if err != io.EOF {
					t.Fatalf("footer stripped %v: read ended with %v, want io.EOF", strip, err)
				}
				if !equalHeaders(h, testHeader()) || h.FormatVersion != Version {
					t.Fatalf("header = %+v", h)
				}
				if len(got) != len(tt.evs)+1 {
					t.Fatalf("read %d events, want %d", len(got), len(tt.evs)+1)
				}
				for i, e := range tt.evs {
					if !sameEvent(got[i], e) {
						t.Fatalf("event %d = %+v, want %+v", i, normalize(got[i]), normalize(e))
					}
				}
				last := got[len(got)-1]
				wantEnd := *end
				wantEnd.Events = uint64(len(tt.evs))
				if last.Kind != KindEnd || *last.End != wantEnd || last.Pos != end.Pos {
					t.Fatalf("last event = %+v (end %+v), want end %+v", last, last.End, wantEnd)
				}
			}
		})
	}
}

// stripFooter cuts the footer and trailer off a closed log, so the reader
// must find its frames by scanning.
func stripFooter(t testing.TB, b []byte) []byte {
	t.Helper()
	off := int64(binary.LittleEndian.Uint64(b[len(b)-trailerSize:]))
	return b[:off]
}

func TestEndDefaults(t *testing.T) {
	evs := allKinds()
	b := writeLog(t, testHeader(), evs, WriterOptions{}, &EndRecord{Reason: "x"})
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := EndRecord{Reason: "x", Events: uint64(len(evs)), Pos: evs[len(evs)-1].Pos}
	if r.End() == nil || *r.End() != want {
		t.Fatalf("End() from the footer = %+v, want %+v", r.End(), want)
	}

	var buf bytes.Buffer
	w, _ := NewWriter(&buf, &Header{}, WriterOptions{})
	if err := w.Close(nil); err != nil {
		t.Fatal(err)
	}
	_, got, err := readAll(buf.Bytes())
	if err != io.EOF || len(got) != 1 || got[0].End.Reason != "closed" {
		t.Fatalf("Close(nil): events %v, err %v", got, err)
	}
}

func TestWriterRefuses(t *testing.T) {
	tests := []struct {
		name string
		e    *Event
		want string
	}{
		{"unknown kind", &Event{Kind: 12, Pos: position.Pos{Exit: 5}}, "unknown event kind 12"},
		{"kind zero", &Event{Pos: position.Pos{Exit: 5}}, "unknown event kind 0"},
		{"end", &Event{Kind: KindEnd, Pos: position.Pos{Exit: 5}, End: &EndRecord{}}, "written by Close"},
		{"no values", &Event{Kind: KindNonDet, Pos: position.Pos{Exit: 5}, Instr: 1}, "0 values"},
		{"too many values", &Event{Kind: KindNonDet, Pos: position.Pos{Exit: 5}, Instr: 1, Values: make([]uint64, 8)}, "8 values"},
		{"instr too big", &Event{Kind: KindNonDet, Pos: position.Pos{Exit: 5}, Instr: 32, Values: []uint64{1}}, "over 31"},
		{"checkpoint values", &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 5}, Values: make([]uint64, 65)}, "65 values (at most 64)"},
		{"checkpoint pages", &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 5}, Landing: Landing{Pages: make([]uint64, maxCheckpointPages+1)}}, "pages (at most"},
		{"inject pages", &Event{Kind: KindInject, Pos: position.Pos{Exit: 5}, Landing: Landing{Pages: make([]uint64, maxLandingPages+1)}}, "pages (at most"},
		{"huge checkpoint", &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 5}, Landing: Landing{Pages: make([]uint64, maxCheckpointPages-1)},
			Values: make([]uint64, 64)}, "does not fit"},
		{"port without value", &Event{Kind: KindPortIn, Pos: position.Pos{Exit: 5}}, "needs exactly 1"},
		{"backwards", &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 4, Insn: 9}}, "before the previous"},
		{"huge", &Event{Kind: KindSerialRX, Pos: position.Pos{Exit: 5}, Data: make([]byte, MaxFrameBytes)}, "does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, &Header{}, WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ok := &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 5}}
			if err := w.Append(ok); err != nil {
				t.Fatal(err)
			}
			err = w.Append(tt.e)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "logfmt: event 1: ") {
				t.Fatalf("Append = %v, want an error about %q", err, tt.want)
			}
			// The refused event left no trace: the log is still good.
			if err := w.Append(ok); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(nil); err != nil {
				t.Fatal(err)
			}
			_, got, err := readAll(buf.Bytes())
			if err != io.EOF || len(got) != 3 || w.Events() != 2 {
				t.Fatalf("after a refused event: %d events, %v", len(got), err)
			}
		})
	}
}

func TestWriterOptions(t *testing.T) {
	for _, opt := range []WriterOptions{{FrameBytes: -1}, {FrameBytes: MaxFrameBytes}} {
		if _, err := NewWriter(io.Discard, &Header{}, opt); err == nil {
			t.Errorf("NewWriter(%+v) accepted", opt)
		}
	}
	if _, err := NewWriter(io.Discard, nil, WriterOptions{}); err == nil {
		t.Error("NewWriter with no header accepted")
	}
	if _, err := NewWriter(io.Discard, &Header{FormatVersion: 2}, WriterOptions{}); err == nil {
		t.Error("NewWriter with format version 2 accepted")
	}
}

// countingWriter counts the Write calls: one per frame.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(b []byte) (int, error) { c.writes++; return c.Buffer.Write(b) }

func TestFrameBounds(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	var out countingWriter
	w, err := NewWriter(&out, &Header{}, WriterOptions{FrameBytes: 100, FlushInterval: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	writes := func() int { return out.writes - 1 } // the header was one
	e := &Event{Kind: KindNonDet, Instr: cpu.RDTSC, Values: []uint64{5}}
	for i := 0; i < 10; i++ {
		e.Pos.Exit++
		w.Append(e)
	}
	if writes() != 0 {
		t.Fatalf("%d frames written before any bound was reached", writes())
	}
	clock.t = clock.t.Add(999 * time.Millisecond)
	e.Pos.Exit++
	w.Append(e)
	if writes() != 0 {
		t.Fatal("frame sealed before FlushInterval")
	}
	clock.t = clock.t.Add(time.Millisecond)
	e.Pos.Exit++
	w.Append(e)
	if writes() != 1 {
		t.Fatalf("%d frames after FlushInterval, want 1", writes())
	}
	for i := 0; i < 40; i++ { // about 4 bytes each: one frame at 100 bytes
		e.Pos.Exit++
		w.Append(e)
	}
	if writes() != 2 {
		t.Fatalf("%d frames after FrameBytes, want 2", writes())
	}
	e.Pos.Exit++
	w.Append(e)
	w.Flush()
	w.Flush() // nothing left: no empty frame
	if writes() != 3 {
		t.Fatalf("%d frames after Flush, want 3", writes())
	}
	if w.Events() != 53 {
		t.Fatalf("Events() = %d", w.Events())
	}
}

// TestRDTSCRunIsSmall checks the promise of the format: a run of trapped
// RDTSCs costs a few bytes each, not 8.
func TestRDTSCRunIsSmall(t *testing.T) {
	var evs []*Event
	tsc := uint64(1 << 40)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := uint64(1); i <= 10000; i++ {
		tsc += 14000 + rng.Uint64N(2000) // a trap exit's worth of cycles, with jitter
		evs = append(evs, &Event{Kind: KindNonDet, Pos: position.Pos{Exit: i}, Instr: cpu.RDTSC, Values: []uint64{tsc}})
	}
	b := writeLog(t, &Header{}, evs, WriterOptions{}, &EndRecord{})
	if per := float64(len(b)) / float64(len(evs)); per > 5 {
		t.Fatalf("%.2f bytes per RDTSC event, want at most 5", per)
	}
}

func TestCreateAndOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.vmrr")
	w, err := Create(path, testHeader(), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The header is on disk before any frame.
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !equalHeaders(r.Header(), testHeader()) {
		t.Fatal("header differs")
	}
	if _, err := r.Next(); err == nil || err.Error() != "log ends early after event 0 (recording was interrupted)" {
		t.Fatalf("Next on a log with no frame = %v", err)
	}
	r.Close()
	for _, e := range allKinds() {
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(&EndRecord{Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(allKinds()[0]); err == nil {
		t.Fatal("Append after Close accepted")
	}
	r, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.End() == nil || r.End().Reason != "done" {
		t.Fatalf("End() = %+v", r.End())
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(allKinds())+1 {
		t.Fatalf("read %d events", n)
	}

	if _, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir"), &Header{}, WriterOptions{}); err == nil {
		t.Fatal("Create in a missing directory worked")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.HasPrefix(err.Error(), "logfmt: ") {
		t.Fatalf("Open of a missing file = %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Fatal("Open of a directory worked")
	}
}

func TestOpenRefuses(t *testing.T) {
	good := writeLog(t, &Header{}, allKinds(), WriterOptions{}, &EndRecord{})
	v2 := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(v2[len(Magic):], 2)
	tests := []struct {
		name string
		b    []byte
		is   error
		want string
	}{
		{"elf", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"), ErrNotLog, "not a vmrr log"},
		{"text", []byte("hello"), ErrNotLog, "not a vmrr log"},
		{"version 2", v2, ErrUnsupportedVersion, "log format version 2 is not supported by this vmrr (supports 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.b), int64(len(tt.b)))
			if !errors.Is(err, tt.is) || err.Error() != tt.want {
				t.Fatalf("NewReader = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCheckImage(t *testing.T) {
	h := testHeader()
	if err := h.CheckImage(h.Image); err != nil {
		t.Fatal(err)
	}
	err := h.CheckImage([]byte("another image"))
	var m *ImageMismatchError
	if !errors.As(err, &m) {
		t.Fatalf("CheckImage of another image = %v", err)
	}
	want := fmt.Sprintf("log was recorded from testdata/guests/tick.elf (sha256 %x…), this image is sha256 %x…",
		h.ImageSHA256[:6], m.Got[:6])
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

// smallLog is a closed log of a few frames for the exhaustive tests.
func smallLog(t testing.TB) ([]byte, []*Event) {
	evs := allKinds()
	h := testHeader()
	h.Image = nil
	h.CPUID = h.CPUID[:1]
	return writeLog(t, h, evs, WriterOptions{FrameBytes: 48}, &EndRecord{Reason: "exit", Status: 1}), evs
}

func frameList(t testing.TB, b []byte) []frameInfo {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !r.indexed {
		t.Fatal("log has no footer")
	}
	return r.frames
}

// TestTruncateEverywhere simulates kill -9 at every byte of a small log:
// the reader returns every event of each complete frame, then says the
// recording was interrupted.
func TestTruncateEverywhere(t *testing.T) {
	b, evs := smallLog(t)
	frames := frameList(t, b)
	if len(frames) < 4 {
		t.Fatalf("only %d frames: make them smaller", len(frames))
	}
	last := frames[len(frames)-1]
	for cut := 0; cut <= len(b); cut++ {
		h, got, err := readAll(b[:cut])
		if cut < int(frames[0].off) {
			var te *TruncatedError
			if h != nil || !errors.As(err, &te) || te.Events != 0 {
				t.Fatalf("cut at %d (in the header): %v", cut, err)
			}
			continue
		}
		if cut >= int(last.off+last.size) {
			// Every event is there; only (part of) the footer is gone.
			if err != io.EOF || len(got) != len(evs)+1 {
				t.Fatalf("cut at %d (in the footer): %d events, %v", cut, len(got), err)
			}
			continue
		}
		want := 0
		for _, f := range frames {
			if f.off+f.size <= int64(cut) {
				want = int(f.first) + int(f.events)
			}
		}
		var te *TruncatedError
		if !errors.As(err, &te) || te.Events != uint64(want) || len(got) != want {
			t.Fatalf("cut at %d: %d events, %v; want %d events and a truncation", cut, len(got), err, want)
		}
		if msg := fmt.Sprintf("log ends early after event %d (recording was interrupted)", want); err.Error() != msg {
			t.Fatalf("cut at %d: %q", cut, err)
		}
		for i := range got {
			if !sameEvent(got[i], evs[i]) {
				t.Fatalf("cut at %d: event %d differs", cut, i)
			}
		}
		// Seeking agrees: to the last readable event, to just past it,
		// and beyond (refused, naming the truncation).
		r, _ := NewReader(bytes.NewReader(b[:cut]), int64(cut))
		if err := r.SeekEvent(uint64(want)); err != nil {
			t.Fatalf("cut at %d: SeekEvent(%d) = %v", cut, want, err)
		}
		if _, err := r.Next(); !errors.As(err, &te) {
			t.Fatalf("cut at %d: Next at the end = %v", cut, err)
		}
		if err := r.SeekEvent(uint64(want + 1)); !errors.As(err, &te) {
			t.Fatalf("cut at %d: SeekEvent past the end = %v", cut, err)
		}
	}
}

func TestZeroedTail(t *testing.T) {
	b, _ := smallLog(t)
	frames := frameList(t, b)
	cut := frames[2].off + 10
	z := append(append([]byte(nil), b[:cut]...), make([]byte, 4096)...)
	_, got, err := readAll(z)
	var te *TruncatedError
	if !errors.As(err, &te) || len(got) != int(frames[1].first+uint64(frames[1].events)) {
		t.Fatalf("zero-filled tail: %d events, %v", len(got), err)
	}
}

// TestFlipEveryBit flips each bit of a small log in turn: each flip is
// reported as damage naming the record it hit, never as a clean read, a
// truncation or a panic.
func TestFlipEveryBit(t *testing.T) {
	b, _ := smallLog(t)
	frames := frameList(t, b)
	footer := frames[len(frames)-1].off + frames[len(frames)-1].size
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << bit
			_, _, err := readAll(c)
			var ce *ChecksumError
			switch {
			case i < len(Magic):
				if !errors.Is(err, ErrNotLog) {
					t.Fatalf("flip in magic byte %d: %v", i, err)
				}
			case i < preludeSize:
				if !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("flip in version byte %d: %v", i, err)
				}
			case int64(i) < frames[0].off:
				if !errors.As(err, &ce) || ce.Record != "header" {
					t.Fatalf("flip in header byte %d: %v", i, err)
				}
			case int64(i) < footer:
				var f uint64
				for _, fr := range frames {
					if int64(i) >= fr.off {
						f = fr.seq
					}
				}
				if !errors.As(err, &ce) || ce.Frame != f || ce.Record != "" {
					t.Fatalf("flip in byte %d (frame %d): %v", i, f, err)
				}
				if want := fmt.Sprintf("logfmt: frame %d at offset %d: checksum mismatch", f, frames[f].off); err.Error() != want {
					t.Fatalf("flip in byte %d: %q, want %q", i, err, want)
				}
			default:
				if !errors.As(err, &ce) || (ce.Record != "footer" && ce.Record != "trailer") {
					t.Fatalf("flip in footer byte %d bit %d: %v", i, bit, err)
				}
			}
		}
	}
}

// rewriteFrame rebuilds a log with frame i's payload replaced by
// fn(payload), checksums recomputed and the footer dropped.
func rewriteFrame(t *testing.T, b []byte, i int, fn func([]byte) []byte) []byte {
	t.Helper()
	frames := frameList(t, b)
	out := append([]byte(nil), b[:frames[0].off]...)
	for _, f := range frames {
		rec := b[f.off : f.off+f.size]
		if int(f.seq) != i {
			out = append(out, rec...)
			continue
		}
		raw, err := snappy.Decode(nil, rec[frameHeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		raw = fn(raw)
		payload := snappy.Encode(nil, raw)
		g, _, _ := parseFrameHeader(rec, f.off)
		g.rawLen, g.compLen = uint32(len(raw)), uint32(len(payload))
		h := make([]byte, frameHeaderSize)
		putFrameHeader(h, &g, payload)
		out = append(append(out, h...), payload...)
	}
	return out
}

func TestUnknownKind(t *testing.T) {
	b := writeLog(t, &Header{}, allKinds(), WriterOptions{}, &EndRecord{})
	for k := maxKind + 1; k <= kindMask; k++ {
		c := rewriteFrame(t, b, 0, func(raw []byte) []byte {
			raw[0] = raw[0]&^kindMask | byte(k)
			return raw
		})
		_, got, err := readAll(c)
		want := fmt.Sprintf("logfmt: frame 0: unknown event kind %d (this vmrr reads kinds 1-9; was the log written by a newer vmrr?)", k)
		var uk *UnknownKindError
		if !errors.As(err, &uk) || err.Error() != want || len(got) != 0 {
			t.Fatalf("unknown kind %d: %d events, %v", k, len(got), err)
		}
	}
}

// TestCheckpointCompact checks that a checkpoint stores unchanged
// registers in a byte each and pages in a few bytes each.
func TestCheckpointCompact(t *testing.T) {
	pages := make([]uint64, 500)
	for i := range pages {
		pages[i] = uint64(0x100+2*i)<<32 | uint64(0x9e3779b9*uint32(i+1))
	}
	first := &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 1}, RIP: 0x1000, Values: testRegs(1)}
	same := &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 2}, RIP: 0x1000, Values: testRegs(1)}
	next := &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 3}, RIP: 0x1000, Values: testRegs(2)}
	withPages := &Event{Kind: KindCheckpoint, Pos: position.Pos{Exit: 4}, RIP: 0x1000, Values: testRegs(2), Landing: Landing{Pages: pages}}
	var c codec
	a := c.appendEvent(nil, first)
	b := c.appendEvent(nil, same)
	n := c.appendEvent(nil, next)
	p := c.appendEvent(nil, withPages)
	// kind, RIP, two hashes, count, 18 zero deltas, page count.
	if want := 1 + 2 + 16 + 1 + 18 + 1; len(b) != want {
		t.Errorf("unchanged checkpoint: %d bytes, want %d (first: %d)", len(b), want, len(a))
	}
	if len(n)-len(b) > 12 {
		t.Errorf("checkpoint with 5 registers changed: %d bytes more than unchanged", len(n)-len(b))
	}
	if per := float64(len(p)-len(b)) / float64(len(pages)); per > 5.01 {
		t.Errorf("%.2f bytes per checkpoint page, want at most 5", per)
	}
}

func TestCorruptFrames(t *testing.T) {
	b := writeLog(t, &Header{}, allKinds(), WriterOptions{}, &EndRecord{})
	tests := []struct {
		name string
		fn   func([]byte) []byte
		want string
	}{
		{"trailing bytes", func(raw []byte) []byte { return append(raw, 0) }, "bytes after the last event"},
		{"cut event", func(raw []byte) []byte { return raw[:len(raw)-3] }, "ends inside a field"},
		{"reserved bits", func(raw []byte) []byte { raw[0] |= 0x80; return raw }, "reserved bits"},
		{"no values", func(raw []byte) []byte { raw[1] = 1; return raw }, "without values"},
		{"checkpoint values", func(raw []byte) []byte {
			var c codec
			e := c.appendEvent(nil, &Event{Kind: KindCheckpoint, Values: make([]uint64, 64)})
			e[1+1+16] = 65 // the value count, after head, RIP and hashes
			return append(e, make([]byte, 80)...)
		}, "65 values (at most 64)"},
		{"checkpoint page delta", func(raw []byte) []byte {
			var c codec
			e := c.appendEvent(nil, &Event{Kind: KindCheckpoint})
			e = e[:len(e)-1]
			e = append(e, 1)
			e = binary.AppendUvarint(e, zigzag(1<<32))
			return append(e, 1, 2, 3, 4)
		}, "page frame delta is over 32 bits"},
		{"end not last", func(raw []byte) []byte {
			var c codec
			return append(c.appendEvent(nil, &Event{Kind: KindEnd, Pos: position.Pos{Exit: 1}, End: &EndRecord{}}), raw...)
		}, "events after the end event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(rewriteFrame(t, b, 0, tt.fn))
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a corruption about %q", err, tt.want)
			}
		})
	}
}

func TestSeek(t *testing.T) {
	evs := genStream(3000, 7)
	b := writeLog(t, &Header{}, evs, WriterOptions{FrameBytes: 512}, &EndRecord{})
	for _, strip := range []bool{false, true} {
		data := b
		if strip {
			data = stripFooter(t, b)
		}
		r, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []uint64{2999, 0, 1, 1500, 77, 2998} {
			if err := r.SeekEvent(i); err != nil {
				t.Fatalf("SeekEvent(%d): %v", i, err)
			}
			if r.Index() != i {
				t.Fatalf("Index() = %d after SeekEvent(%d)", r.Index(), i)
			}
			e, err := r.Next()
			if err != nil || !sameEvent(e, evs[i]) {
				t.Fatalf("SeekEvent(%d): Next = %+v, %v", i, e, err)
			}
		}
		if err := r.SeekEvent(3000); err != nil {
			t.Fatal(err)
		}
		if e, err := r.Next(); err != nil || e.Kind != KindEnd {
			t.Fatalf("event 3000 = %+v, %v; want the end event", e, err)
		}
		if err := r.SeekEvent(3001); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("past the end: %v", err)
		}
		if err := r.SeekEvent(3002); err == nil || !strings.Contains(err.Error(), "the log has 3001 events") {
			t.Fatalf("SeekEvent(3002) = %v", err)
		}

		for _, i := range []int{0, 10, 1234, 2999} {
			// Ask for a position just after event i-1's: the first event
			// at or after it.
			p := evs[i].Pos
			if i > 0 {
				p = evs[i-1].Pos
				p.Insn++
			}
			want := i
			for want > 0 && !evs[want-1].Pos.Less(p) {
				want--
			}
			if err := r.SeekPosition(p); err != nil {
				t.Fatalf("SeekPosition(%v): %v", p, err)
			}
			if r.Index() != uint64(want) {
				t.Fatalf("SeekPosition(%v): index %d, want %d", p, r.Index(), want)
			}
			e, err := r.Next()
			if err != nil || !sameEvent(e, evs[want]) {
				t.Fatalf("SeekPosition(%v): Next = %+v, %v", p, e, err)
			}
		}
		if err := r.SeekPosition(position.Pos{Exit: 1 << 62}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("SeekPosition past the end, then Next = %v", err)
		}
	}
}

// TestSeekPositionTies checks seeking into a run of events at one position
// that spans frames.
func TestSeekPositionTies(t *testing.T) {
	var evs []*Event
	for i := 0; i < 200; i++ {
		evs = append(evs, &Event{Kind: KindNonDet, Pos: position.Pos{Exit: uint64(i / 50)}, Instr: cpu.RDRAND, Values: []uint64{uint64(i)}})
	}
	b := writeLog(t, &Header{}, evs, WriterOptions{FrameBytes: 64}, &EndRecord{})
	r, _ := NewReader(bytes.NewReader(b), int64(len(b)))
	for _, exit := range []uint64{0, 1, 2, 3} {
		if err := r.SeekPosition(position.Pos{Exit: exit}); err != nil {
			t.Fatal(err)
		}
		if r.Index() != exit*50 {
			t.Fatalf("SeekPosition(exit %d): index %d", exit, r.Index())
		}
	}
}

// TestSeedCorpus checks that the fuzz seeds are there and are what
// writeSeeds makes; run with VMRR_WRITE_SEEDS=1 to write them.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	for name, b := range seeds(t) {
		path := filepath.Join(dir, name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if os.Getenv("VMRR_WRITE_SEEDS") != "" {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("seed %s is missing or stale (VMRR_WRITE_SEEDS=1 go test -run TestSeedCorpus ./logfmt): %v", name, err)
		}
	}
}

func seeds(t testing.TB) map[string][]byte {
	small, _ := smallLog(t)
	h := testHeader()
	h.Image = nil
	hdrOnly := writeLog(t, h, nil, WriterOptions{}, nil)
	frames := frameList(t, small)
	return map[string][]byte{
		"closed":    small,
		"stripped":  small[:frames[len(frames)-1].off+frames[len(frames)-1].size],
		"torn":      small[:frames[2].off+7],
		"header":    hdrOnly,
		"empty":     writeLog(t, &Header{}, nil, WriterOptions{}, &EndRecord{}),
		"stream":    writeLog(t, &Header{}, genStream(60, 3), WriterOptions{FrameBytes: 200}, &EndRecord{Reason: "r"}),
		"one-frame": writeLog(t, &Header{Mode: "exact"}, allKinds(), WriterOptions{}, &EndRecord{}),
	}
}
