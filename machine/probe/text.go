//go:build linux

package probe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the report as aligned tables.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "host: %s\n", r.Kernel)
	if r.CPL0Emulated {
		fmt.Fprintf(&b, "CPL0 code: emulated by KVM, exact instruction counter, %s\n", speed(r.SpeedCPL0))
	} else {
		fmt.Fprintf(&b, "CPL0 code: %s\n", speed(r.SpeedCPL0))
	}
	fmt.Fprintf(&b, "CPL3 code: %s\n\n", speed(r.SpeedCPL3))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MECHANISM\tCPL0\tCOST\tCPL3\tCOST\tNOTES")
	for _, m := range r.Mechanisms {
		var notes []string
		if m.CPL0.Detail != "" {
			notes = append(notes, "CPL0: "+m.CPL0.Detail)
		}
		if m.CPL3.Detail != "" {
			notes = append(notes, "CPL3: "+m.CPL3.Detail)
		}
		if m.Note != "" {
			notes = append(notes, m.Note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.CPL0.Works, cost(m.CPL0.Cost), m.CPL3.Works, cost(m.CPL3.Cost), strings.Join(notes, "; "))
	}
	tw.Flush()

	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "INSTRUCTION")
	for _, mode := range r.Modes {
		fmt.Fprintf(tw, "\t%s", mode)
	}
	fmt.Fprintln(tw)
	var failures []string
	for _, row := range r.Instructions {
		name := row.Name
		if row.NonDet {
			name += " (nondet)"
		}
		fmt.Fprint(tw, name)
		for _, mode := range r.Modes {
			c := row.Cells[mode]
			fmt.Fprintf(tw, "\t%s", cellText(c))
			if c.Outcome == OutcomeFailed {
				failures = append(failures, fmt.Sprintf("%s in %s: %s", row.Name, mode, c.Detail))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	b.WriteString(`
kvm       KVM runs it in the kernel (counted by its instruction counter), no exit
vmrr-emu  exits to vmrr's emulator (KVM_EXIT_INTERNAL_ERROR): vmrr sees it
native    runs without any exit, unseen by vmrr: a nondet one must be patched
          or stepped (native* = KVM's in-kernel emulator ran it)
#UD(emu)  vmrr's emulator raised the exception; without (emu), KVM did
`)
	for _, f := range failures {
		fmt.Fprintf(&b, "probe failed: %s\n", f)
	}
	fmt.Fprintf(&b, "\nprobed in %s\n", r.Took.Round(time.Millisecond))
	_, err := io.WriteString(w, b.String())
	return err
}

// cellText is the short form of a cell for the table.
func cellText(c Cell) string {
	switch c.Outcome {
	case OutcomeKVM:
		return "kvm"
	case OutcomeEmulator:
		return "vmrr-emu"
	case OutcomeNative:
		if c.Counted {
			return "native*"
		}
		return "native"
	case OutcomeUD, OutcomeFault:
		name, by, _ := strings.Cut(c.Detail, " raised by ")
		if name == "" {
			name = string(c.Outcome)
		}
		if by == "vmrr's emulator" {
			return name + "(emu)"
		}
		return name
	case OutcomeNA:
		return "-"
	case OutcomeFailed:
		return "failed"
	}
	return string(c.Outcome)
}

// cost formats a per-use time.
func cost(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2fus", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fus", float64(d)/1e3)
	}
	return fmt.Sprintf("%.1fms", float64(d)/1e6)
}

func speed(perSec float64) string {
	if perSec <= 0 {
		return "speed not measured"
	}
	return fmt.Sprintf("%.1f M instructions/s", perSec/1e6)
}
