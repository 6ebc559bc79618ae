//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vmrr/machine"
	"vmrr/machine/probe"
)

// captureStderr runs fn with os.Stderr sent to a file and returns what it
// wrote there.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	defer func() { os.Stderr = saved }()
	fn()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func needKVM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("needs /dev/kvm: %v", err)
	}
}

// TestCaps probes this host through the command once, as text, and prints
// the same report as JSON.
func TestCaps(t *testing.T) {
	needKVM(t)
	saved := probeHost
	defer func() { probeHost = saved }()
	var probed *probe.Report
	probeHost = func(o probe.Options) (*probe.Report, error) {
		r, err := saved(o)
		probed = r
		return r, err
	}
	var text bytes.Buffer
	if st := capsCmd([]string{"--repeat", "20"}, &text); st != 0 {
		t.Fatalf("vmrr caps: status %d", st)
	}
	for _, want := range []string{"MECHANISM", "single-step", "INSTRUCTION", "RDTSCP (nondet)", "real16", "user64", "probed in"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("no %q in\n%s", want, text.String())
		}
	}
	if ok, why, err := probed.Has("PIO exit at CPL0"); !ok || err != nil {
		t.Errorf("PIO exit at CPL0: %v %s %v", ok, why, err)
	}
	probeHost = func(probe.Options) (*probe.Report, error) { return probed, nil }
	var js bytes.Buffer
	if st := capsCmd([]string{"--json"}, &js); st != 0 {
		t.Fatalf("vmrr caps --json: status %d", st)
	}
	var r probe.Report
	if err := json.Unmarshal(js.Bytes(), &r); err != nil {
		t.Fatalf("vmrr caps --json: %v\n%s", err, js.String())
	}
	if !reflect.DeepEqual(&r, probed) {
		t.Errorf("the JSON report differs from the probe's:\n%s", js.String())
	}
}

// TestCapsBadInput checks bad flags and a host without KVM: one line on
// stderr, status 2.
func TestCapsBadInput(t *testing.T) {
	saved := probeHost
	defer func() { probeHost = saved }()
	probeHost = func(probe.Options) (*probe.Report, error) {
		return nil, fmt.Errorf("%w: no such device (is KVM enabled in this kernel or VM?)", machine.ErrNoKVM)
	}
	tests := []struct {
		args []string
		line string // the one line expected on stderr
	}{
		{args: nil, line: "vmrr: /dev/kvm is not available: no such device (is KVM enabled in this kernel or VM?) (--accel auto runs guests on the soft CPU)\n"},
		{args: []string{"--json"}, line: "vmrr: /dev/kvm is not available: no such device (is KVM enabled in this kernel or VM?) (--accel auto runs guests on the soft CPU)\n"},
		{args: []string{"--repeat", "0"}, line: "vmrr: --repeat 0: want at least 1\n"},
		{args: []string{"--bogus"}, line: "vmrr: caps: flag provided but not defined: -bogus (run 'vmrr caps -h' for usage)\n"},
		{args: []string{"extra"}, line: "vmrr: caps takes no arguments (run 'vmrr caps -h' for usage)\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		st := 0
		errText := captureStderr(t, func() { st = capsCmd(tt.args, &out) })
		if st != exitUsage || out.Len() != 0 {
			t.Errorf("%q: status %d, stdout %q", tt.args, st, out.String())
		}
		if errText != tt.line {
			t.Errorf("%q: stderr %q, want %q", tt.args, errText, tt.line)
		}
	}
}
