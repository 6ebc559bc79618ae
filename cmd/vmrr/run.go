package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"vmrr/machine"
	"vmrr/machine/probe"
	"vmrr/recorder"
)

func init() {
	register(&command{name: "run", summary: "run a guest image (no recording)", run: runCmd})
}

// machineFlags are the flags every command that builds a machine shares.
type machineFlags struct {
	mem      *uint64
	timeout  *time.Duration
	serialIn *string
	accel    *string
	clock    *string
}

func addMachineFlags(fs *flag.FlagSet) machineFlags {
	return machineFlags{
		mem:      fs.Uint64("mem", machine.DefaultMemory>>20, "guest RAM in MiB"),
		timeout:  fs.Duration("timeout", 0, "end the run after this long (0: no limit)"),
		serialIn: fs.String("serial-in", "", "file to feed to the guest's COM1 (\"-\" for stdin; default: none)"),
		accel:    addAccelFlag(fs),
		clock: fs.String("clock", "host", "the guest's time: host (the host clock), or a duration an instruction is worth (e.g. 1us): "+
			"an instruction clock that makes the run a function of its inputs alone (soft CPU only)"),
	}
}

// clockRate checks --clock: 0 for the host clock, else what an instruction
// is worth.
func (f machineFlags) clockRate() (time.Duration, error) {
	if *f.clock == "host" {
		return 0, nil
	}
	d, err := time.ParseDuration(*f.clock)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--clock %s: want host or a positive duration (e.g. 1us)", *f.clock)
	}
	return d, nil
}

// statsWriter is where --stats goes: stderr, or nowhere.
func statsWriter(on bool) io.Writer {
	if on {
		return os.Stderr
	}
	return nil
}

// addAccelFlag adds --accel, the CPU choice. Its default is $VMRR_ACCEL
// when set (so a CI job or a test suite can pin the CPU), else auto.
func addAccelFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("VMRR_ACCEL")
	if def == "" {
		def = string(machine.AccelAuto)
	}
	return fs.String("accel", def, "the CPU: auto (KVM where this host's KVM counts instructions exactly, else soft), kvm or soft (default $VMRR_ACCEL, else auto)")
}

// chooseAccel resolves --accel; what auto picks, and why, is said in one
// line on stderr.
func chooseAccel(req string) (machine.Accel, error) {
	a, err := machine.ParseAccel(req)
	if err != nil {
		return "", fmt.Errorf("--accel %s: %v", req, err)
	}
	got, why, err := probe.ChooseAccel(a)
	if err != nil {
		return "", err
	}
	if a == machine.AccelAuto {
		fmt.Fprintf(os.Stderr, "vmrr: running on the %s CPU (%s)\n", got, why)
	}
	return got, nil
}

// chooseRacingAccel is chooseAccel for the commands whose guests race
// their timer ticks (demo, bench rr): KVM only where it can place a tick
// at any instruction (probe.ExactCounter). vmrr record takes any KVM: the
// recorder places events at the guest's exits where it must.
func chooseRacingAccel(req string) (machine.Accel, error) {
	a, err := chooseAccel(req)
	if err == nil && a == machine.AccelKVM {
		if err = probe.ExactCounter(); err != nil {
			err = fmt.Errorf("--accel kvm: %v: timer ticks could only wait for the guest's exits, and this guest races them; use --accel soft", err)
		}
	}
	return a, err
}

// replayAccel checks a replay's --accel: auto is the recording's CPU,
// another value must name it (replayer.Options.Accel).
func replayAccel(req string) (machine.Accel, error) {
	a, err := machine.ParseAccel(req)
	if err != nil {
		return "", fmt.Errorf("--accel %s: %v", req, err)
	}
	return a, nil
}

// memBytes checks --mem and returns it in bytes.
func (f machineFlags) memBytes() (uint64, error) {
	if *f.mem == 0 || *f.mem > 4096 {
		return 0, fmt.Errorf("--mem %d: want 2 to 4096 MiB", *f.mem)
	}
	return *f.mem << 20, nil
}

// serialInput opens the --serial-in source.
func (f machineFlags) serialInput() (io.Reader, func(), error) {
	switch *f.serialIn {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdin, func() {}, nil
	}
	file, err := os.Open(*f.serialIn)
	if err != nil {
		return nil, nil, err
	}
	return file, func() { file.Close() }, nil
}

// readImage reads a guest image with a one-line error.
func readImage(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("image %s: %v", path, pe.Err)
		}
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("image %s: empty file", path)
	}
	return b, nil
}

// reportResult prints a failure's one line on stderr and returns the
// process status.
func reportResult(res machine.Result) int {
	if res.Reason != machine.ReasonExited {
		fmt.Fprintf(os.Stderr, "vmrr: %s\n", res.Message)
	}
	return res.Status
}

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr run [--accel auto|kvm|soft] [--clock host|D] [--mem MiB] [--timeout D] [--serial-in FILE] [--tlbsync auto|on|off] [--stats] IMAGE")
		fs.PrintDefaults()
	}
	mf := addMachineFlags(fs)
	tlb := fs.String("tlbsync", "auto", "keep the guest TLB in step with page-table writes: on, off, or auto (on for the soft CPU, off for KVM)")
	stats := fs.Bool("stats", false, "print the run's counters (instructions, exits, tlbsync) on stderr at the end")
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	if *tlb != "auto" && *tlb != "on" && *tlb != "off" {
		return fail("--tlbsync=%s: want auto, on or off", *tlb)
	}
	mem, err := mf.memBytes()
	if err != nil {
		return fail("%v", err)
	}
	accel, err := chooseAccel(*mf.accel)
	if err != nil {
		return fail("%v", err)
	}
	clock, err := mf.clockRate()
	if err != nil {
		return fail("%v", err)
	}
	image, err := readImage(fs.Arg(0))
	if err != nil {
		return fail("%v", err)
	}
	serial, closeSerial, err := mf.serialInput()
	if err != nil {
		return fail("serial input: %v", err)
	}
	defer closeSerial()
	res, err := recorder.Record(nil, recorder.Options{ImagePath: fs.Arg(0), Image: image, MemoryBytes: mem,
		Console: os.Stdout, Serial: serial, Timeout: *mf.timeout, Warnings: os.Stderr, Accel: accel,
		TLBSync: *tlb == "on" || *tlb == "auto" && accel == machine.AccelSoft, Stats: statsWriter(*stats), Clock: clock})
	if err != nil {
		return fail("%v", err)
	}
	return reportResult(res)
}
