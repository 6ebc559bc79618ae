package main

// Acceptance tests of vmrr gdb: the real gdb, in batch mode, against the
// built vmrr serving recordings of the committed guests, on real KVM. gdb
// loads the guest image for symbols and runs in testdata/guests, so it shows
// functions and source lines (the guests are built with -g and source paths
// mapped to "."). Each test starts its own `vmrr gdb --once` on a free
// loopback port (--listen 127.0.0.1:0; the port is read from vmrr's
// "serving" line) and checks what gdb prints, in order. Positions and
// values that differ between recordings are read from gdb's own output and
// checked against each other.

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vmrr/gdbstub/gdbtest"
)

// gdbServer is one running `vmrr gdb`.
type gdbServer struct {
	cmd   *exec.Cmd
	addr  string // where it listens
	image string // the image it tells gdb to load

	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // closed once it exited
}

// servingLine is what vmrr gdb prints once it listens.
var servingLine = regexp.MustCompile(`^vmrr: serving .* to gdb on (\S+) \(gdb (\S+) -ex 'target remote \S+'\)$`)

// startGDBServer starts vmrr gdb with args (flags and the log) on a free
// loopback port and waits until it listens. The process is killed when the
// test ends if it is still running.
func startGDBServer(t *testing.T, args ...string) *gdbServer {
	t.Helper()
	bin := e2eBin(t)
	s := &gdbServer{done: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"gdb", "--listen", "127.0.0.1:0"}, args...)...)
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				serving <- m
			}
		}
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case m := <-serving:
		s.addr, s.image = m[1], m[2]
	case <-s.done:
		t.Fatalf("vmrr gdb %s exited before serving: %s", strings.Join(args, " "), s.errText())
	case <-time.After(e2eLimit):
		t.Fatalf("vmrr gdb %s: not serving after %v: %s", strings.Join(args, " "), e2eLimit, s.errText())
	}
	return s
}

// errText is what the server printed on stderr so far.
func (s *gdbServer) errText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// wait waits for a --once server to exit after its connection, and checks
// it ended well.
func (s *gdbServer) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(e2eLimit):
		t.Fatalf("vmrr gdb still running %v after gdb left: %s", e2eLimit, s.errText())
	}
	if st := s.cmd.ProcessState.ExitCode(); st != 0 {
		t.Errorf("vmrr gdb exited with status %d: %s", st, s.errText())
	}
	if strings.Contains(s.errText(), "panic") {
		t.Errorf("vmrr gdb panicked: %s", s.errText())
	}
}

// gdbBatch runs gdb on the server with symbols from image (a path) in
// testdata/guests and returns its output. Protocol trouble fails the test.
func gdbBatch(t *testing.T, s *gdbServer, image string, cmds ...string) string {
	t.Helper()
	dir, err := filepath.Abs(e2eGuests)
	if err != nil {
		t.Fatal(err)
	}
	if image, err = filepath.Abs(image); err != nil {
		t.Fatal(err)
	}
	out := gdbtest.Batch{Addr: s.addr, Image: image, Dir: dir, Cmds: cmds}.Run(t)
	for _, bad := range []string{"Remote connection closed", "Protocol error", "Remote failure reply", "Ignoring packet error"} {
		if strings.Contains(out, bad) {
			t.Errorf("gdb reports %q; output:\n%s", bad, out)
		}
	}
	return out
}

// inOrder fails the test unless out matches the patterns (regular
// expressions, multi-line) one after the other; it returns the submatches
// of each.
func inOrder(t *testing.T, out string, patterns ...string) [][]string {
	t.Helper()
	var subs [][]string
	rest := out
	for _, p := range patterns {
		re := regexp.MustCompile("(?m)" + p)
		loc := re.FindStringSubmatchIndex(rest)
		if loc == nil {
			t.Fatalf("gdb output lacks %s (in order); output:\n%s", p, out)
		}
		var m []string
		for i := 0; i < len(loc); i += 2 {
			if loc[i] < 0 {
				m = append(m, "")
			} else {
				m = append(m, rest[loc[i]:loc[i+1]])
			}
		}
		subs = append(subs, m)
		rest = rest[loc[1]:]
	}
	return subs
}

// gdbPos is a position as `monitor info position` prints it.
var gdbPos = `position (\d+):(\d+), rip (0x[0-9a-f]+)`

// posOf parses the submatches of gdbPos.
func posOf(m []string) shPos {
	e, _ := strconv.ParseUint(m[1], 10, 64)
	i, _ := strconv.ParseUint(m[2], 10, 64)
	return shPos{e, i}
}

// value is a gdb print's "$N = V" line with V captured.
const value = `^\$\d+ = (.*)$`

// TestGDBTimer debugs a recording of timer.elf: symbols and source lines,
// breakpoints, stepping, registers and memory, a watchpoint both ways,
// reverse-stepi across an interrupt injection, and both ends of the
// recording.
func TestGDBTimer(t *testing.T) {
	log := shellLog(t, "timer")
	image := guestPath("timer")

	t.Run("break step registers memory", func(t *testing.T) {
		s := startGDBServer(t, "--once", log)
		out := gdbBatch(t, s, image,
			"info line *$pc", "break timer_handler", "continue", "bt", "info registers rip rsp eflags cs",
			"p tick_count", "x/wx &tick_count", "p/x *(unsigned long *)$rsp", "next", "next", "p tick_count",
			"list timer_handler", "continue", "p tick_count")
		s.wait(t)
		inOrder(t, out,
			`^_start \(\) at rt/start64\.S:\d+$`,
			lit(`Line 12 of "rt/start64.S" starts at address 0x100000 <_start>`),
			`^Breakpoint 1 at 0x[0-9a-f]+: file \./timer\.c, line 11\.$`,
			`^Breakpoint 1, timer_handler \(frame=0x[0-9a-f]+\) at \./timer\.c:11$`,
			`^11\t\{$`, // the source line itself: gdb found timer.c
			`^#0  timer_handler \(frame=0x[0-9a-f]+\) at \./timer\.c:11$`,
			`^#\d  (?:0x[0-9a-f]+ in )?main \(\) at \./timer\.c:\d+$`,
			`^rip +0x[0-9a-f]+ +0x[0-9a-f]+ <timer_handler>$`,
			`^rsp +0x[0-9a-f]+ +0x[0-9a-f]+$`,
			`^eflags +0x[0-9a-f]+ +\[ .* \]$`,
			`^cs +0x8 +8$`,
			`^\$1 = 0$`,
			`^0x[0-9a-f]+ <tick_count>:\t0x00000000$`,
			// The interrupt frame's return address: back into main.
			`^\$2 = 0x[0-9a-f]+$`,
			`^13\t\ttick_count\+\+;$`, `^16\t\tif \(tick_count == TICKS\)$`,
			`^\$3 = 1$`,
			`(?s)void timer_handler\(struct interrupt_frame \*frame\).*tick_count\+\+;`,
			`^Breakpoint 1, timer_handler`, `^\$4 = 1$`)
		if got := inOrder(t, out, `^\$2 = (0x[0-9a-f]+)$`)[0][1]; !strings.HasPrefix(got, "0x1000") {
			t.Errorf("return address %s is not in the guest's code", got)
		}
	})

	t.Run("rwatch and awatch", func(t *testing.T) {
		s := startGDBServer(t, "--once", log)
		out := gdbBatch(t, s, image,
			"rwatch tick_count", "continue", "x/i $pc", "delete", "break timer_handler", "continue", "delete",
			"awatch tick_count", "continue", "continue", "x/i $pc", "reverse-continue", "x/i $pc")
		s.wait(t)
		if e2eAccel() != "soft" {
			// KVM's data breakpoints are not used: gdb is told no.
			inOrder(t, out, `(?i)could not insert|cannot insert|read and access watchpoints need the soft CPU`)
			return
		}
		inOrder(t, out,
			`^Hardware read watchpoint 1: tick_count$`,
			// main polls the counter: the stop is right after its load.
			`^Value = 0$`, `^=> 0x[0-9a-f]+ <main\+\d+>:\tcmp `,
			`^Breakpoint 2, timer_handler`,
			`^Hardware access \(read/write\) watchpoint 3: tick_count$`,
			// The handler's load, then its store.
			`^Value = 0$`, `^Old value = 0$`, `^New value = 1$`,
			`^=> 0x[0-9a-f]+ <timer_handler\+\d+>:\tmov +0x[0-9a-f]+\(%rip\),%eax`,
			// Backwards: at the store, before it ran.
			`^=> 0x[0-9a-f]+ <timer_handler\+\d+>:\tmov +%eax,0x[0-9a-f]+\(%rip\)`)
	})

	t.Run("watch and reverse-continue", func(t *testing.T) {
		s := startGDBServer(t, "--once", log)
		out := gdbBatch(t, s, image,
			"watch tick_count", "continue", "continue", "reverse-continue", "p tick_count", "x/i $pc",
			"reverse-continue", "p tick_count", "reverse-continue", "p $pc")
		s.wait(t)
		inOrder(t, out,
			`^Hardware watchpoint 1: tick_count$`,
			`^Old value = 0$`, `^New value = 1$`, `^timer_handler \(frame=0x[0-9a-f]+\) at \./timer\.c:\d+$`,
			`^Old value = 1$`, `^New value = 2$`,
			// Backwards, gdb stops at the instruction that wrote, before it
			// ran: the value there is the old one.
			`^Old value = 2$`, `^New value = 1$`, `timer_handler \(frame=0x[0-9a-f]+\) at \./timer\.c:13$`,
			`^\$1 = 1$`,
			`^=> 0x[0-9a-f]+ <timer_handler\+\d+>:\tmov +%eax,0x[0-9a-f]+\(%rip\) +# 0x[0-9a-f]+ <tick_count>$`,
			`^Old value = 1$`, `^New value = 0$`, `^\$2 = 0$`,
			`^No more reverse-execution history\.$`, `^_start \(\) at rt/start64\.S:\d+$`,
			lit(`$3 = (void (*)()) 0x100000 <_start>`))
	})

	t.Run("reverse-stepi across an interrupt", func(t *testing.T) {
		s := startGDBServer(t, "--once", log)
		out := gdbBatch(t, s, image,
			"break timer_handler", "continue", "monitor info position",
			"reverse-stepi", "x/i $pc", "monitor info position", "p tick_count",
			"stepi", "x/i $pc", "monitor info position",
			"stepi", "reverse-stepi", "reverse-stepi", "monitor info position")
		s.wait(t)
		m := inOrder(t, out,
			`^Breakpoint 1, timer_handler`, gdbPos,
			// Back over the injection: the instruction the interrupt came
			// after, in main, before the handler's first.
			`^=> 0x[0-9a-f]+ <main\+\d+>:\t`, gdbPos, `^\$1 = 0$`,
			// Forwards again into the handler, at the same position.
			`^=> 0x[0-9a-f]+ <timer_handler>:\tpush +%rax$`, gdbPos,
			gdbPos)
		at, before, again, back := posOf(m[1]), posOf(m[3]), posOf(m[6]), posOf(m[7])
		if !before.less(at) || again != at || back != before {
			t.Errorf("handler entry at %v, reverse-stepi to %v, stepi to %v, stepi and 2 reverse-stepi to %v", at, before, again, back)
		}
		if m[1][3] == m[3][3] {
			t.Errorf("reverse-stepi from the handler stayed at rip %s", m[1][3])
		}
	})

	t.Run("both ends", func(t *testing.T) {
		s := startGDBServer(t, "--once", log)
		out := gdbBatch(t, s, image,
			"reverse-stepi", "p $pc", "continue", "bt 1", "reverse-stepi", "x/i $pc",
			"continue", "reverse-continue", "p $pc")
		s.wait(t)
		inOrder(t, out,
			`^No more reverse-execution history\.$`, lit(`$1 = (void (*)()) 0x100000 <_start>`),
			`^ticks: 20$`, // the guest's console, forwarded
			`^vmrr: the guest exited with status 1 at position \d+:\d+, rip 0x[0-9a-f]+ \(end of the recording\)$`,
			`^No more reverse-execution history\.$`,
			`^#0  (?:0x[0-9a-f]+ in )?exit \(code=0 '\\000'\) at rt/rt\.c:\d+$`,
			`^=> 0x[0-9a-f]+ <(?:exit|outb)\+\d+>:\tout +%al,\$0xf4$`,
			`^No more reverse-execution history\.$`, // continue at the end stays there
			`^No more reverse-execution history\.$`, `^_start \(\) at rt/start64\.S:\d+$`,
			lit(`$2 = (void (*)()) 0x100000 <_start>`))
	})
}

// TestGDBRace finds, backwards from the end of a race.elf recording, the
// last write to counter and the last timer tick.
func TestGDBRace(t *testing.T) {
	log := shellLog(t, "race")
	image := guestPath("race")
	s := startGDBServer(t, "--once", log)
	out := gdbBatch(t, s, image,
		"break puts", "continue", "p counter", "p ticks", "delete",
		"watch counter", "reverse-continue", "p counter", "bt 1", "x/i $pc",
		"stepi", "p counter", "delete",
		"break timer_handler", "reverse-continue", "p ticks", "bt 1")
	s.wait(t)
	m := inOrder(t, out,
		`^Breakpoint 1, puts \(s=(?:s@entry=)?0x[0-9a-f]+ "counter: "\) at rt/rt\.c:\d+$`,
		value, value,
		`^Hardware watchpoint 2: counter$`,
		`^Old value = (\d+)$`, `^New value = (\d+)$`,
		value, `^#0  (?:0x[0-9a-f]+ in )?(race_loop|timer_handler) `,
		`^=> 0x[0-9a-f]+ <(?:race_loop|timer_handler)\+\d+>:\t(?:mov|add) .*<counter>$`,
		value,
		`^Breakpoint 3, timer_handler \(frame=0x[0-9a-f]+\) at \./race\.c:\d+$`,
		value, `^#0  timer_handler `)
	n, _ := strconv.ParseUint(m[1][1], 10, 64)
	ticks, _ := strconv.ParseUint(m[2][1], 10, 64)
	old, _ := strconv.ParseUint(m[4][1], 10, 64)
	prev, _ := strconv.ParseUint(m[5][1], 10, 64)
	atWrite, _ := strconv.ParseUint(m[6][1], 10, 64)
	afterWrite, _ := strconv.ParseUint(m[9][1], 10, 64)
	lastTick, _ := strconv.ParseUint(m[11][1], 10, 64)
	// The last write is the loop's final store, n = loaded+1, over the
	// loaded value plus the handler's +1000 for every tick that landed
	// between its load and its store (lost updates: ticks come back to
	// back when the host was late), or, if the last tick came after it,
	// the handler's +1000.
	wantOK := prev == n-1000
	if m[7][1] == "race_loop" {
		wantOK = prev+1 >= n && (prev+1-n)%1000 == 0
	}
	if old != n || !wantOK || atWrite != prev || afterWrite != n {
		t.Errorf("counter %d at the end; last write (in %s) took it from %d to %d; %d there, %d after one stepi",
			n, m[7][1], prev, old, atWrite, afterWrite)
	}
	if ticks == 0 || lastTick != ticks-1 {
		t.Errorf("ticks %d at the end, %d entering the last timer_handler (want %d)", ticks, lastTick, ticks-1)
	}
}

// TestGDBCrash stops at crash.elf's triple fault, and steps back and forth
// over the instruction that caused it.
func TestGDBCrash(t *testing.T) {
	log, _ := recordLog(t, t.TempDir(), "crash.vmrr", guestPath("crash"), 64)
	image := guestPath("crash")
	s := startGDBServer(t, "--once", log)
	out := gdbBatch(t, s, image,
		"continue", "bt", "x/i $pc", "reverse-stepi", "x/i $pc", "stepi", "x/i $pc", "stepi", "x/i $pc",
		"reverse-stepi", "x/i $pc", "reverse-stepi", "x/i $pc", "reverse-continue")
	s.wait(t)
	inOrder(t, out,
		`^about to crash$`,
		`^vmrr: the guest crashed at position \d+:\d+, rip 0x[0-9a-f]+: triple fault at RIP 0x[0-9a-f]+, exit \d+: .*$`,
		`^Program received signal SIGSEGV, Segmentation fault\.$`,
		`^0x[0-9a-f]+ in do_crash \(\) at \./crash\.c:12$`,
		`^#0  0x[0-9a-f]+ in do_crash \(\) at \./crash\.c:12$`, `^#1  0x[0-9a-f]+ in main \(\) at \./crash\.c:18$`,
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\tud2$`,
		// The faulting instruction never ran: one step back is the one
		// before it.
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\tlidt `,
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\tud2$`,
		`^Program received signal SIGSEGV, Segmentation fault\.$`,
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\tud2$`,
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\tlidt `,
		`^=> 0x[0-9a-f]+ <do_crash\+\d+>:\t(?:mov|lea)`,
		`^No more reverse-execution history\.$`, `^_start \(\) at rt/start64\.S:\d+$`)
}

// TestGDBFlaky is the CI story with a debugger: flaky64.elf is recorded
// until a run fails, its image embedded and then deleted; vmrr gdb on the
// kept log stops at the failure, and reverse-continue with a watchpoint on
// the lost pointer finds the timer interrupt that cleared it.
func TestGDBFlaky(t *testing.T) {
	needRecord(t, "record")
	c := &ciTool{t: t, bin: e2eBin(t)}
	dir := t.TempDir()
	src, err := os.ReadFile(guestPath("flaky64"))
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "flaky64.elf")
	if err := os.WriteFile(image, src, 0o644); err != nil {
		t.Fatal(err)
	}
	const maxRuns = 60
	log, runs := recordUntilFailure(t, c, image, dir, maxRuns)
	if log == "" {
		t.Skipf("flaky64.elf passed %d recordings in a row: no failure to debug", maxRuns)
	}
	t.Logf("failure recorded on run %d", runs)
	if err := os.Remove(image); err != nil {
		t.Fatal(err)
	}
	s := startGDBServer(t, "--once", log)
	if s.image == image || !exists(s.image) {
		t.Fatalf("vmrr gdb names image %s for gdb: want a copy of the embedded one", s.image)
	}
	out := gdbBatch(t, s, s.image,
		"continue", "bt", "reverse-stepi", "bt 1", "p cur", "p in_window",
		"watch cur", "reverse-continue", "bt 2", "p tick_count", "p cur", "stepi", "p cur")
	s.wait(t)
	m := inOrder(t, out,
		`^FAIL: job (\d+) lost its pointer$`,
		`^vmrr: the guest exited with status 3 at position \d+:\d+, rip 0x[0-9a-f]+ \(end of the recording\)$`,
		`^No more reverse-execution history\.$`,
		`^#0  (?:0x[0-9a-f]+ in )?exit \(code=code@entry=1 '\\001'\) at rt/rt\.c:\d+$`,
		`^#1  0x[0-9a-f]+ in main \(\) at \./flaky\.c:\d+$`,
		`^#0  (?:0x[0-9a-f]+ in )?(?:exit|outb) `,
		lit(`$1 = (struct job * volatile) 0x0`), `^\$2 = 0$`,
		`^Hardware watchpoint 1: cur$`,
		// Backwards: the write that lost the pointer is the timer's.
		lit(`Old value = (struct job * volatile) 0x0`),
		`^New value = \(struct job \* volatile\) 0x[0-9a-f]+ <jobs(?:\+(\d+))?>$`,
		`^timer_handler \(frame=0x[0-9a-f]+\) at \./flaky\.c:37$`, `^37\t\t\tcur = 0; /\* the bug \*/$`,
		`^#0  timer_handler `, `^#1  0x[0-9a-f]+ in (?:rdtsc|run_job) `,
		value,
		`^\$\d+ = \(struct job \* volatile\) 0x[0-9a-f]+ <jobs(?:\+(\d+))?>$`,
		`^Old value = \(struct job \* volatile\) 0x[0-9a-f]+ <jobs`,
		lit(`New value = (struct job * volatile) 0x0`),
		lit(`= (struct job * volatile) 0x0`))
	job, _ := strconv.Atoi(m[0][1])
	off, _ := strconv.Atoi("0" + m[10][1])
	if off != 8*job {
		t.Errorf("job %d failed, but the pointer the timer cleared was jobs+%d (want jobs+%d)", job, off, 8*job)
	}
	if exists(s.image) {
		t.Errorf("the temporary image %s is still there after vmrr gdb ended", s.image)
	}
}

// symbolAddr is the address of a symbol of an ELF image.
func symbolAddr(t *testing.T, image, name string) uint64 {
	t.Helper()
	f, err := elf.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("%s has no symbol %s", image, name)
	return 0
}

// TestGDBBadClients sends vmrr gdb malformed packets and drops connections
// at bad moments (inside a packet, while the replay runs); each time the
// next connection is served, and at the end a real gdb debugs as usual.
func TestGDBBadClients(t *testing.T) {
	if gdbtest.GDB() == "" {
		t.Skip("gdb is not installed")
	}
	log := shellLog(t, "race")
	s := startGDBServer(t, log) // serves one connection after another
	dial := func() *gdbtest.Client {
		nc, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connect to vmrr gdb: %v; stderr: %s", err, s.errText())
		}
		return gdbtest.NewClient(nc)
	}
	call := func(c *gdbtest.Client, body string) string {
		t.Helper()
		reply, _, err := c.Call(body)
		if err != nil {
			t.Fatalf("%q: %v; stderr: %s", body, err, s.errText())
		}
		return reply
	}

	// Malformed packets on one connection: each gets an error reply or a
	// nack, and the stream stays in step.
	c := dial()
	for _, raw := range []string{"$qC#00", "$g#zz"} {
		c.SendRaw(raw)
		if b, err := c.ReadAck(); err != nil || b != '-' {
			t.Fatalf("%q: got %q, %v; want a nack", raw, b, err)
		}
	}
	c.SendRaw("garbage between packets")
	for _, tc := range []struct{ send, want string }{
		{"mzz,4", `E.bad address "zz"`},
		{"m100000", `E.want ADDR,LENGTH, got "100000"`},
		{"pzz", `E.p: bad register number "zz"`},
		{"Z0,100000", "E.Z: want TYPE,ADDR,KIND"},
		{"vCont;x", "E.vCont action 'x' not supported"},
		{"qRcmd,zz", "E.qRcmd: encoding/hex: invalid byte: U+007A 'z'"},
		{"M100000,1:00", "E.replay is read-only: guest memory cannot be written"},
		{"X100000,10:" + strings.Repeat("a", 70000), "E07"},
		{"qC", "QC1"},
	} {
		if got := call(c, tc.send); got != tc.want {
			t.Errorf("%.40q: got %q, want %q", tc.send, got, tc.want)
		}
	}
	if got := call(c, "m100000,1"); got != "fa" { // cli at _start
		t.Errorf("m100000,1 after the bad packets: %q", got)
	}
	c.Close()

	// Gone inside a packet.
	c = dial()
	c.SendRaw("$qSupported:multipro")
	c.Close()

	// Gone with a breakpoint set where every timer tick passes: the next
	// gdb must not stop there.
	handler := symbolAddr(t, guestPath("race"), "timer_handler")
	c = dial()
	if got := call(c, fmt.Sprintf("Z0,%x,1", handler)); got != "OK" {
		t.Fatalf("Z0: %q", got)
	}
	c.Close()

	// Gone while the replay runs: a watchpoint makes continue single-step
	// race.elf for seconds; the server interrupts it when the connection
	// drops.
	c = dial()
	if got := call(c, "Z2,100000,8"); got != "OK" {
		t.Fatalf("Z2: %q", got)
	}
	if err := c.Send("vCont;c"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	c.Close()

	// Gone while the replay runs backwards: reverse-continue with the
	// watchpoint scans back to the start single-stepping, for about as
	// long as the continue ran. Had it not been interrupted, the next
	// connection would find the replay at the start.
	c = dial()
	if got := call(c, "Z2,100000,8"); got != "OK" {
		t.Fatalf("Z2: %q", got)
	}
	if err := c.Send("bc"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()

	// The next connection finds the replay where the last motion was
	// interrupted, without the old breakpoints: a continue runs to the end.
	out := gdbBatch(t, s, guestPath("race"),
		"monitor info position", "info breakpoints", "stepi", "monitor info position", "continue")
	m := inOrder(t, out,
		gdbPos, `^No breakpoints or watchpoints\.$`, gdbPos,
		`^counter: \d+ ticks: \d+ iterations: \d+$`,
		`^vmrr: the guest exited with status 1 at `, `^No more reverse-execution history\.$`)
	p, q := posOf(m[0]), posOf(m[2])
	t.Logf("the next connection found the replay at %v", p)
	if !p.less(q) || p == (shPos{}) {
		t.Errorf("after the dropped continue at %v, stepi went to %v", p, q)
	}
	if strings.Contains(s.errText(), "panic") {
		t.Errorf("vmrr gdb panicked: %s", s.errText())
	}
	// Still serving: one more connection.
	c = dial()
	if got := call(c, "qC"); got != "QC1" {
		t.Errorf("qC on the last connection: %q", got)
	}
	c.Close()
}
