// Command vmrr records a KVM virtual machine and replays it instruction-exactly.
//
// Each subcommand lives in its own file and registers itself with register, so
// the command table is the one place that lists them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// exitUsage is the status for bad input: a bad flag, a missing or malformed
// file, no KVM. Guest results use other statuses (see machine.Result).
const exitUsage = 2

type command struct {
	name    string
	summary string
	run     func(args []string) int
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vmrr COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nrun 'vmrr COMMAND -h' for a command's flags")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitUsage)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	c, ok := commands[name]
	if !ok {
		os.Exit(fail("unknown command %q (run 'vmrr help' for the list)", name))
	}
	os.Exit(c.run(os.Args[2:]))
}

// fail prints one line on stderr and returns the usage status.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "vmrr: "+format+"\n", args...)
	return exitUsage
}

// parseArgs parses a command's flags and checks it got nargs arguments
// (-1: any). Errors are one line on stderr; -h prints the usage. ok is
// false when the command should return status at once.
func parseArgs(fs *flag.FlagSet, args []string, nargs int) (status int, ok bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			return 0, false
		}
		return fail("%s: %v (run 'vmrr %s -h' for usage)", fs.Name(), err, fs.Name()), false
	}
	fs.SetOutput(os.Stderr)
	if nargs >= 0 && fs.NArg() != nargs {
		what := "an image"
		if fs.Name() != "run" && fs.Name() != "record" {
			what = "a log"
		}
		if nargs == 0 {
			return fail("%s takes no arguments (run 'vmrr %s -h' for usage)", fs.Name(), fs.Name()), false
		}
		return fail("%s needs %s (run 'vmrr %s -h' for usage)", fs.Name(), what, fs.Name()), false
	}
	return 0, true
}
