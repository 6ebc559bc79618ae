package x86emu

import "vmrr/machine/cpu"

// RFLAGS bits IRET may load (SDM IRET operation): CF PF AF ZF SF TF DF OF
// NT RF AC ID always; IF only when CPL <= IOPL; IOPL, VIF and VIP only at
// CPL0. VM is never loaded here (a return to virtual-8086 mode is not
// emulated).
const (
	iretAlways = cpu.FlagCF | cpu.FlagPF | cpu.FlagAF | cpu.FlagZF | cpu.FlagSF | cpu.FlagTF |
		cpu.FlagDF | cpu.FlagOF | flagNT | cpu.FlagRF | flagAC | flagID
	flagID   = 1 << 21
	flagIOPL = 3 << 12
	flagVIF  = 1 << 19
	flagVIP  = 1 << 20
	// flagFixed is bit 1 of RFLAGS, which reads as one.
	flagFixed = 1 << 1
)

// iretFlags merges popped flags into RFLAGS with the privilege rules above;
// size is the operand size in bytes.
func (e *emu) iretFlags(popped uint64, size int) {
	mask := uint64(iretAlways)
	cpl := e.cpl()
	iopl := int(e.c.Regs.RFLAGS>>12) & 3
	if cpl <= iopl {
		mask |= cpu.FlagIF
	}
	if cpl == 0 {
		mask |= flagIOPL | flagVIF | flagVIP
	}
	if size == 2 {
		mask &= 0xffff
	}
	e.c.Regs.RFLAGS = e.c.Regs.RFLAGS&^mask | popped&mask | flagFixed
}

// iret returns from an interrupt; size is the operand size in bytes (2 for
// IRET, 4 for IRETD, 8 for IRETQ).
func (e *emu) iret(size int, in *inst) error {
	switch {
	case e.mode == modeReal:
		return e.iretReal(size)
	case e.c.Regs.RFLAGS&flagNT != 0:
		if e.long() {
			return gpErr(0)
		}
		return e.unsupported(in, "IRET with NT=1 (task return)")
	}
	return e.iretProt(size, in)
}

// iretReal pops IP, CS and FLAGS (or EIP, CS, EFLAGS with a 32-bit operand).
func (e *emu) iretReal(size int) error {
	c := e.c
	ip, err := e.pop(size)
	if err != nil {
		return err
	}
	cs, err := e.pop(size)
	if err != nil {
		return err
	}
	fl, err := e.pop(size)
	if err != nil {
		return err
	}
	if ip > uint64(c.Sregs.CS.Limit) {
		return gpErr(0)
	}
	c.Sregs.CS = realSegment(c.Sregs.CS, uint16(cs))
	c.Regs.RIP = ip
	if size == 4 {
		// VM, VIF and VIP keep their values; reserved bits read as zero.
		const loadable = 0x257fd5
		c.Regs.RFLAGS = c.Regs.RFLAGS&^loadable | fl&loadable | flagFixed
	} else {
		const loadable = 0x7fd5
		c.Regs.RFLAGS = c.Regs.RFLAGS&^0xffff | fl&loadable | flagFixed
	}
	return nil
}

// iretProt is IRET in protected mode and in IA-32e mode (SDM IRET,
// "PROTECTED-MODE-RETURN" and "IA-32e-MODE"). In 64-bit mode SS:RSP is
// always popped; elsewhere only on a return to an outer privilege level.
func (e *emu) iretProt(size int, in *inst) error {
	c := e.c
	ip, err := e.pop(size)
	if err != nil {
		return err
	}
	csv, err := e.pop(size)
	if err != nil {
		return err
	}
	fl, err := e.pop(size)
	if err != nil {
		return err
	}
	cs := uint16(csv)
	if !e.long() && size == 4 && fl&cpu.FlagVM != 0 && e.cpl() == 0 {
		return e.unsupported(in, "IRET to virtual-8086 mode")
	}
	d, err := e.returnCS(cs)
	if err != nil {
		return err
	}
	cpl := e.cpl()
	rpl := int(cs & 3)
	outer := rpl > cpl
	from64 := e.mode == modeLong64
	to64 := e.long() && d.l()
	var ssSeg cpu.Segment
	var sp uint64
	if outer || from64 {
		if sp, err = e.pop(size); err != nil {
			return err
		}
		ssv, err := e.pop(size)
		if err != nil {
			return err
		}
		ss := uint16(ssv)
		var sd desc
		ssSeg, sd, err = e.returnSS(ss, rpl, to64 && rpl != 3)
		if err != nil {
			return err
		}
		if ss&^3 != 0 {
			if err := e.markAccessed(ss, &sd); err != nil {
				return err
			}
			ssSeg = sd.segment(ss)
		}
	}
	if size == 2 {
		ip &= 0xffff
	}
	if to64 {
		if !e.canonical(ip) {
			return gpErr(0)
		}
	} else if ip > uint64(d.limit()) {
		return gpErr(0)
	}
	if err := e.markAccessed(cs, &d); err != nil {
		return err
	}
	// Flags first: their rules depend on the CPL the IRET ran at.
	e.iretFlags(fl, size)
	c.Sregs.CS = d.segment(cs)
	c.Regs.RIP = ip
	if outer || from64 {
		c.Sregs.SS = ssSeg
		if size == 2 {
			sp &= 0xffff
		}
		c.Regs.RSP = sp
	}
	e.setMode()
	if outer {
		// Data segment registers the new, less privileged code may not use
		// are nulled (SDM IRET, "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
		for _, r := range [...]segReg{segES, segDS, segFS, segGS} {
			s := e.seg(r)
			dataOrNC := s.Typ&8 == 0 || s.Typ&4 == 0
			if s.Unusable == 0 && dataOrNC && int(s.DPL) < rpl {
				base := s.Base
				*s = nullSegment(0)
				if e.long() && (r == segFS || r == segGS) {
					s.Base = base // 64-bit FS/GS bases live in MSRs
				}
			}
		}
	}
	return nil
}
