package recorder_test

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/recorder"
)

// Record-cost benchmarks on race.elf, whose timer ticks land inside a busy
// loop: the guest that makes recording work hardest. Each benchmark times
// its workload and a baseline in turns within the same b.Loop, so the
// ratio it reports compares the two under the same host load; the ns/op
// figures of a shared, nested-KVM host say little on their own. The log
// goes to a byte counter: no file, no fsync.

// countWriter counts what the recorder writes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

// workload is one timed step of a benchmark.
type workload struct {
	name string
	run  func(b *testing.B) time.Duration
}

// interleaved runs the workloads in turn, b.N times each, rotating which
// goes first so none always follows another's VM teardown, and returns
// each one's mean nanoseconds per run.
func interleaved(b *testing.B, ws ...workload) []float64 {
	total := make([]time.Duration, len(ws))
	i := 0
	for b.Loop() {
		for k := range ws {
			j := (k + i) % len(ws)
			total[j] += ws[j].run(b)
		}
		i++
	}
	ns := make([]float64, len(ws))
	for j := range ws {
		ns[j] = float64(total[j].Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns[j], "ns-"+ws[j].name+"/op")
	}
	return ns
}

// guest reads a committed guest image.
func guest(b *testing.B, name string) []byte {
	b.Helper()
	image, err := os.ReadFile("../testdata/guests/" + name)
	if err != nil {
		b.Fatal(err)
	}
	return image
}

// record times one recorder.Record of image: a plain run (`vmrr run`) when
// mode is "", else a recording in mode with tlbsync on (`vmrr record`).
// logBytes, if not nil, gets the log's size.
func record(image []byte, mode nondet.Mode, logBytes *int64) func(b *testing.B) time.Duration {
	return func(b *testing.B) time.Duration {
		opt := recorder.Options{Image: image, Mode: mode, Console: io.Discard, Warnings: io.Discard, Timeout: time.Minute,
			Accel: testAccel(), TLBSync: testAccel() == machine.AccelSoft}
		var w io.Writer
		var cw countWriter
		if mode != "" {
			opt.TLBSync = true
			w = &cw
		}
		start := time.Now()
		res, err := recorder.Record(w, opt)
		d := time.Since(start)
		if err != nil || res.Status != 1 {
			b.Fatalf("%s: %v, status %d (%s)", describe(mode), err, res.Status, res.Message)
		}
		if logBytes != nil {
			*logBytes = cw.n
		}
		return d
	}
}

func describe(mode nondet.Mode) string {
	if mode == "" {
		return "run"
	}
	return fmt.Sprintf("record %s", mode)
}

// BenchmarkRun is `vmrr run race.elf` against `vmrr run hello.elf`, which
// runs almost no guest code: x-hello is how much the guest's own execution
// adds to a VM's creation, image load, end-state hash and teardown.
func BenchmarkRun(b *testing.B) {
	race, hello := guest(b, "race.elf"), guest(b, "hello.elf")
	ns := interleaved(b, workload{"hello", record(hello, "", nil)}, workload{"race", record(race, "", nil)})
	b.ReportMetric(ns[1]/ns[0], "x-hello")
}

// BenchmarkRecordFast is a fast-mode recording of race.elf against a plain
// run of it (x-run), with the log's size.
func BenchmarkRecordFast(b *testing.B) {
	race := guest(b, "race.elf")
	var n int64
	ns := interleaved(b, workload{"run", record(race, "", nil)}, workload{"fast", record(race, nondet.ModeFast, &n)})
	b.ReportMetric(ns[1]/ns[0], "x-run")
	b.ReportMetric(float64(n), "log-B")
}

// BenchmarkRecordExact is an exact-mode recording of race.elf against a
// plain run (x-run) and a fast-mode recording (x-fast): exact mode
// single-steps every instruction.
func BenchmarkRecordExact(b *testing.B) {
	race := guest(b, "race.elf")
	var n int64
	ns := interleaved(b, workload{"run", record(race, "", nil)}, workload{"fast", record(race, nondet.ModeFast, nil)},
		workload{"exact", record(race, nondet.ModeExact, &n)})
	b.ReportMetric(ns[2]/ns[0], "x-run")
	b.ReportMetric(ns[2]/ns[1], "x-fast")
	b.ReportMetric(float64(n), "log-B")
}
