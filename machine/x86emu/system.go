package x86emu

import (
	"encoding/binary"
	"errors"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// execSystem executes the system and I/O instructions: flags and
// interrupts (CLI, STI, HLT), port I/O, CPUID, MSRs, control and debug
// registers, descriptor tables, segment loads and far transfers, TLB
// invalidation. It reports whether it knows the instruction; when it does,
// it has set RIP.
func (e *emu) execSystem(in *inst) (bool, error) {
	x := &in.x
	switch x.Op {
	case x86asm.MOV:
		if !isSysReg(x.Args[0]) && !isSysReg(x.Args[1]) {
			return false, nil
		}
	case x86asm.PUSH, x86asm.POP:
		if r, ok := x.Args[0].(x86asm.Reg); !ok || r < x86asm.ES || r > x86asm.GS {
			return false, nil
		}
	case x86asm.CLI, x86asm.STI, x86asm.HLT,
		x86asm.IN, x86asm.OUT, x86asm.INSB, x86asm.INSW, x86asm.INSD,
		x86asm.OUTSB, x86asm.OUTSW, x86asm.OUTSD,
		x86asm.CPUID, x86asm.RDMSR, x86asm.WRMSR,
		x86asm.LMSW, x86asm.SMSW, x86asm.CLTS,
		x86asm.LGDT, x86asm.LIDT, x86asm.SGDT, x86asm.SIDT,
		x86asm.LLDT, x86asm.SLDT, x86asm.LTR, x86asm.STR,
		x86asm.LAR, x86asm.LSL, x86asm.VERR, x86asm.VERW,
		x86asm.INVLPG, x86asm.WBINVD, x86asm.INVD,
		x86asm.LDS, x86asm.LES, x86asm.LFS, x86asm.LGS, x86asm.LSS,
		x86asm.LJMP, x86asm.LCALL, x86asm.LRET,
		x86asm.SWAPGS, x86asm.SYSCALL, x86asm.SYSRET:
	default:
		return false, nil
	}
	// None of these accepts LOCK; x86asm does not mark it invalid.
	if hasPrefix(x, x86asm.PrefixLOCK) {
		return true, &exception{vector: vecUD}
	}
	return true, e.system(in)
}

// isSysReg reports a segment, control or debug register operand: the MOV
// forms that are system instructions.
func isSysReg(a x86asm.Arg) bool {
	r, ok := a.(x86asm.Reg)
	return ok && (r >= x86asm.ES && r <= x86asm.GS || r >= x86asm.CR0 && r <= x86asm.DR15)
}

// hasPrefix reports whether the instruction carries legacy prefix p.
func hasPrefix(x *x86asm.Inst, p x86asm.Prefix) bool {
	for _, q := range x.Prefix {
		if q == 0 {
			break
		}
		if q&0xff == p&0xff {
			return true
		}
	}
	return false
}

func (e *emu) system(in *inst) error {
	x := &in.x
	switch x.Op {
	case x86asm.MOV:
		return e.movSys(in)
	case x86asm.PUSH:
		return e.pushSeg(in, segOf(x.Args[0].(x86asm.Reg)))
	case x86asm.POP:
		return e.popSeg(in, segOf(x.Args[0].(x86asm.Reg)))
	case x86asm.CLI, x86asm.STI:
		return e.cliSti(in, x.Op == x86asm.STI)
	case x86asm.HLT:
		if e.cpl() != 0 {
			return gpErr(0)
		}
		e.halted = true
	case x86asm.IN, x86asm.OUT:
		return e.inOut(in)
	case x86asm.INSB, x86asm.INSW, x86asm.INSD, x86asm.OUTSB, x86asm.OUTSW, x86asm.OUTSD:
		return e.stringIO(in)
	case x86asm.CPUID:
		r := &e.c.Regs
		a, b, c, d := e.env.CPUID(uint32(r.RAX), uint32(r.RCX))
		e.setGPR(0, 32, uint64(a))
		e.setGPR(3, 32, uint64(b))
		e.setGPR(1, 32, uint64(c))
		e.setGPR(2, 32, uint64(d))
	case x86asm.RDMSR:
		return e.rdmsr(in)
	case x86asm.WRMSR:
		return e.wrmsr(in)
	case x86asm.LMSW:
		if e.cpl() != 0 {
			return gpErr(0)
		}
		src, err := e.readRM16(in, x.Args[0])
		if err != nil {
			return err
		}
		// LMSW sets PE but cannot clear it.
		e.c.Sregs.CR0 = e.c.Sregs.CR0&^0xe | uint64(src)&0xf
		e.setMode()
	case x86asm.SMSW:
		if err := e.umip(); err != nil {
			return err
		}
		if err := e.storeRM(in, x.Args[0], e.c.Sregs.CR0); err != nil {
			return err
		}
	case x86asm.CLTS:
		if e.cpl() != 0 {
			return gpErr(0)
		}
		e.c.Sregs.CR0 &^= cpu.CR0TS
	case x86asm.LGDT, x86asm.LIDT:
		return e.loadDTR(in, x.Op == x86asm.LIDT)
	case x86asm.SGDT, x86asm.SIDT:
		return e.storeDTR(in, x.Op == x86asm.SIDT)
	case x86asm.LLDT:
		return e.lldt(in)
	case x86asm.LTR:
		return e.ltr(in)
	case x86asm.SLDT, x86asm.STR:
		if e.mode == modeReal {
			return &exception{vector: vecUD}
		}
		if err := e.umip(); err != nil {
			return err
		}
		sel := e.c.Sregs.LDT.Selector
		if x.Op == x86asm.STR {
			sel = e.c.Sregs.TR.Selector
		}
		if err := e.storeRM(in, x.Args[0], uint64(sel)); err != nil {
			return err
		}
	case x86asm.LAR, x86asm.LSL, x86asm.VERR, x86asm.VERW:
		return e.verify(in)
	case x86asm.INVLPG:
		if e.cpl() != 0 {
			return gpErr(0)
		}
		m, ok := x.Args[0].(x86asm.Mem)
		if !ok {
			return &exception{vector: vecUD}
		}
		seg, off, err := e.effAddr(m, x.AddrSize, in.next)
		if err != nil {
			return err
		}
		// No segment checks: INVLPG of an address the guest cannot reach
		// is harmless, and of a non-canonical one a no-op.
		lin := off
		if e.mode != modeLong64 || seg == segFS || seg == segGS {
			lin += e.seg(seg).Base
		}
		e.env.FlushTLB(FlushPage, lin&e.linMask())
	case x86asm.WBINVD, x86asm.INVD:
		// No caches to write back or drop.
		if e.cpl() != 0 {
			return gpErr(0)
		}
	case x86asm.LDS, x86asm.LES, x86asm.LFS, x86asm.LGS, x86asm.LSS:
		return e.loadFarPointer(in)
	case x86asm.LJMP, x86asm.LCALL:
		return e.farJmpCall(in, x.Op == x86asm.LCALL)
	case x86asm.LRET:
		return e.retFar(in)
	case x86asm.SWAPGS:
		if e.mode != modeLong64 {
			return &exception{vector: vecUD}
		}
		if e.cpl() != 0 {
			return gpErr(0)
		}
		s := &e.c.Sregs
		s.GS.Base, e.c.KernelGSBase = e.c.KernelGSBase, s.GS.Base
	case x86asm.SYSCALL:
		return e.syscall(in)
	case x86asm.SYSRET:
		return e.sysret(in)
	}
	e.finish(in)
	return nil
}

// iopl is RFLAGS.IOPL.
func (e *emu) iopl() int { return int(e.c.Regs.RFLAGS>>12) & 3 }

// cr4PVI lets CLI and STI at CPL3 change VIF instead of faulting.
const cr4PVI = 1 << 1

// cliSti clears or sets IF when the CPL may (CPL <= IOPL), or VIF with
// protected-mode virtual interrupts.
func (e *emu) cliSti(in *inst, set bool) error {
	c := e.c
	fl := &c.Regs.RFLAGS
	switch {
	case e.mode == modeReal || e.cpl() <= e.iopl():
		if !set {
			*fl &^= cpu.FlagIF
		} else {
			// Interrupts stay blocked for one more instruction, so that
			// "sti; hlt" cannot miss a wake-up.
			c.Shadow = *fl&cpu.FlagIF == 0
			*fl |= cpu.FlagIF
		}
	case e.cpl() == 3 && c.Sregs.CR4&cr4PVI != 0:
		if !set {
			*fl &^= flagVIF
		} else {
			if *fl&flagVIP != 0 {
				return gpErr(0)
			}
			*fl |= flagVIF
		}
	default:
		return gpErr(0)
	}
	e.finish(in)
	return nil
}

// umip faults SGDT, SIDT, SLDT, SMSW and STR above CPL0 when CR4.UMIP is set.
func (e *emu) umip() error {
	if e.c.Sregs.CR4&cr4UMIP != 0 && e.cpl() > 0 {
		return gpErr(0)
	}
	return nil
}

// CPUID output registers, for feat.
const (
	cpuidEAX = iota
	cpuidEBX
	cpuidECX
	cpuidEDX
)

// feat is a CPUID feature bit: leaf, subleaf, register and bit number.
type feat struct {
	leaf, sub uint32
	reg       int
	bit       uint
}

// Features instructions depend on.
var (
	featRDTSCP  = feat{0x80000001, 0, cpuidEDX, 27}
	featRDRAND  = feat{1, 0, cpuidECX, 30}
	featRDSEED  = feat{7, 0, cpuidEBX, 18}
	featRDPID   = feat{7, 0, cpuidECX, 22}
	featPOPCNT  = feat{1, 0, cpuidECX, 23}
	featLZCNT   = feat{0x80000001, 0, cpuidECX, 5}
	featBMI1    = feat{7, 0, cpuidEBX, 3}
	featCX16    = feat{1, 0, cpuidECX, 13}
	featSYSCALL = feat{0x80000001, 0, cpuidEDX, 11}
	featNX      = feat{0x80000001, 0, cpuidEDX, 20}
	featLM      = feat{0x80000001, 0, cpuidEDX, 29}
)

// feature reports whether the guest's CPUID advertises f: instructions
// whose feature is absent raise #UD, as on a processor without it.
func (e *emu) feature(f feat) bool {
	var r [4]uint32
	r[0], r[1], r[2], r[3] = e.env.CPUID(f.leaf, f.sub)
	return r[f.reg]>>f.bit&1 != 0
}

// segOf maps an x86asm segment register to its number.
func segOf(r x86asm.Reg) segReg { return segReg(r - x86asm.ES) }

// readRM16 reads a 16-bit register or memory source (selectors, the MSW).
func (e *emu) readRM16(in *inst, a x86asm.Arg) (uint16, error) {
	switch a := a.(type) {
	case x86asm.Reg:
		i, _, ok := gprOf(a)
		if !ok {
			return 0, e.unsupported(in, "unexpected source operand")
		}
		return uint16(*e.gpr(i)), nil
	case x86asm.Mem:
		seg, off, err := e.effAddr(a, in.x.AddrSize, in.next)
		if err != nil {
			return 0, err
		}
		v, err := e.readMem(seg, off, 2)
		return uint16(v), err
	}
	return 0, e.unsupported(in, "unexpected source operand")
}

// storeRM stores v in a register at its width (a 32-bit one zero-extended)
// or in 16 bits of memory, as SMSW, SLDT, STR and MOV from Sreg do.
func (e *emu) storeRM(in *inst, a x86asm.Arg, v uint64) error {
	switch a := a.(type) {
	case x86asm.Reg:
		i, bits, ok := gprOf(a)
		if !ok {
			return e.unsupported(in, "unexpected destination operand")
		}
		e.setGPR(i, bits, v)
		return nil
	case x86asm.Mem:
		seg, off, err := e.effAddr(a, in.x.AddrSize, in.next)
		if err != nil {
			return err
		}
		b := e.scratch()
		binary.LittleEndian.PutUint16(b[:], uint16(v))
		return e.writeAt(seg, off, b[:2])
	}
	return e.unsupported(in, "unexpected destination operand")
}

// readAt reads len(b) bytes at r:off with one segment check for the whole
// operand, as the processor checks a descriptor-table pseudo-descriptor or
// a far pointer.
func (e *emu) readAt(r segReg, off uint64, b []byte) error {
	lin, err := e.linear(r, off, len(b), false)
	if err != nil {
		return err
	}
	return e.accessLin(lin, b, false, e.userAccess())
}

// writeAt writes b at r:off.
func (e *emu) writeAt(r segReg, off uint64, b []byte) error {
	lin, err := e.linear(r, off, len(b), true)
	if err != nil {
		return err
	}
	return e.accessLin(lin, b, true, e.userAccess())
}

// memOperand returns the segment and offset of an instruction's memory
// operand; a register operand where memory is required is #UD.
func (e *emu) memOperand(in *inst, a x86asm.Arg) (segReg, uint64, error) {
	m, ok := a.(x86asm.Mem)
	if !ok {
		return 0, 0, &exception{vector: vecUD}
	}
	return e.effAddr(m, in.x.AddrSize, in.next)
}

// Interrupt delivers external interrupt vector to the guest at the current
// RIP, as the processor does between instructions: through the IVT in real
// mode or the IDT otherwise, without the gate DPL check of INT n, with EXT
// set in the error code of a fault while delivering it. Such a fault is
// delivered in turn (#DF, then ErrTripleFault, as for faults of Step). The
// caller has checked RFLAGS.IF and CPU.Shadow. On an error c is unchanged,
// except CR2 when a page fault came first.
func Interrupt(c *CPU, env Env, vector uint8) error {
	st := &struct {
		work CPU
		e    emu
	}{work: *c}
	work, e := &st.work, &st.e
	*e = emu{c: work, env: env, mode: modeOf(c)}
	if e.mode == modeVM86 {
		return &UnsupportedError{Disasm: "interrupt", RIP: c.Regs.RIP, Mode: Mode(c), Why: "virtual-8086 mode"}
	}
	// Leaving HLT or any instruction boundary: the pushed RIP is the next
	// instruction's.
	err := e.deliver(event{vector: vector}, c.Regs.RIP)
	if err == nil {
		work.Regs.RFLAGS |= flagFixed
		work.Shadow = false
		*c = *work
		return nil
	}
	var x *exception
	if !errors.As(err, &x) {
		var u *UnsupportedError
		if errors.As(err, &u) {
			u.RIP, u.Mode = c.Regs.RIP, Mode(c)
		}
		return err
	}
	// An external interrupt is benign: a fault while delivering it is
	// delivered as is, escalating from there.
	_, err = raise(c, env, *x)
	return err
}

// group9Feature is the CPUID feature of each 0f c7 register-form instruction.
var group9Feature = [...]feat{cpu.RDRAND: featRDRAND, cpu.RDSEED: featRDSEED, cpu.RDPID: featRDPID}

// featureGate handles POPCNT, LZCNT, TZCNT and CMPXCHG16B when their CPUID
// feature decides what they do: #UD without POPCNT or CMPXCHG16B; without
// LZCNT or BMI1 the f3 prefix is ignored and the bytes are BSR or BSF, as
// on older processors. done=false leaves the instruction to the caller.
func (e *emu) featureGate(in *inst) (done bool, err error) {
	x := &in.x
	switch x.Op {
	case x86asm.POPCNT:
		if !e.feature(featPOPCNT) {
			return true, &exception{vector: vecUD}
		}
		return false, nil
	case x86asm.CMPXCHG16B:
		if !e.feature(featCX16) {
			return true, &exception{vector: vecUD}
		}
		if ok, err := e.execGeneral(in); ok {
			return true, err
		}
		return true, e.unsupported(in, "")
	case x86asm.LZCNT:
		if e.feature(featLZCNT) {
			return false, nil
		}
		x.Op = x86asm.BSR
	case x86asm.TZCNT:
		if e.feature(featBMI1) {
			return false, nil
		}
		x.Op = x86asm.BSF
	default:
		return false, nil
	}
	// in is this Step's own copy of the decoded instruction.
	if ok, err := e.execGeneral(in); ok {
		return true, err
	}
	return true, e.unsupported(in, "without its CPUID feature it is "+x.Op.String())
}

// invalidIn64 reports one-byte opcodes that 64-bit mode removed (PUSH and
// POP of ES, CS, SS and DS, BCD arithmetic, PUSHA, direct far JMP and
// CALL, ...): x86asm does not decode them, and the processor raises #UD.
func invalidIn64(b []byte) bool {
	for _, c := range b {
		switch {
		case c == 0x66, c == 0x67, c == 0xf0, c == 0xf2, c == 0xf3,
			c == 0x26, c == 0x2e, c == 0x36, c == 0x3e, c == 0x64, c == 0x65,
			c&0xf0 == 0x40:
			continue
		}
		switch c {
		case 0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f,
			0x60, 0x61, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea:
			return true
		}
		return false
	}
	return false
}
