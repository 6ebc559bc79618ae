package x86emu

import (
	"vmrr/machine/cpu"

	"golang.org/x/arch/x86/x86asm"
)

// nearBits is the operand size of a near branch: 64 in 64-bit mode, where
// Intel processors ignore a 66 prefix on it.
func (e *emu) nearBits(in *inst) int {
	if e.mode == modeLong64 {
		return 64
	}
	return in.x.DataSize
}

// stackOpBits is the operand size of PUSH, POP, ENTER and LEAVE: in 64-bit
// mode 64, or 16 with a 66 prefix.
func (e *emu) stackOpBits(in *inst) int {
	if e.mode == modeLong64 && in.x.DataSize != 16 {
		return 64
	}
	return in.x.DataSize
}

// branchTarget truncates a branch target to the operand size and checks
// it: #GP(0) beyond the CS limit, or non-canonical in 64-bit mode.
func (e *emu) branchTarget(t uint64, w int) (uint64, error) {
	t = truncate(t, w)
	if e.mode == modeLong64 {
		if !e.canonical(t) {
			return 0, gpErr(0)
		}
	} else if t > uint64(e.c.Sregs.CS.Limit) {
		return 0, gpErr(0)
	}
	return t, nil
}

func (e *emu) jumpTo(t uint64, w int) error {
	t, err := e.branchTarget(t, w)
	if err != nil {
		return err
	}
	e.c.Regs.RIP = t
	e.c.Regs.RFLAGS &^= cpu.FlagRF
	return nil
}

// relTarget is the target of a relative branch.
func relTarget(in *inst) uint64 {
	rel, _ := in.x.Args[0].(x86asm.Rel)
	return in.next + uint64(int64(rel))
}

func (e *emu) jumpRel(in *inst) error { return e.jumpTo(relTarget(in), e.nearBits(in)) }

// loop is LOOP, LOOPE and LOOPNE: the count register is CX, ECX or RCX by
// the address size.
func (e *emu) loop(in *inst) error {
	aw := in.x.AddrSize
	n := truncate(e.c.Regs.RCX-1, aw)
	e.setGPR(1, aw, n)
	taken := n != 0
	switch in.x.Op {
	case x86asm.LOOPE:
		taken = taken && e.flag(cpu.FlagZF)
	case x86asm.LOOPNE:
		taken = taken && !e.flag(cpu.FlagZF)
	}
	if taken {
		return e.jumpRel(in)
	}
	e.finish(in)
	return nil
}

// nearTarget is the target of a near JMP or CALL: relative, or absolute
// from a register or memory.
func (e *emu) nearTarget(in *inst, w int) (uint64, error) {
	if _, ok := in.x.Args[0].(x86asm.Rel); ok {
		return relTarget(in), nil
	}
	o, err := e.operand(in, 0, w)
	if err != nil {
		return 0, err
	}
	return e.read(&o)
}

func (e *emu) jmpNear(in *inst) error {
	w := e.nearBits(in)
	t, err := e.nearTarget(in, w)
	if err != nil {
		return err
	}
	return e.jumpTo(t, w)
}

func (e *emu) callNear(in *inst) error {
	w := e.nearBits(in)
	t, err := e.nearTarget(in, w)
	if err != nil {
		return err
	}
	if t, err = e.branchTarget(t, w); err != nil {
		return err
	}
	if err := e.push(in.next, w/8); err != nil {
		return err
	}
	e.c.Regs.RIP = t
	e.c.Regs.RFLAGS &^= cpu.FlagRF
	return nil
}

// retNear is RET and RET imm16 (bytes released after the pop).
func (e *emu) retNear(in *inst) error {
	w := e.nearBits(in)
	t, err := e.pop(w / 8)
	if err != nil {
		return err
	}
	if imm, ok := in.x.Args[0].(x86asm.Imm); ok {
		sb := e.stackBits()
		e.setSP(truncate(e.c.Regs.RSP+uint64(imm)&0xffff, sb), sb)
	}
	return e.jumpTo(t, w)
}

func (e *emu) pushOp(in *inst) error {
	w := e.stackOpBits(in)
	o, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	v, err := e.read(&o)
	if err != nil {
		return err
	}
	return e.push(v, w/8)
}

// popOp is POP r/m. An RSP-based memory destination is addressed with RSP
// as it is after the pop, as the SDM says.
func (e *emu) popOp(in *inst) error {
	w := e.stackOpBits(in)
	v, err := e.pop(w / 8)
	if err != nil {
		return err
	}
	o, err := e.operand(in, 0, w)
	if err != nil {
		return err
	}
	return e.write(&o, v)
}

// pusha pushes AX, CX, DX, BX, the original SP, BP, SI and DI (or their
// 32-bit forms); #UD in 64-bit mode.
func (e *emu) pusha(in *inst) error {
	if e.mode == modeLong64 {
		return &exception{vector: vecUD}
	}
	w := in.x.DataSize
	sp := e.c.Regs.RSP
	for i := range 8 {
		v := *e.gpr(i)
		if i == 4 {
			v = sp
		}
		if err := e.push(v, w/8); err != nil {
			return err
		}
	}
	return nil
}

// popa pops DI, SI, BP, (SP, discarded), BX, DX, CX and AX.
func (e *emu) popa(in *inst) error {
	if e.mode == modeLong64 {
		return &exception{vector: vecUD}
	}
	w := in.x.DataSize
	for i := 7; i >= 0; i-- {
		v, err := e.pop(w / 8)
		if err != nil {
			return err
		}
		if i != 4 {
			e.setGPR(i, w, v)
		}
	}
	return nil
}

func flagsBits(op x86asm.Op) int {
	switch op {
	case x86asm.PUSHF, x86asm.POPF:
		return 16
	case x86asm.PUSHFD, x86asm.POPFD:
		return 32
	}
	return 64
}

// pushf pushes RFLAGS with VM and RF clear.
func (e *emu) pushf(in *inst) error {
	return e.push(e.c.Regs.RFLAGS&^(cpu.FlagVM|cpu.FlagRF), flagsBits(in.x.Op)/8)
}

// popfMask is the flags POPF may change at CPL0: every defined flag but
// RF (cleared by any instruction that completes), VM, VIF and VIP.
const popfMask = arithFlags | cpu.FlagTF | cpu.FlagIF | cpu.FlagDF | iopl | cpu.FlagNT |
	cpu.FlagAC | cpu.FlagID

const iopl = 3 << 12

// popf pops RFLAGS. Outside CPL0 IOPL does not change, and IF changes only
// when CPL <= IOPL; a 16-bit pop changes only the low 16 bits.
func (e *emu) popf(in *inst) error {
	w := flagsBits(in.x.Op)
	v, err := e.pop(w / 8)
	if err != nil {
		return err
	}
	mask := uint64(popfMask)
	if w == 16 {
		mask &= 0xffff
	}
	if cpl := e.cpl(); cpl > 0 {
		mask &^= iopl
		if uint64(cpl) > e.c.Regs.RFLAGS>>12&3 {
			mask &^= cpu.FlagIF
		}
	}
	e.setFlags(mask, v)
	return nil
}

// enter makes a stack frame: push rBP, copy level-1 enclosing frame
// pointers, push the new frame pointer, then allocate size bytes.
func (e *emu) enter(in *inst) error {
	w := e.stackOpBits(in)
	size, _ := in.x.Args[0].(x86asm.Imm)
	lv, _ := in.x.Args[1].(x86asm.Imm)
	level := int(lv) & 31
	sb := e.stackBits()
	n := w / 8
	if err := e.push(e.c.Regs.RBP, n); err != nil {
		return err
	}
	frame := truncate(e.c.Regs.RSP, sb)
	if level > 0 {
		bp := e.c.Regs.RBP
		for i := 1; i < level; i++ {
			bp = truncate(bp-uint64(n), sb)
			v, err := e.readMem(segSS, bp, n)
			if err != nil {
				return err
			}
			if err := e.push(v, n); err != nil {
				return err
			}
		}
		if err := e.push(frame, n); err != nil {
			return err
		}
	}
	e.setGPR(5, w, frame)
	e.setSP(truncate(e.c.Regs.RSP-uint64(size)&0xffff, sb), sb)
	return nil
}

// leave is rSP := rBP, then pop rBP.
func (e *emu) leave(in *inst) error {
	sb := e.stackBits()
	e.setSP(truncate(e.c.Regs.RBP, sb), sb)
	w := e.stackOpBits(in)
	v, err := e.pop(w / 8)
	if err != nil {
		return err
	}
	e.setGPR(5, w, v)
	return nil
}
