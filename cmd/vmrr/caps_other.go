//go:build !linux

package main

import "flag"

func init() {
	register(&command{name: "caps", summary: "probe this host's KVM (Linux only)", run: capsCmd})
}

// capsCmd: there is no KVM to probe on this system.
func capsCmd(args []string) int {
	if st, ok := parseArgs(flag.NewFlagSet("caps", flag.ContinueOnError), args, 0); !ok {
		return st
	}
	return fail("caps probes KVM, which needs Linux; --accel auto runs guests on the soft CPU here")
}
