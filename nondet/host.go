// Package nondet is vmrr's catalogue of non-deterministic instructions:
// which they are, how to find them in guest code (x86asm), how to trap them
// (single-step, patching, or the emulator's exits), and the in-guest ring
// through which every value passes.
package nondet

import (
	"errors"

	"vmrr/machine/cpu"
)

// ErrNoEntropy is returned when the host's RDRAND/RDSEED keep failing.
var ErrNoEntropy = errors.New("nondet: host RDRAND/RDSEED returned no value 100 times")

// Host executes a non-deterministic instruction on the host and returns
// its value: what a live run or a recording gives the guest.
func Host(kind cpu.NonDet) (uint64, error) {
	switch kind {
	case cpu.RDTSC, cpu.RDTSCP:
		return hostRDTSC(), nil
	case cpu.RDRAND, cpu.RDSEED:
		for i := 0; i < 100; i++ {
			var v uint64
			var ok bool
			if kind == cpu.RDRAND {
				v, ok = hostRDRAND()
			} else {
				v, ok = hostRDSEED()
			}
			if ok {
				return v, nil
			}
		}
		return 0, ErrNoEntropy
	}
	return 0, errors.New("nondet: unknown instruction kind")
}
