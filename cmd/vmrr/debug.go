package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"vmrr/gdbstub"
	"vmrr/machine"
	"vmrr/replayer"
	"vmrr/shell"
)

func init() {
	register(&command{name: "gdb", summary: "serve a replay to gdb (remote protocol, reverse execution)", run: gdbCmd})
	register(&command{name: "shell", summary: "move around a replay at an interactive prompt", run: shellCmd})
}

// openTimeline opens a log for debugging, with --image and --accel.
func openTimeline(fs *flag.FlagSet, imagePath, accelFlag string) (*replayer.Timeline, error) {
	accel, err := replayAccel(accelFlag)
	if err != nil {
		return nil, err
	}
	var image []byte
	if imagePath != "" {
		var err error
		if image, err = readImage(imagePath); err != nil {
			return nil, err
		}
	}
	return replayer.OpenTimeline(replayer.TimelineOptions{Options: replayer.Options{LogPath: fs.Arg(0), Image: image, Accel: accel}})
}

func gdbCmd(args []string) int {
	fs := flag.NewFlagSet("gdb", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr gdb [--listen ADDR] [--accel auto|kvm|soft] [--image IMAGE] LOG\n\nthen in gdb: target remote ADDR")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", gdbstub.DefaultAddr, "address to serve the GDB remote protocol on")
	imagePath := fs.String("image", "", "the guest image (default: embedded in the log, or the recorded path)")
	trace := fs.Bool("trace", false, "log the protocol on stderr")
	once := fs.Bool("once", false, "exit after the first gdb connection ends")
	accel := fs.String("accel", string(machine.AccelAuto), "the CPU: auto (the recording's), or kvm or soft, which must be the recording's")
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	tl, err := openTimeline(fs, *imagePath, *accel)
	if err != nil {
		return fail("%v", err)
	}
	defer tl.Close()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("%v", err)
	}
	defer l.Close()
	opts := gdbstub.Options{}
	if *trace {
		opts.Log = os.Stderr
	}
	srv := gdbstub.NewServer(tl, opts)
	fmt.Fprintf(os.Stderr, "vmrr: serving %s to gdb on %s (gdb %s -ex 'target remote %s')\n", fs.Arg(0), l.Addr(), tl.ImagePath(), l.Addr())
	if *once {
		c, err := l.Accept()
		if err != nil {
			return fail("%v", err)
		}
		srv.ServeConn(c)
		return 0
	}
	if err := srv.Serve(l); err != nil {
		return fail("%v", err)
	}
	return 0
}

func shellCmd(args []string) int {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr shell [-c 'cmd; cmd'] [--accel auto|kvm|soft] [--image IMAGE] LOG")
		fs.PrintDefaults()
	}
	cmds := fs.String("c", "", "run these commands (separated by ';') and exit")
	imagePath := fs.String("image", "", "the guest image (default: embedded in the log, or the recorded path)")
	history := fs.String("history", "", "history file (default ~/.vmrr_history)")
	accel := fs.String("accel", string(machine.AccelAuto), "the CPU: auto (the recording's), or kvm or soft, which must be the recording's")
	if st, ok := parseArgs(fs, args, 1); !ok {
		return st
	}
	tl, err := openTimeline(fs, *imagePath, *accel)
	if err != nil {
		return fail("%v", err)
	}
	defer tl.Close()
	if err := shell.Run(tl, shell.Options{Commands: *cmds, HistoryFile: *history}); err != nil {
		fmt.Fprintf(os.Stderr, "vmrr: %v\n", err)
		return 1
	}
	return 0
}
