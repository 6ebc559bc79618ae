// Package shell is the interactive replay shell behind `vmrr shell LOG`: a
// prompt that shows where the replay stands and commands to move through
// the recording in both directions and look at the guest.
//
// The layout follows delve's pkg/terminal: a table of commands (name,
// aliases, help, handler) dispatched from one loop, a `reverse` prefix that
// turns a forward motion into its backward twin, and line editing by
// github.com/go-delve/liner. The shell talks only to a replayer.Session, so
// it is tested against a fake session with scripted input, and through a
// pseudo-terminal for the parts that need one (completion, history, Ctrl-C).
//
// Input comes in two kinds. At a terminal, a bad command prints one line
// and the prompt comes back; an empty line repeats the last command; Ctrl-C
// stops a running motion and drops the rest of its line, Ctrl-D quits. From a script (stdin not a terminal,
// or Options.Commands), there is no prompt and the first failing command
// ends the run with an error naming it, as `sh -e` would: the commands
// after it would act on a replay that is not where the script expects.
package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/go-delve/liner"
	"vmrr/replayer"
)

// Options configure Run.
type Options struct {
	// In, Out and Err default to os.Stdin, os.Stdout and os.Stderr.
	In       io.Reader
	Out, Err io.Writer
	// HistoryFile is where interactive command history is kept; "" means
	// $HOME/.vmrr_history.
	HistoryFile string
	// HistoryLimit bounds the history file in lines (default 1000, which is
	// also the most liner keeps in memory; < 0 keeps no history). The file
	// is rewritten at exit, never appended to.
	HistoryLimit int
	// Commands, if set, are run (separated by ';') instead of reading In.
	Commands string
	// Symbols name addresses. If nil, they are read from the session's
	// image (Session.ImagePath) when that is an ELF; otherwise there are none.
	Symbols *Symbols
}

// defaultHistoryLimit is the history bound when Options leaves it zero.
const defaultHistoryLimit = 1000

// errQuit ends the command loop from the quit command.
var errQuit = errors.New("quit")

// shell is one run of the command loop.
type shell struct {
	session replayer.Session
	syms    *Symbols
	out     io.Writer
	errw    io.Writer

	// moving is set while a motion runs, so Ctrl-C knows to interrupt it.
	moving atomic.Bool
	// intr is set by a Ctrl-C while a command line runs: a motion not yet
	// started when it came must not start, and the rest of the line is
	// dropped, as a shell drops the rest of a command list.
	intr atomic.Bool

	// State that lets an empty line or a bare x / disas continue where the
	// last one stopped, as in gdb.
	last     string
	xFmt     examineFormat
	xNext    uint64
	xValid   bool
	disNext  uint64
	disCount int
	disValid bool
	evNext   int
}

// Run runs the shell until quit or end of input. It returns a non-nil error
// if a scripted command failed (the caller exits non-zero). It is
// interactive, with line editing, when In is a terminal.
func Run(s replayer.Session, opt Options) error {
	if s == nil {
		return errors.New("shell: no session")
	}
	if opt.In == nil {
		opt.In = os.Stdin
	}
	if opt.Out == nil {
		opt.Out = os.Stdout
	}
	if opt.Err == nil {
		opt.Err = os.Stderr
	}
	if opt.HistoryLimit == 0 {
		opt.HistoryLimit = defaultHistoryLimit
	}
	if opt.Symbols == nil && s.ImagePath() != "" {
		// A flat or stripped image simply has no names; that is not an
		// error worth stopping a debugging session for.
		opt.Symbols, _ = LoadSymbols(s.ImagePath())
	}
	sh := &shell{
		session: s,
		syms:    opt.Symbols,
		out:     opt.Out,
		errw:    opt.Err,
		xFmt:    examineFormat{count: 1, size: 4, fmt: 'x'},
	}
	if opt.Commands != "" {
		for i, c := range splitCommands(opt.Commands) {
			if err := sh.exec(c, false); err != nil {
				if errors.Is(err, errQuit) {
					return nil
				}
				return fmt.Errorf("shell: command %d (%s): %w", i+1, c, err)
			}
		}
		return nil
	}
	if !isTerminal(opt.In) {
		return sh.script(opt.In)
	}
	stop := sh.catchInterrupts()
	defer stop()
	if f, ok := opt.In.(*os.File); ok && f == os.Stdin && isTerminal(os.Stdout) {
		return sh.interactive(opt)
	}
	// A terminal we cannot edit on (stdout redirected, or not stdin):
	// prompts and forgiving errors, but plain line reads.
	r := bufio.NewReader(opt.In)
	return sh.loop(func(prompt string) (string, error) {
		fmt.Fprint(sh.out, prompt)
		line, err := r.ReadString('\n')
		if err == io.EOF && line != "" {
			err = nil
		}
		return strings.TrimRight(line, "\r\n"), err
	}, true)
}

// catchInterrupts turns SIGINT into Session.Interrupt while a motion runs.
// The handler stays installed for the whole interactive run, not just
// around each motion: liner hands the terminal back with ISIG on before the
// command starts, and a Ctrl-C in that gap must not kill the shell.
func (sh *shell) catchInterrupts() (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sig {
			sh.intr.Store(true)
			if sh.moving.Load() {
				sh.session.Interrupt()
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(sig)
		<-done
	}
}

// interactive runs the loop with liner: editing, completion, history.
func (sh *shell) interactive(opt Options) error {
	ln := liner.NewLiner()
	defer ln.Close()
	ln.SetCtrlCAborts(true)
	ln.SetTabCompletionStyle(liner.TabPrints)
	ln.SetWordCompleter(sh.complete)

	path := opt.HistoryFile
	if path == "" && opt.HistoryLimit > 0 {
		if home, err := os.UserHomeDir(); err == nil {
			path = home + "/.vmrr_history"
		}
	}
	if opt.HistoryLimit > 0 && path != "" {
		lines, err := readHistory(path, opt.HistoryLimit)
		if err != nil {
			fmt.Fprintf(sh.errw, "warning: %v\n", err)
		}
		ln.ReadHistory(strings.NewReader(strings.Join(lines, "\n")))
		defer func() {
			var b strings.Builder
			ln.WriteHistory(&b)
			if err := writeHistory(path, strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"), opt.HistoryLimit); err != nil {
				fmt.Fprintf(sh.errw, "warning: %v\n", err)
			}
		}()
	}
	return sh.loop(func(prompt string) (string, error) {
		line, err := ln.Prompt(prompt)
		if err == nil && strings.TrimSpace(line) != "" {
			ln.AppendHistory(line)
		}
		return line, err
	}, true)
}

// script runs commands read line by line from r.
func (sh *shell) script(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	return sh.loop(func(string) (string, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", err
			}
			return "", io.EOF
		}
		return strings.TrimRight(sc.Text(), "\r"), nil
	}, false)
}

// loop reads and runs command lines until quit or end of input.
func (sh *shell) loop(read func(prompt string) (string, error), interactive bool) error {
	for lineNo := 1; ; lineNo++ {
		line, err := read(sh.prompt())
		switch {
		case errors.Is(err, liner.ErrPromptAborted):
			// Ctrl-C at the prompt drops the line, as in a shell.
			continue
		case errors.Is(err, io.EOF):
			if interactive {
				fmt.Fprintln(sh.out)
			}
			return nil
		case err != nil:
			return fmt.Errorf("shell: reading commands: %w", err)
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		repeated := false
		if strings.TrimSpace(line) == "" {
			if !interactive || sh.last == "" {
				continue
			}
			line, repeated = sh.last, true
		}
		sh.last = ""
		cmds := splitCommands(line)
		allRepeat := len(cmds) > 0
		sh.intr.Store(false)
		for i, c := range cmds {
			err := sh.exec(c, repeated)
			if errors.Is(err, errQuit) {
				return nil
			}
			if sh.intr.Load() && i+1 < len(cmds) && err == nil {
				fmt.Fprintf(sh.errw, "interrupted: not running %s\n", strings.Join(cmds[i+1:], "; "))
				break
			}
			if err != nil {
				if !interactive {
					return fmt.Errorf("shell: line %d (%s): %w", lineNo, c, err)
				}
				fmt.Fprintln(sh.errw, oneLine(err.Error()))
				allRepeat = false
				break
			}
			if cmd, _ := sh.lookupLine(c); cmd == nil || cmd.noRepeat {
				allRepeat = false
			}
		}
		if allRepeat {
			sh.last = line
		}
	}
}

// splitCommands splits a line at ';' and drops empty commands.
func splitCommands(line string) []string {
	var out []string
	for _, c := range strings.Split(line, ";") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// oneLine keeps an error message on one line, whatever the session said.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// prompt shows the position and where the vCPU is: "(vmrr 12:0 main+0x4) ".
func (sh *shell) prompt() string {
	p := sh.session.Position()
	where := ""
	if r, err := sh.session.Registers(); err == nil {
		where = " " + sh.symOrHex(r.RIP)
	}
	s := fmt.Sprintf("(vmrr %s%s) ", p, where)
	// liner refuses prompts with control characters; symbol names are
	// the guest's to choose.
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.C, r) {
			return '?'
		}
		return r
	}, s)
}

// symOrHex names an address by symbol, or in hex when no symbol covers it.
func (sh *shell) symOrHex(a uint64) string {
	if d := sh.syms.Describe(a); d != "" {
		return d
	}
	return fmt.Sprintf("%#x", a)
}
