package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// report follows the VM's console and prints each test's result as go test
// does: a --- PASS, --- FAIL or --- SKIP line per test (with its output for
// a failure or a skip) and ok or FAIL per package. The test binaries run
// with -test.v=test2json, whose ^V-framed lines say which test each output
// line belongs to.
type report struct {
	w       io.Writer
	verbose bool // echo the whole console, as go test -v
	now     func() time.Time

	partial  []byte
	start    time.Time
	kernel   string
	kvm      string // "ready", "missing" or "" (not seen)
	kvmAt    time.Duration
	done     bool
	inCaps   bool
	caps     []string
	capsCode int
	tail     []string // the last console lines outside packages

	expected []testBinary
	pkgs     []*pkgResult
	cur      *pkgResult
	vmErr    error
}

// pkgResult is one package's run inside.
type pkgResult struct {
	importPath string
	start      time.Time
	dur        time.Duration
	ended      bool
	status     int
	why        string // why it failed without its binary saying so
	tests      map[string]*testResult
	order      []string
	cur        string
	out        []string // output outside any test
	passed     []string
	failed     []string
	skipped    []string
}

type testResult struct {
	name   string
	out    []string
	result string // PASS, FAIL, SKIP or "" while running
}

const (
	tailLines   = 40  // console lines kept to explain a VM that went wrong
	outputLines = 200 // lines of one test's output printed with its result
)

func newReport(w io.Writer, verbose bool) *report {
	return &report{w: w, verbose: verbose, now: time.Now, start: time.Now()}
}

// expect records the packages /init will run, so those it never reaches are
// reported.
func (r *report) expect(tests []testBinary) { r.expected = tests }

// buildFailed reports a package whose test binary did not build.
func (r *report) buildFailed(importPath, output string) {
	p := &pkgResult{importPath: importPath, ended: true, status: -1, why: "[build failed]"}
	r.pkgs = append(r.pkgs, p)
	fmt.Fprintf(r.w, "%s\nFAIL\t%s [build failed]\n", strings.TrimSpace(output), importPath)
}

// Write takes console output from QEMU.
func (r *report) Write(b []byte) (int, error) {
	r.partial = append(r.partial, b...)
	for {
		i := strings.IndexByte(string(r.partial), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(r.partial[:i]), "\r")
		r.partial = r.partial[i+1:]
		r.line(line)
	}
	return len(b), nil
}

// line handles one console line.
func (r *report) line(line string) {
	if i := strings.Index(line, marker); i >= 0 {
		if i > 0 {
			r.line(line[:i])
		}
		r.markerLine(strings.TrimSpace(line[i+len(marker):]))
		return
	}
	if r.verbose {
		fmt.Fprintln(r.w, strings.ReplaceAll(line, "\x16", ""))
	}
	switch {
	case r.inCaps:
		r.caps = append(r.caps, line)
	case r.cur != nil:
		r.cur.line(r, line)
	default:
		r.tail = append(r.tail, line)
		if len(r.tail) > tailLines {
			r.tail = r.tail[1:]
		}
	}
}

func (r *report) markerLine(m string) {
	verb, arg, _ := strings.Cut(m, " ")
	switch verb {
	case "kernel":
		r.kernel = arg
	case "dmesg":
		if !r.verbose {
			fmt.Fprintf(r.w, "nested VM: %s\n", arg)
		}
	case "insmod":
		fmt.Fprintf(r.w, "nested VM: insmod %s\n", arg)
	case "kvm":
		r.kvm, r.kvmAt = arg, r.now().Sub(r.start)
		if arg == "ready" {
			fmt.Fprintf(r.w, "nested VM: /dev/kvm ready %.1fs after QEMU started (kernel %s)\n", r.kvmAt.Seconds(), r.kernel)
		} else {
			fmt.Fprintf(r.w, "nested VM: no /dev/kvm after loading the modules; the console's last lines:\n")
			r.printTail()
		}
	case "caps":
		if arg == "begin" {
			r.inCaps = true
			return
		}
		r.inCaps = false
		r.capsCode, _ = strconv.Atoi(strings.TrimPrefix(arg, "end "))
		if !r.verbose {
			fmt.Fprintf(r.w, "nested VM: vmrr caps (status %d):\n", r.capsCode)
			for _, l := range r.caps {
				fmt.Fprintf(r.w, "    %s\n", l)
			}
		}
	case "begin":
		r.cur = &pkgResult{importPath: arg, start: r.now(), status: -1, tests: map[string]*testResult{}}
		r.pkgs = append(r.pkgs, r.cur)
	case "end":
		if r.cur == nil {
			return
		}
		f := strings.Fields(arg)
		if len(f) == 2 {
			r.cur.status, _ = strconv.Atoi(f[1])
		}
		r.endPackage("")
	case "done":
		r.done = true
	}
}

// endPackage closes the package running now; why says why it was cut
// short, "" when its binary exited.
func (r *report) endPackage(why string) {
	p := r.cur
	r.cur = nil
	p.ended, p.dur, p.why = true, r.now().Sub(p.start), why
	// Tests without a result: those the timeout panic lists as running
	// are reported one by one; parallel subtests still waiting for their
	// turn only in a count, their output (the panic may be there) moving
	// to the package's.
	running := p.running()
	var waiting []string
	for _, name := range p.order {
		t := p.tests[name]
		if t.result != "" {
			continue
		}
		t.result = "FAIL"
		p.failed = append(p.failed, name)
		d, ok := running[name]
		switch {
		case ok:
			r.printResult(t, "did not finish: running for "+d+" when the test binary ended")
		case running != nil && hasRunningSubtest(running, name):
			r.printResult(t, "did not finish")
		case running != nil:
			waiting = append(waiting, name)
			p.out = append(p.out, t.out...)
		default:
			r.printResult(t, "did not finish")
		}
	}
	if len(waiting) > 0 {
		names := strings.Join(waiting[:min(len(waiting), 3)], ", ")
		if len(waiting) > 3 {
			names += ", ..."
		}
		fmt.Fprintf(r.w, "--- FAIL: %d more tests did not finish: they were waiting to run (%s)\n", len(waiting), names)
	}
	bad := p.status != 0 || len(p.failed) > 0
	if bad && len(p.out) > 0 {
		printLines(r.w, "", p.out)
	}
	if why != "" {
		fmt.Fprintf(r.w, "%s\n", why)
	}
	if bad {
		fmt.Fprintf(r.w, "FAIL\t%s\t%.3fs\n", p.importPath, p.dur.Seconds())
	} else {
		fmt.Fprintf(r.w, "ok  \t%s\t%.3fs\n", p.importPath, p.dur.Seconds())
	}
}

// running returns the tests a timeout panic ("panic: test timed out
// after D" then "running tests:") lists, with how long each had run; nil
// when the output has no such list.
func (p *pkgResult) running() map[string]string {
	var m map[string]string
	scan := func(lines []string) {
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "running tests:" {
				continue
			}
			if m == nil {
				m = map[string]string{}
			}
			for i++; i < len(lines) && strings.HasPrefix(lines[i], "\t\t"); i++ {
				name, d, _ := strings.Cut(strings.TrimSpace(lines[i]), " (")
				m[name] = strings.TrimSuffix(d, ")")
			}
		}
	}
	scan(p.out)
	for _, name := range p.order {
		scan(p.tests[name].out)
	}
	return m
}

// hasRunningSubtest says whether running lists a subtest of name.
func hasRunningSubtest(running map[string]string, name string) bool {
	for n := range running {
		if strings.HasPrefix(n, name+"/") {
			return true
		}
	}
	return false
}

// line takes one line of the package's test binary output.
func (p *pkgResult) line(r *report, line string) {
	for {
		i := strings.IndexByte(line, '\x16')
		if i < 0 {
			p.output(line)
			return
		}
		if i > 0 {
			p.output(line[:i])
		}
		line = line[i+1:]
		if j := strings.IndexByte(line, '\x16'); j >= 0 {
			p.frame(r, line[:j])
			line = line[j:]
			continue
		}
		p.frame(r, line)
		return
	}
}

func (p *pkgResult) output(s string) {
	if t := p.tests[p.cur]; t != nil {
		t.out = append(t.out, s)
		return
	}
	if s != "" {
		p.out = append(p.out, s)
	}
}

// frame handles one test2json frame: === RUN, === PAUSE, === CONT,
// === NAME, --- PASS/FAIL/SKIP, and the binary's final PASS or FAIL.
func (p *pkgResult) frame(r *report, f string) {
	switch {
	case strings.HasPrefix(f, "=== RUN"):
		name := strings.TrimSpace(strings.TrimPrefix(f, "=== RUN"))
		if p.tests[name] == nil {
			p.tests[name] = &testResult{name: name}
			p.order = append(p.order, name)
		}
		p.cur = name
	case strings.HasPrefix(f, "=== NAME"), strings.HasPrefix(f, "=== CONT"), strings.HasPrefix(f, "=== PAUSE"):
		_, name, _ := strings.Cut(f[len("=== "):], " ")
		p.cur = strings.TrimSpace(name)
	case strings.HasPrefix(f, "--- PASS: "), strings.HasPrefix(f, "--- FAIL: "), strings.HasPrefix(f, "--- SKIP: "):
		result := f[4:8]
		rest := f[len("--- PASS: "):]
		name, dur := rest, ""
		if i := strings.LastIndex(rest, " ("); i >= 0 {
			name, dur = rest[:i], strings.Trim(rest[i+2:], ")")
		}
		t := p.tests[name]
		if t == nil {
			t = &testResult{name: name}
			p.tests[name] = t
			p.order = append(p.order, name)
		}
		t.result = result
		switch result {
		case "PASS":
			p.passed = append(p.passed, name)
		case "FAIL":
			p.failed = append(p.failed, name)
		case "SKIP":
			p.skipped = append(p.skipped, name)
		}
		r.printResult(t, dur)
	case f == "PASS", f == "FAIL":
	default:
		p.output(f)
	}
}

// printResult prints a test's result line as go test does, indented by its
// depth, with its output when it failed or skipped.
func (r *report) printResult(t *testResult, dur string) {
	if r.verbose && !strings.HasPrefix(dur, "did not finish") {
		return // the console echo has the line already
	}
	indent := strings.Repeat("    ", strings.Count(t.name, "/"))
	fmt.Fprintf(r.w, "%s--- %s: %s (%s)\n", indent, t.result, t.name, dur)
	if t.result != "PASS" && !r.verbose {
		printLines(r.w, indent, t.out)
	}
}

// printLines prints at most outputLines of lines, indented.
func printLines(w io.Writer, indent string, lines []string) {
	for i, l := range lines {
		if i == outputLines {
			fmt.Fprintf(w, "%s    ... %d more lines in the console log\n", indent, len(lines)-i)
			return
		}
		fmt.Fprintf(w, "%s%s\n", indent, l)
	}
}

func (r *report) printTail() {
	for _, l := range r.tail {
		fmt.Fprintf(r.w, "    %s\n", l)
	}
}

// finish is called when QEMU has exited; vmErr says why it ended early, if
// it did.
func (r *report) finish(vmErr error) {
	if len(r.partial) > 0 {
		r.line(strings.TrimRight(string(r.partial), "\r"))
		r.partial = nil
	}
	r.vmErr = vmErr
	why := "the nested VM stopped before /init finished"
	if vmErr != nil {
		why = vmErr.Error()
	}
	if r.cur != nil {
		r.endPackage("--- the nested VM ended while this package ran: " + why)
	}
	ran := map[string]bool{}
	for _, p := range r.pkgs {
		ran[p.importPath] = true
	}
	for _, t := range r.expected {
		if !ran[t.importPath] {
			r.pkgs = append(r.pkgs, &pkgResult{importPath: t.importPath, ended: true, status: -1, why: "[not run]"})
			fmt.Fprintf(r.w, "FAIL\t%s [not run: %s]\n", t.importPath, why)
		}
	}
	if !r.done {
		fmt.Fprintf(r.w, "nested VM: %s; the console's last lines outside the tests:\n", why)
		r.printTail()
	}
}

// ok says whether every package passed in a VM that ran to its end.
func (r *report) ok() bool {
	if !r.done || r.vmErr != nil || r.kvm != "ready" {
		return false
	}
	for _, p := range r.pkgs {
		if p.status != 0 || len(p.failed) > 0 {
			return false
		}
	}
	return true
}

// summary prints one line per package: its verdict and its tests' counts.
func (r *report) summary() {
	for _, p := range r.pkgs {
		verdict := "ok  "
		if p.status != 0 || len(p.failed) > 0 {
			verdict = "FAIL"
		}
		if p.why != "" && !strings.HasPrefix(p.why, "---") {
			fmt.Fprintf(r.w, "%s\t%s\t%s\n", verdict, p.importPath, p.why)
			continue
		}
		counts := fmt.Sprintf("%d passed", len(topLevel(p.passed)))
		if failed := topLevel(p.failed); len(failed) > 0 {
			counts += fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(failed, ", "))
		}
		if n := len(topLevel(p.skipped)); n > 0 {
			counts += fmt.Sprintf(", %d skipped", n)
		}
		if p.status > 0 {
			counts += fmt.Sprintf("; exit status %d", p.status)
		}
		fmt.Fprintf(r.w, "%s\t%s\t%.1fs\t%s\n", verdict, p.importPath, p.dur.Seconds(), counts)
	}
}

// topLevel returns the top-level tests in names (counts in the summary are
// of top-level tests, as in "29 of 30"), sorted.
func topLevel(names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.Contains(n, "/") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
