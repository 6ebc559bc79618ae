package nondet

import (
	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// Inst is a non-deterministic instruction found in guest code.
type Inst = cpu.NonDetInst

// Match reports whether code (the bytes at an instruction boundary)
// starts with a non-deterministic instruction, for a CPU in the given mode
// (16, 32 or 64 bits); cpu.DecodeNonDet decodes it.
func Match(code []byte, mode int) (Inst, bool) {
	in, d := cpu.DecodeNonDet(code, mode)
	return in, d == cpu.Decoded
}

// Scan finds the non-deterministic instructions in a run of code by a
// linear sweep with x86asm, calling fn with each one's offset. Bytes that do
// not decode are stepped over one at a time.
func Scan(code []byte, mode int, fn func(off int, in Inst)) {
	for off := 0; off < len(code); {
		if in, ok := Match(code[off:], mode); ok {
			fn(off, in)
			off += in.Len
			continue
		}
		inst, err := x86asm.Decode(code[off:], mode)
		if err != nil || inst.Op == 0 || inst.Len == 0 {
			off++
			continue
		}
		off += inst.Len
	}
}
