package logfmt

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"vmrr/machine/cpu"
	"vmrr/position"
)

// The benchmarks encode and decode a realistic, RDTSC-heavy stream
// (genStream) and compare it with the same events written the simple way,
// fixed-width fields and no compression (appendFixed, FixedSize). MB/s is
// of that fixed-width size in both, so the throughputs compare directly.
// Metrics: events/s, bytes/event of the log file, ratio-vs-raw (fixed-width
// bytes / log bytes) and time-vs-raw (time / time of the fixed-width
// encoding of the same events, measured in the same run).

const benchEvents = 100000

var bench = sync.OnceValues(func() ([]*Event, int) {
	evs := genStream(benchEvents, 42)
	raw := 0
	for _, e := range evs {
		raw += FixedSize(e)
	}
	return evs, raw
})

// appendFixed writes e with fixed-width fields: the baseline.
func appendFixed(b []byte, e *Event) []byte {
	le := binary.LittleEndian
	b = append(b, byte(e.Kind))
	b = le.AppendUint64(b, e.Pos.Exit)
	b = le.AppendUint64(b, e.Pos.Insn)
	switch e.Kind {
	case KindNonDet:
		b = append(b, byte(e.Instr), byte(len(e.Values)))
		for _, v := range e.Values {
			b = le.AppendUint64(b, v)
		}
	case KindPortIn:
		b = le.AppendUint16(b, e.Port)
		b = append(b, e.Size)
		b = le.AppendUint64(b, e.Values[0])
	case KindMMIORead:
		b = le.AppendUint64(b, e.Addr)
		b = append(b, e.Size)
		b = le.AppendUint64(b, e.Values[0])
	case KindInterrupt, KindInject:
		b = append(b, e.Vector)
		b = appendFixedLanding(b, &e.Landing)
	case KindSerialRX:
		b = le.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
		b = appendFixedLanding(b, &e.Landing)
	case KindCheckpoint:
		b = le.AppendUint64(b, e.RIP)
		b = le.AppendUint64(b, e.RegHash)
		b = le.AppendUint64(b, e.MemHash)
		b = le.AppendUint32(b, uint32(len(e.Values)))
		for _, v := range e.Values {
			b = le.AppendUint64(b, v)
		}
		b = le.AppendUint32(b, uint32(len(e.Landing.Pages)))
		for _, p := range e.Landing.Pages {
			b = le.AppendUint64(b, p)
		}
	case KindRingFlush:
		b = le.AppendUint32(b, uint32(len(e.Ring)))
		for _, r := range e.Ring {
			b = le.AppendUint32(b, r.Kind)
			b = le.AppendUint32(b, r.Aux)
			b = le.AppendUint64(b, r.Value)
		}
	}
	return b
}

func appendFixedLanding(b []byte, l *Landing) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, l.RIP)
	b = le.AppendUint64(b, l.RegHash)
	b = le.AppendUint64(b, l.MemHash)
	b = le.AppendUint32(b, uint32(len(l.Pages)))
	for _, p := range l.Pages {
		b = le.AppendUint64(b, p)
	}
	return b
}

// writeFixed is the baseline writer: fixed-width events through a 64 KiB
// buffer.
func writeFixed(w io.Writer, evs []*Event, buf []byte) []byte {
	buf = buf[:0]
	for _, e := range evs {
		buf = appendFixed(buf, e)
		if len(buf) >= DefaultFrameBytes {
			w.Write(buf)
			buf = buf[:0]
		}
	}
	w.Write(buf)
	return buf
}

// rawTime times n fixed-width encodings of evs.
func rawTime(evs []*Event, n int) time.Duration {
	buf := make([]byte, 0, 2*DefaultFrameBytes)
	start := time.Now()
	for i := 0; i < n; i++ {
		buf = writeFixed(io.Discard, evs, buf)
	}
	return time.Since(start)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

func encode(b *testing.B, evs []*Event, w io.Writer) {
	lw, err := NewWriter(w, &Header{Mode: "fast"}, WriterOptions{FlushInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range evs {
		if err := lw.Append(e); err != nil {
			b.Fatal(err)
		}
	}
	if err := lw.Close(&EndRecord{Reason: "bench"}); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkEncode(b *testing.B) {
	evs, raw := bench()
	b.SetBytes(int64(raw))
	b.ReportAllocs()
	var size int64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		var c countWriter
		encode(b, evs, &c)
		size = c.n
	}
	took := time.Since(start)
	b.StopTimer()
	base := rawTime(evs, b.N)
	b.ReportMetric(float64(len(evs))*float64(b.N)/took.Seconds(), "events/s")
	b.ReportMetric(float64(size)/float64(len(evs)), "bytes/event")
	b.ReportMetric(float64(raw)/float64(size), "ratio-vs-raw")
	b.ReportMetric(took.Seconds()/base.Seconds(), "time-vs-raw")
}

func BenchmarkDecode(b *testing.B) {
	evs, raw := bench()
	var buf bytes.Buffer
	encode(b, evs, &buf)
	log := buf.Bytes()
	b.SetBytes(int64(raw))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r, err := NewReader(bytes.NewReader(log), int64(len(log)))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != len(evs)+1 {
			b.Fatalf("decoded %d events", n)
		}
	}
	took := time.Since(start)
	b.StopTimer()
	base := rawTime(evs, b.N)
	b.ReportMetric(float64(len(evs))*float64(b.N)/took.Seconds(), "events/s")
	b.ReportMetric(float64(len(log))/float64(len(evs)), "bytes/event")
	b.ReportMetric(float64(raw)/float64(len(log)), "ratio-vs-raw")
	b.ReportMetric(took.Seconds()/base.Seconds(), "time-vs-raw")
}

// BenchmarkRawBaseline is the fixed-width encoding on its own.
func BenchmarkRawBaseline(b *testing.B) {
	evs, raw := bench()
	b.SetBytes(int64(raw))
	buf := make([]byte, 0, 2*DefaultFrameBytes)
	var c countWriter
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c.n = 0
		buf = writeFixed(&c, evs, buf)
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(c.n)/float64(len(evs)), "bytes/event")
}

// BenchmarkRDTSCRun is the best case the format is built for: nothing but
// trapped RDTSCs.
func BenchmarkRDTSCRun(b *testing.B) {
	evs := make([]*Event, benchEvents)
	raw := 0
	tsc := uint64(1 << 40)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range evs {
		tsc += 14000 + rng.Uint64N(2000)
		evs[i] = &Event{Kind: KindNonDet, Pos: position.Pos{Exit: uint64(i + 1)}, Instr: cpu.RDTSC, Values: []uint64{tsc}}
		raw += FixedSize(evs[i])
	}
	b.SetBytes(int64(raw))
	var size int64
	for i := 0; i < b.N; i++ {
		var c countWriter
		encode(b, evs, &c)
		size = c.n
	}
	b.ReportMetric(float64(size)/float64(len(evs)), "bytes/event")
	b.ReportMetric(float64(raw)/float64(size), "ratio-vs-raw")
}
