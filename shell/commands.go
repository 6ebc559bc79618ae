package shell

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"vmrr/machine/cpu"
	"vmrr/position"
	"vmrr/replayer"
)

// command is one entry of the command table.
type command struct {
	names    []string // the name, then its aliases
	usage    string   // arguments, for help
	summary  string   // one line for the command list
	help     string   // more, for help CMD
	noRepeat bool     // an empty line does not run it again
	reverse  string   // the command `reverse NAME` runs instead, if any
	// args completes the argument being typed (n counts from 0).
	args func(sh *shell, n int, prefix string) []string
	run  func(sh *shell, c *call) error
}

// call is one invocation: the words typed after the command name.
type call struct {
	name     string // as typed
	format   string // the FMT of x/FMT
	args     []string
	repeated bool // run again by an empty line
}

var commands []*command

func init() {
	commands = []*command{
		{names: []string{"help", "h", "?"}, usage: "[COMMAND]", noRepeat: true,
			summary: "list the commands, or explain one",
			args:    completeCommands, run: cmdHelp},
		{names: []string{"continue", "c"}, reverse: "reverse-continue",
			summary: "run forwards to a breakpoint, a watchpoint or the end",
			help:    "Ctrl-C stops a running continue and returns to the prompt.",
			run:     cmdContinue},
		{names: []string{"step", "s", "si", "stepi"}, usage: "[N]", reverse: "reverse-step",
			summary: "execute N instructions (default 1)",
			help:    "Stops early at a breakpoint, a watchpoint or the end of the recording.",
			run:     cmdStep},
		{names: []string{"reverse-step", "rs", "rsi", "reverse-stepi"}, usage: "[N]",
			summary: "go back N instructions (default 1)",
			run:     cmdReverseStep},
		{names: []string{"reverse-continue", "rc"},
			summary: "go back to the last breakpoint or watchpoint hit, or the start",
			run:     cmdReverseContinue},
		{names: []string{"goto", "g"}, usage: "event K | EXIT:INSN | start | end", noRepeat: true,
			summary: "move to an event of the log, a position, or an end of the recording",
			help: "A position is EXIT:INSN as the prompt shows it (EXIT alone means EXIT:0).\n" +
				"`goto event K` moves to where event K of the log is applied (see events).",
			args: completeWords("event", "start", "end"), run: cmdGoto},
		{names: []string{"break", "b"}, usage: "ADDR", noRepeat: true,
			summary: "stop when execution reaches ADDR",
			help:    addrHelp, args: completeAddr, run: cmdBreak},
		{names: []string{"watch", "w"}, usage: "[-r | -a] ADDR [LEN]", noRepeat: true,
			summary: "stop after a write to LEN bytes at ADDR (default 8)",
			help:    "-r watches reads, -a reads and writes (if the replay supports them).\n" + addrHelp,
			args:    completeAddr, run: cmdWatch},
		{names: []string{"delete", "d"}, usage: "ID... | all", noRepeat: true,
			summary: "delete breakpoints and watchpoints",
			args:    completeBreakpoints, run: cmdDelete},
		{names: []string{"info", "i"}, usage: "breakpoints | registers", noRepeat: true,
			summary: "list breakpoints (info b) or show registers (info r)",
			args:    completeWords("breakpoints", "registers"), run: cmdInfo},
		{names: []string{"regs", "r", "registers"}, usage: "[-a] [NAME...]",
			summary: "show registers (-a adds descriptor tables, FPU and SSE)",
			help:    "rflags, cr0, cr4 and efer are decoded; rip is named by symbol.",
			args:    completeRegs, run: cmdRegs},
		{names: []string{"x"}, usage: "/[N][bhwg][xducis] ADDR",
			summary: "examine memory at a virtual address, as gdb's x",
			help: "N units of size b(1) h(2) w(4) g(8) bytes, shown as x hex, d signed, u unsigned,\n" +
				"c characters, i instructions or s strings. Size and format default to the last\n" +
				"ones; x without ADDR, or an empty line, continues after the last unit shown.\n" + addrHelp,
			args: completeAddr, run: cmdExamine},
		{names: []string{"disas", "di", "disassemble"}, usage: "[ADDR] [N]",
			summary: "disassemble N instructions (default 10) from ADDR (default $rip)",
			help: "Bytes vmrr patched are shown as they were in the image. The decoder follows the\n" +
				"vCPU's mode: 64-bit in long mode, else 32- or 16-bit by CS.D and CR0.PE.\n" + addrHelp,
			args: completeAddr, run: cmdDisas},
		{names: []string{"events", "ev"}, usage: "[near [N] | from K [N]]",
			summary: "list the log's events around now, or from event K",
			args:    completeWords("near", "from"), run: cmdEvents},
		{names: []string{"where", "pos"}, summary: "show the position, rip and the last and next events",
			run: cmdWhere},
		{names: []string{"console", "con"}, usage: "[N]",
			summary: "show the guest's serial output up to now (the last N lines)",
			run:     cmdConsole},
		{names: []string{"snapshots", "snap"}, summary: "list the snapshots the replay holds", run: cmdSnapshots},
		{names: []string{"print", "p"}, usage: "ADDR",
			summary: "evaluate an address: value, symbol, physical address",
			help:    addrHelp, args: completeAddr, run: cmdPrint},
		{names: []string{"reverse", "rev"}, usage: "COMMAND [ARGS]",
			summary: "run a motion backwards: rev step 3, rev continue",
			args:    completeReversible, run: cmdReverse},
		{names: []string{"quit", "q", "exit"}, summary: "leave the shell", noRepeat: true,
			run: func(*shell, *call) error { return errQuit }},
	}
}

const addrHelp = "ADDR is a number (0x hex or decimal), a symbol (its address; &SYM is the same),\n" +
	"$REG (e.g. $rip, $rsp), or terms joined by + and - (main+0x10, $rsp-8).\n" +
	"Addresses are virtual, translated through the guest's page tables."

// lookup finds a command by name or alias.
func lookup(name string) *command {
	for _, c := range commands {
		for _, n := range c.names {
			if n == name {
				return c
			}
		}
	}
	return nil
}

// parseLine splits a command line into the command's name, x's /FMT and
// the arguments.
func parseLine(line string) (c call) {
	words := strings.Fields(line)
	if len(words) == 0 {
		return c
	}
	c.name, c.args = words[0], words[1:]
	if i := strings.IndexByte(c.name, '/'); i >= 0 {
		c.name, c.format = c.name[:i], c.name[i+1:]
	} else if c.name == "x" && len(c.args) > 0 && strings.HasPrefix(c.args[0], "/") {
		c.format, c.args = c.args[0][1:], c.args[1:]
	}
	return c
}

// lookupLine finds the command a line runs.
func (sh *shell) lookupLine(line string) (*command, call) {
	c := parseLine(line)
	return lookup(c.name), c
}

// exec runs one command. A panic in a handler (a replay bug, say) becomes
// an error, so the prompt survives it.
func (sh *shell) exec(line string, repeated bool) (err error) {
	cmd, c := sh.lookupLine(line)
	if c.name == "" {
		return nil
	}
	if cmd == nil {
		return fmt.Errorf("unknown command %q (try help)", c.name)
	}
	if c.format != "" && cmd.names[0] != "x" {
		return fmt.Errorf("%s: takes no /format", c.name)
	}
	c.repeated = repeated
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: internal error: %v", cmd.names[0], r)
		}
	}()
	if err := cmd.run(sh, &c); err != nil {
		if errors.Is(err, errQuit) {
			return err
		}
		return fmt.Errorf("%s: %w", cmd.names[0], err)
	}
	return nil
}

func noArgs(c *call) error {
	if len(c.args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	return nil
}

// optCount reads an optional count argument.
func optCount(c *call, def int) (int, error) {
	switch len(c.args) {
	case 0:
		return def, nil
	case 1:
		return parseCount(c.args[0], math.MaxInt32)
	}
	return 0, fmt.Errorf("too many arguments")
}

func cmdHelp(sh *shell, c *call) error {
	if len(c.args) > 1 {
		return fmt.Errorf("too many arguments")
	}
	if len(c.args) == 1 {
		cmd := lookup(strings.TrimPrefix(c.args[0], "x/"))
		if cmd == nil {
			return fmt.Errorf("unknown command %q", c.args[0])
		}
		sep := " "
		if strings.HasPrefix(cmd.usage, "/") {
			sep = ""
		}
		fmt.Fprintf(sh.out, "%s\n  %s\n", strings.TrimSpace(cmd.names[0]+sep+cmd.usage), cmd.summary)
		if len(cmd.names) > 1 {
			fmt.Fprintf(sh.out, "  aliases: %s\n", strings.Join(cmd.names[1:], ", "))
		}
		if cmd.help != "" {
			fmt.Fprintf(sh.out, "\n%s\n", cmd.help)
		}
		return nil
	}
	tw := sh.newTable()
	for _, cmd := range commands {
		name := cmd.names[0]
		if len(cmd.names) > 1 {
			name += ", " + cmd.names[1]
		}
		tw.row("  %s\t%s\n", name, cmd.summary)
	}
	tw.flush()
	fmt.Fprintln(sh.out, "An empty line repeats the last command. Type help COMMAND for more.")
	return nil
}

// move runs a motion with Ctrl-C armed to interrupt it, then reports where
// it stopped.
func (sh *shell) move(f func() (replayer.Stop, error)) error {
	st, err := sh.motion(f)
	if err != nil {
		return err
	}
	sh.report(st)
	return nil
}

// motion runs a motion with Ctrl-C armed to interrupt it. A Ctrl-C that
// came before the motion started (while the line was being parsed, or
// during an earlier command of the line) means do not start it.
func (sh *shell) motion(f func() (replayer.Stop, error)) (replayer.Stop, error) {
	sh.moving.Store(true)
	defer sh.moving.Store(false)
	if sh.intr.Load() {
		return replayer.Stop{}, errInterrupted
	}
	return f()
}

// errInterrupted is a motion that Ctrl-C stopped before it began.
var errInterrupted = errors.New("interrupted before it started")

// report says why a motion stopped (unless it simply finished) and shows
// the instruction at the new RIP.
func (sh *shell) report(st replayer.Stop) {
	pos := st.Pos.String()
	var why string
	switch st.Kind {
	case replayer.StopBreakpoint:
		why = "breakpoint"
		for _, bp := range sh.session.Breakpoints() {
			if bp.Kind <= replayer.BreakHardware && bp.Addr == st.RIP {
				why = fmt.Sprintf("breakpoint %d", bp.ID)
				break
			}
		}
		why += fmt.Sprintf(" at %s, position %s", sh.label(st.RIP), pos)
	case replayer.StopWatchpoint:
		why = sh.describeWatchHit(st)
	case replayer.StopBegin:
		why = "reached the start of the recording"
	case replayer.StopEnd:
		why = "reached the end of the recording at " + pos
	case replayer.StopInterrupted:
		why = "interrupted at " + pos
	case replayer.StopExited:
		why = fmt.Sprintf("guest exited with status %d at %s", st.Status, pos)
	case replayer.StopCrashed:
		why = "guest crashed at " + pos
	case replayer.StopDiverged:
		why = "replay diverged at " + pos
	}
	if why != "" {
		if st.Message != "" {
			why += ": " + oneLine(st.Message)
		}
		fmt.Fprintln(sh.out, why)
	}
	sh.showCurrent()
}

// describeWatchHit names the watchpoint a stop hit and the value there now.
func (sh *shell) describeWatchHit(st replayer.Stop) string {
	why := "watchpoint"
	var hit *replayer.Breakpoint
	for _, bp := range sh.session.Breakpoints() {
		if bp.Kind >= replayer.WatchWrite && bp.Addr <= st.Addr && st.Addr-bp.Addr < max(bp.Len, 1) {
			hit = &bp
			why = fmt.Sprintf("watchpoint %d", bp.ID)
			break
		}
	}
	why += fmt.Sprintf(" hit at position %s: %s", st.Pos, sh.label(st.Addr))
	if hit != nil && hit.Len <= 8 {
		b := make([]byte, 8)
		if n, _ := sh.session.ReadVirtual(hit.Addr, b[:hit.Len]); uint64(n) == hit.Len {
			why += fmt.Sprintf(" = %#x", binary.LittleEndian.Uint64(b))
		}
	}
	return why
}

// showCurrent prints the instruction at RIP, as gdb does after a motion.
func (sh *shell) showCurrent() {
	r, err := sh.session.Registers()
	if err != nil {
		fmt.Fprintf(sh.out, "(registers unavailable: %s)\n", oneLine(err.Error()))
		return
	}
	if _, err := sh.disassemble(sh.out, r.RIP, 1, cpu.Mode(&r.Sregs), r.RIP); err != nil {
		fmt.Fprintf(sh.out, "=> %s: (%s)\n", sh.label(r.RIP), oneLine(err.Error()))
	}
}

func cmdContinue(sh *shell, c *call) error {
	if err := noArgs(c); err != nil {
		return err
	}
	return sh.move(sh.session.Continue)
}

func cmdReverseContinue(sh *shell, c *call) error {
	if err := noArgs(c); err != nil {
		return err
	}
	return sh.move(sh.session.ReverseContinue)
}

func cmdStep(sh *shell, c *call) error {
	n, err := optCount(c, 1)
	if err != nil {
		return err
	}
	return sh.move(func() (replayer.Stop, error) { return sh.session.Step(n) })
}

func cmdReverseStep(sh *shell, c *call) error {
	n, err := optCount(c, 1)
	if err != nil {
		return err
	}
	return sh.move(func() (replayer.Stop, error) { return sh.session.ReverseStep(n) })
}

func cmdReverse(sh *shell, c *call) error {
	if len(c.args) == 0 {
		return fmt.Errorf("reverse what? (step, continue)")
	}
	fwd := lookup(c.args[0])
	if fwd == nil {
		return fmt.Errorf("unknown command %q", c.args[0])
	}
	if fwd.reverse == "" {
		return fmt.Errorf("%s cannot run backwards", fwd.names[0])
	}
	back := lookup(fwd.reverse)
	return back.run(sh, &call{name: back.names[0], args: c.args[1:], repeated: c.repeated})
}

func cmdGoto(sh *shell, c *call) error {
	const want = "want event K, EXIT:INSN, start or end"
	if len(c.args) == 0 {
		return errors.New(want)
	}
	if c.args[0] == "event" || c.args[0] == "ev" || c.args[0] == "e" {
		if len(c.args) != 2 {
			return fmt.Errorf("goto event K: want one event index")
		}
		k, err := strconv.Atoi(c.args[1])
		if err != nil || k < 0 {
			return fmt.Errorf("bad event index %q", c.args[1])
		}
		// Checked here so the message is the same whatever the replay says.
		if n := sh.session.EventCount(); k >= n {
			return fmt.Errorf("event %d is past the end of the log (%d events)", k, n)
		}
		return sh.move(func() (replayer.Stop, error) { return sh.session.GotoEvent(k) })
	}
	if len(c.args) > 1 {
		return fmt.Errorf("too many arguments")
	}
	switch c.args[0] {
	case "start":
		return sh.move(sh.session.GotoStart)
	case "end":
		return sh.move(sh.session.GotoEnd)
	}
	p, err := position.Parse(c.args[0])
	if err != nil {
		return fmt.Errorf("%w (%s)", err, want)
	}
	// A session that has not yet seen the end of the recording finds out
	// that p is past it only by running there; say so as it does when it
	// knew, rather than reporting the end as if it were p.
	st, err := sh.motion(func() (replayer.Stop, error) { return sh.session.Goto(p) })
	if err != nil {
		return err
	}
	if st.Pos != p && endsReplay(st.Kind) {
		return fmt.Errorf("position %s is past the end of the recording (%s); now at the end", p, st.Pos)
	}
	sh.report(st)
	return nil
}

// endsReplay reports whether a stop of this kind is the end of the
// recording: nothing runs after it.
func endsReplay(k replayer.StopKind) bool {
	return k == replayer.StopEnd || k == replayer.StopExited || k == replayer.StopCrashed
}

func cmdBreak(sh *shell, c *call) error {
	if len(c.args) != 1 {
		return fmt.Errorf("want one address")
	}
	a, err := sh.evalAddr(c.args[0])
	if err != nil {
		return err
	}
	id, err := sh.session.AddBreakpoint(replayer.BreakSoftware, a, 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(sh.out, "breakpoint %d at %s\n", id, sh.label(a))
	return nil
}

// defaultWatchLen is a quadword: the natural unit of a 64-bit guest.
const defaultWatchLen = 8

func cmdWatch(sh *shell, c *call) error {
	kind, what := replayer.WatchWrite, "write"
	args := c.args
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-r":
			kind, what = replayer.WatchRead, "read"
		case "-a":
			kind, what = replayer.WatchAccess, "access"
		case "-w":
		default:
			return fmt.Errorf("unknown flag %q (-r read, -a access)", args[0])
		}
		args = args[1:]
	}
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("want ADDR [LEN]")
	}
	a, err := sh.evalAddr(args[0])
	if err != nil {
		return err
	}
	n := uint64(defaultWatchLen)
	if len(args) == 2 {
		v, err := parseCount(args[1], 1<<30)
		if err != nil {
			return fmt.Errorf("length: %w", err)
		}
		n = uint64(v)
	}
	id, err := sh.session.AddBreakpoint(kind, a, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(sh.out, "watchpoint %d: %s %s, %d bytes\n", id, what, sh.label(a), n)
	return nil
}

func cmdDelete(sh *shell, c *call) error {
	if len(c.args) == 0 {
		return fmt.Errorf("want breakpoint IDs or all")
	}
	var ids []int
	if len(c.args) == 1 && c.args[0] == "all" {
		for _, bp := range sh.session.Breakpoints() {
			ids = append(ids, bp.ID)
		}
	} else {
		for _, a := range c.args {
			id, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("bad breakpoint ID %q", a)
			}
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if err := sh.session.RemoveBreakpoint(id); err != nil {
			return err
		}
	}
	return nil
}

func cmdInfo(sh *shell, c *call) error {
	if len(c.args) == 0 {
		return fmt.Errorf("info what? (breakpoints, registers)")
	}
	switch c.args[0] {
	case "b", "br", "break", "breakpoints", "watch", "watchpoints":
		if len(c.args) > 1 {
			return fmt.Errorf("too many arguments")
		}
		sh.printBreakpoints()
		return nil
	case "r", "reg", "regs", "registers":
		return cmdRegs(sh, &call{name: "regs", args: c.args[1:]})
	}
	return fmt.Errorf("unknown info %q (breakpoints, registers)", c.args[0])
}

func (sh *shell) printBreakpoints() {
	bps := sh.session.Breakpoints()
	if len(bps) == 0 {
		fmt.Fprintln(sh.out, "no breakpoints")
		return
	}
	tw := sh.newTable()
	tw.row("%s\n", "ID\tkind\taddress\tlength")
	for _, bp := range bps {
		kind, length := "break", ""
		switch bp.Kind {
		case replayer.BreakHardware:
			kind = "hbreak"
		case replayer.WatchWrite:
			kind = "watch"
		case replayer.WatchRead:
			kind = "rwatch"
		case replayer.WatchAccess:
			kind = "awatch"
		}
		if bp.Kind >= replayer.WatchWrite {
			length = fmt.Sprint(bp.Len)
		}
		tw.row("%d\t%s\t%s\t%s\n", bp.ID, kind, sh.label(bp.Addr), length)
	}
	tw.flush()
}

func cmdRegs(sh *shell, c *call) error {
	r, err := sh.session.Registers()
	if err != nil {
		return err
	}
	all := false
	var names []string
	for _, a := range c.args {
		if a == "-a" {
			all = true
			continue
		}
		names = append(names, strings.TrimPrefix(a, "$"))
	}
	if len(names) == 0 {
		sh.printRegs(sh.out, &r, all)
		return nil
	}
	for _, n := range names {
		if err := sh.printReg(sh.out, &r, n); err != nil {
			return err
		}
	}
	return nil
}

func cmdExamine(sh *shell, c *call) error {
	f, err := parseExamineFormat(c.format, sh.xFmt)
	if err != nil {
		return err
	}
	if c.repeated && sh.xValid {
		f = sh.xFmt
	}
	var addr uint64
	switch {
	case len(c.args) > 0 && !c.repeated:
		if addr, err = sh.evalAddr(strings.Join(c.args, "")); err != nil {
			return err
		}
	case sh.xValid:
		addr = sh.xNext
	default:
		return fmt.Errorf("want an address")
	}
	sh.xFmt = f
	next, err := sh.examine(sh.out, addr, f)
	sh.xNext, sh.xValid = next, true
	return err
}

// defaultDisas is how many instructions disas shows without N.
const defaultDisas = 10

func cmdDisas(sh *shell, c *call) error {
	r, err := sh.session.Registers()
	if err != nil {
		return err
	}
	addr, n := r.RIP, defaultDisas
	switch {
	case c.repeated && sh.disValid:
		addr, n = sh.disNext, sh.disCount
	case len(c.args) > 2:
		return fmt.Errorf("want [ADDR] [N]")
	default:
		if len(c.args) >= 1 {
			if addr, err = sh.evalAddr(c.args[0]); err != nil {
				return err
			}
		}
		if len(c.args) == 2 {
			if n, err = parseCount(c.args[1], maxExamine); err != nil {
				return err
			}
		}
	}
	next, err := sh.disassemble(sh.out, addr, n, cpu.Mode(&r.Sregs), r.RIP)
	sh.disNext, sh.disCount, sh.disValid = next, n, true
	return err
}

// defaultEvents is how many events the events command lists.
const defaultEvents = 10

func cmdEvents(sh *shell, c *call) error {
	total := sh.session.EventCount()
	if total == 0 {
		fmt.Fprintln(sh.out, "the log has no events")
		return nil
	}
	next := sh.session.NextEvent()
	args := c.args
	mode := "near"
	if len(args) > 0 {
		mode, args = args[0], args[1:]
	}
	n := defaultEvents
	var from int
	switch mode {
	case "near":
		if len(args) > 1 {
			return fmt.Errorf("too many arguments")
		}
		if len(args) == 1 {
			v, err := parseCount(args[0], maxExamine)
			if err != nil {
				return err
			}
			n = v
		}
		from = max(0, next-n/2)
	case "from":
		if len(args) < 1 || len(args) > 2 {
			return fmt.Errorf("events from K [N]")
		}
		k, err := strconv.Atoi(args[0])
		if err != nil || k < 0 {
			return fmt.Errorf("bad event index %q", args[0])
		}
		if k >= total {
			return fmt.Errorf("event %d is past the end of the log (%d events)", k, total)
		}
		from = k
		if len(args) == 2 {
			if n, err = parseCount(args[1], maxExamine); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("want near [N] or from K [N]")
	}
	if c.repeated {
		from = sh.evNext
		if from >= total {
			return fmt.Errorf("no more events (%d in the log)", total)
		}
	}
	evs, err := sh.session.Events(from, n)
	if err != nil {
		return err
	}
	now := fmt.Sprintf("--- now: %s ---", sh.session.Position())
	for _, e := range evs {
		if e.Index == next {
			fmt.Fprintln(sh.out, now)
		}
		line := fmt.Sprintf("%-7s %-10s %-10s %s", fmt.Sprintf("#%d", e.Index), e.Pos, e.Kind, oneLine(e.Text))
		fmt.Fprintln(sh.out, strings.TrimRight(line, " "))
	}
	if len(evs) > 0 && evs[len(evs)-1].Index == next-1 {
		fmt.Fprintln(sh.out, now)
	}
	sh.evNext = from + len(evs)
	return nil
}

func cmdWhere(sh *shell, c *call) error {
	if err := noArgs(c); err != nil {
		return err
	}
	fmt.Fprintf(sh.out, "position    %s\n", sh.session.Position())
	r, err := sh.session.Registers()
	if err != nil {
		return err
	}
	fmt.Fprintf(sh.out, "rip         %s\n", sh.label(r.RIP))
	next := sh.session.NextEvent()
	show := func(label string, k int) {
		if k < 0 {
			fmt.Fprintf(sh.out, "%-11s none\n", label)
			return
		}
		if k >= sh.session.EventCount() {
			fmt.Fprintf(sh.out, "%-11s none (the log has %d events)\n", label, sh.session.EventCount())
			return
		}
		evs, err := sh.session.Events(k, 1)
		if err != nil || len(evs) == 0 {
			fmt.Fprintf(sh.out, "%-11s #%d\n", label, k)
			return
		}
		e := evs[0]
		fmt.Fprintf(sh.out, "%-11s #%d at %s: %s %s\n", label, e.Index, e.Pos, e.Kind, oneLine(e.Text))
	}
	show("last event", next-1)
	show("next event", next)
	return nil
}

func cmdConsole(sh *shell, c *call) error {
	n, err := optCount(c, 0)
	if err != nil {
		return err
	}
	out := sanitizeConsole(sh.session.Console())
	if out == "" {
		fmt.Fprintln(sh.out, "(no console output yet)")
		return nil
	}
	if n > 0 {
		lines := strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) > n {
			out = strings.Join(lines[len(lines)-n:], "")
		}
	}
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	fmt.Fprint(sh.out, out)
	return nil
}

// sanitizeConsole makes guest serial output safe for the user's terminal:
// CR LF becomes LF, and other control bytes (escape sequences included)
// are shown as \xNN instead of being interpreted.
func sanitizeConsole(b []byte) string {
	var s strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
		case c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f):
			s.WriteByte(c)
		default:
			fmt.Fprintf(&s, "\\x%02x", c)
		}
	}
	return s.String()
}

func cmdSnapshots(sh *shell, c *call) error {
	if err := noArgs(c); err != nil {
		return err
	}
	snaps := sh.session.Snapshots()
	if len(snaps) == 0 {
		fmt.Fprintln(sh.out, "no snapshots")
		return nil
	}
	tw := sh.newTable()
	tw.row("%s\n", "position\tnext event\tmemory")
	var total uint64
	for _, s := range snaps {
		tw.row("%s\t#%d\t%s\n", s.Pos, s.Event, humanBytes(s.Bytes))
		total += s.Bytes
	}
	tw.flush()
	fmt.Fprintf(sh.out, "%d snapshots, %s\n", len(snaps), humanBytes(total))
	return nil
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), "KMGTPE"
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, suffix[i])
}

func cmdPrint(sh *shell, c *call) error {
	if len(c.args) == 0 {
		return fmt.Errorf("want an address expression")
	}
	a, err := sh.evalAddr(strings.Join(c.args, ""))
	if err != nil {
		return err
	}
	phys := "not mapped"
	if pa, err := sh.session.Translate(a); err == nil {
		phys = fmt.Sprintf("physical %#x", pa)
	}
	fmt.Fprintf(sh.out, "%s = %d (%s)\n", sh.label(a), a, phys)
	return nil
}

// table lines up columns and trims the padding a last empty cell leaves.
type table struct {
	b   strings.Builder
	tw  *tabwriter.Writer
	out io.Writer
}

func (sh *shell) newTable() *table {
	t := &table{out: sh.out}
	t.tw = tabwriter.NewWriter(&t.b, 0, 8, 2, ' ', 0)
	return t
}

func (t *table) row(format string, args ...any) { fmt.Fprintf(t.tw, format, args...) }

func (t *table) flush() {
	t.tw.Flush()
	for _, l := range strings.SplitAfter(t.b.String(), "\n") {
		if l != "" {
			fmt.Fprintln(t.out, strings.TrimRight(l, " \n"))
		}
	}
}

// Completion.

// complete is liner's word completer: the first word completes command
// names, later words what the command takes (symbols, registers, ...).
func (sh *shell) complete(line string, pos int) (head string, completions []string, tail string) {
	if pos > len(line) {
		pos = len(line)
	}
	head, tail = line[:pos], line[pos:]
	start := strings.LastIndexAny(head, " \t;") + 1
	word := head[start:]
	head = head[:start]
	// The words of this command so far (after the last ';').
	cmdStart := strings.LastIndexByte(head, ';') + 1
	before := strings.Fields(head[cmdStart:])
	var list []string
	if len(before) == 0 {
		list = completeCommands(sh, 0, word)
	} else if cmd := lookup(parseLine(before[0]).name); cmd != nil && cmd.args != nil {
		list = cmd.args(sh, len(before)-1, word)
	}
	if len(list) == 1 {
		list[0] += " "
	}
	return head, list, tail
}

func completeCommands(_ *shell, n int, prefix string) []string {
	if n > 0 {
		return nil
	}
	var out []string
	for _, c := range commands {
		if strings.HasPrefix(c.names[0], prefix) {
			out = append(out, c.names[0])
		}
	}
	return out
}

func completeReversible(sh *shell, n int, prefix string) []string {
	if n > 0 {
		return nil
	}
	var out []string
	for _, c := range commands {
		if c.reverse != "" && strings.HasPrefix(c.names[0], prefix) {
			out = append(out, c.names[0])
		}
	}
	return out
}

func completeWords(words ...string) func(*shell, int, string) []string {
	return func(_ *shell, n int, prefix string) []string {
		if n > 0 {
			return nil
		}
		var out []string
		for _, w := range words {
			if strings.HasPrefix(w, prefix) {
				out = append(out, w)
			}
		}
		return out
	}
}

// maxCompletions keeps a one-letter TAB in a kernel-sized symbol table
// from flooding the terminal; liner asks before showing over 100 anyway.
const maxCompletions = 500

// completeAddr completes symbols, or registers after '$'.
func completeAddr(sh *shell, _ int, prefix string) []string {
	if strings.HasPrefix(prefix, "-") {
		return nil
	}
	if strings.HasPrefix(prefix, "$") {
		var out []string
		for _, r := range regNames() {
			if strings.HasPrefix("$"+r, prefix) {
				out = append(out, "$"+r)
			}
		}
		sort.Strings(out)
		return out
	}
	amp := ""
	if strings.HasPrefix(prefix, "&") {
		amp, prefix = "&", prefix[1:]
	}
	list := sh.syms.withPrefix(prefix)
	if len(list) > maxCompletions {
		list = list[:maxCompletions]
	}
	out := make([]string, len(list))
	for i, n := range list {
		out[i] = amp + n
	}
	return out
}

func completeRegs(_ *shell, _ int, prefix string) []string {
	var out []string
	for _, r := range append(regNames(), "-a") {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

func completeBreakpoints(sh *shell, _ int, prefix string) []string {
	var out []string
	for _, bp := range sh.session.Breakpoints() {
		if s := strconv.Itoa(bp.ID); strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	if strings.HasPrefix("all", prefix) {
		out = append(out, "all")
	}
	return out
}
