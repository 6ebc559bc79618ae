package logfmt

import (
	"bytes"
	"io"
	"testing"

	"github.com/golang/snappy"

	"vmrr/position"
)

// FuzzReader feeds arbitrary bytes to the reader: it must return events or
// a clean error, never panic, hang or allocate without bound. Each input is
// read as it is and again with its checksums made to match, so mutations
// reach the header, footer and event decoders behind the checksums. The
// seeds in testdata/fuzz/FuzzReader are small valid, stripped and torn
// logs (TestSeedCorpus keeps them current).
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, data)
		exercise(t, fixCRCs(data))
	})
}

// FuzzFrame fuzzes the event decoder directly: the input is the
// uncompressed payload of a single frame of n events, wrapped in a valid
// log. Whatever decodes must survive a write and a second read unchanged.
func FuzzFrame(f *testing.F) {
	var c codec
	var raw []byte
	for _, e := range allKinds() {
		raw = c.appendEvent(raw, e)
	}
	f.Add(raw, uint16(len(allKinds())))
	c.reset(position.Pos{})
	raw = nil
	for _, e := range genStream(40, 5) {
		raw = c.appendEvent(raw, e)
	}
	f.Add(raw, uint16(40))
	f.Fuzz(func(t *testing.T, raw []byte, n uint16) {
		if n == 0 || len(raw) > 1<<16 {
			return
		}
		data := singleFrameLog(raw, uint32(n))
		exercise(t, data)
		_, evs, err := readAll(data)
		if err == nil {
			t.Fatal("a log without an end event read cleanly")
		}
		var w bytes.Buffer
		lw, err := NewWriter(&w, &Header{}, WriterOptions{FrameBytes: 256})
		if err != nil {
			t.Fatal(err)
		}
		var end *EndRecord
		for _, e := range evs {
			if e.Kind == KindEnd {
				end = e.End
				break
			}
			if err := lw.Append(e); err != nil {
				t.Fatalf("decoded event %+v refused by the writer: %v", e, err)
			}
		}
		if end == nil {
			return
		}
		if err := lw.Close(end); err != nil {
			t.Fatal(err)
		}
		_, again, err := readAll(w.Bytes())
		if err != io.EOF || len(again) != len(evs) {
			t.Fatalf("rewritten log: %d events (want %d), %v", len(again), len(evs), err)
		}
		for i := range evs {
			if !sameEvent(evs[i], again[i]) {
				t.Fatalf("event %d: %+v, rewritten %+v", i, normalize(evs[i]), normalize(again[i]))
			}
		}
	})
}

// singleFrameLog wraps raw as the payload of frame 0, claiming n events.
func singleFrameLog(raw []byte, n uint32) []byte {
	var b bytes.Buffer
	NewWriter(&b, &Header{}, WriterOptions{})
	payload := snappy.Encode(nil, raw)
	f := frameInfo{events: n, rawLen: uint32(len(raw)), compLen: uint32(len(payload))}
	h := make([]byte, frameHeaderSize)
	putFrameHeader(h, &f, payload)
	b.Write(h)
	b.Write(payload)
	return b.Bytes()
}
