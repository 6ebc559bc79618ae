package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// console is what the VM prints for two packages: one passes with a skip,
// one fails a subtest and then hangs until its -test.timeout. Lines end in
// \r\n as on the serial console; one write splits a line.
const console = "\x1bc[    2.1] kvm: Nested Virtualization enabled\r\n" +
	marker + " kernel 6.1.0-48-amd64\r\n" +
	marker + " kvm ready\r\n" +
	marker + " caps begin\r\nhost: Linux 6.1.0-48-amd64\r\n" + marker + " caps end 0\r\n" +
	marker + " begin vmrr/a\r\n" +
	"\x16=== RUN   TestOne\r\n    a_test.go:3: hello\r\n\x16--- PASS: TestOne (0.01s)\r\n\x16=== NAME  \r\n" +
	"\x16=== RUN   TestTwo\r\n    a_test.go:9: needs a PMU\r\n\x16--- SKIP: TestTwo (0.00s)\r\n\x16=== NAME  \r\n" +
	"\x16PASS\r\n" + marker + " end vmrr/a 0\r\n" +
	marker + " begin vmrr/b\r\n" +
	"\x16=== RUN   TestThree\r\n\x16=== RUN   TestThree/sub\r\nraw stderr\r\n    b_test.go:5: bad value\r\n" +
	"\x16--- FAIL: TestThree/sub (0.00s)\r\n\x16=== NAME  TestThree\r\n\x16--- FAIL: TestThree (0.00s)\r\n\x16=== NAME  \r\n" +
	"\x16=== RUN   TestFour\r\nno newline\x16=== PAUSE TestFour\r\n\x16=== CONT  TestFour\r\n" +
	"panic: test timed out after 1m0s\r\n\trunning tests:\r\n\t\tTestFour (1m0s)\r\n" +
	marker + " end vmrr/b 2\r\n" +
	marker + " done\r\n"

func feed(t *testing.T, verbose bool) (*report, string) {
	t.Helper()
	var out bytes.Buffer
	r := newReport(&out, verbose)
	r.now = func() time.Time { return r.start }
	r.expect([]testBinary{{pkgSpec: pkgSpec{importPath: "vmrr/a"}}, {pkgSpec: pkgSpec{importPath: "vmrr/b"}}})
	half := len(console) / 2
	r.Write([]byte(console[:half]))
	r.Write([]byte(console[half:]))
	r.finish(nil)
	r.summary()
	return r, out.String()
}

func TestReport(t *testing.T) {
	r, out := feed(t, false)
	for _, want := range []string{
		"    host: Linux 6.1.0-48-amd64\n",
		"--- PASS: TestOne (0.01s)\n",
		"--- SKIP: TestTwo (0.00s)\n    a_test.go:9: needs a PMU\n",
		"ok  \tvmrr/a\t0.000s\n",
		"    --- FAIL: TestThree/sub (0.00s)\n    raw stderr\n        b_test.go:5: bad value\n",
		"--- FAIL: TestThree (0.00s)\n",
		"--- FAIL: TestFour (did not finish: running for 1m0s when the test binary ended)\nno newline\npanic: test timed out after 1m0s\n",
		"FAIL\tvmrr/b\t0.000s\n",
		"ok  \tvmrr/a\t0.0s\t1 passed, 1 skipped\n",
		"FAIL\tvmrr/b\t0.0s\t0 passed, 2 failed (TestFour, TestThree); exit status 2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q; it is:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hello") || strings.Contains(out, "Nested Virtualization") {
		t.Errorf("a passing test's output or a console line outside the tests was printed:\n%s", out)
	}
	if r.ok() {
		t.Error("ok() with a failed package")
	}
}

func TestReportVerbose(t *testing.T) {
	_, out := feed(t, true)
	if !strings.Contains(out, "    a_test.go:3: hello\n") || strings.Contains(out, "\x16") {
		t.Errorf("verbose report should echo the console without ^V frames:\n%s", out)
	}
	if n := strings.Count(out, "--- PASS: TestOne"); n != 1 {
		t.Errorf("verbose report has %d result lines for TestOne, want 1:\n%s", n, out)
	}
}

// A VM that dies in the middle of a package fails it and the packages after.
func TestReportVMEnded(t *testing.T) {
	var out bytes.Buffer
	r := newReport(&out, false)
	r.expect([]testBinary{{pkgSpec: pkgSpec{importPath: "vmrr/a"}}, {pkgSpec: pkgSpec{importPath: "vmrr/b"}}})
	r.Write([]byte(marker + " kvm ready\n" + marker + " begin vmrr/a\n\x16=== RUN   TestOne\n"))
	r.finish(errors.New("the nested VM did not finish in 1m0s (-timeout): killed"))
	r.summary()
	for _, want := range []string{
		"--- FAIL: TestOne (did not finish)\n",
		"--- the nested VM ended while this package ran: the nested VM did not finish in 1m0s (-timeout): killed\nFAIL\tvmrr/a\t",
		"FAIL\tvmrr/b [not run: the nested VM did not finish in 1m0s (-timeout): killed]\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q; it is:\n%s", want, out.String())
		}
	}
	if r.ok() {
		t.Error("ok() after the VM was killed")
	}
}

func TestCpioEntry(t *testing.T) {
	var b bytes.Buffer
	if err := cpioEntry(&b, "init", 1, 0o100755, 1, 0, []byte("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if !strings.HasPrefix(s, "070701") || len(s)%4 != 0 {
		t.Fatalf("entry %q: want a newc header and 4-byte alignment", s)
	}
	// 110-byte header, "init\0" padded to 116, 10 bytes of data padded to 12.
	if len(s) != 116+12 || s[110:115] != "init\x00" || s[116:126] != "#!/bin/sh\n" {
		t.Errorf("entry %q: bad layout", s)
	}
}

// When a timeout panic lists what was running, parallel subtests still
// waiting for their turn are only counted, and the panic is printed once.
func TestReportWaitingSubtests(t *testing.T) {
	var out bytes.Buffer
	r := newReport(&out, false)
	r.Write([]byte(marker + " kvm ready\n" + marker + " begin vmrr/m\n" +
		"\x16=== RUN   TestM\n\x16=== RUN   TestM/a\n\x16=== PAUSE TestM/a\n\x16=== NAME  TestM\n" +
		"\x16=== RUN   TestM/b\n\x16=== PAUSE TestM/b\n\x16=== NAME  TestM\n\x16=== CONT  TestM/b\n" +
		"\x16=== NAME  TestM/a\npanic: test timed out after 15m0s\n\trunning tests:\n\t\tTestM/b (7m47s)\n\n" +
		marker + " end vmrr/m 2\n" + marker + " done\n"))
	r.finish(nil)
	for _, want := range []string{
		"--- FAIL: TestM (did not finish)\n",
		"    --- FAIL: TestM/b (did not finish: running for 7m47s when the test binary ended)\n",
		"--- FAIL: 1 more tests did not finish: they were waiting to run (TestM/a)\npanic: test timed out after 15m0s\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q; it is:\n%s", want, out.String())
		}
	}
}
