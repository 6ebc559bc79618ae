package machine

import (
	"vmrr/machine/cpu"
	"vmrr/tlbsync/pagewalk"
)

// Translate maps a guest linear address to a physical one through the
// page tables that sregs point at (identity when paging is off).
func (m *Machine) Translate(s *cpu.Sregs, va uint64) (uint64, error) {
	mode := pagewalk.ModeOf(s.CR0, s.CR4, s.EFER)
	if mode == pagewalk.ModeNone {
		return va & 0xffffffff, nil
	}
	w, err := pagewalk.Translate(m.mem, mode, s.CR3, va, pagewalk.Access{}, pagewalk.FlagsOf(s.CR0, s.CR4, s.EFER))
	if err != nil {
		return 0, err
	}
	return w.Phys, nil
}

// ReadVirtual reads guest memory at a linear address, page by page, and
// returns how many bytes it could read.
func (m *Machine) ReadVirtual(s *cpu.Sregs, va uint64, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		pa, err := m.Translate(s, va+uint64(n))
		if err != nil {
			return n, err
		}
		chunk := min(len(b)-n, int(4096-(va+uint64(n))%4096))
		if err := m.mem.ReadPhys(pa, b[n:n+chunk]); err != nil {
			return n, err
		}
		n += chunk
	}
	return n, nil
}
