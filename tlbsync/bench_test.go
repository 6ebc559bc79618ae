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
		var base float64
		for _, on := range []bool{false, true} {
			name := g.name + "/" + map[bool]string{false: "off", true: "on"}[on]
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					res, err := recorder.Record(io.Discard, recorder.Options{Image: g.image, Mode: nondet.ModeFast, Timeout: time.Minute, TLBSync: on})
					if err != nil || res.Status != 1 {
						b.Fatalf("record: %v, status %d", err, res.Status)
					}
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if !on {
					base = ns
				} else if base > 0 {
					b.ReportMetric(ns/base, "x-off")
				}
			})
		}
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
// new exit): 1000 PIO exits without it (the baseline) and with it.
func BenchmarkExitLoop(b *testing.B) {
	needKVM(b)
	const exits = 1000
	var base float64
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				h := &loopHooks{n: exits}
				m, err := machine.New(machine.Config{Image: exitLoop, Hooks: h})
				if err != nil {
					b.Fatal(err)
				}
				if on {
					if h.sync, err = tlbsync.Attach(m); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := m.Run(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				m.Close()
				b.StartTimer()
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / exits
			b.ReportMetric(ns, "ns/exit")
			if !on {
				base = ns
			} else if base > 0 {
				b.ReportMetric(ns/base, "x-off")
			}
		})
	}
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
	s, err := tlbsync.Attach(m)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.BeforeRun(m); err != nil {
		b.Fatal(err)
	}
	var base float64
	b.Run("baseline-getregs", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.VCPU().Regs(); err != nil {
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
