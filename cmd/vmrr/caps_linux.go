//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"vmrr/machine"
	"vmrr/machine/probe"
)

func init() {
	register(&command{name: "caps", summary: "probe this host's KVM: what vmrr can rely on, and what it costs",
		run: func(args []string) int { return capsCmd(args, os.Stdout) }})
}

// probeHost is the probe capsCmd runs; tests replace it.
var probeHost = probe.Probe

func capsCmd(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("caps", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	repeat := fs.Int("repeat", 200, "uses each cost is the median of")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr caps [--json] [--repeat N]")
		fmt.Fprintln(fs.Output(), "\nRuns tiny guests on this host's KVM and prints, per mechanism, whether it works at CPL0")
		fmt.Fprintln(fs.Output(), "and CPL3 and its cost, and per CPU mode how KVM runs the instructions that matter to")
		fmt.Fprintln(fs.Output(), "record/replay.")
		fs.PrintDefaults()
	}
	if st, ok := parseArgs(fs, args, 0); !ok {
		return st
	}
	if *repeat < 1 {
		return fail("--repeat %d: want at least 1", *repeat)
	}
	r, err := probeHost(probe.Options{Repeat: *repeat})
	if errors.Is(err, machine.ErrNoKVM) {
		return fail("%v (--accel auto runs guests on the soft CPU)", err)
	}
	if err != nil {
		return fail("%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = probe.WriteText(stdout, r)
		if err == nil {
			a, why := r.Auto()
			events := "anywhere (exact instruction counter)"
			if ok, _, _ := r.Has("CPL0 emulated"); !ok {
				events = "at the guest's exits only (port I/O, HLT): no exact instruction counter"
			}
			_, err = fmt.Fprintf(stdout, "\n--accel auto: the %s CPU (%s)\nrecording on KVM places timer ticks and input %s\n", a, why, events)
		}
	}
	if err != nil {
		return fail("caps: %v", err)
	}
	return 0
}
