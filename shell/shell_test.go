package shell

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"vmrr/position"
	"vmrr/replayer"
	"vmrr/shell/internal/fakesession"
)

// fakeSymbols loads the fake image's symbols through LoadSymbols, so every
// command test also exercises the ELF path.
func fakeSymbols(t testing.TB) *Symbols {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.elf")
	if err := fakesession.WriteELF(path); err != nil {
		t.Fatal(err)
	}
	syms, err := LoadSymbols(path)
	if err != nil {
		t.Fatal(err)
	}
	return syms
}

// runScript runs a script through Run with scripted stdin.
func runScript(t *testing.T, cfg fakesession.Config, script string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = Run(fakesession.New(cfg), Options{
		In:      strings.NewReader(script),
		Out:     &out,
		Err:     &errb,
		Symbols: fakeSymbols(t),
	})
	return out.String(), errb.String(), err
}

// TestCommands checks each command's output through a scripted run. want
// holds regular expressions the output must match, in order.
func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		mode   int
		script string
		want   []string
	}{
		{"where at start", 0, "where", []string{
			`position +0:0`, `rip +0x1000 <main>`, `last event +none`, `next event +#0 at 1:0: irq`}},
		{"step", 0, "step\nwhere", []string{`=> 0x1002 <main\+0x2>: 48 ff c3 +inc %rbx`, `position +0:1`}},
		{"step N", 0, "s 6\nwhere", []string{`position +1:1`, `last event +#0`}},
		{"step to end", 0, "step 100000", []string{`reached the end of the recording at 40:5`}},
		{"reverse-step", 0, "s 7\nrs 2\nwhere", []string{`position +1:0`}},
		{"reverse-step past start", 0, "s 2\nrs 9", []string{`reached the start of the recording`, `=> 0x1000 <main>`}},
		{"rev prefix", 0, "s 7\nrev step 2\nrev s\nwhere", []string{`position +0:4`}},
		{"continue to end", 0, "c", []string{`reached the end of the recording at 40:5`}},
		{"break and continue", 0, "b store\nc\nc\nwhere", []string{
			`breakpoint 1 at 0x1005 <store>\n`,
			`breakpoint 1 at 0x1005 <store>, position 0:2\n=> 0x1005 <store>: 48 89 1c 25 00 20 00 00 +mov %rbx,0x2000`,
			`breakpoint 1 at 0x1005 <store>, position 1:1`,
			`position +1:1`}},
		{"break by number", 0, "b 0x100d\nc", []string{`breakpoint 1 at 0x100d <store\+0x8>, position 0:3`}},
		{"reverse-continue", 0, "b store\ngoto 1:2\nrc\nrc\nrev c", []string{
			`breakpoint 1 at 0x1005 <store>, position 1:1`,
			`breakpoint 1 at 0x1005 <store>, position 0:2`,
			`reached the start of the recording`}},
		{"watch", 0, "watch counter\nc\nx/gx counter\nc", []string{
			`watchpoint 1: write 0x2000 <counter>, 8 bytes`,
			`watchpoint 1 hit at position 0:3: 0x2000 <counter> = 0x1\n=> 0x100d`,
			`0x2000 <counter>:\t0x0000000000000001`,
			`watchpoint 1 hit at position 1:2: 0x2000 <counter> = 0x2`}},
		{"watch with length", 0, "watch counter+4 2\ninfo b", []string{
			`watchpoint 1: write 0x2004 <counter\+0x4>, 2 bytes`, `1 +watch +0x2004 <counter\+0x4> +2`}},
		{"info breakpoints", 0, "info b\nb main\nwatch -a message 4\ni breakpoints", []string{
			`no breakpoints`, `ID +kind +address +length\n1 +break +0x1000 <main>\n2 +awatch +0x3000 <message> +4\n`}},
		{"delete", 0, "b main\nb store\ndelete 1\ninfo b\ndelete all\ninfo b", []string{
			`ID.*\n2 +break +0x1005 <store>\n`, `no breakpoints`}},
		{"goto event", 0, "goto event 3\nwhere", []string{`position +4:0`, `last event +#3 at 4:0: serial-rx byte 0x64`}},
		{"goto position", 0, "goto 3:2\nwhere\ngoto 5\nwhere", []string{`position +3:2`, `position +5:0`}},
		{"goto ends", 0, "goto end\nwhere\ngoto start\nwhere", []string{
			`reached the end of the recording at 40:5`, `position +40:5`, `reached the start`, `position +0:0`}},
		{"regs", 0, "regs", []string{
			`rax +0x0 +0\n`, `rbx `, `r15 +0xdeadbeef +3735928559\n`, `rip +0x1000 +<main>\n`,
			`rflags +0x246 +\[ PF ZF IF \]\n`, `cs +0x8 +base 0x0 limit 0xffffffff type 0xb dpl 0 L G\n`,
			`ss +0x10 `, `cr0 +0x80000011 +\[ PE ET PG \]\n`, `cr2 +0x0\n`, `cr3 +0x9000\n`,
			`cr4 +0x20 +\[ PAE \]\n`, `efer +0x500 +\[ LME LMA \]\n`}},
		{"regs by name", 0, "s 3\nregs rbx $rip eax xmm1 mxcsr st0", []string{
			`rbx +0x1 +1\n`, `rip +0x100d +<store\+0x8>\n`, `eax +0x3e8 +1000\n`,
			`xmm1 +0x0+11\n`, `mxcsr +0x1f80\n`, `st0 +0x0+\n`}},
		{"regs all", 0, "regs -a", []string{`efer`, `gdtr`, `fcw +0x37f`, `st7`, `xmm15`}},
		{"info registers", 0, "info r rip", []string{`rip +0x1000 +<main>`}},
		{"x giant hex", 0, "s 8\nx/4gx counter", []string{
			`0x2000 <counter>:\t0x0000000000000002\t0x0000000000000000\n0x2010:\t0x0000000000000000\t0x0000000000000000\n`}},
		{"x bytes show original code", 0, "x/8xb main", []string{
			`0x1000 <main>:\t0x0f\t0x31\t0x48\t0xff\t0xc3\t0x48\t0x89\t0x1c\n`}},
		{"x words, decimal, signed", 0, "x/2dw $rsp-8\nx/2uh 0\nx/1dg 0xffffffffffff0000+0x10000", []string{
			`0x7ff8:\t0\t0\n`, `0x0:\t0\t0\n`, `0x0:\t0\n`}},
		{"x size remembered", 0, "x/2xb main\nx/3 main", []string{`0x1000 <main>:\t0x0f\t0x31\n`, `0x1000 <main>:\t0x0f\t0x31\t0x48\n`}},
		{"x continues", 0, "x/2xb main\nx", []string{`0x1002 <main\+0x2>:\t0x48\n`}},
		{"x string", 0, "x/s message", []string{`0x3000 <message>:\t"hello from the guest\\n"`}},
		{"x chars", 0, "x/3c message", []string{`0x3000 <message>:\t104 'h'\t101 'e'\t108 'l'`}},
		{"x instructions", 0, "x/2i main", []string{
			`=> 0x1000 <main>: 0f 31 +rdtsc +\(patched by vmrr; memory holds e6 e0\)\n   0x1002 <main\+0x2>: 48 ff c3 +inc %rbx\n`}},
		{"x through high mapping", 0, "x/xb 0xffffffff80001000", []string{`0xffffffff80001000:\t0x0f`}},
		{"disas", 0, "s\ndisas", []string{
			`   0x1000|=> 0x1002 <main\+0x2>: 48 ff c3 +inc %rbx\n   0x1005 <store>: 48 89 1c 25 00 20 00 00 +mov %rbx,0x2000\n   0x100d <store\+0x8>: eb f1 +jmp main\n`}},
		{"disas addr n", 0, "disas store 2", []string{
			`^   0x1005 <store>: .*mov %rbx,0x2000\n   0x100d <store\+0x8>: eb f1 +jmp main\n$`}},
		{"disas 32-bit", 32, "disas main 2", []string{
			`0x1000 <main>: 0f 31 +rdtsc`, `0x1002 <main\+0x2>: 48 +dec %eax`}},
		{"disas 16-bit", 16, "disas store 1", []string{`0x1005 <store>: 48 +dec %ax`}},
		{"events near", 0, "goto event 12\nevents", []string{
			`#8 +9:0 +irq +irq 0 \(timer\)\n`, `#12 +13:0 +irq.*\n--- now: 13:0 ---\n#13 +14:0 +serial-rx +byte 0x6e\n`}},
		{"events from", 0, "events from 38 5", []string{`^#38 .*\n#39 .*\n$`}},
		{"events at the end", 0, "goto end\nevents near 4", []string{`#38 .*\n#39 .*\n--- now: 40:5 ---\n$`}},
		{"console", 0, "goto event 4\nconsole\nconsole 1", []string{`tick 0\ntick 1\ntick 2\n`, `tick 2\n`}},
		{"console empty", 0, "console", []string{`\(no console output yet\)`}},
		{"snapshots", 0, "goto 25:0\nsnapshots", []string{
			`position +next event +memory\n0:0 +#0 +4.0 KiB\n10:5 +#10 +8.0 KiB\n20:5 +#20 +12.0 KiB\n3 snapshots, 24.0 KiB`}},
		{"print", 0, "p main+4\np $rsp\np 0x20000", []string{
			`0x1004 <main\+0x4> = 4100 \(physical 0x1004\)`, `0x8000 = 32768 \(physical 0x8000\)`, `not mapped`}},
		{"help", 0, "help\nhelp x\nhelp rs", []string{
			`continue, c +run forwards`, `x/\[N\]\[bhwg\]\[xducis\] ADDR\n`, `aliases: rs, rsi, reverse-stepi`}},
		{"comments and blank lines", 0, "# a script\n\n  where  # here\n", []string{`position +0:0`}},
		{"several per line", 0, "s; s ;where", []string{`position +0:2`}},
		{"quit stops", 0, "where\nquit\nstep\nwhere", []string{`^position +0:0\n.*\n.*\n.*\n$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runScript(t, fakesession.Config{Mode: tt.mode}, tt.script)
			if err != nil {
				t.Fatalf("Run: %v\nstdout:\n%s", err, out)
			}
			if errOut != "" {
				t.Errorf("stderr: %q", errOut)
			}
			rest := out
			for _, w := range tt.want {
				re := regexp.MustCompile(`(?m)` + w)
				if strings.HasPrefix(w, "^") {
					re = regexp.MustCompile(w) // anchored to the whole output
					rest = out
				}
				loc := re.FindStringIndex(rest)
				if loc == nil {
					t.Fatalf("output does not match %q (in order)\noutput:\n%s", w, out)
				}
				rest = rest[loc[1]:]
			}
		})
	}
}

// TestScriptErrors checks that bad input gives a one-line error naming the
// line, and that the script stops there.
func TestScriptErrors(t *testing.T) {
	tests := []struct {
		script string
		want   string
	}{
		{"s\nfrobnicate", `line 2 \(frobnicate\): unknown command "frobnicate"`},
		{"x/4gx nosuch", `x: unknown symbol "nosuch"`},
		{"x/4q main", `bad format letter 'q'`},
		{"x/0x main", `count 0 out of range`},
		{"x/99999999999999999999x main", `does not fit in 64 bits`},
		{"x/4gx", `x: want an address`},
		{"x/4gx 0xfff8", `cannot read memory at 0x10000`},
		{"x/s 0x20000", `cannot read memory at 0x20000`},
		{"b", `break: want one address`},
		{"b 0x", `bad number "0x"`},
		{"b 12abc", `bad number "12abc"`},
		{"b main+", `missing term`},
		{"b $nope", `unknown register "\$nope"`},
		{"b 0x99999999", `not mapped`},
		{"b 0x1ffffffffffffffff", `does not fit in 64 bits`},
		{"watch -r counter", `read watchpoints are not supported`},
		{"watch -z counter", `unknown flag "-z"`},
		{"watch counter 0", `length: count 0 out of range`},
		{"delete 7", `no breakpoint 7`},
		{"delete x", `bad breakpoint ID "x"`},
		{"delete", `want breakpoint IDs or all`},
		{"goto", `want event K`},
		{"goto event 40", `event 40 is past the end of the log \(40 events\)`},
		{"goto event -1", `bad event index "-1"`},
		{"goto 41:0", `past the end of the recording`},
		{"goto 3:99", `not in the recording`},
		{"goto x:y", `bad position "x:y"`},
		{"goto start now", `too many arguments`},
		{"step 0", `count 0 out of range`},
		{"step -1", `bad number "-1"`},
		{"step 1 2", `too many arguments`},
		{"continue 3", `takes no arguments`},
		{"regs nosuch", `unknown register "nosuch"`},
		{"disas main 0", `count 0 out of range`},
		{"disas 0x20000", `cannot read memory at 0x20000`},
		{"events from 40", `event 40 is past the end`},
		{"events sideways", `want near`},
		{"info", `info what`},
		{"info bogus", `unknown info "bogus"`},
		{"help bogus", `unknown command "bogus"`},
		{"rev where", `where cannot run backwards`},
		{"rev", `reverse what`},
		{"where/4x", `takes no /format`},
		{"console -1", `bad number`},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			out, _, err := runScript(t, fakesession.Config{}, tt.script+"\nwhere")
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !regexp.MustCompile(tt.want).MatchString(msg) {
				t.Errorf("error %q does not match %q", msg, tt.want)
			}
			if strings.Contains(out, "position") {
				t.Errorf("the script went on after the error:\n%s", out)
			}
		})
	}
}

func TestCommandsOption(t *testing.T) {
	var out bytes.Buffer
	err := Run(fakesession.New(fakesession.Config{}), Options{
		In:       strings.NewReader("step 99\n"), // ignored: Commands wins
		Out:      &out,
		Err:      io.Discard,
		Commands: "s 2; where; quit; s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "position    0:2") {
		t.Errorf("output:\n%s", out.String())
	}
	err = Run(fakesession.New(fakesession.Config{}), Options{Out: io.Discard, Commands: "s; bogus; s"})
	if err == nil || !strings.Contains(err.Error(), `command 2 (bogus)`) {
		t.Errorf("err = %v", err)
	}
}

// lineReader feeds loop the given lines, then EOF.
func lineReader(lines ...string) func(string) (string, error) {
	return func(string) (string, error) {
		if len(lines) == 0 {
			return "", io.EOF
		}
		l := lines[0]
		lines = lines[1:]
		return l, nil
	}
}

// TestInteractiveLoop drives the loop as a terminal would: errors print one
// line and the loop goes on, and an empty line repeats the last command.
func TestInteractiveLoop(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string
		want    string // regexp on stdout
		wantErr string // regexp on stderr
	}{
		{"repeat step", []string{"step", "", "", "where"}, `position +0:3`, `^$`},
		{"repeat x continues", []string{"x/2xb main", ""}, `0x1000 <main>:\t0x0f\t0x31\n0x1002 <main\+0x2>:\t0x48\t0xff\n`, `^$`},
		{"repeat disas continues", []string{"disas main 2", ""}, `0x1002 .*\n.*0x1005 <store>.*\n.*0x100d <store\+0x8>`, `^$`},
		{"repeat events pages", []string{"events from 0 2", ""}, `#0 .*\n#1 .*\n#2 .*\n#3 `, `^$`},
		{"break is not repeated", []string{"b main", "", "info b"}, `breakpoint 1 at 0x1000 <main>\n(ID.*)\n1 .*\n\n$`, `^$`},
		{"goto is not repeated", []string{"s", "goto start", "", "where"}, `position +0:0`, `^$`},
		{"errors do not stop", []string{"bogus", "x/4gx nosuch", "goto event 99", "s", "where"},
			`position +0:1`,
			`^unknown command "bogus" \(try help\)\nx: unknown symbol "nosuch"\ngoto: event 99 is past the end of the log \(40 events\)\n$`},
		{"error is not repeated", []string{"s", "bogus", "", "where"}, `position +0:1`, `^unknown command "bogus" \(try help\)\n$`},
		{"rev step repeats", []string{"s 5", "rev s", "", "where"}, `position +0:3`, `^$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			sh := &shell{session: fakesession.New(fakesession.Config{}), syms: fakeSymbols(t), out: &out, errw: &errb,
				xFmt: examineFormat{count: 1, size: 4, fmt: 'x'}}
			if err := sh.loop(lineReader(tt.lines...), true); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(tt.want).MatchString(out.String()) {
				t.Errorf("stdout does not match %q:\n%q", tt.want, out.String())
			}
			if !regexp.MustCompile(tt.wantErr).MatchString(errb.String()) {
				t.Errorf("stderr does not match %q:\n%s", tt.wantErr, errb.String())
			}
		})
	}
}

func TestPrompt(t *testing.T) {
	s := fakesession.New(fakesession.Config{})
	sh := &shell{session: s, syms: fakeSymbols(t)}
	if got, want := sh.prompt(), "(vmrr 0:0 main) "; got != want {
		t.Errorf("prompt = %q, want %q", got, want)
	}
	s.Step(7)
	if got, want := sh.prompt(), "(vmrr 1:2 store+0x8) "; got != want {
		t.Errorf("prompt = %q, want %q", got, want)
	}
	sh.syms = nil
	if got, want := sh.prompt(), "(vmrr 1:2 0x100d) "; got != want {
		t.Errorf("prompt = %q, want %q", got, want)
	}
}

func TestPanicBecomesError(t *testing.T) {
	sh := &shell{session: fakesession.New(fakesession.Config{}), out: io.Discard}
	// A handler that panics, installed for this test only.
	saved := commands
	defer func() { commands = saved }()
	commands = append([]*command{{names: []string{"boom"}, run: func(*shell, *call) error { panic("boom") }}}, saved...)
	err := sh.exec("boom", false)
	if err == nil || !strings.Contains(err.Error(), "internal error: boom") {
		t.Errorf("err = %v", err)
	}
	if errors.Is(err, errQuit) {
		t.Error("panic read as quit")
	}
}

func TestSanitizeConsole(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\r\nb\n", "a\nb\n"},
		{"\x1b[31mred", `\x1b[31mred`},
		{"tab\there\r", `tab` + "\t" + `here\x0d`},
		{"\xff", `\xff`},
	}
	for _, tt := range tests {
		if got := sanitizeConsole([]byte(tt.in)); got != tt.want {
			t.Errorf("sanitizeConsole(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {3 << 20, "3.0 MiB"}, {1 << 62, "4.0 EiB"}}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// FuzzExec runs arbitrary command lines: they may fail, never panic (exec
// turns a panic into an "internal error", which this treats as a failure).
func FuzzExec(f *testing.F) {
	for _, s := range []string{"x/4gx main+8", "b $rip-1", "goto 3:4", "events from 2 3", "disas store 3",
		"watch -a counter 4", "regs rax cs", "rev s 3", "p 0x10+-3", "x/s message", "console 2", "help x"} {
		f.Add(s)
	}
	syms := fakeSymbols(f)
	f.Fuzz(func(t *testing.T, line string) {
		sh := &shell{session: fakesession.New(fakesession.Config{Steps: 60}), syms: syms, out: io.Discard,
			errw: io.Discard, xFmt: examineFormat{count: 1, size: 4, fmt: 'x'}}
		for _, c := range splitCommands(line) {
			if err := sh.exec(c, false); err != nil && strings.Contains(err.Error(), "internal error") {
				t.Fatalf("%q: %v", c, err)
			}
		}
	})
}

func TestSymbolsFromImage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fake.elf")
	if err := fakesession.WriteELF(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image, want string
	}{
		{path, "rip         0x1000 <main>"},
		{filepath.Join(t.TempDir(), "missing"), "rip         0x1000\n"},
		{"", "rip         0x1000\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := Run(fakesession.New(fakesession.Config{Image: tt.image}), Options{Out: &out, Commands: "where"})
		if err != nil || !strings.Contains(out.String(), tt.want) {
			t.Errorf("image %q: %v\n%s", tt.image, err, out.String())
		}
	}
}

// lazyEnd is a session that, like the real replay, learns where the
// recording ends only by getting there: a goto past the end runs to it.
type lazyEnd struct{ *fakesession.Session }

func (s lazyEnd) Goto(p position.Pos) (replayer.Stop, error) {
	st, err := s.Session.Goto(p)
	if err != nil && strings.Contains(err.Error(), "past the end") {
		return s.Session.GotoEnd()
	}
	return st, err
}

// TestGotoPastLazyEnd checks that a goto past the end is an error whether
// or not the session knew the end beforehand.
func TestGotoPastLazyEnd(t *testing.T) {
	for _, script := range []string{"goto 99:0", "goto 40:6", "goto end\ngoto 99:0"} {
		var out bytes.Buffer
		err := Run(lazyEnd{fakesession.New(fakesession.Config{})}, Options{
			In: strings.NewReader(script), Out: &out, Err: io.Discard, Symbols: fakeSymbols(t),
		})
		if err == nil || !strings.Contains(err.Error(), "is past the end of the recording (40:5)") {
			t.Errorf("%q: err = %v", script, err)
		}
	}
	var out bytes.Buffer
	if err := Run(lazyEnd{fakesession.New(fakesession.Config{})}, Options{
		In: strings.NewReader("goto 40:5\nwhere"), Out: &out, Err: io.Discard, Symbols: fakeSymbols(t),
	}); err != nil || !strings.Contains(out.String(), "position    40:5") {
		t.Errorf("goto to the last position: %v\n%s", err, out.String())
	}
}

// TestInterruptBeforeMotion checks that a Ctrl-C that came while the line
// was being dispatched keeps the motion from starting at all.
func TestInterruptBeforeMotion(t *testing.T) {
	s := fakesession.New(fakesession.Config{})
	var out bytes.Buffer
	sh := &shell{session: s, out: &out, errw: &out}
	sh.intr.Store(true)
	for _, c := range []string{"s", "c", "rs", "goto end", "goto 3:0"} {
		if err := sh.exec(c, false); err == nil || !strings.Contains(err.Error(), "interrupted before it started") {
			t.Errorf("%s: err = %v", c, err)
		}
	}
	if s.StepCount() != 0 {
		t.Errorf("the session moved to step %d", s.StepCount())
	}
}
