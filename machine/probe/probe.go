//go:build linux

// Package probe measures what this host's KVM does for vmrr, by running
// tiny generated guests on it: which debugging and trapping mechanisms work
// at CPL0 and at CPL3 and what each use costs, and, per CPU mode, which of
// the instructions that matter to record/replay KVM runs itself, which exit
// to vmrr's emulator (KVM_EXIT_INTERNAL_ERROR) and which run without any
// exit, unseen by vmrr.
//
// Nothing is assumed from the host's name or version: shared/DESIGN.md lists
// what PVM hosts do (KVM emulates all CPL0 code; hardware watchpoints never
// fire; RDTSC never exits), and every such fact is probed here, because a
// real VT-x or AMD-V host differs. `vmrr caps` prints the report; tests call
// Require to skip, naming the reason, where the host lacks what they need.
//
// Each guest is built in memory (a flat real-mode binary, a Multiboot image,
// or an ELF64 image), gets its own GDT, TSS, IDT and user-accessible page
// tables, and reports through ports: a mark port for positions, a fault
// port that every interrupt stub writes its vector to. Instruction probes
// run through the machine's own exit loop, so "exits to vmrr's emulator"
// means vmrr's emulator really ran the instruction; mechanism probes drive
// KVM_RUN directly to see and time each exit as KVM reports it.
package probe

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vmrr/machine/kvm"
)

// Options tune a probe run.
type Options struct {
	// Repeat is how many uses each cost is averaged over; 0 means 200.
	Repeat int
	// Limit bounds the run of each probe guest; 0 means 2 s.
	Limit time.Duration
}

// Report is what Probe found.
type Report struct {
	Kernel string `json:"kernel"`
	// CPL0Emulated reports that KVM's instruction counter counts CPL0 code
	// exactly: KVM emulates every CPL0 instruction in the kernel, as PVM
	// hosts do, and positions can use the exact count.
	CPL0Emulated bool `json:"cpl0_emulated"`
	// Speed is guest instructions per second of a simple loop, by CPL.
	SpeedCPL0    float64     `json:"insn_per_sec_cpl0"`
	SpeedCPL3    float64     `json:"insn_per_sec_cpl3"`
	Mechanisms   []Mechanism `json:"mechanisms"`
	Modes        []Mode      `json:"modes"`
	Instructions []InsnRow   `json:"instructions"`
	// Took is how long probing took.
	Took time.Duration `json:"took_ns"`
}

// Probe runs every probe on this host's KVM. It fails only when KVM cannot
// be used at all (kvm.ErrNoKVM); a mechanism that does not work is a
// finding, reported in the Report.
func Probe(opts Options) (*Report, error) {
	if opts.Repeat <= 0 {
		opts.Repeat = 200
	}
	if opts.Limit <= 0 {
		opts.Limit = 2 * time.Second
	}
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	sys.Close()
	// One thread runs every vCPU, so kicks find it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	r := &Report{Kernel: kernelRelease(), Modes: Modes}
	p := &prober{n: opts.Repeat, limit: opts.Limit}
	r.Mechanisms = p.mechanisms()
	r.SpeedCPL0, r.SpeedCPL3 = p.speed[0], p.speed[3]
	counter, _ := r.Mechanism(MechInsnCounter)
	r.CPL0Emulated = counter.CPL0.Works == Yes
	r.Instructions = probeInsns(p.hasCounter, opts.Limit)
	r.Took = time.Since(start)
	return r, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
}

// Mechanism returns the named mechanism's row.
func (r *Report) Mechanism(name string) (Mechanism, bool) {
	for _, m := range r.Mechanisms {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return Mechanism{}, false
}

// Insn returns one instruction's outcome in one mode.
func (r *Report) Insn(name string, mode Mode) (Cell, bool) {
	for _, row := range r.Instructions {
		if strings.EqualFold(row.Name, name) {
			c, ok := row.Cells[mode]
			return c, ok
		}
	}
	return Cell{}, false
}

// Has answers a capability question in the words Require takes:
//
//	"single-step at CPL0"        a mechanism works at CPL0 (or CPL3);
//	"dirty logging"              the same, at CPL0;
//	"RDTSCP exits to vmrr's emulator in long64"
//	                             an instruction's outcome in a mode (any
//	                             Outcome, e.g. "#UD", "kvm emulates");
//	"CPL0 emulated"              KVM emulates all CPL0 code (Report.CPL0Emulated).
//
// ok=false comes with the reason; err means the question names nothing
// the report knows (a typo in a test should fail it, not skip it).
func (r *Report) Has(capability string) (ok bool, why string, err error) {
	c := strings.TrimSpace(capability)
	if strings.EqualFold(c, "CPL0 emulated") {
		if r.CPL0Emulated {
			return true, "", nil
		}
		return false, "KVM does not emulate all CPL0 code (no exact instruction counter)", nil
	}
	name, level := c, "CPL0"
	if i := strings.LastIndex(c, " at "); i >= 0 {
		name, level = c[:i], strings.ToUpper(c[i+4:])
	}
	if m, found := r.Mechanism(name); found {
		return m.has(level, capability)
	}
	for _, row := range r.Instructions {
		rest, found := cutPrefixFold(c, row.Name+" ")
		if !found {
			continue
		}
		i := strings.LastIndex(rest, " in ")
		if i < 0 {
			return false, "", fmt.Errorf("capability %q: want \"INSN OUTCOME in MODE\"", capability)
		}
		want, ok := parseOutcome(rest[:i])
		if !ok {
			return false, "", fmt.Errorf("capability %q: unknown outcome %q", capability, rest[:i])
		}
		mode := Mode(strings.ToLower(strings.TrimSpace(rest[i+4:])))
		cell, known := row.Cells[mode]
		if !known {
			return false, "", fmt.Errorf("capability %q: unknown mode %q", capability, mode)
		}
		if cell.Outcome == want {
			return true, "", nil
		}
		return false, fmt.Sprintf("%s in %s: %s", row.Name, mode, cellText(cell)), nil
	}
	return false, "", fmt.Errorf("capability %q: no such mechanism or instruction", capability)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func parseOutcome(s string) (Outcome, bool) {
	for _, o := range []Outcome{OutcomeKVM, OutcomeEmulator, OutcomeNative, OutcomeUD, OutcomeFault, OutcomeNA, OutcomeFailed} {
		if strings.EqualFold(strings.TrimSpace(s), string(o)) {
			return o, true
		}
	}
	return "", false
}

var (
	cacheOnce sync.Once
	cached    *Report
	cacheErr  error
)

// Cached probes the host once per process and returns the same report to
// every caller.
func Cached() (*Report, error) {
	cacheOnce.Do(func() { cached, cacheErr = Probe(Options{}) })
	return cached, cacheErr
}

// TB is the part of testing.TB that Require uses (so that this package
// does not import testing).
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Require skips the test, naming the reason, unless the host has the
// capability (see Report.Has for the wording). A host without KVM skips
// too; a capability the report does not know fails the test.
func Require(t TB, capability string) {
	t.Helper()
	r, err := Cached()
	require(t, r, err, capability)
}

func require(t TB, r *Report, err error, capability string) {
	t.Helper()
	if err != nil {
		if errors.Is(err, kvm.ErrNoKVM) {
			t.Skipf("needs %s: %v", capability, err)
			return
		}
		t.Fatalf("probe: %v", err)
		return
	}
	ok, why, err := r.Has(capability)
	if err != nil {
		t.Fatalf("probe.Require: %v", err)
		return
	}
	if !ok {
		t.Skipf("host lacks %s: %s", capability, why)
	}
}

// has answers whether the mechanism works at a level ("CPL0" or "CPL3").
func (m Mechanism) has(level, capability string) (bool, string, error) {
	var l Level
	switch level {
	case "CPL0":
		l = m.CPL0
	case "CPL3":
		l = m.CPL3
	default:
		return false, "", fmt.Errorf("capability %q: level %q, want CPL0 or CPL3", capability, level)
	}
	if l.Works == Yes {
		return true, "", nil
	}
	why := fmt.Sprintf("%s at %s: %s", m.Name, level, l.Works)
	if l.Detail != "" {
		why += " (" + l.Detail + ")"
	}
	return false, why, nil
}
