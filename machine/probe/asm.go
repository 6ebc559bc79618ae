//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
)

// asm is a tiny x86 encoder for the probe guests: just the handful of
// instructions they use, in the code size of one CPU mode. Probe guests are
// generated at run time, so no assembler is needed to build vmrr.
type asm struct {
	bits int    // 16, 32 or 64
	org  uint64 // guest physical (= linear) address of b[0]
	b    []byte
}

func newAsm(bits int, org uint64) *asm { return &asm{bits: bits, org: org} }

// pc is the address of the next byte.
func (a *asm) pc() uint64 { return a.org + uint64(len(a.b)) }

func (a *asm) raw(b ...byte) *asm { a.b = append(a.b, b...); return a }

func (a *asm) imm16(v uint16) { a.b = binary.LittleEndian.AppendUint16(a.b, v) }
func (a *asm) imm32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

// out writes AL to an 8-bit port.
func (a *asm) out(port byte) *asm { return a.raw(0xe6, port) }

func (a *asm) hlt() *asm { return a.raw(0xf4) }
func (a *asm) nop() *asm { return a.raw(0x90) }

// op32 emits the operand-size prefix 16-bit code needs for a 32-bit operand.
func (a *asm) op32() {
	if a.bits == 16 {
		a.raw(0x66)
	}
}

// movSP loads the stack pointer (SP, ESP or RSP) with an address below 2 GiB.
func (a *asm) movSP(v uint32) *asm {
	switch a.bits {
	case 16:
		a.raw(0xbc)
		a.imm16(uint16(v))
	case 32:
		a.raw(0xbc)
		a.imm32(v)
	default:
		a.raw(0x48, 0xc7, 0xc4) // mov rsp, imm32 (sign-extended)
		a.imm32(v)
	}
	return a
}

// movR32 loads a 32-bit register (0 eax, 1 ecx, 3 ebx, ...) with v.
func (a *asm) movR32(reg byte, v uint32) *asm {
	a.op32()
	a.raw(0xb8 + reg)
	a.imm32(v)
	return a
}

// Register numbers for movR32 and dec.
const (
	regEAX = 0
	regECX = 1
	regEBX = 3
	regESI = 6
)

// dec decrements a 32-bit register (a loop counter).
func (a *asm) dec(reg byte) *asm {
	a.op32()
	return a.raw(0xff, 0xc8+reg)
}

// loop emits `mov ecx, n; top: body; dec ecx; jnz top`.
func (a *asm) loop(n uint32, body func()) *asm {
	return a.loopWith(regECX, n, body)
}

// loopWith is loop with another counter register.
func (a *asm) loopWith(reg byte, n uint32, body func()) *asm {
	a.movR32(reg, n)
	top := a.pc()
	body()
	return a.dec(reg).jnz(top)
}

// jnz jumps back to target (a short jump).
func (a *asm) jnz(target uint64) *asm {
	rel := int64(target) - int64(a.pc()+2)
	if rel < -128 || rel > 127 {
		panic(fmt.Sprintf("probe: jnz to %#x out of range", target))
	}
	return a.raw(0x75, byte(int8(rel)))
}

// jmp jumps to target with a near relative jump of the mode's width.
func (a *asm) jmp(target uint64) *asm {
	if a.bits == 16 {
		a.raw(0xe9)
		a.imm16(uint16(target - (a.pc() + 2)))
		return a
	}
	a.raw(0xe9)
	a.imm32(uint32(target - (a.pc() + 4)))
	return a
}

// pushImm8 pushes a sign-extended byte.
func (a *asm) pushImm8(v byte) *asm { return a.raw(0x6a, v) }

// pushImm32 pushes a 32-bit immediate (sign-extended to 64 bits in long
// mode); in 16-bit code it pushes 16 bits.
func (a *asm) pushImm32(v uint32) *asm {
	a.raw(0x68)
	if a.bits == 16 {
		a.imm16(uint16(v))
	} else {
		a.imm32(v)
	}
	return a
}

// pop0 pops into AX, EAX or RAX.
func (a *asm) pop0() *asm { return a.raw(0x58) }

// store64 writes RAX to an absolute address below 2 GiB (64-bit code only).
func (a *asm) store64(addr uint32) *asm {
	a.raw(0x48, 0x89, 0x04, 0x25)
	a.imm32(addr)
	return a
}

// load64 reads RBX from an absolute address below 2 GiB (64-bit code only).
func (a *asm) load64(addr uint32) *asm {
	a.raw(0x48, 0x8b, 0x1c, 0x25)
	a.imm32(addr)
	return a
}

// movabs loads RAX with a 64-bit immediate (64-bit code only).
func (a *asm) movabs(v uint64) *asm {
	a.raw(0x48, 0xb8)
	a.b = binary.LittleEndian.AppendUint64(a.b, v)
	return a
}

// pad fills with NOPs up to an address.
func (a *asm) pad(to uint64) *asm {
	for a.pc() < to {
		a.nop()
	}
	return a
}
