package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

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
		fmt.Fprintln(fs.Output(), "usage: vmrr replay [--image IMAGE] LOG")
		fs.PrintDefaults()
	}
	imagePath := fs.String("image", "", "the guest image (default: embedded in the log, or the recorded path)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	var image []byte
	if *imagePath != "" {
		var err error
		if image, err = readImage(*imagePath); err != nil {
			return fail("%v", err)
		}
	}
	o, err := replayer.Replay(replayer.Options{LogPath: fs.Arg(0), Image: image, Console: os.Stdout, Warnings: os.Stderr})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail("%v", err)
		}
		return fail("%v", err)
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
