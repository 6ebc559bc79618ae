package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"vmrr/machine"
	"vmrr/recorder"
)

func init() {
	register(&command{name: "run", summary: "run a guest image on KVM (no recording)", run: runCmd})
}

// machineFlags are the flags every command that builds a machine shares.
type machineFlags struct {
	mem      *uint64
	timeout  *time.Duration
	serialIn *string
}

func addMachineFlags(fs *flag.FlagSet) machineFlags {
	return machineFlags{
		mem:      fs.Uint64("mem", machine.DefaultMemory>>20, "guest RAM in MiB"),
		timeout:  fs.Duration("timeout", 0, "end the run after this long (0: no limit)"),
		serialIn: fs.String("serial-in", "", "file to feed to the guest's COM1 (\"-\" for stdin; default: none)"),
	}
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
		fmt.Fprintln(fs.Output(), "usage: vmrr run [--mem MiB] [--timeout D] [--serial-in FILE] IMAGE")
		fs.PrintDefaults()
	}
	mf := addMachineFlags(fs)
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	mem, err := mf.memBytes()
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
		Console: os.Stdout, Serial: serial, Timeout: *mf.timeout, Warnings: os.Stderr})
	if err != nil {
		return fail("%v", err)
	}
	return reportResult(res)
}
