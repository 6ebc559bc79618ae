// Command fakeshell runs the replay shell on the fake session, so tests can
// drive the real binary through a pseudo-terminal (completion, history,
// Ctrl-C, Ctrl-D), which needs a process of its own.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vmrr/shell"
	"vmrr/shell/internal/fakesession"
)

func main() {
	cmds := flag.String("c", "", "commands to run, separated by ';'")
	history := flag.String("history", "", "history file")
	limit := flag.Int("history-limit", 0, "history bound in lines")
	long := flag.Bool("long", false, "a trace so long that continue runs until interrupted")
	flag.Parse()

	dir, err := os.MkdirTemp("", "fakeshell")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeshell:", err)
		os.Exit(2)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "fake.elf")
	if err := fakesession.WriteELF(img); err != nil {
		fmt.Fprintln(os.Stderr, "fakeshell:", err)
		os.Exit(2)
	}
	syms, err := shell.LoadSymbols(img)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeshell:", err)
		os.Exit(2)
	}
	cfg := fakesession.Config{Image: img}
	if *long {
		cfg.Steps = 1 << 50
		cfg.Delay = time.Millisecond
		cfg.Log = os.Stdout
	}
	err = shell.Run(fakesession.New(cfg), shell.Options{
		HistoryFile:  *history,
		HistoryLimit: *limit,
		Commands:     *cmds,
		Symbols:      syms,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeshell:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
}
