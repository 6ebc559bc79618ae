package nondet

import (
	"golang.org/x/arch/x86/x86asm"
	"vmrr/machine/cpu"
)

// Inst is a non-deterministic instruction found in guest code.
type Inst struct {
	Kind   cpu.NonDet
	Len    int
	Reg    int // destination register number 0-15 (RDRAND, RDSEED, RDPID)
	OpSize int // destination size in bits (16, 32, 64)
}

// Name is the instruction's mnemonic.
func (i Inst) Name() string { return i.Kind.String() }

// Match reports whether code (the bytes at an instruction boundary)
// starts with a non-deterministic instruction, for a CPU in the given mode
// (16, 32 or 64 bits). x86asm leaves gaps in the 0f c7 group (RDSEED is
// unrecognised, RDPID decodes as a bare REP, RDRAND r64 has no operand), so
// that group is decoded here.
func Match(code []byte, mode int) (Inst, bool) {
	i := 0
	opsize := 32
	if mode == 16 {
		opsize = 16
	}
	rep := false
	var rex byte
prefixes:
	for ; i < len(code) && i < 15; i++ {
		switch b := code[i]; b {
		case 0x66:
			if mode == 16 {
				opsize = 32
			} else {
				opsize = 16
			}
		case 0xf3:
			rep = true
		case 0xf2, 0xf0, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65:
		default:
			if mode == 64 && b&0xf0 == 0x40 {
				rex = b
				continue
			}
			break prefixes
		}
		if rex != 0 {
			return Inst{}, false // a legacy prefix after REX cancels it; such code is not ours to judge
		}
	}
	if rex&0x08 != 0 {
		opsize = 64
	}
	if i+1 >= len(code) || code[i] != 0x0f {
		return Inst{}, false
	}
	switch op := code[i+1]; {
	case op == 0x31:
		return Inst{Kind: cpu.RDTSC, Len: i + 2}, true
	case op == 0x01 && i+2 < len(code) && code[i+2] == 0xf9:
		return Inst{Kind: cpu.RDTSCP, Len: i + 3}, true
	case op == 0xc7 && i+2 < len(code):
		modrm := code[i+2]
		if modrm>>6 != 3 {
			return Inst{}, false
		}
		reg := int(modrm&7) | int(rex&1)<<3
		switch (modrm >> 3) & 7 {
		case 6:
			if rep {
				return Inst{}, false
			}
			return Inst{Kind: cpu.RDRAND, Len: i + 3, Reg: reg, OpSize: opsize}, true
		case 7:
			if rep {
				size := 32
				if mode == 64 {
					size = 64
				}
				return Inst{Kind: cpu.RDPID, Len: i + 3, Reg: reg, OpSize: size}, true
			}
			return Inst{Kind: cpu.RDSEED, Len: i + 3, Reg: reg, OpSize: opsize}, true
		}
	}
	return Inst{}, false
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
