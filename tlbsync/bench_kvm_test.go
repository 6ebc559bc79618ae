//go:build linux

package tlbsync_test

import (
	"io"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/recorder"
	"vmrr/tlbsync"
)

// interleaved runs off and on alternately, b.N times each, so that a
// change in the load of a shared machine hits both alike (and which one
// runs first after the other's VM went away alternates too), and reports
// each one's time per run (as each measures it) and on/off.
func interleaved(b *testing.B, off, on func(b *testing.B) time.Duration) {
	var toff, ton time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			toff += off(b)
			ton += on(b)
		} else {
			ton += on(b)
			toff += off(b)
		}
		i++
	}
	b.ReportMetric(float64(toff.Nanoseconds())/float64(b.N), "ns-off/op")
	b.ReportMetric(float64(ton.Nanoseconds())/float64(b.N), "ns-on/op")
	b.ReportMetric(float64(ton)/float64(toff), "x-off")
}

// BenchmarkRecordPTChurn records guests that edit their page tables often,
// with tlbsync off (the baseline) and on, and reports on/off. churn
// rewrites a PTE 2000 times after an exit that lets tlbsync mark its
// tables: every rewrite is a trapped write and a flush. ptchurn.elf does
// the same with no exit between loading CR3 and its rewrites, so tlbsync
// only ever marks its tables at the end and the ratio shows the cost of
// the walks alone.
func BenchmarkRecordPTChurn(b *testing.B) {
	needKVM(b)
	for _, g := range []struct {
		name  string
		image []byte
	}{{"churn", churn(2000)}, {"ptchurn.elf", guestImage(b, "ptchurn.elf")}} {
		record := func(on bool) func(b *testing.B) time.Duration {
			return func(b *testing.B) time.Duration {
				t0 := time.Now()
				res, err := recorder.Record(io.Discard, recorder.Options{Image: g.image, Mode: nondet.ModeFast, Timeout: time.Minute, TLBSync: on})
				if err != nil || res.Status != 1 {
					b.Fatalf("record: %v, status %d", err, res.Status)
				}
				return time.Since(t0)
			}
		}
		b.Run(g.name, func(b *testing.B) { interleaved(b, record(false), record(true)) })
	}
}

// exitLoop is a guest that writes port 0x80 forever: one PIO exit per
// iteration, nothing else.
var exitLoop = elf64(gBase, gBase, []byte{0xe6, 0x80, 0xeb, 0xfc}) // out 0x80, al; jmp $-2

// loopHooks stops the exit loop after n exits, calling tlbsync (if set)
// before every entry as the recorder does.
type loopHooks struct {
	hooks
	sync *tlbsync.Sync
	n    uint64
}

func (h *loopHooks) BeforeRun(m *machine.Machine) error {
	if m.Exits() >= h.n {
		return machine.ErrStop
	}
	if h.sync != nil {
		return h.sync.BeforeRun(m)
	}
	return nil
}

// BenchmarkExitLoop measures what tlbsync adds to an exit that does not
// touch page tables (its BeforeRun reads the control registers once per
// new exit): 1000 PIO exits without it (the baseline) and with it, after
// its first walk.
func BenchmarkExitLoop(b *testing.B) {
	needKVM(b)
	const exits = 1000
	run := func(on bool) func(b *testing.B) time.Duration {
		return func(b *testing.B) time.Duration {
			h := &loopHooks{n: exits}
			m, err := machine.New(machine.Config{Image: exitLoop, Hooks: h})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if on {
				if h.sync, err = attach(b, m); err != nil {
					b.Fatal(err)
				}
				if err := h.sync.BeforeRun(m); err != nil {
					b.Fatal(err)
				}
			}
			t0 := time.Now()
			if _, err := m.Run(); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
	}
	interleaved(b, run(false), run(true))
}

// BenchmarkBeforeRun measures BeforeRun at a stop that is not a new exit
// (a kick or a breakpoint: it must not even make a system call) against a
// KVM_GET_REGS, the cheapest vCPU ioctl the exit path already makes.
func BenchmarkBeforeRun(b *testing.B) {
	needKVM(b)
	m, err := machine.New(machine.Config{Image: exitLoop, Hooks: &hooks{}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s, err := attach(b, m)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.BeforeRun(m); err != nil {
		b.Fatal(err)
	}
	var base float64
	b.Run("baseline-getregs", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Regs(); err != nil {
				b.Fatal(err)
			}
		}
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("same-exit", func(b *testing.B) {
		for b.Loop() {
			if err := s.BeforeRun(m); err != nil {
				b.Fatal(err)
			}
		}
		if base > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
		}
	})
}
