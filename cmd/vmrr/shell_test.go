package main

// Acceptance tests of vmrr shell on real recordings of the committed
// guests, on real KVM: command semantics through -c and scripted stdin
// (positions and values checked against each other and against the log),
// and the interactive parts (completion, history, Ctrl-C, Ctrl-D, bad input)
// through a pseudo-terminal driving the built binary. Positions and the
// interrupted instructions differ from one recording to the next, so the
// tests read them from the shell's own output and the log's events and
// check how they relate, never fixed numbers.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// shellLogs are the recordings the shell tests share, made once per test
// binary next to the built vmrr (TestMain removes them with it).
var shellLogs struct {
	mu sync.Mutex
	m  map[string]string
}

// shellLog records guest once and returns the log's path. serial-echo gets
// serialInput ("ab q\n") through --serial-in.
func shellLog(t *testing.T, guest string) string {
	t.Helper()
	bin := e2eBin(t)
	shellLogs.mu.Lock()
	defer shellLogs.mu.Unlock()
	if p, ok := shellLogs.m[guest]; ok {
		return p
	}
	dir := filepath.Dir(bin)
	log := filepath.Join(dir, "shell-"+guest+".vmrr")
	args := []string{"record", "-o", log}
	if guest == "serial-echo" {
		args = append(args, "--serial-in", serialInput(t, dir))
	}
	if r := runVMRR(t, append(args, guestPath(guest))...); r.status != 1 || r.stderr != "" {
		t.Fatalf("record %s: %s", guest, r)
	}
	if shellLogs.m == nil {
		shellLogs.m = map[string]string{}
	}
	shellLogs.m[guest] = log
	return log
}

// shMarkBase numbers the `p N` commands shellSteps puts between the
// commands it runs: addresses in guest RAM that no symbol of the guests
// covers, so each prints one recognisable line.
const shMarkBase = 7000000

var shMarkLine = regexp.MustCompile(`(?m)^0x[0-9a-f]+(?: <[^>]*>)? = (7\d{6}) \([^)]*\)\n`)

// shellSteps runs cmds in one `vmrr shell -c` on log and returns what each
// command printed. The shell must succeed.
func shellSteps(t *testing.T, log string, cmds ...string) []string {
	t.Helper()
	var script []string
	for i, c := range cmds {
		script = append(script, c, fmt.Sprintf("p %d", shMarkBase+i))
	}
	r := runVMRR(t, "shell", "-c", strings.Join(script, "; "), log)
	if r.status != 0 || r.stderr != "" {
		t.Fatalf("vmrr shell -c %q: %s", strings.Join(cmds, "; "), r)
	}
	outs := make([]string, 0, len(cmds))
	rest := r.stdout
	for i := range cmds {
		m := shMarkLine.FindStringSubmatchIndex(rest)
		if m == nil || rest[m[2]:m[3]] != strconv.Itoa(shMarkBase+i) {
			t.Fatalf("no end marker after command %d (%s) in:\n%s", i, cmds[i], r.stdout)
		}
		outs = append(outs, rest[:m[0]])
		rest = rest[m[1]:]
	}
	return outs
}

// shPos is a replay position as the shell prints it (EXIT:INSN).
type shPos struct{ exit, insn uint64 }

func (p shPos) String() string { return fmt.Sprintf("%d:%d", p.exit, p.insn) }

func (p shPos) less(q shPos) bool { return p.exit < q.exit || p.exit == q.exit && p.insn < q.insn }

func parsePos(s string) shPos {
	e, i, _ := strings.Cut(s, ":")
	ev, _ := strconv.ParseUint(e, 10, 64)
	iv, _ := strconv.ParseUint(i, 10, 64)
	return shPos{ev, iv}
}

// find returns the submatches of the first match of pattern (multi-line)
// in out, failing the test if there is none.
func find(t *testing.T, what, out, pattern string) []string {
	t.Helper()
	m := regexp.MustCompile("(?m)" + pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s: no %s in:\n%s", what, pattern, out)
	}
	return m
}

func hexValue(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return v
}

// shWhere is what `where` printed.
type shWhere struct {
	pos       shPos
	rip       uint64
	label     string // "<sym+off>" or ""
	last      string // the last event's line, after "last event"
	nextIndex int    // -1: none
}

func parseWhere(t *testing.T, out string) shWhere {
	t.Helper()
	var w shWhere
	w.pos = parsePos(find(t, "where", out, `^position +(\d+:\d+)$`)[1])
	m := find(t, "where", out, `^rip +(0x[0-9a-f]+) ?(<[^>]+>)?$`)
	w.rip, w.label = hexValue(t, m[1]), m[2]
	w.last = find(t, "where", out, `^last event +(.*)$`)[1]
	w.nextIndex = -1
	if m := regexp.MustCompile(`(?m)^next event +#(\d+) at `).FindStringSubmatch(out); m != nil {
		w.nextIndex, _ = strconv.Atoi(m[1])
	}
	return w
}

// word is the value x/1wx or x/1gx printed.
func word(t *testing.T, out string) uint64 {
	t.Helper()
	return hexValue(t, find(t, "x", out, `^0x[0-9a-f]+(?: <[^>]+>)?:\t(0x[0-9a-f]+)$`)[1])
}

// shEvent is one line of `events`.
type shEvent struct {
	index int
	pos   shPos
	kind  string
	text  string
}

var shEventLine = regexp.MustCompile(`(?m)^#(\d+) +(\d+:\d+) +(\S+)(?: +(.*))?$`)

func parseEvents(out string) []shEvent {
	var evs []shEvent
	for _, m := range shEventLine.FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		evs = append(evs, shEvent{index: k, pos: parsePos(m[2]), kind: m[3], text: m[4]})
	}
	return evs
}

// TestShellStart checks the first look at a recording: where, regs, x with
// and without &, print, events near and disassembly at the entry point.
func TestShellStart(t *testing.T) {
	log := shellLog(t, "timer")
	out := shellSteps(t, log, "where", "regs rip", "x/1wx &tick_count", "x/1wx tick_count", "p &tick_count",
		"events near", "x/2i $rip", "snapshots")
	w := parseWhere(t, out[0])
	if w.pos != (shPos{}) || w.label != "<_start>" || w.last != "none" || w.nextIndex != 0 {
		t.Errorf("where at the start: %+v\n%s", w, out[0])
	}
	if m := find(t, "regs rip", out[1], `^rip +(0x[0-9a-f]+) +<_start>$`); hexValue(t, m[1]) != w.rip {
		t.Errorf("regs rip %s, where said %#x", m[1], w.rip)
	}
	if out[2] != out[3] || word(t, out[2]) != 0 || !strings.Contains(out[2], "<tick_count>:") {
		t.Errorf("x/1wx &tick_count = %q, x/1wx tick_count = %q; want the same zero", out[2], out[3])
	}
	tick := hexValue(t, find(t, "x", out[2], `^(0x[0-9a-f]+) <tick_count>:`)[1])
	if want := fmt.Sprintf("%#x <tick_count> = %d (physical %#x)\n", tick, tick, tick); out[4] != want {
		t.Errorf("p &tick_count = %q, want %q (identity-mapped)", out[4], want)
	}
	evs := parseEvents(out[5])
	if !strings.HasPrefix(out[5], "--- now: 0:0 ---\n") || len(evs) < 2 || evs[0].index != 0 || evs[0].kind != "irq" {
		t.Errorf("events near at the start:\n%s", out[5])
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].index != evs[i-1].index+1 || evs[i].pos.less(evs[i-1].pos) {
			t.Errorf("events out of order: %+v then %+v", evs[i-1], evs[i])
		}
	}
	if !regexp.MustCompile(`^=> 0x[0-9a-f]+ <_start>: .*\n   0x[0-9a-f]+ <_start\+0x1>: `).MatchString(out[6]) {
		t.Errorf("x/2i $rip:\n%s", out[6])
	}
	if !regexp.MustCompile(`(?m)^0:0 +#0 +\d`).MatchString(out[7]) {
		t.Errorf("snapshots at the start:\n%s", out[7])
	}
}

// TestShellInterrupt steps across an interrupt injection both ways. At the
// handler's first instruction (reached by a breakpoint) the interrupt frame
// on the stack names the interrupted instruction; reverse-step must land
// there, before the injection, and stepping forwards from there must enter
// the handler again at the same position. timer.elf takes its ticks in HLT;
// race.elf and spin.elf take them mid-loop, at positions the recorder found
// by kicking the vCPU.
func TestShellInterrupt(t *testing.T) {
	for _, guest := range []string{"timer", "race", "spin"} {
		t.Run(guest, func(t *testing.T) {
			log := shellLog(t, guest)
			out := shellSteps(t, log,
				"break timer_handler", "continue", "where", "x/1gx $rsp", // 0-3
				"rs", "where", "regs rip", // 4-6
				"s", "where", "s", "where", // 7-10
				"goto start", "c", "where") // 11-13
			handler := hexValue(t, find(t, "break", out[0], `^breakpoint 1 at (0x[0-9a-f]+) <timer_handler>$`)[1])
			bp := parsePos(find(t, "continue", out[1], `^breakpoint 1 at 0x[0-9a-f]+ <timer_handler>, position (\d+:\d+)$`)[1])
			find(t, "continue", out[1], `^=> 0x[0-9a-f]+ <timer_handler>: `)
			w := parseWhere(t, out[2])
			if w.pos != bp || w.rip != handler || w.label != "<timer_handler>" {
				t.Errorf("where at the breakpoint: %+v, want %v at %#x", w, bp, handler)
			}
			// The injection is the last event applied: at the handler's
			// instruction count, at an exit no later than the handler's.
			last := find(t, "where", out[2], `^last event +#\d+ at (\d+:\d+): (\S+) `)
			if ev := parsePos(last[1]); ev.insn != bp.insn || bp.less(ev) || last[2] != "irq" && last[2] != "inject" {
				t.Errorf("last event at the handler: %q, handler at %v", w.last, bp)
			}
			ret := word(t, out[3]) // the interrupt frame's RIP

			back := parseWhere(t, out[5])
			if back.rip != ret || !back.pos.less(bp) {
				t.Errorf("reverse-step from the handler at %v: %+v, want rip %#x (the interrupted instruction) before %v", bp, back, ret, bp)
			}
			if m := find(t, "regs rip", out[6], `^rip +(0x[0-9a-f]+)`); hexValue(t, m[1]) != ret {
				t.Errorf("regs rip after reverse-step: %s, want %#x", m[1], ret)
			}

			// A position at an interrupt injection names one stop, the
			// handler's first instruction, whichever way it is reached: never
			// the interrupt counted but not yet taken (RIP still the
			// interrupted instruction).
			// Forwards from the interrupted instruction: the first step
			// enters the handler where the breakpoint stopped, the second
			// runs its first instruction.
			s1, s2 := parseWhere(t, out[8]), parseWhere(t, out[10])
			if s1.pos != bp || s1.rip != handler {
				t.Errorf("step from the interrupted instruction: %+v, want %v at the handler %#x", s1, bp, handler)
			}
			if s2.pos != (shPos{bp.exit, bp.insn + 1}) || !strings.HasPrefix(s2.label, "<timer_handler+") {
				t.Errorf("second step: %+v, want %d:%d inside timer_handler", s2, bp.exit, bp.insn+1)
			}
			// The breakpoint is found again from the start.
			if again := parseWhere(t, out[13]); again.pos != bp || again.rip != handler {
				t.Errorf("continue from the start again: %+v, want %v", again, bp)
			}

			// Backwards from inside the handler: its entry, then the
			// interrupted instruction, the way the steps came.
			out = shellSteps(t, log, "break timer_handler", "c", "s", "rs", "where", "rs", "where")
			r1, r2 := parseWhere(t, out[4]), parseWhere(t, out[6])
			if r1.pos != bp || r1.rip != handler {
				t.Errorf("s; rs from the breakpoint at %v: %v rip %#x, want the handler %#x", bp, r1.pos, r1.rip, handler)
			}
			if r2.pos != back.pos || r2.rip != ret {
				t.Errorf("s; rs; rs from the breakpoint at %v: %v rip %#x, want %v at %#x", bp, r2.pos, r2.rip, back.pos, ret)
			}
		})
	}
}

// TestShellWatch sets a write watchpoint, continues to two writes and
// reverse-continues: the replay stops just before the write, showing the
// old value, and one step makes the write again.
func TestShellWatch(t *testing.T) {
	tests := []struct {
		guest, sym, x string
		size          int
	}{
		{"timer", "tick_count", "x/1wx", 4},
		{"race", "counter", "x/1gx", 8},
	}
	for _, tc := range tests {
		t.Run(tc.guest, func(t *testing.T) {
			log := shellLog(t, tc.guest)
			x := tc.x + " " + tc.sym
			out := shellSteps(t, log,
				fmt.Sprintf("watch %s %d", tc.sym, tc.size), // 0
				"c", x, "c", x, // 1-4
				"rc", x, "x/1i $rip", "where", // 5-8
				"s", x, "where", // 9-11
				"rc", "rc", "rc", "where") // 12-15
			find(t, "watch", out[0], fmt.Sprintf(`^watchpoint 1: write 0x[0-9a-f]+ <%s>, %d bytes$`, tc.sym, tc.size))
			hitRe := fmt.Sprintf(`^watchpoint 1 hit at position (\d+:\d+): 0x[0-9a-f]+ <%s> = (0x[0-9a-f]+)$`, tc.sym)
			hit := func(i int) (shPos, uint64) {
				m := find(t, "watchpoint hit", out[i], hitRe)
				return parsePos(m[1]), hexValue(t, m[2])
			}
			p1, v1 := hit(1)
			p2, v2 := hit(3)
			if word(t, out[2]) != v1 || word(t, out[4]) != v2 || v1 == v2 || !p1.less(p2) {
				t.Fatalf("two continues: %v = %#x (x: %q), then %v = %#x (x: %q)", p1, v1, out[2], p2, v2, out[4])
			}
			// reverse-continue: before the second write, the first value.
			p3, v3 := hit(5)
			if v3 != v1 || word(t, out[6]) != v1 || !p1.less(p3) || !p3.less(p2) {
				t.Errorf("reverse-continue from %v: %v = %#x (x: %q), want %#x between %v and %v", p2, p3, v3, out[6], v1, p1, p2)
			}
			if w := parseWhere(t, out[8]); w.pos != p3 {
				t.Errorf("where after reverse-continue: %v, the stop said %v", w.pos, p3)
			}
			if !regexp.MustCompile(`(?m)^=> 0x[0-9a-f]+ <[^>]+>: .*\bmov +%\w+,` + tc.sym + `$`).MatchString(out[7]) {
				t.Errorf("the instruction before the write does not store to %s:\n%s", tc.sym, out[7])
			}
			// One step makes the write again and arrives where continue stopped.
			if w := parseWhere(t, out[11]); w.pos != p2 || word(t, out[10]) != v2 {
				t.Errorf("step after reverse-continue: %v with %q, want %v with %#x", w.pos, out[10], p2, v2)
			}
			// Back past the first write (to its old value), then the start.
			p4, v4 := hit(13)
			if !p4.less(p1) || v4 == v1 {
				t.Errorf("second reverse-continue: %v = %#x, want before %v with another value than %#x", p4, v4, p1, v1)
			}
			if !strings.Contains(out[14], "reached the start of the recording") || parseWhere(t, out[15]).pos != (shPos{}) {
				t.Errorf("reverse-continue before the first write:\n%s%s", out[14], out[15])
			}
		})
	}
}

// TestShellGotoConsole moves to an event, to the end and back, and checks
// that events, where and the console follow: the console shows the guest's
// output up to now, so going back takes output away.
func TestShellGotoConsole(t *testing.T) {
	tests := []struct {
		guest string
		final string // the whole console
	}{
		{"timer", "ticks: 20\n"},
		{"spin", ""}, // five tick lines; the counts vary
		{"serial-echo", "ready\nab bye\n"},
	}
	for _, tc := range tests {
		t.Run(tc.guest, func(t *testing.T) {
			log := shellLog(t, tc.guest)
			all := shellSteps(t, log, "events from 0 1000")[0]
			evs := parseEvents(all)
			if len(evs) < 2 || evs[len(evs)-1].kind != "end" {
				t.Fatalf("events from 0:\n%s", all)
			}
			k := (len(evs) - 1) / 2 // not the end event
			out := shellSteps(t, log,
				fmt.Sprintf("goto event %d", k), "where", "console", "events near 4", // 0-3
				"goto end", "where", "console", "console 1", // 4-7
				fmt.Sprintf("goto event %d", k), "console", // 8-9
				"goto start", "console", // 10-11
				"goto end", "reverse-step 100", "console") // 12-14
			w := parseWhere(t, out[1])
			if w.pos != evs[k].pos {
				t.Errorf("goto event %d: %+v, want %v", k, w, evs[k].pos)
			}
			// events near marks now just before the next event.
			now := fmt.Sprintf("--- now: %v ---\n#%d ", evs[k].pos, w.nextIndex)
			if !strings.Contains(out[3], now) {
				t.Errorf("events near at event %d: no %q in\n%s", k, now, out[3])
			}
			// GotoEvent(k) stops where event k is about to be applied, whatever
			// its kind, so `goto event K` then `s` shows event K's effect. The
			// events of one position (two timer ticks that came during one
			// exit are logged at the same position) are applied together: the
			// next is the first of k's position.
			first := k
			for first > 0 && evs[first-1].pos == evs[k].pos {
				first--
			}
			if w.nextIndex != first {
				t.Errorf("goto event %d (%s %s at %v): where says next #%d, last %s; want next #%d", k, evs[k].kind, evs[k].text, evs[k].pos, w.nextIndex, w.last, first)
			}
			endEv := evs[len(evs)-1]
			m := find(t, "goto end", out[4], `^guest exited with status 1 at (\d+:\d+): `)
			if end := parsePos(m[1]); end != endEv.pos || parseWhere(t, out[5]).pos != end {
				t.Errorf("goto end: stopped at %v, where says %v, the end event is at %v", end, parseWhere(t, out[5]).pos, endEv.pos)
			}
			mid, final := out[2], out[6]
			if tc.final != "" && final != tc.final {
				t.Errorf("console at the end = %q, want %q", final, tc.final)
			}
			if tc.guest == "spin" {
				matchLines(t, final, `tick 1: \d+ spins`, `tick 2: \d+ spins`, `tick 3: \d+ spins`, `tick 4: \d+ spins`, `tick 5: \d+ spins`)
			}
			lines := strings.Split(strings.TrimSuffix(final, "\n"), "\n")
			if want := lines[len(lines)-1] + "\n"; out[7] != want {
				t.Errorf("console 1 = %q, want %q", out[7], want)
			}
			// The console shows a newline-terminated prefix of the output.
			if mid != "(no console output yet)\n" && (len(mid) >= len(final) || !strings.HasPrefix(final, strings.TrimSuffix(mid, "\n"))) {
				t.Errorf("console at event %d = %q: not a proper prefix of the final %q", k, mid, final)
			}
			// 100 instructions before the end, spin is printing its last
			// line: the console holds the lines before it.
			if back := out[14]; tc.guest == "spin" && (!strings.HasPrefix(back, "tick 1: ") || len(back) >= len(final) || !strings.HasPrefix(final, strings.TrimSuffix(back, "\n"))) {
				t.Errorf("console 100 instructions before the end = %q, want the first tick lines of %q", back, final)
			}
			if out[9] != mid {
				t.Errorf("console back at event %d = %q, want %q as before", k, out[9], mid)
			}
			if out[11] != "(no console output yet)\n" {
				t.Errorf("console at the start = %q", out[11])
			}
		})
	}
}

// TestShellSerialHandler stops in serial-echo's receive handler: the input
// is an event at the start, the console holds "ready" there, and going back
// from the end to the handler takes the echo away again.
func TestShellSerialHandler(t *testing.T) {
	log := shellLog(t, "serial-echo")
	out := shellSteps(t, log, "events from 0 1", "break serial_handler", "c", "console", "goto end", "rc", "console", "where")
	if evs := parseEvents(out[0]); len(evs) != 1 || evs[0].kind != "serial-rx" || evs[0].text != `"ab q\n"` {
		t.Errorf("event 0: %q, want the serial input", out[0])
	}
	bp := parsePos(find(t, "continue", out[2], `^breakpoint 1 at 0x[0-9a-f]+ <serial_handler>, position (\d+:\d+)$`)[1])
	if out[3] != "ready\n" || out[6] != "ready\n" {
		t.Errorf("console in the handler %q, after going back from the end %q; want %q", out[3], out[6], "ready\n")
	}
	if back := parsePos(find(t, "rc", out[5], `^breakpoint 1 at 0x[0-9a-f]+ <serial_handler>, position (\d+:\d+)$`)[1]); back != bp || parseWhere(t, out[7]).pos != bp {
		t.Errorf("reverse-continue from the end: %v, want the only handler entry %v", back, bp)
	}
}

// TestShellScript runs scripts from stdin and -c: comments and empty lines
// are skipped, and the first failing command ends the run with status 1 and
// one line naming it (bad input never panics or hangs).
func TestShellScript(t *testing.T) {
	log := shellLog(t, "timer")
	ok := runVMRRIn(t, strings.NewReader("# a comment\n\nwhere\ns 3 # three steps\n\nwhere\n"), "shell", log)
	if ok.status != 0 || ok.stderr != "" || !strings.Contains(ok.stdout, "position    0:0\n") || !strings.Contains(ok.stdout, "position    0:3\n") {
		t.Errorf("stdin script: %s", ok)
	}
	tests := []struct {
		name   string
		stdin  string // run from stdin if set, else -c
		c      string
		stderr string
	}{
		{"unknown command", "where\nfrob\nwhere\n", "", `^vmrr: shell: line 2 \(frob\): unknown command "frob" \(try help\)\n$`},
		{"unknown symbol", "s\nbreak nosuch\n", "", `^vmrr: shell: line 2 \(break nosuch\): break: unknown symbol "nosuch"\n$`},
		{"unmapped address", "x/1wx 0xffff800000000000\n", "", `^vmrr: shell: line 1 \(.*\): x: cannot read memory at 0xffff800000000000: .*page fault.*\n$`},
		{"address outside RAM", "", "x/4gx 0x10000000", `^vmrr: shell: command 1 \(.*\): x: cannot read memory at 0x10000000: .*outside RAM.*\n$`},
		{"bad number", "", "where; x/1wx 0xzz", `^vmrr: shell: command 2 \(x/1wx 0xzz\): x: bad number "0xzz"\n$`},
		{"goto past the end", "", "goto 999999:0", `^vmrr: shell: command 1 \(goto 999999:0\): goto: position 999999:0 is past the end of the recording \(\d+:\d+\); now at the end\n$`},
		{"goto past a known end", "", "goto end; goto 999999:0", `^vmrr: shell: command 2 \(goto 999999:0\): goto: position 999999:0 is past the end of the recording \(\d+:\d+\)\n$`},
		{"goto event past the end", "", "goto event 9999", `^vmrr: shell: command 1 \(goto event 9999\): goto: event 9999 is past the end of the log \(\d+ events\)\n$`},
		{"bad watchpoint length", "", "watch tick_count 65", `^vmrr: shell: command 1 .*: watch: watchpoint length 65: want 1 to 64 bytes\n$`},
		{"bad count", "", "s 0", `^vmrr: shell: command 1 \(s 0\): step: count 0 out of range .*\n$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r e2eResult
			if tc.stdin != "" {
				r = runVMRRIn(t, strings.NewReader(tc.stdin), "shell", log)
			} else {
				r = runVMRR(t, "shell", "-c", tc.c, log)
			}
			if r.status != 1 {
				t.Errorf("status %d, want 1: %s", r.status, r)
			}
			wantOneLine(t, r, tc.stderr)
		})
	}
	// Read watchpoints: the soft CPU sees every access; KVM has none.
	rw := runVMRR(t, "shell", "-c", "watch -r tick_count 4; c; where", log)
	switch {
	case e2eAccel() == "soft" && (rw.status != 0 || !regexp.MustCompile(`(?m)^watchpoint 1 hit at position \d+:\d+: 0x[0-9a-f]+ <tick_count> = 0x0\n=> 0x[0-9a-f]+ <main\+0x[0-9a-f]+>: .*cmp`).MatchString(rw.stdout)):
		t.Errorf("watch -r on the soft CPU: %s", rw)
	case e2eAccel() != "soft" && (rw.status != 1 || !strings.Contains(rw.stderr, "read and access watchpoints need the soft CPU")):
		t.Errorf("watch -r on KVM: %s", rw)
	}
	if r := runVMRR(t, "shell", log, "extra"); r.status != exitUsage {
		t.Errorf("two logs: %s, want status %d", r, exitUsage)
	}
	if r := runVMRR(t, "shell", "-c", "where", filepath.Join(t.TempDir(), "missing.vmrr")); r.status != exitUsage {
		t.Errorf("missing log: %s, want status %d", r, exitUsage)
	} else {
		wantOneLine(t, r, `^vmrr: .*missing\.vmrr: no such file or directory\n$`)
	}
}

// shTerm is vmrr shell running on a pseudo-terminal.
type shTerm struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  strings.Builder
	seen int // expect looks past this offset
	// done is closed when the process has ended, with its error in err.
	done chan struct{}
	err  error
}

// shExpectTimeout only catches hangs; nothing here measures speed.
const shExpectTimeout = 60 * time.Second

func startShellTerm(t *testing.T, args ...string) *shTerm {
	t.Helper()
	cmd := exec.Command(e2eBin(t), append([]string{"shell"}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm", "HOME="+t.TempDir())
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Skipf("needs a pseudo-terminal: %v", err)
	}
	tm := &shTerm{t: t, pty: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			tm.mu.Lock()
			tm.buf.Write(b[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		tm.err = cmd.Wait()
		close(tm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.done:
		default:
			cmd.Process.Kill()
			<-tm.done
		}
		f.Close()
	})
	return tm
}

func (tm *shTerm) send(s string) {
	tm.t.Helper()
	if _, err := tm.pty.WriteString(s); err != nil {
		tm.t.Fatalf("writing %q: %v", s, err)
	}
}

func (tm *shTerm) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.buf.String()
}

// expectRe waits until pattern matches the output after the last match and
// returns the submatches.
func (tm *shTerm) expectRe(pattern string) []string {
	tm.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(shExpectTimeout)
	for {
		out := tm.output()
		if loc := re.FindStringSubmatchIndex(out[tm.seen:]); loc != nil {
			m := make([]string, len(loc)/2)
			for i := range m {
				if loc[2*i] >= 0 {
					m[i] = out[tm.seen+loc[2*i] : tm.seen+loc[2*i+1]]
				}
			}
			tm.seen += loc[1]
			return m
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %s in the output after offset %d:\n%q", pattern, tm.seen, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (tm *shTerm) expect(s string) { tm.t.Helper(); tm.expectRe(regexp.QuoteMeta(s)) }

// shPrompt matches the prompt and captures its position and place.
const shPrompt = `\(vmrr (\d+:\d+) ([^)]*)\) `

// prompt waits for the next prompt and returns its position.
func (tm *shTerm) prompt() shPos {
	tm.t.Helper()
	return parsePos(tm.expectRe(shPrompt)[1])
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// badInput types line and checks that exactly one line, containing want,
// comes before the next prompt, at the same position.
func (tm *shTerm) badInput(line, want string) {
	tm.t.Helper()
	tm.send(line + "\r")
	tm.expect(line)
	start := tm.seen
	tm.prompt()
	out := tm.output()[start:tm.seen]
	out = ansiEscape.ReplaceAllString(strings.ReplaceAll(out, "\r", ""), "")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !regexp.MustCompile("^"+shPrompt+"$").MatchString(l+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		tm.t.Errorf("%q: printed %q, want one line with %q", line, lines, want)
	}
}

// exit waits for the shell to end and returns its error.
func (tm *shTerm) exit() error {
	tm.t.Helper()
	select {
	case <-tm.done:
		return tm.err
	case <-time.After(shExpectTimeout):
		tm.t.Fatalf("the shell did not exit; output:\n%q", tm.output())
		return nil
	}
}

// TestShellTerminal drives vmrr shell at a terminal: completion of commands
// and symbols, an empty line repeating, bad input answered with one line
// and the prompt, Ctrl-C at the prompt dropping the line, Ctrl-D quitting.
func TestShellTerminal(t *testing.T) {
	log := shellLog(t, "timer")
	tm := startShellTerm(t, "--history", filepath.Join(t.TempDir(), "history"), log)
	tm.expect("(vmrr 0:0 _start) ")

	tm.send("wh\t")
	tm.expect("where ")
	tm.send("\r")
	tm.expect("position    0:0")
	tm.prompt()

	tm.send("b timer_h\t")
	tm.expect("b timer_handler ")
	tm.send("\r")
	handler := tm.expectRe(`breakpoint 1 at (0x[0-9a-f]+) <timer_handler>`)[1]
	tm.prompt()
	tm.send("cont\t\r")
	bp := parsePos(tm.expectRe(`breakpoint 1 at ` + handler + ` <timer_handler>, position (\d+:\d+)`)[1])
	if p := tm.prompt(); p != bp {
		t.Errorf("prompt after continue at %v, the breakpoint at %v", p, bp)
	}
	tm.send("x/1wx &tick_c\t\r")
	tm.expect("<tick_count>:\t0x00000000")
	tm.prompt()
	tm.send("regs rfl\t\r")
	tm.expectRe(`rflags +0x[0-9a-f]+ `)
	tm.prompt()

	// An empty line repeats a step, one instruction at a time.
	tm.send("s\r")
	p1 := tm.prompt()
	tm.send("\r")
	p2 := tm.prompt()
	if p1 != (shPos{bp.exit, bp.insn + 1}) || p2 != (shPos{bp.exit, bp.insn + 2}) {
		t.Errorf("s then an empty line from %v: %v then %v", bp, p1, p2)
	}

	tm.badInput("frob", `unknown command "frob" (try help)`)
	tm.badInput("x/1wx 0xffff800000000000", "x: cannot read memory at 0xffff800000000000")
	tm.badInput("b nosuch", `break: unknown symbol "nosuch"`)
	tm.badInput("goto event 9999", "goto: event 9999 is past the end of the log")
	tm.badInput("regs nosuch", `regs: unknown register "nosuch"`)
	// A failed command is not repeated by an empty line.
	tm.send("where\r")
	tm.expect("position    " + p2.String())
	tm.prompt()

	// Ctrl-C at the prompt drops the line.
	tm.send("goto start\x03")
	if p := tm.prompt(); p != p2 {
		t.Errorf("after Ctrl-C at the prompt: %v, want %v (the line must not run)", p, p2)
	}
	tm.send("goto 999999:0\r")
	tm.expectRe(`goto: position 999999:0 is past the end of the recording \(\d+:\d+\); now at the end`)
	tm.prompt()
	tm.badInput("goto 999999:0", "goto: position 999999:0 is past the end of the recording")

	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Errorf("Ctrl-D: %v", err)
	}
}

// TestShellTerminalHistory keeps history across two sessions in a file that
// stays bounded (1000 lines): recalled lines run again, the oldest go.
func TestShellTerminalHistory(t *testing.T) {
	log := shellLog(t, "timer")
	hist := filepath.Join(t.TempDir(), "history")
	var old []string
	for i := 1; i <= 1005; i++ {
		old = append(old, "p "+strconv.Itoa(i))
	}
	if err := os.WriteFile(hist, []byte(strings.Join(old, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readHist := func() []string {
		b, err := os.ReadFile(hist)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	check := func(session int, first string, last ...string) {
		t.Helper()
		h := readHist()
		if len(h) != 1000 || h[0] != first || strings.Join(h[len(h)-len(last):], "|") != strings.Join(last, "|") {
			t.Errorf("history after session %d: %d lines, %q ... %q; want 1000, %q ... %q", session, len(h), h[0], h[max(0, len(h)-3):], first, last)
		}
	}

	tm := startShellTerm(t, "--history", hist, log)
	tm.prompt()
	tm.send("\x1b[A\r") // up: the newest line
	tm.expect("= 1005 ")
	tm.prompt()
	tm.send("p 7\r")
	tm.expect("= 7 ")
	tm.prompt()
	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	check(1, "p 7", "p 1005", "p 7")

	tm = startShellTerm(t, "--history", hist, log)
	tm.prompt()
	tm.send("\x1b[A\x1b[A\r") // two up: the line before the newest
	tm.expect("= 1005 ")
	tm.prompt()
	tm.send("q\r")
	if err := tm.exit(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	// "p 1005" ran again, so it is new again; "p 7" and "p 8" fell off.
	check(2, "p 9", "p 7", "p 1005", "q")
}

// interruptGuest is a guest whose replay is still running 300 ms into a
// plain continue on the tests' CPU: compute.elf (~200 million
// instructions, seconds on the soft CPU), race.elf on KVM (whose CPL0
// code a PVM host emulates at a few million instructions a second).
func interruptGuest() string {
	if e2eAccel() == "soft" {
		return "compute"
	}
	return "race"
}

// TestShellTerminalInterrupt stops long motions with Ctrl-C, sent 300 ms
// after each starts: a continue over interruptGuest takes seconds, and with
// a watchpoint it single-steps, for minutes. Each Ctrl-C returns to the
// prompt somewhere later in the recording, and the shell goes on.
func TestShellTerminalInterrupt(t *testing.T) {
	log := shellLog(t, interruptGuest())
	tm := startShellTerm(t, "--history", filepath.Join(t.TempDir(), "history"), log)
	last := tm.prompt()
	// motion runs cmd, presses Ctrl-C and returns how it stopped and where
	// the prompt came back.
	motion := func(cmd string) (how string, at shPos, rest string) {
		t.Helper()
		tm.send(cmd + "\r")
		tm.expect(cmd)
		// Only lets the command start: a Ctrl-C before it starts stops
		// nothing (the shell says so).
		time.Sleep(300 * time.Millisecond)
		tm.send("\x03")
		m := tm.expectRe(`(interrupted|guest exited with status 1|replay diverged|reached the start of the recording)(?: at (\d+:\d+))?(.*)`)
		p := tm.prompt()
		if m[2] != "" && parsePos(m[2]) != p {
			t.Errorf("%s: stopped at %s, prompt at %v", cmd, m[2], p)
		}
		return m[1], p, strings.TrimSpace(m[3])
	}
	how, at, rest := motion("c")
	if how != "interrupted" || !last.less(at) {
		t.Fatalf("continue from %v: %s at %v %s; want interrupted later", last, how, at, rest)
	}
	last = at
	tm.send("where\r")
	tm.expect("position    " + last.String())
	tm.prompt()
	// Resuming the interrupted continue: it must not miss a landing in the
	// exit it stopped in (a miss is a divergence). Where the first Ctrl-C
	// came late, on a fast host, this one may find the guest's end first.
	if how, at, rest := motion("c"); how != "interrupted" && how != "guest exited with status 1" || !last.less(at) {
		t.Errorf("second continue from %v: %s at %v %s; want interrupted later, or the guest's end", last, how, at, rest)
	}

	// With a watchpoint (on code: never written) continue single-steps, and
	// a single-step over IRETQ must run that instruction only.
	tm.send("goto start\r")
	tm.prompt()
	tm.send("watch _start\r")
	tm.expect("watchpoint 1: write")
	tm.prompt()
	how, at, rest = motion("c")
	switch {
	case how != "interrupted" || at == (shPos{}):
		t.Errorf("continue with a watchpoint from the start: %s at %v %s; want interrupted", how, at, rest)
	case !testing.Short():
		// Let it run: it must reach the end of the recording. (Stepping
		// all of compute.elf would take an hour: on the soft CPU the rest
		// runs without the watchpoint.)
		tm.send("goto " + at.String() + "\r")
		tm.prompt()
		if e2eAccel() == "soft" {
			tm.send("delete all\r")
			tm.prompt()
		}
		tm.send("c\r")
		m := tm.expectRe(`(guest exited with status 1|replay diverged) at (\d+:\d+)(.*)`)
		tm.prompt()
		if m[1] != "guest exited with status 1" {
			t.Errorf("continue from %v: %s at %s%s", at, m[1], m[2], strings.TrimSpace(m[3]))
		}
	}
	if !testing.Short() {
		// From the end (reached without single-stepping), reverse-continue
		// scans back through every snapshot single-stepping, for seconds:
		// Ctrl-C must stop that too.
		tm.send("goto start\r")
		tm.prompt()
		tm.send("goto end\r")
		end := parsePos(tm.expectRe(`guest exited with status 1 at (\d+:\d+)`)[1])
		tm.prompt()
		// Ctrl-C stops the whole reverse-continue, not one scan run of it.
		if how, at, rest := motion("rc"); how != "interrupted" || !at.less(end) {
			t.Errorf("reverse-continue from %v: %s at %v %s; want interrupted earlier", end, how, at, rest)
		}
	}
	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Errorf("Ctrl-D: %v", err)
	}
}
