package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"vmrr/nondet"
	"vmrr/recorder"
)

func init() {
	register(&command{name: "record", summary: "run a guest and record it to a log", run: recordCmd})
}

func recordCmd(args []string) int {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr record [-o LOG] [--mode exact|fast] [--mem MiB] [--timeout D] [--serial-in FILE] [--embed-image] IMAGE")
		fs.PrintDefaults()
	}
	mf := addMachineFlags(fs)
	out := fs.String("o", "", "log file (default: IMAGE's name with .vmrr)")
	mode := fs.String("mode", string(nondet.ModeFast), "how non-deterministic instructions are trapped: exact (single-step) or fast (patched)")
	embed := fs.Bool("embed-image", false, "store the guest image in the log")
	tlb := fs.String("tlbsync", "on", "keep the guest TLB in step with page-table writes: on or off")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	m, err := nondet.ParseMode(*mode)
	if err != nil {
		return fail("%v", err)
	}
	if *tlb != "on" && *tlb != "off" {
		return fail("--tlbsync=%s: want on or off", *tlb)
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
	res, err := recorder.Record(f, recorder.Options{ImagePath: imagePath, Image: image, EmbedImage: *embed, MemoryBytes: *mf.mem << 20,
		Mode: m, Console: os.Stdout, Serial: serial, Timeout: *mf.timeout, Warnings: os.Stderr, TLBSync: *tlb == "on"})
	if err != nil {
		f.Close()
		return fail("%v", err)
	}
	return reportResult(res)
}
