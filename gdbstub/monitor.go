package gdbstub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"vmrr/position"
	"vmrr/replayer"
)

// monitorHelp is the "monitor help" text.
const monitorHelp = `vmrr monitor commands:
  info position        where the replay stands: position, rip, next event
  goto EVENT           move to where event EVENT of the log is applied
  goto start|end       move to the start or the end of the recording
  goto [@]EXIT:INSN    move to a position (exits, then instructions)
  events near          the events around the current position
  events from K [N]    N events (default 20) from event K
  snapshots            the snapshots the replay holds
  console              the guest's serial output up to here
  help                 this text
After a goto, gdb still shows the registers it cached before: run
"maint flush register-cache" (or stepi / reverse-stepi) to see the new state.
`

// maxEventsListed bounds "events from" so one command cannot flood gdb.
const maxEventsListed = 1000

// monitor runs a qRcmd command and prints its output through O packets.
// Mistakes in the command are printed, not returned: gdb turns an error
// reply to qRcmd into a bare "Protocol error", which says less.
func (cn *conn) monitor(cmd string) error {
	cn.logf("monitor %q", cmd)
	out, err := cn.runMonitor(strings.Fields(cmd))
	if err != nil {
		out += "error: " + err.Error() + "\n"
	}
	return cn.console(out)
}

func (cn *conn) runMonitor(f []string) (string, error) {
	if len(f) == 0 {
		return monitorHelp, nil
	}
	switch f[0] {
	case "help":
		return monitorHelp, nil
	case "info":
		if len(f) == 2 && f[1] == "position" {
			return cn.infoPosition()
		}
		return "", fmt.Errorf("usage: info position")
	case "goto":
		if len(f) != 2 {
			return "", fmt.Errorf("usage: goto EVENT | start | end | [@]EXIT:INSN")
		}
		return cn.gotoCmd(f[1])
	case "events":
		return cn.eventsCmd(f[1:])
	case "snapshots":
		return cn.snapshots(), nil
	case "console":
		return string(cn.sess.Console()), nil
	}
	return "", fmt.Errorf("unknown command %q; try \"monitor help\"", f[0])
}

func (cn *conn) infoPosition() (string, error) {
	pos := cn.sess.Position()
	r, err := cn.sess.Registers()
	if err != nil {
		return "", fmt.Errorf("registers: %w", err)
	}
	return fmt.Sprintf("position %s, rip %#x\nnext event %d of %d\n",
		pos, r.RIP, cn.sess.NextEvent(), cn.sess.EventCount()), nil
}

func (cn *conn) gotoCmd(arg string) (string, error) {
	var st replayer.Stop
	var err error
	switch {
	case arg == "start":
		st, err = cn.sess.GotoStart()
	case arg == "end":
		st, err = cn.sess.GotoEnd()
	case strings.HasPrefix(arg, "@") || strings.Contains(arg, ":"):
		p, perr := position.Parse(strings.TrimPrefix(arg, "@"))
		if perr != nil {
			return "", fmt.Errorf("goto: %w", perr)
		}
		st, err = cn.sess.Goto(p)
	default:
		k, perr := strconv.Atoi(arg)
		if perr != nil || k < 0 {
			return "", fmt.Errorf("goto: %q is not an event number, start, end or @EXIT:INSN", arg)
		}
		if n := cn.sess.EventCount(); k >= n {
			return "", fmt.Errorf("goto: event %d out of range: the log has %d events", k, n)
		}
		st, err = cn.sess.GotoEvent(k)
	}
	if err != nil {
		return "", fmt.Errorf("goto %s: %w", arg, err)
	}
	cn.consoleStale = true
	out := fmt.Sprintf("now at %s, rip %#x\n", st.Pos, st.RIP)
	if msg := stopMessage(st); msg != "" {
		out += msg
	}
	return out + "run \"maint flush register-cache\" for gdb to show the new state\n", nil
}

func (cn *conn) eventsCmd(args []string) (string, error) {
	const usage = "usage: events near | events from K [N]"
	next := cn.sess.NextEvent()
	var from, count int
	switch {
	case len(args) == 1 && args[0] == "near":
		from, count = max(next-5, 0), 10
	case (len(args) == 2 || len(args) == 3) && args[0] == "from":
		var err error
		if from, err = strconv.Atoi(args[1]); err != nil || from < 0 {
			return "", fmt.Errorf("events: bad event number %q", args[1])
		}
		count = 20
		if len(args) == 3 {
			if count, err = strconv.Atoi(args[2]); err != nil || count <= 0 {
				return "", fmt.Errorf("events: bad count %q", args[2])
			}
		}
		count = min(count, maxEventsListed)
	default:
		return "", errors.New(usage)
	}
	evs, err := cn.sess.Events(from, count)
	if err != nil {
		return "", fmt.Errorf("events: %w", err)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d events; next to apply: %d\n", cn.sess.EventCount(), next)
	for _, e := range evs {
		mark := "  "
		if e.Index == next {
			mark = "=>"
		}
		fmt.Fprintf(&sb, "%s #%-6d %-12s %-10s %s\n", mark, e.Index, e.Pos, e.Kind, e.Text)
	}
	return sb.String(), nil
}

func (cn *conn) snapshots() string {
	snaps := cn.sess.Snapshots()
	var total uint64
	for _, s := range snaps {
		total += s.Bytes
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d snapshots, %d bytes\n", len(snaps), total)
	for _, s := range snaps {
		fmt.Fprintf(&sb, "  %-12s next event %-6d %d bytes\n", s.Pos, s.Event, s.Bytes)
	}
	return sb.String()
}
