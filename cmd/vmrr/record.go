package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"vmrr/machine"
	"vmrr/machine/probe"
	"vmrr/nondet"
	"vmrr/recorder"
)

func init() {
	register(&command{name: "record", summary: "run a guest and record it to a log", run: recordCmd})
}

func recordCmd(args []string) int {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr record [--accel auto|kvm|soft] [--clock host|D] [-o LOG] [--keep always|fail|never] [--success-status N] [--mode exact|fast] [--mem MiB] [--timeout D] [--serial-in FILE] [--embed-image] [--tlbsync on|off] [--exits-only] [--stats] IMAGE")
		fs.PrintDefaults()
	}
	mf := addMachineFlags(fs)
	out := fs.String("o", "", "log file (default: IMAGE's name with .vmrr)")
	mode := fs.String("mode", string(nondet.ModeFast), "how non-deterministic instructions are trapped: exact (single-step) or fast (patched)")
	embed := fs.Bool("embed-image", false, "store the guest image in the log")
	tlb := fs.String("tlbsync", "on", "keep the guest TLB in step with page-table writes: on or off")
	keep := fs.String("keep", keepAlways, "when to keep the log: always, fail (only when the guest does not end with the success status) or never")
	stats := fs.Bool("stats", false, "print the run's counters (instructions, exits, tlbsync) on stderr at the end")
	exitsOnly := fs.Bool("exits-only", false, "place timer ticks and serial input at the guest's own exits (port I/O, HLT) only, so that the log replays on a KVM without an exact instruction counter too (automatic on such a KVM)")
	success := fs.Int("success-status", 1, "the exit status of a passing guest, for --keep=fail (1: debug-exit value 0, the QEMU isa-debug-exit convention)")
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	m, err := nondet.ParseMode(*mode)
	if err != nil {
		return fail("%v", err)
	}
	if *tlb != "on" && *tlb != "off" {
		return fail("--tlbsync=%s: want on or off", *tlb)
	}
	if *keep != keepAlways && *keep != keepFail && *keep != keepNever {
		return fail("--keep=%s: want always, fail or never", *keep)
	}
	if *success < 0 || *success > 255 {
		return fail("--success-status=%d: want an exit status, 0-255", *success)
	}
	mem, err := mf.memBytes()
	if err != nil {
		return fail("%v", err)
	}
	accel, err := chooseAccel(*mf.accel)
	if err != nil {
		return fail("%v", err)
	}
	if accel == machine.AccelKVM && !*exitsOnly {
		if err := probe.ExactCounter(); err != nil {
			fmt.Fprintf(os.Stderr, "vmrr: %v: timer ticks and serial input wait for the guest's next port I/O or HLT, where the replay finds them again (--accel soft places them anywhere)\n", err)
			*exitsOnly = true
		}
	}
	clock, err := mf.clockRate()
	if err != nil {
		return fail("%v", err)
	}
	image, err := readImage(fs.Arg(0))
	if err != nil {
		return fail("%v", err)
	}
	logPath := *out
	if logPath == "" {
		base := filepath.Base(fs.Arg(0))
		logPath = base[:len(base)-len(filepath.Ext(base))] + ".vmrr"
	}
	serial, closeSerial, err := mf.serialInput()
	if err != nil {
		return fail("serial input: %v", err)
	}
	defer closeSerial()
	f, err := os.Create(logPath)
	if err != nil {
		return fail("%v", err)
	}
	imagePath, _ := filepath.Abs(fs.Arg(0))
	res, err := recorder.Record(f, recorder.Options{ImagePath: imagePath, Image: image, EmbedImage: *embed, MemoryBytes: mem,
		Mode: m, Console: os.Stdout, Serial: serial, Timeout: *mf.timeout, Warnings: os.Stderr, TLBSync: *tlb == "on", Accel: accel, Stats: statsWriter(*stats), Clock: clock, ExitsOnly: *exitsOnly})
	if err != nil {
		f.Close()
		// A recording that failed half-way is kept unless told otherwise:
		// what it holds may be the only trace of the failure. One that
		// failed before the guest started holds nothing.
		if fi, serr := os.Stat(logPath); *keep == keepNever || serr == nil && fi.Size() == 0 {
			os.Remove(logPath)
		}
		return fail("%v", err)
	}
	return keepLog(logPath, *keep, *success, res)
}

// The --keep policies.
const (
	keepAlways = "always"
	keepFail   = "fail"
	keepNever  = "never"
)

// keepLog applies the --keep policy to a finished recording and returns the
// guest's status. With keepFail a failed run's log is named on stderr with
// the reason, which is what a CI job's output needs to point at the artifact.
func keepLog(logPath, keep string, success int, res machine.Result) int {
	failed := res.Status != success
	switch {
	case keep == keepNever, keep == keepFail && !failed:
		if err := os.Remove(logPath); err != nil {
			fmt.Fprintf(os.Stderr, "vmrr: remove log: %v\n", err)
		}
	case keep == keepFail:
		reason := res.Message
		if reason == "" {
			reason = res.Reason.String()
		}
		fmt.Fprintf(os.Stderr, "vmrr: kept log %s (guest failed: %s)\n", logPath, reason)
		return res.Status
	}
	return reportResult(res)
}
