//go:build linux

package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"vmrr/machine/kvm"
)

// hostReport probes this host once for the tests that need KVM.
func hostReport(t *testing.T) *Report {
	t.Helper()
	r, err := Cached()
	if errors.Is(err, kvm.ErrNoKVM) {
		t.Skipf("needs KVM: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestProbeComplete checks that every probe ran: no mechanism whose probe
// broke, no instruction whose probe failed, every cell filled.
func TestProbeComplete(t *testing.T) {
	r := hostReport(t)
	t.Logf("probed in %v", r.Took)
	valid := map[Support]bool{Yes: true, No: true, NotApplicable: true}
	for _, m := range r.Mechanisms {
		for _, l := range []Level{m.CPL0, m.CPL3} {
			if !valid[l.Works] {
				t.Errorf("%s: %s (%s)", m.Name, l.Works, l.Detail)
			}
			if l.Works == Yes && l.Cost < 0 {
				t.Errorf("%s: negative cost %v", m.Name, l.Cost)
			}
		}
	}
	if len(r.Mechanisms) != 16 {
		t.Errorf("%d mechanisms, want 16", len(r.Mechanisms))
	}
	for _, row := range r.Instructions {
		for _, mode := range Modes {
			c, ok := row.Cells[mode]
			switch {
			case !ok || c.Outcome == "":
				t.Errorf("%s in %s: no outcome", row.Name, mode)
			case c.Outcome == OutcomeFailed:
				t.Errorf("%s in %s: %s", row.Name, mode, c.Detail)
			case c.Outcome == OutcomeEmulator && c.Exits == 0:
				t.Errorf("%s in %s: exits to vmrr's emulator without an exit", row.Name, mode)
			}
		}
	}
}

// TestHostFacts checks the facts shared/DESIGN.md states for this
// project's hosts. Those that hold on any KVM are asserted everywhere; the
// PVM ones only where KVM emulates CPL0 code (elsewhere they are logged).
// Hardware breakpoints fire on PVM and on VT-x/AMD-V hardware, but never in
// the nested KVM of QEMU TCG's emulated SVM (docs/nested-kvm.md); page
// tables in read-only slots work on PVM and fail under AMD nested paging:
// both are PVM facts here.
func TestHostFacts(t *testing.T) {
	r := hostReport(t)
	facts := []struct {
		capability string
		want       bool
		pvmOnly    bool
	}{
		{"single-step at CPL0", true, false},
		{"PIO exit at CPL0", true, false},
		{"PIO exit at CPL3", true, false},
		{"MMIO exit at CPL0", true, false},
		{"HLT exit", true, false},
		{"read-only memslot at CPL0", true, false},
		{"dirty logging at CPL0", true, false},
		{"dirty logging at CPL3", true, false},
		{"immediate_exit", true, false},
		{"kick at CPL0", true, false},
		{"interrupt injection at CPL0", true, false},
		{"RDTSC runs natively without exit in long64", true, false},
		{"RDTSC runs natively without exit in prot32", true, false},
		{"CPUID kvm emulates in long64", true, true},

		{"exact instruction counter at CPL0", true, true},
		{"hardware breakpoint at CPL0", true, true},
		{"read-only page tables at CPL0", true, true},
		{"read-only page tables at CPL3", true, true},
		{"exact instruction counter at CPL3", false, true},
		{"single-step at CPL3", false, true},
		{"hardware breakpoint at CPL3", false, true},
		{"hardware watchpoint at CPL0", false, true},
		{"INT3 intercept at CPL0", false, true},
		{"RDTSC trapping at CPL0", false, true},
		{"MSR filter at CPL0", true, true},
		{"IRETD exits to vmrr's emulator in prot32", true, true},
		{"IRETQ kvm emulates in long64", true, true},
		{"INT n exits to vmrr's emulator in prot32", true, true},
		{"INT n exits to vmrr's emulator in long64", true, true},
		{"POPCNT exits to vmrr's emulator in long64", true, true},
		{"RDTSCP exits to vmrr's emulator in long64", true, true},
		{"RDTSCP exits to vmrr's emulator in prot32", true, true},
		{"RDRAND exits to vmrr's emulator in prot32", true, true},
		{"RDSEED exits to vmrr's emulator in prot32", true, true},
		{"RDRAND runs natively without exit in long64", true, true},
		{"RDSEED runs natively without exit in long64", true, true},
		{"RDPID #UD in long64", true, true},
	}
	for _, f := range facts {
		got, why, err := r.Has(f.capability)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case got == f.want:
		case f.pvmOnly && !r.CPL0Emulated:
			t.Logf("not a PVM-like host: %q is %v (%s)", f.capability, got, why)
		default:
			t.Errorf("%q: %v, want %v (%s)", f.capability, got, f.want, why)
		}
	}
	if r.CPL0Emulated {
		for _, row := range r.Instructions {
			if c := row.Cells[ModeLong64]; row.NonDet && c.Outcome == OutcomeNative && !c.Counted {
				t.Errorf("%s in long64: no exit and not counted, though KVM emulates CPL0 code", row.Name)
			}
		}
	}
}

func testReport() *Report {
	return &Report{
		Kernel:       "Linux test",
		CPL0Emulated: true,
		SpeedCPL0:    2e6,
		SpeedCPL3:    3e9,
		Modes:        Modes,
		Mechanisms: []Mechanism{
			{Name: MechSingleStep, CPL0: Level{Works: Yes, Cost: 5500}, CPL3: Level{Works: No, Detail: "not delivered"}},
			{Name: MechHLTExit, CPL0: Level{Works: Yes, Cost: 12_345_678}, CPL3: Level{Works: NotApplicable}, Note: "no irqchip"},
		},
		Instructions: []InsnRow{
			{Name: "INT n", Cells: map[Mode]Cell{
				ModeReal16: {Outcome: OutcomeKVM, Counted: true},
				ModeProt32: {Outcome: OutcomeEmulator, Exits: 1},
				ModeLong64: {Outcome: OutcomeFault, Detail: "#GP(0x0) raised by KVM"},
				ModeUser64: {Outcome: OutcomeUD, Detail: "#UD raised by KVM"},
			}},
			{Name: "RDRAND", NonDet: true, Cells: map[Mode]Cell{
				ModeReal16: {Outcome: OutcomeUD, Detail: "#UD raised by vmrr's emulator"},
				ModeProt32: {Outcome: OutcomeFailed, Detail: "boom"},
				ModeLong64: {Outcome: OutcomeNative, Counted: true},
				ModeUser64: {Outcome: OutcomeNative},
			}},
		},
	}
}

func TestHas(t *testing.T) {
	r := testReport()
	tests := []struct {
		capability string
		want       bool
		why        string // a part of the reason, when want is false
		bad        bool   // a question the report cannot answer
	}{
		{capability: "single-step at CPL0", want: true},
		{capability: "single-step", want: true},
		{capability: "  Single-Step at cpl0 ", want: true},
		{capability: "single-step at CPL3", why: "single-step at CPL3: no (not delivered)"},
		{capability: "HLT exit at CPL3", why: "n/a"},
		{capability: "INT n exits to vmrr's emulator in prot32", want: true},
		{capability: "INT n exits to vmrr's emulator in user64", why: "INT n in user64: #UD"},
		{capability: "int n #UD in user64", want: true},
		{capability: "INT n fault in long64", want: true},
		{capability: "RDRAND runs natively without exit in long64", want: true},
		{capability: "CPL0 emulated", want: true},
		{capability: "warp drive", bad: true},
		{capability: "", bad: true},
		{capability: "single-step at CPL2", bad: true},
		{capability: "INT n exits to vmrr's emulator in real32", bad: true},
		{capability: "INT n teleports in long64", bad: true},
		{capability: "INT n kvm emulates", bad: true},
	}
	for _, tt := range tests {
		got, why, err := r.Has(tt.capability)
		if tt.bad {
			if err == nil {
				t.Errorf("%q: no error", tt.capability)
			}
			continue
		}
		if err != nil || got != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("%q: %v %q %v, want %v with %q", tt.capability, got, why, err, tt.want, tt.why)
		}
	}
	r.CPL0Emulated = false
	if ok, why, _ := r.Has("CPL0 emulated"); ok || why == "" {
		t.Errorf("CPL0 emulated on a report that says not: %v %q", ok, why)
	}
}

// fakeTB records what Require did.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	r := testReport()
	noKVM := fmt.Errorf("%w: no such device", kvm.ErrNoKVM)
	tests := []struct {
		report     *Report
		err        error
		capability string
		skip, fail string // parts of the messages; "" = must not happen
	}{
		{report: r, capability: "single-step at CPL0"},
		{report: r, capability: "single-step at CPL3", skip: "host lacks single-step at CPL3: single-step at CPL3: no (not delivered)"},
		{report: r, capability: "INT n exits to vmrr's emulator in user64", skip: "#UD"},
		{err: noKVM, capability: "single-step at CPL0", skip: "needs single-step at CPL0: /dev/kvm is not available: no such device"},
		{err: errors.New("boom"), capability: "single-step at CPL0", fail: "boom"},
		{report: r, capability: "warp drive", fail: "no such mechanism or instruction"},
	}
	for _, tt := range tests {
		var f fakeTB
		require(&f, tt.report, tt.err, tt.capability)
		if (tt.skip == "") != (f.skipped == "") || !strings.Contains(f.skipped, tt.skip) {
			t.Errorf("%q: skipped %q, want %q", tt.capability, f.skipped, tt.skip)
		}
		if (tt.fail == "") != (f.failed == "") || !strings.Contains(f.failed, tt.fail) {
			t.Errorf("%q: failed %q, want %q", tt.capability, f.failed, tt.fail)
		}
	}
}

func TestCellText(t *testing.T) {
	tests := []struct {
		c    Cell
		want string
	}{
		{Cell{Outcome: OutcomeKVM}, "kvm"},
		{Cell{Outcome: OutcomeEmulator}, "vmrr-emu"},
		{Cell{Outcome: OutcomeNative}, "native"},
		{Cell{Outcome: OutcomeNative, Counted: true}, "native*"},
		{Cell{Outcome: OutcomeUD, Detail: "#UD raised by KVM"}, "#UD"},
		{Cell{Outcome: OutcomeUD, Detail: "#UD raised by vmrr's emulator"}, "#UD(emu)"},
		{Cell{Outcome: OutcomeUD}, "#UD"},
		{Cell{Outcome: OutcomeFault, Detail: "#GP(0x0) raised by KVM"}, "#GP(0x0)"},
		{Cell{Outcome: OutcomeFault, Detail: "#PF(0x2) raised by vmrr's emulator"}, "#PF(0x2)(emu)"},
		{Cell{Outcome: OutcomeNA}, "-"},
		{Cell{Outcome: OutcomeFailed, Detail: "x"}, "failed"},
	}
	for _, tt := range tests {
		if got := cellText(tt.c); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.c, got, tt.want)
		}
	}
}

// TestWriteText checks the tables' columns line up and failures are named.
func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := WriteText(&b, testReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starting %q in\n%s", prefix, out)
		return ""
	}
	head, step, hlt := find("MECHANISM"), find("single-step "), find("HLT exit ")
	col := strings.Index(head, "CPL0 ")
	if strings.Index(step, "yes") != col || strings.Index(hlt, "yes") != col {
		t.Errorf("CPL0 column not aligned:\n%s\n%s\n%s", head, step, hlt)
	}
	if !strings.Contains(step, "5.50us") || !strings.Contains(hlt, "12.3ms") || !strings.Contains(step, "CPL3: not delivered") {
		t.Errorf("single-step or HLT line: %q %q", step, hlt)
	}
	ihead, intn := find("INSTRUCTION"), find("INT n ")
	if c := strings.Index(ihead, "user64"); strings.Index(intn, "#UD") != c {
		t.Errorf("user64 column not aligned:\n%s\n%s", ihead, intn)
	}
	for _, want := range []string{"RDRAND (nondet)", "#UD(emu)", "vmrr-emu", "probe failed: RDRAND in prot32: boom", "CPL0 code: emulated by KVM", "2.0 M instructions/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

func TestReportJSON(t *testing.T) {
	r := testReport()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, &back) {
		t.Errorf("JSON round trip changed the report:\n%+v\n%+v", r, &back)
	}
	if !strings.Contains(string(b), `"cpl0":{"works":"yes","cost_ns":5500}`) {
		t.Errorf("JSON: %s", b)
	}
}

// FuzzHas checks that no question makes Has panic.
func FuzzHas(f *testing.F) {
	for _, s := range []string{"single-step at CPL3", "INT n #UD in user64", "INT n  in ", " at ", "CPL0 emulated"} {
		f.Add(s)
	}
	r := testReport()
	f.Fuzz(func(t *testing.T, s string) {
		ok, why, err := r.Has(s)
		if ok && (why != "" || err != nil) {
			t.Errorf("%q: ok with reason %q, error %v", s, why, err)
		}
	})
}

// TestReadOnlyPageTables checks that ReadOnlyPageTables, which tlbsync asks
// before it marks page tables, agrees with the report's row, and logs what
// this host does.
func TestReadOnlyPageTables(t *testing.T) {
	r := hostReport(t)
	m, ok := r.Mechanism(MechROPageTables)
	if !ok {
		t.Fatalf("no %q row in the report", MechROPageTables)
	}
	err := ReadOnlyPageTables()
	t.Logf("%s: CPL0 %s %s; CPL3 %s %s; ReadOnlyPageTables: %v", m.Name, m.CPL0.Works, m.CPL0.Detail, m.CPL3.Works, m.CPL3.Detail, err)
	for _, l := range []Level{m.CPL0, m.CPL3} {
		if l.Works == Broken {
			t.Fatalf("the probe did not run: %s", l.Detail)
		}
	}
	if all := m.CPL0.Works == Yes && m.CPL3.Works == Yes; all != (err == nil) {
		t.Fatalf("the report says CPL0 %s, CPL3 %s; ReadOnlyPageTables says %v", m.CPL0.Works, m.CPL3.Works, err)
	}
}
