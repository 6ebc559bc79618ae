package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/replayer"
)

func init() {
	register(&command{name: "replay", summary: "replay a log: same console, same exit status", run: replayCmd})
}

// Statuses of vmrr replay beyond the guest's own.
const (
	statusDiverged = 72 // the replay does not match its recording
	statusLogEnded = 74 // the log ends early (the recording was interrupted)
)

func replayCmd(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr replay [--check] [--accel auto|kvm|soft] [--image IMAGE] LOG")
		fs.PrintDefaults()
	}
	imagePath := fs.String("image", "", "the guest image (default: embedded in the log, or the recorded path)")
	check := fs.Bool("check", false, "exit 0 if the replay reproduces the recording exactly (status, end position, final state), "+
		"72 if it diverges, 74 if the log ends early; the guest's own status is reported, not returned")
	accelFlag := fs.String("accel", string(machine.AccelAuto), "the CPU: auto (the recording's), or kvm or soft, which must be the recording's")
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	accel, err := replayAccel(*accelFlag)
	if err != nil {
		return fail("%v", err)
	}
	var image []byte
	if *imagePath != "" {
		if image, err = readImage(*imagePath); err != nil {
			return fail("%v", err)
		}
	}
	o, err := replayer.Replay(replayer.Options{LogPath: fs.Arg(0), Image: image, Console: os.Stdout, Warnings: os.Stderr, Accel: accel})
	if err != nil && *check && logDamaged(err) {
		// A log too damaged to start is, for a CI check, one that does not
		// reproduce its recording: say so with the log-ended status, not
		// the bad-input one meant for a wrong path or a foreign file.
		fmt.Fprintf(os.Stderr, "vmrr: check failed: %v\n", err)
		return statusLogEnded
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail("%v", err)
		}
		return fail("%v", err)
	}
	if *check {
		return checkOutcome(o)
	}
	switch {
	case o.Divergence != nil:
		fmt.Fprintf(os.Stderr, "vmrr: %s\n", o.Summary())
		return statusDiverged
	case o.EndOfLog != nil:
		fmt.Fprintf(os.Stderr, "vmrr: %s\n", o.Summary())
		return statusLogEnded
	case !o.Identical():
		fmt.Fprintf(os.Stderr, "vmrr: %s\n", o.Summary())
		return statusDiverged
	}
	return reportResult(o.Result)
}

// checkOutcome is vmrr replay --check's verdict: one line on stderr and a
// status that says only whether the replay reproduced the recording, so a
// CI step can assert on it whatever the guest's own status was.
func checkOutcome(o *replayer.Outcome) int {
	switch {
	case o.Divergence != nil:
		fmt.Fprintf(os.Stderr, "vmrr: check failed: %s\n", o.Summary())
		return statusDiverged
	case o.EndOfLog != nil || o.End == nil:
		fmt.Fprintf(os.Stderr, "vmrr: check failed: %s\n", o.Summary())
		return statusLogEnded
	case !o.Identical():
		fmt.Fprintf(os.Stderr, "vmrr: check failed: %s\n", o.Summary())
		return statusDiverged
	case o.CutBetweenExits:
		fmt.Fprintf(os.Stderr, "vmrr: %s\n", o.Summary())
		return 0
	case o.Result.RIP != o.End.RIP:
		// The state hash covers the registers, so this is a recorder and
		// replayer disagreeing about what RIP to report, not the guest.
		fmt.Fprintf(os.Stderr, "vmrr: check failed: replay ended at RIP %#x, the recording at RIP %#x\n", o.Result.RIP, o.End.RIP)
		return statusDiverged
	}
	fmt.Fprintf(os.Stderr, "vmrr: check ok: guest status %d at RIP %#x, position %s (%s)\n", o.Result.Status, o.Result.RIP, o.Result.Pos, o.End.Reason)
	return 0
}

// logDamaged reports whether err says the log is cut short or damaged, as
// opposed to not being a usable log at all.
func logDamaged(err error) bool {
	var te *logfmt.TruncatedError
	var ce *logfmt.ChecksumError
	var co *logfmt.CorruptError
	return errors.As(err, &te) || errors.As(err, &ce) || errors.As(err, &co)
}
