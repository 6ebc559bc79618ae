package shell

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// The tests here drive the built fakeshell binary through a real
// pseudo-terminal: line editing, completion, history and Ctrl-C only
// exist when stdin is a terminal of the process's own.

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// fakeshell builds shell/internal/fakeshell once per test run.
func fakeshell(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool, to build the test binary: %v", err)
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "shelltest")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "fakeshell")
		out, err := exec.Command(goTool, "build", "-o", binPath, "vmrr/shell/internal/fakeshell").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building fakeshell: %v", buildErr)
	}
	return binPath
}

// term is the fakeshell running on a pseudo-terminal.
type term struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // expect looks past this offset
	done chan error
}

// expectTimeout only catches hangs; nothing here measures speed.
const expectTimeout = 30 * time.Second

func startTerm(t *testing.T, args ...string) *term {
	t.Helper()
	cmd := exec.Command(fakeshell(t), args...)
	cmd.Env = append(os.Environ(), "TERM=xterm", "HOME="+t.TempDir())
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 132})
	if err != nil {
		t.Skipf("needs a pseudo-terminal: %v", err)
	}
	tm := &term{t: t, pty: f, cmd: cmd, done: make(chan error, 1)}
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
	go func() { tm.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		f.Close()
	})
	return tm
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.pty.WriteString(s); err != nil {
		tm.t.Fatalf("writing %q: %v", s, err)
	}
}

// expect waits until s appears in the output after the last match.
func (tm *term) expect(s string) {
	tm.t.Helper()
	deadline := time.Now().Add(expectTimeout)
	for {
		tm.mu.Lock()
		out := tm.buf.String()
		tm.mu.Unlock()
		if i := strings.Index(out[tm.seen:], s); i >= 0 {
			tm.seen += i + len(s)
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %q in the output after offset %d:\n%q", s, tm.seen, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// output is everything the terminal showed so far.
func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.buf.String()
}

// exit waits for the process to end and returns its error.
func (tm *term) exit() error {
	tm.t.Helper()
	select {
	case err := <-tm.done:
		return err
	case <-time.After(expectTimeout):
		tm.t.Fatalf("the shell did not exit; output:\n%q", tm.output())
		return nil
	}
}

func TestTerminalCompletion(t *testing.T) {
	tm := startTerm(t)
	tm.expect("(vmrr 0:0 main) ")
	tm.send("wh\t")
	tm.expect("where ")
	tm.send("\r")
	tm.expect("position    0:0")

	tm.send("b sto\t")
	tm.expect("b store ")
	tm.send("\r")
	tm.expect("breakpoint 1 at 0x1005 <store>")

	tm.send("regs rfl\t\r")
	tm.expect("rflags   0x246")

	// Two TABs list the candidates; typing on finishes the word.
	tm.send("re\t\t")
	tm.expect("reverse-continue")
	tm.send("gs rbx\r")
	tm.expect("rbx      0x0")

	tm.send("x/s mes\t\r")
	tm.expect(`0x3000 <message>:` + "\t" + `"hello from the guest\n"`)

	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestTerminalHistory(t *testing.T) {
	hist := filepath.Join(t.TempDir(), "history")
	var old []string
	for i := 1000; i < 1020; i++ {
		old = append(old, "p "+strconv.Itoa(i))
	}
	if err := os.WriteFile(hist, []byte(strings.Join(old, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tm := startTerm(t, "-history", hist, "-history-limit", "5")
	tm.expect("(vmrr ")
	tm.send("\x1b[A\r") // up arrow: the newest history line
	tm.expect("= 1019 ")
	tm.send("p 7\r")
	tm.expect("= 7 ")
	tm.send("p 8\r")
	tm.expect("= 8 ")
	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	want := []string{"p 1017", "p 1018", "p 1019", "p 7", "p 8"}
	if got := readLines(t, hist); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("history file = %q, want %q", got, want)
	}

	// A second session rewrites the file: still five lines, the oldest gone
	// (the recalled "p 7" is a new entry: it does not repeat the newest).
	tm = startTerm(t, "-history", hist, "-history-limit", "5")
	tm.expect("(vmrr ")
	tm.send("\x1b[A\x1b[A\r") // two up: the one before the newest
	tm.expect("= 7 ")
	tm.send("p 9\r")
	tm.expect("= 9 ")
	tm.send("q\r")
	if err := tm.exit(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	want = []string{"p 7", "p 8", "p 7", "p 9", "q"}
	if got := readLines(t, hist); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("history file = %q, want %q", got, want)
	}
}

func TestTerminalInterrupt(t *testing.T) {
	tm := startTerm(t, "-long")
	tm.expect("(vmrr 0:0 main) ")
	for i := 0; i < 2; i++ {
		tm.send("c\r")
		tm.expect("fake: running")
		tm.send("\x03")
		tm.expect("interrupted at ")
		tm.expect("(vmrr ")
	}
	// Ctrl-C drops the rest of the line.
	tm.send("c; where; s\r")
	tm.expect("fake: running")
	tm.send("\x03")
	tm.expect("interrupted at ")
	from := tm.seen
	tm.expect("interrupted: not running where; s")
	tm.expect("(vmrr ")
	if strings.Contains(tm.output()[from:], "position ") {
		t.Errorf("the rest of the line ran after Ctrl-C:\n%q", tm.output()[from:])
	}
	tm.send("where\r")
	tm.expect("position ")
	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

func TestTerminalPromptKeys(t *testing.T) {
	tm := startTerm(t)
	tm.expect("(vmrr 0:0 main) ")
	// Ctrl-C at the prompt drops the line: no command runs.
	tm.send("bogus\x03")
	tm.expect("(vmrr 0:0 main) ")
	// A bad command prints one line and the prompt comes back.
	tm.send("frob\r")
	tm.expect(`unknown command "frob" (try help)`)
	tm.expect("(vmrr 0:0 main) ")
	// An empty line repeats the last command.
	tm.send("s\r")
	tm.expect("(vmrr 0:1 main+0x2) ")
	tm.send("\r")
	tm.expect("(vmrr 0:2 store) ")
	tm.send("\x04")
	if err := tm.exit(); err != nil {
		t.Errorf("exit: %v", err)
	}
	if strings.Contains(tm.output(), "bogus:") || strings.Contains(tm.output(), `"bogus"`) {
		t.Errorf("the aborted line ran:\n%q", tm.output())
	}
}

// TestBinaryScript runs the binary on piped stdin and with -c, as CI would.
func TestBinaryScript(t *testing.T) {
	bin := fakeshell(t)
	tests := []struct {
		args    []string
		stdin   string
		wantOut string
		wantErr string
		fail    bool
	}{
		{nil, "s 2\nwhere\n", "position    0:2", "", false},
		{nil, "s\nbogus\nwhere\n", "=> 0x1002", `line 2 (bogus): unknown command "bogus"`, true},
		{[]string{"-c", "s 3; where"}, "", "position    0:3", "", false},
		{[]string{"-c", "goto event 99"}, "", "", "event 99 is past the end of the log", true},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		cmd.Stdin = strings.NewReader(tt.stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if (err != nil) != tt.fail {
			t.Errorf("%v %q: err = %v, stderr %q", tt.args, tt.stdin, err, errb.String())
		}
		if !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("%v %q: stdout %q stderr %q", tt.args, tt.stdin, out.String(), errb.String())
		}
	}
}
