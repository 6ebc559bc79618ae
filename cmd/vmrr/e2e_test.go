package main

// End-to-end tests of the vmrr command: they build the binary once and run it
// on the committed guests in testdata/guests (see its README for each guest's
// output and status), on the soft CPU (VMRR_TEST_ACCEL=kvm: on KVM), the way
// a user or a CI job would. A known bug is a failing test, never a skip.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vmrr/logfmt"
	"vmrr/machine/probe"
)

// e2eGuests is where the committed guest images are.
const e2eGuests = "../../testdata/guests"

// e2eBuild is the vmrr binary, built at most once per test binary.
var e2eBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

// TestMain removes the binary the end-to-end tests built.
// Every vmrr it starts runs on e2eAccel's CPU.
func TestMain(m *testing.M) {
	os.Setenv("VMRR_ACCEL", e2eAccel())
	code := m.Run()
	if e2eBuild.dir != "" {
		os.RemoveAll(e2eBuild.dir)
	}
	os.Exit(code)
}

// e2eAccel is the CPU the end-to-end tests run guests on: $VMRR_TEST_ACCEL
// (kvm or soft), else the soft CPU, which every host has. The nested-KVM
// run of these tests sets it to kvm.
func e2eAccel() string {
	if a := os.Getenv("VMRR_TEST_ACCEL"); a != "" {
		return a
	}
	return "soft"
}

// needRecord skips a test that records when the tests run on a KVM
// without an exact instruction counter (AMD SVM without PVM): there a
// recording places timer ticks at the guest's exits only, and the tests'
// guests race their ticks (demo and bench refuse; record would change
// what they test). The soft CPU runs the same tests on every host, and
// TestRecordExitsOnly records on such a KVM.
func needRecord(t *testing.T, cmd string) {
	t.Helper()
	if e2eAccel() != "kvm" || (cmd != "record" && cmd != "demo" && cmd != "bench") {
		return
	}
	if err := probe.ExactCounter(); err != nil {
		t.Skipf("needs an exact instruction counter: %v", err)
	}
}

// e2eBin builds vmrr (once) and returns its path.
func e2eBin(t *testing.T) string {
	t.Helper()
	e2eBuild.once.Do(func() {
		if e2eBuild.dir, e2eBuild.err = os.MkdirTemp("", "vmrr-e2e-"); e2eBuild.err != nil {
			return
		}
		e2eBuild.bin = filepath.Join(e2eBuild.dir, "vmrr")
		if out, err := exec.Command("go", "build", "-o", e2eBuild.bin, ".").CombinedOutput(); err != nil {
			e2eBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if e2eBuild.err != nil {
		t.Fatal(e2eBuild.err)
	}
	return e2eBuild.bin
}

// e2eResult is one finished vmrr process.
type e2eResult struct {
	status         int
	stdout, stderr string
}

func (r e2eResult) String() string {
	return fmt.Sprintf("status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
}

// e2eLimit bounds one vmrr process, so a hang fails the test instead of
// stalling the suite. It is a safety net, not a measurement.
const e2eLimit = 5 * time.Minute

// runVMRR runs vmrr with args (stdin empty) and returns how it ended.
func runVMRR(t *testing.T, args ...string) e2eResult {
	t.Helper()
	return runVMRRIn(t, nil, args...)
}

// runVMRRIn runs vmrr with stdin from in.
func runVMRRIn(t *testing.T, in io.Reader, args ...string) e2eResult {
	t.Helper()
	// A recording that places its events at exits only runs on any KVM.
	if len(args) > 0 && !slices.Contains(args, "--exits-only") {
		needRecord(t, args[0])
	}
	return runVMRRAnyHost(t, in, args...)
}

// runVMRRAnyHost is runVMRRIn for a test that records on a KVM without an
// exact instruction counter on purpose (needRecord would skip it there).
func runVMRRAnyHost(t *testing.T, in io.Reader, args ...string) e2eResult {
	t.Helper()
	bin := e2eBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("vmrr %s: still running after %v", strings.Join(args, " "), e2eLimit)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("vmrr %s: %v", strings.Join(args, " "), err)
	}
	return e2eResult{status: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// guestPath is the path of a committed guest image.
func guestPath(name string) string { return filepath.Join(e2eGuests, name+".elf") }

// writeFile writes b to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readGuest reads a committed guest image.
func readGuest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(guestPath(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// oneLineProblems says what is wrong with stderr as the single line of a
// failure matching re: more or fewer lines, a Go panic, no match.
func oneLineProblems(stderr string, re *regexp.Regexp) []string {
	var p []string
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic:") {
		p = append(p, "a Go panic")
	}
	if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasSuffix(stderr, "\n") {
		p = append(p, fmt.Sprintf("%d lines on stderr, want 1", n))
	}
	if !re.MatchString(stderr) {
		p = append(p, fmt.Sprintf("stderr does not match %s", re))
	}
	return p
}

// wantOneLine fails the test unless stderr is one line matching re.
func wantOneLine(t *testing.T, r e2eResult, re string) {
	t.Helper()
	if p := oneLineProblems(r.stderr, regexp.MustCompile(re)); len(p) > 0 {
		t.Errorf("%s: %s", strings.Join(p, "; "), r)
	}
}

// matchLines fails the test unless out has exactly one line per pattern,
// each matching its (anchored) pattern.
func matchLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("console %q does not end in a newline", out)
		return
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(patterns) {
		t.Errorf("console has %d lines, want %d:\n%s", len(lines), len(patterns), out)
		return
	}
	for i, p := range patterns {
		if !regexp.MustCompile("^(?:" + p + ")$").MatchString(lines[i]) {
			t.Errorf("console line %d %q does not match %s", i+1, lines[i], p)
		}
	}
}

// lit is a console line that must appear exactly.
func lit(s string) string { return regexp.QuoteMeta(s) }

// ud is a line for an instruction the guest found missing.
func orUD(name, pattern string) string { return name + ": (?:" + pattern + "|unsupported \\(#UD\\))" }

// Console patterns of the guests whose output depends on time or randomness.
var (
	hex16     = "0x[0-9a-f]{16}"
	hex8      = "0x[0-9a-f]{8}"
	raceLine  = regexp.MustCompile(`^counter: (\d+) ticks: (\d+) iterations: (\d+)\n$`)
	flakyLine = regexp.MustCompile(`^(?:PASS: 20 jobs, sum 2470|FAIL: job (\d+) lost its pointer)\n$`)
)

// nondetLines is nondet.elf's console: 3 of each instruction.
func nondetLines() []string {
	var l []string
	add := func(name, p string) {
		for i := 0; i < 3; i++ {
			l = append(l, orUD(name, p))
		}
	}
	add("rdtsc", hex16)
	add("rdtscp", hex16+" aux "+hex8)
	for _, n := range []string{"rdrand64", "rdrand32", "rdseed64", "rdseed32"} {
		add(n, hex16+" cf "+hex8)
	}
	return l
}

// checkRace checks race's console: ticks that land between the load and the
// store are lost, so the counter can only fall short of 30000+1000*ticks.
func checkRace(t *testing.T, out string) {
	t.Helper()
	m := raceLine.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("console %q, want %s", out, raceLine)
		return
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	ticks, _ := strconv.ParseUint(m[2], 10, 64)
	iters, _ := strconv.ParseUint(m[3], 10, 64)
	if iters < 30000 || ticks < 20 || n > iters+1000*ticks || n < iters || (n-iters)%1000 != 0 {
		t.Errorf("counter %d with %d ticks and %d iterations: want the iterations (at least 30000) plus a multiple of 1000, at most %d, and at least 20 ticks",
			n, ticks, iters, iters+1000*ticks)
	}
}

// checkFlaky checks flaky's console against its status: PASS is status 1,
// FAIL status 3.
func checkFlaky(t *testing.T, r e2eResult) {
	t.Helper()
	m := flakyLine.FindStringSubmatch(r.stdout)
	switch {
	case m == nil:
		t.Errorf("console %q, want %s", r.stdout, flakyLine)
	case m[1] == "" && r.status != 1, m[1] != "" && r.status != 3:
		t.Errorf("console %q with status %d", r.stdout, r.status)
	}
}

// guestCase is one committed guest: how to run it and what it prints.
type guestCase struct {
	name   string
	args   []string // extra flags for run and record
	status int      // 0: checked by check
	lines  []string // console patterns, one per line; nil: check does it
	check  func(t *testing.T, r e2eResult)
}

// e2eGuestCases lists every committed guest. serialIn is the file given to
// serial-echo.
func e2eGuestCases(serialIn string) []guestCase {
	return []guestCase{
		{name: "hello", status: 1, lines: []string{lit("hello from vmrr")}},
		{name: "hello-multiboot", status: 1, lines: []string{lit("hello from vmrr (multiboot)")}},
		{name: "timer", status: 1, lines: []string{lit("ticks: 20")}},
		{name: "timer-multiboot", status: 1, lines: []string{lit("ticks: 20")}},
		{name: "spin", status: 1, lines: []string{`tick 1: \d+ spins`, `tick 2: \d+ spins`, `tick 3: \d+ spins`, `tick 4: \d+ spins`, `tick 5: \d+ spins`}},
		{name: "nondet", status: 1, lines: nondetLines()},
		{name: "serial-echo", args: []string{"--serial-in", serialIn}, status: 1, lines: []string{lit("ready"), lit("ab bye")}},
		{name: "crash", status: machineStatusTripleFault, lines: []string{lit("about to crash")}},
		{name: "race", status: 1, check: func(t *testing.T, r e2eResult) { checkRace(t, r.stdout) }},
		{name: "race-multiboot", status: 1, check: func(t *testing.T, r e2eResult) { checkRace(t, r.stdout) }},
		// Timer ticks land in the middle of long REP string instructions.
		{name: "repstring", status: 1, lines: []string{`ticks: \d+ sum 0x[0-9a-f]{16}`}},
		{name: "paravirt", status: 1, lines: []string{`paravirt: values 10000 xor 0x[0-9a-f]+ sum 0x[0-9a-f]+ last 0x[0-9a-f]+`}},
		{name: "emu32", status: 1, lines: []string{lit("int80 ok"), lit("ticks: 5"),
			lit("popcnt 0x00000000 = 0"), lit("popcnt 0x00000001 = 1"), lit("popcnt 0x80000001 = 2"),
			lit("popcnt 0x12345678 = 13"), lit("popcnt 0xffffffff = 32"),
			orUD("rdtscp", hex16+" aux "+hex8), orUD("rdseed32", hex8+" cf 1"), orUD("rdrand32", hex8+" cf 1"),
			orUD("rdrand16", hex8+" cf 1"), lit("emu32 done")}},
		{name: "flaky", check: checkFlaky},
		{name: "flaky64", check: checkFlaky},
		// vmrr's KVM sees a rewritten PTE at once (README: status 3 is QEMU TCG's).
		{name: "ptedit", status: 1, lines: []string{lit("before: A"), lit("immediately: B"), lit("after exit: B")}},
		{name: "ptchurn", status: 1, lines: []string{lit("ptchurn: checksum 0x231609fefd8aae23")}},
	}
}

// machineStatusTripleFault mirrors machine.StatusTripleFault, the status
// these tests expect from a guest that shuts the machine down.
const machineStatusTripleFault = 64

// checkGuest checks one finished run or replay of c.
func checkGuest(t *testing.T, c guestCase, r e2eResult) {
	t.Helper()
	if c.status != 0 && r.status != c.status {
		t.Errorf("status %d, want %d (stderr %q)", r.status, c.status, r.stderr)
	}
	if c.lines != nil {
		matchLines(t, r.stdout, c.lines...)
	}
	if c.check != nil {
		c.check(t, r)
	}
	if c.status == machineStatusTripleFault {
		wantOneLine(t, r, `^vmrr: triple fault at RIP 0x[0-9a-f]+, exit \d+: .+\n$`)
	} else if r.stderr != "" {
		t.Errorf("stderr %q, want none", r.stderr)
	}
}

// serialInput writes serial-echo's input: it echoes "ab ", and "q" ends it.
func serialInput(t *testing.T, dir string) string {
	return writeFile(t, dir, "serial.in", []byte("ab q\n"))
}

// TestRunGuests runs every committed guest with vmrr run.
func TestRunGuests(t *testing.T) {
	e2eBin(t)
	in := serialInput(t, t.TempDir())
	for _, c := range e2eGuestCases(in) {
		t.Run(c.name, func(t *testing.T) {
			r := runVMRR(t, append(append([]string{"run"}, c.args...), guestPath(c.name))...)
			checkGuest(t, c, r)
		})
	}
}

// TestRunSerialStdin feeds serial-echo from standard input (--serial-in -).
func TestRunSerialStdin(t *testing.T) {
	r := runVMRRIn(t, strings.NewReader("xyz q"), "run", "--serial-in", "-", guestPath("serial-echo"))
	if r.status != 1 || r.stdout != "ready\nxyz bye\n" || r.stderr != "" {
		t.Errorf("%s, want status 1 and %q", r, "ready\nxyz bye\n")
	}
}

// TestRunEnds checks the ends of a run that are not the guest's own exit:
// a time limit, a guest halted for good, no serial input to wait for.
func TestRunEnds(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()
	// Flat images run in real mode at 0x7c00.
	forever := writeFile(t, dir, "forever.bin", []byte{0xeb, 0xfe}) // jmp $
	halted := writeFile(t, dir, "halted.bin", []byte{0xfa, 0xf4})   // cli; hlt
	tests := []struct {
		name   string
		args   []string
		status int
		stdout string
		stderr string
	}{
		{"timeout", []string{"--timeout", "300ms", forever}, 70, "", `^vmrr: timeout at RIP 0x7c00, exit \d+: .*\n$`},
		{"halted with IF=0", []string{halted}, 68, "", `^vmrr: hung at RIP 0x7c02, exit \d+: .*interrupts disabled.*\n$`},
		{"halted with timeout", []string{"--timeout", "1h", halted}, 68, "", `^vmrr: hung at RIP 0x7c02, exit \d+: .*\n$`},
		// serial-echo waits for input that no one will send: nothing can wake it.
		{"no serial input", []string{guestPath("serial-echo")}, 68, "ready\n", `^vmrr: hung at RIP 0x[0-9a-f]+, exit \d+: .*\n$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runVMRR(t, append([]string{"run"}, tc.args...)...)
			if r.status != tc.status || r.stdout != tc.stdout {
				t.Errorf("%s, want status %d and stdout %q", r, tc.status, tc.stdout)
			}
			wantOneLine(t, r, tc.stderr)
		})
	}
}

// TestRunMem checks --mem: the guest runs in the RAM asked for, and sizes
// the machine cannot have are refused.
func TestRunMem(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()
	for _, mib := range []string{"4", "16", "512"} {
		t.Run(mib+"MiB", func(t *testing.T) {
			r := runVMRR(t, "run", "--mem", mib, guestPath("hello"))
			if r.status != 1 || r.stdout != "hello from vmrr\n" || r.stderr != "" {
				t.Errorf("%s", r)
			}
			// The header of a recording says what the guest had.
			log := filepath.Join(dir, mib+".vmrr")
			if r := runVMRR(t, "record", "--mem", mib, "-o", log, guestPath("hello")); r.status != 1 {
				t.Fatalf("record: %s", r)
			}
			lr, err := logfmt.Open(log)
			if err != nil {
				t.Fatal(err)
			}
			defer lr.Close()
			want, _ := strconv.ParseUint(mib, 10, 64)
			if got := lr.Header().MemoryBytes; got != want<<20 {
				t.Errorf("header memory %d, want %d", got, want<<20)
			}
		})
	}
	// 0 would be machine.Config's "the default", and a size past 4096 MiB
	// would wrap once shifted into bytes: both are refused before either.
	for _, mem := range []string{"0", "1", "4097", "abc", "-5", "17592186044480"} {
		t.Run("bad "+mem, func(t *testing.T) {
			r := runVMRR(t, "run", "--mem", mem, guestPath("hello"))
			p := oneLineProblems(r.stderr, regexp.MustCompile(`^(vmrr: |invalid value )`))
			if r.status != exitUsage {
				p = append(p, fmt.Sprintf("status %d, want %d", r.status, exitUsage))
			}
			if len(p) > 0 {
				t.Errorf("%s: %s", strings.Join(p, "; "), r)
			}
		})
	}
}

// elf32NoMultiboot is a minimal i386 ELF executable (hlt at 1 MiB) with no
// Multiboot header: vmrr has no way to boot it.
func elf32NoMultiboot() []byte {
	const ehsize, phsize = 52, 32
	b := make([]byte, ehsize+phsize+1)
	copy(b, "\x7fELF\x01\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)        // ET_EXEC
	le.PutUint16(b[18:], 3)        // EM_386
	le.PutUint32(b[20:], 1)        // EV_CURRENT
	le.PutUint32(b[24:], 0x100000) // e_entry
	le.PutUint32(b[28:], ehsize)   // e_phoff
	le.PutUint16(b[40:], ehsize)   // e_ehsize
	le.PutUint16(b[42:], phsize)   // e_phentsize
	le.PutUint16(b[44:], 1)        // e_phnum
	p := b[ehsize:]
	le.PutUint32(p[0:], 1)             // PT_LOAD
	le.PutUint32(p[4:], ehsize+phsize) // p_offset
	le.PutUint32(p[8:], 0x100000)      // p_vaddr
	le.PutUint32(p[12:], 0x100000)     // p_paddr
	le.PutUint32(p[16:], 1)            // p_filesz
	le.PutUint32(p[20:], 1)            // p_memsz
	le.PutUint32(p[24:], 5)            // PF_R|PF_X
	b[ehsize+phsize] = 0xf4            // hlt
	return b
}

// withMachine is hello.elf claiming to be for another architecture.
func withMachine(t *testing.T, machine uint16) []byte {
	b := bytes.Clone(readGuest(t, "hello"))
	binary.LittleEndian.PutUint16(b[18:], machine)
	return b
}

// TestBadInput checks that every kind of bad input gets one line on stderr
// and status 2, never a Go panic.
func TestBadInput(t *testing.T) {
	e2eBin(t)
	dir := t.TempDir()
	hello := guestPath("hello")
	// A good log, for the replay cases.
	good := filepath.Join(dir, "good.vmrr")
	if r := runVMRR(t, "record", "-o", good, hello); r.status != 1 {
		t.Fatalf("record: %s", r)
	}
	missing := filepath.Join(dir, "missing.elf")
	empty := writeFile(t, dir, "empty.elf", nil)
	arm := writeFile(t, dir, "arm.elf", withMachine(t, 183))     // EM_AARCH64
	riscv := writeFile(t, dir, "riscv.elf", withMachine(t, 243)) // EM_RISCV
	elf32 := writeFile(t, dir, "i386.elf", elf32NoMultiboot())
	cutELF := writeFile(t, dir, "cut.elf", readGuest(t, "hello")[:18])
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"missing image", []string{"run", missing}, `missing\.elf: no such file or directory`},
		{"empty image", []string{"run", empty}, `empty`},
		{"aarch64 ELF", []string{"run", arm}, `not x86`},
		{"riscv ELF", []string{"run", riscv}, `not x86`},
		{"32-bit ELF without Multiboot", []string{"run", elf32}, `32-bit ELF without a Multiboot header`},
		{"cut ELF header", []string{"run", cutELF}, `truncated ELF header`},
		{"record missing image", []string{"record", "-o", filepath.Join(dir, "x.vmrr"), missing}, `no such file`},
		{"record aarch64 ELF", []string{"record", "-o", filepath.Join(dir, "y.vmrr"), arm}, `not x86`},
		{"record unwritable log", []string{"record", "-o", filepath.Join(dir, "no", "such", "dir.vmrr"), hello}, `no such file or directory`},
		{"missing serial input", []string{"run", "--serial-in", missing, hello}, `serial input: .*no such file`},
		{"unknown mode", []string{"record", "--mode", "slow", hello}, `mode`},
		{"bad tlbsync", []string{"record", "--tlbsync", "maybe", hello}, `tlbsync`},
		{"replay missing log", []string{"replay", filepath.Join(dir, "missing.vmrr")}, `no such file or directory`},
		{"replay missing image", []string{"replay", "--image", missing, good}, `missing\.elf: no such file`},
		{"unknown command", []string{"frob"}, `unknown command "frob"`},
		{"unknown flag", []string{"run", "--bogus", hello}, `bogus`},
		{"bad timeout", []string{"run", "--timeout", "soon", hello}, `timeout`},
		{"no image", []string{"run"}, `image`},
		{"two images", []string{"run", hello, hello}, `image`},
		{"replay without log", []string{"replay"}, `log`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runVMRR(t, tc.args...)
			p := oneLineProblems(r.stderr, regexp.MustCompile(tc.stderr))
			if r.status != exitUsage {
				p = append(p, fmt.Sprintf("status %d, want %d", r.status, exitUsage))
			}
			if r.stdout != "" {
				p = append(p, "output on stdout")
			}
			if len(p) > 0 {
				t.Errorf("%s: %s", strings.Join(p, "; "), r)
			}
		})
	}
}
