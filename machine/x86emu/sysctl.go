package x86emu

import (
	"vmrr/machine/cpu"

	"golang.org/x/arch/x86/x86asm"
)

// MSRs x86emu keeps in CPU itself.
const (
	msrTSC          = 0x10
	msrEFER         = 0xc0000080
	msrSTAR         = 0xc0000081
	msrLSTAR        = 0xc0000082
	msrSFMASK       = 0xc0000084
	msrFSBase       = 0xc0000100
	msrGSBase       = 0xc0000101
	msrKernelGSBase = 0xc0000102
	msrTSCAux       = 0xc0000103
)

// rdmsr is EDX:EAX = MSR[ECX].
func (e *emu) rdmsr(in *inst) error {
	if e.cpl() != 0 {
		return gpErr(0)
	}
	c := e.c
	var v uint64
	switch idx := uint32(c.Regs.RCX); idx {
	case msrEFER:
		v = c.Sregs.EFER
	case msrFSBase:
		v = c.Sregs.FS.Base
	case msrGSBase:
		v = c.Sregs.GS.Base
	case msrKernelGSBase:
		v = c.KernelGSBase
	case msrTSCAux:
		v = c.TSCAux
	case msrTSC:
		var err error
		if v, err = e.nonDet(cpu.RDTSC); err != nil {
			return err
		}
	default:
		var ok bool
		var err error
		if v, ok, err = e.env.ReadMSR(idx); err != nil {
			return err
		} else if !ok {
			return gpErr(0)
		}
	}
	e.setGPR(0, 32, v)
	e.setGPR(2, 32, v>>32)
	e.finish(in)
	return nil
}

// wrmsr is MSR[ECX] = EDX:EAX.
func (e *emu) wrmsr(in *inst) error {
	if e.cpl() != 0 {
		return gpErr(0)
	}
	c := e.c
	v := c.Regs.RDX<<32 | c.Regs.RAX&0xffffffff
	switch idx := uint32(c.Regs.RCX); idx {
	case msrEFER:
		if err := e.writeEFER(v); err != nil {
			return err
		}
	case msrFSBase, msrGSBase, msrKernelGSBase:
		if !e.canonical(v) {
			return gpErr(0)
		}
		switch idx {
		case msrFSBase:
			c.Sregs.FS.Base = v
		case msrGSBase:
			c.Sregs.GS.Base = v
		default:
			c.KernelGSBase = v
		}
	case msrTSCAux:
		if v>>32 != 0 {
			return gpErr(0)
		}
		c.TSCAux = v
	default:
		ok, err := e.env.WriteMSR(idx, v)
		if err != nil {
			return err
		}
		if !ok {
			return gpErr(0)
		}
	}
	e.finish(in)
	return nil
}

// writeEFER loads EFER. LMA is the processor's to set (MOV to CR0), so a
// write leaves it as it is; LME cannot change while paging is on.
func (e *emu) writeEFER(v uint64) error {
	c := e.c
	valid := uint64(cpu.EFERLMA)
	for _, b := range [...]struct {
		bit uint64
		f   feat
	}{{cpu.EFERSCE, featSYSCALL}, {cpu.EFERLME, featLM}, {cpu.EFERNXE, featNX}} {
		if v&b.bit != 0 && e.feature(b.f) {
			valid |= b.bit
		}
	}
	old := c.Sregs.EFER
	if v&^valid != 0 || e.paging() && (v^old)&cpu.EFERLME != 0 {
		return gpErr(0)
	}
	c.Sregs.EFER = v&^cpu.EFERLMA | old&cpu.EFERLMA
	if c.Sregs.EFER != old {
		e.env.FlushTLB(FlushAll, 0)
	}
	return nil
}

// CR4 bits beyond those in package cpu.
const (
	cr4DE         = 1 << 3
	cr4UMIP       = 1 << 11
	cr4FSGSBASE   = 1 << 16
	cr4PCIDE      = 1 << 17
	cr4OSXSAVE    = 1 << 18
	cr4SMEP       = 1 << 20
	cr4SMAP       = 1 << 21
	cr4PKE        = 1 << 22
	cr4Base       = 0x7ff // VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT
	cr4TLBBits    = cpu.CR4PGE | cpu.CR4PAE | cpu.CR4PSE | cr4SMEP | cr4SMAP | cr4PKE | cr4PCIDE
	cr0Valid      = cpu.CR0PE | cpu.CR0MP | cpu.CR0EM | cpu.CR0TS | cpu.CR0ET | cpu.CR0NE | cpu.CR0WP | cpu.CR0AM | cpu.CR0NW | cpu.CR0CD | cpu.CR0PG
	dr6Fixed      = 0xffff0ff0 // reserved DR6 bits that read as one
	dr6Writable   = 0xe00f     // B0-B3, BD, BS, BT
	dr7Fixed      = 1 << 10
	dr7Reserved   = 0xd000 // bits 12, 14 and 15 read as zero
	cpuidMaxPhys  = 0x80000008
	defaultMaxPhy = 36
)

// cr4Gated are the CR4 bits a processor accepts only with their feature.
var cr4Gated = [...]struct {
	bit uint64
	f   feat
}{
	{cr4UMIP, feat{7, 0, cpuidECX, 2}},
	{cpu.CR4LA57, feat{7, 0, cpuidECX, 16}},
	{cr4FSGSBASE, feat{7, 0, cpuidEBX, 0}},
	{cr4PCIDE, feat{1, 0, cpuidECX, 17}},
	{cr4OSXSAVE, feat{1, 0, cpuidECX, 26}},
	{cr4SMEP, feat{7, 0, cpuidEBX, 7}},
	{cr4SMAP, feat{7, 0, cpuidEBX, 20}},
	{cr4PKE, feat{7, 0, cpuidECX, 3}},
}

// movSys is MOV to and from segment, control and debug registers.
func (e *emu) movSys(in *inst) error {
	x := &in.x
	dst, src := x.Args[0], x.Args[1]
	if r, ok := dst.(x86asm.Reg); ok && r >= x86asm.ES && r <= x86asm.GS {
		return e.movToSeg(in, r, src)
	}
	if r, ok := src.(x86asm.Reg); ok && r >= x86asm.ES && r <= x86asm.GS {
		if err := e.storeRM(in, dst, uint64(e.seg(segOf(r)).Selector)); err != nil {
			return err
		}
		e.finish(in)
		return nil
	}
	// Control and debug register moves always name two registers.
	if r, ok := dst.(x86asm.Reg); ok && r >= x86asm.CR0 && r <= x86asm.DR15 {
		g, ok := src.(x86asm.Reg)
		gi, _, ok2 := gprOf(g)
		if !ok || !ok2 {
			return e.unsupported(in, "unexpected source operand")
		}
		v := *e.gpr(gi)
		if e.mode != modeLong64 {
			v &= 0xffffffff
		}
		var err error
		if r <= x86asm.CR15 {
			err = e.writeCR(int(r-x86asm.CR0), v)
		} else {
			err = e.writeDR(int(r-x86asm.DR0), v)
		}
		if err != nil {
			return err
		}
		e.finish(in)
		return nil
	}
	r, _ := src.(x86asm.Reg)
	g, ok := dst.(x86asm.Reg)
	gi, bits, ok2 := gprOf(g)
	if !ok || !ok2 {
		return e.unsupported(in, "unexpected destination operand")
	}
	var v uint64
	var err error
	if r <= x86asm.CR15 {
		v, err = e.readCR(int(r - x86asm.CR0))
	} else {
		v, err = e.readDR(int(r - x86asm.DR0))
	}
	if err != nil {
		return err
	}
	e.setGPR(gi, bits, v)
	e.finish(in)
	return nil
}

func (e *emu) readCR(n int) (uint64, error) {
	s := &e.c.Sregs
	var v uint64
	switch n {
	case 0:
		v = s.CR0
	case 2:
		v = s.CR2
	case 3:
		v = s.CR3
	case 4:
		v = s.CR4
	case 8:
		v = s.CR8
	default:
		return 0, &exception{vector: vecUD}
	}
	if e.cpl() != 0 {
		return 0, gpErr(0)
	}
	return v, nil
}

// writeCR loads control register n with the processor's checks (SDM MOV
// to CR, vol. 3 2.5) and flushes what the change invalidates.
func (e *emu) writeCR(n int, v uint64) error {
	switch n {
	case 0, 2, 3, 4, 8:
	default:
		return &exception{vector: vecUD}
	}
	if e.cpl() != 0 {
		return gpErr(0)
	}
	s := &e.c.Sregs
	switch n {
	case 0:
		return e.writeCR0(v)
	case 2:
		s.CR2 = v
	case 3:
		if e.long() && v>>e.maxPhys() != 0 {
			return gpErr(0)
		}
		s.CR3 = v
		e.env.FlushTLB(FlushNonGlobal, 0)
	case 4:
		return e.writeCR4(v)
	case 8:
		if v>>4 != 0 {
			return gpErr(0)
		}
		s.CR8 = v
	}
	return nil
}

// maxPhys is the guest's physical address width; bits of CR3 above it are
// reserved.
func (e *emu) maxPhys() uint {
	a, _, _, _ := e.env.CPUID(cpuidMaxPhys, 0)
	if n := uint(a & 0xff); n != 0 {
		return n
	}
	return defaultMaxPhy
}

func (e *emu) writeCR0(v uint64) error {
	s := &e.c.Sregs
	if v>>32 != 0 {
		return gpErr(0)
	}
	// Reserved bits of the low half are ignored, and ET is hardwired.
	v = v&cr0Valid | cpu.CR0ET
	if v&cpu.CR0NW != 0 && v&cpu.CR0CD == 0 || v&cpu.CR0PG != 0 && v&cpu.CR0PE == 0 {
		return gpErr(0)
	}
	old, efer := s.CR0, s.EFER
	switch {
	case v&cpu.CR0PG != 0 && old&cpu.CR0PG == 0 && efer&cpu.EFERLME != 0:
		// Activating long mode needs PAE paging, and starts in
		// compatibility mode: the next far jump enters 64-bit code.
		if s.CR4&cpu.CR4PAE == 0 || s.CS.L != 0 {
			return gpErr(0)
		}
		efer |= cpu.EFERLMA
	case v&cpu.CR0PG == 0 && old&cpu.CR0PG != 0 && efer&cpu.EFERLMA != 0:
		if e.mode == modeLong64 || s.CR4&cr4PCIDE != 0 {
			return gpErr(0)
		}
		efer &^= cpu.EFERLMA
	}
	s.CR0, s.EFER = v, efer
	if (v^old)&(cpu.CR0PG|cpu.CR0WP) != 0 {
		e.env.FlushTLB(FlushAll, 0)
	}
	e.setMode()
	return nil
}

func (e *emu) writeCR4(v uint64) error {
	s := &e.c.Sregs
	valid := uint64(cr4Base)
	for _, g := range cr4Gated {
		if v&g.bit != 0 && e.feature(g.f) {
			valid |= g.bit
		}
	}
	old := s.CR4
	switch {
	case v&^valid != 0,
		e.long() && (v&cpu.CR4PAE == 0 || (v^old)&cpu.CR4LA57 != 0),
		v&cr4PCIDE != 0 && old&cr4PCIDE == 0 && (!e.long() || s.CR3&0xfff != 0):
		return gpErr(0)
	}
	s.CR4 = v
	if (v^old)&cr4TLBBits != 0 {
		e.env.FlushTLB(FlushAll, 0)
	}
	return nil
}

// drIndex maps DR0-DR7 to DR0-3, 6 and 7: DR4 and DR5 alias DR6 and DR7
// unless CR4.DE makes them #UD, as are DR8-DR15.
func (e *emu) drIndex(n int) (int, error) {
	switch {
	case n > 7, (n == 4 || n == 5) && e.c.Sregs.CR4&cr4DE != 0:
		return 0, &exception{vector: vecUD}
	case n == 4 || n == 5:
		n += 2
	}
	if e.cpl() != 0 {
		return 0, gpErr(0)
	}
	return n, nil
}

func (e *emu) readDR(n int) (uint64, error) {
	n, err := e.drIndex(n)
	if err != nil {
		return 0, err
	}
	d := &e.c.DR
	switch n {
	case 6:
		return d.DR6, nil
	case 7:
		return d.DR7, nil
	}
	return d.DB[n], nil
}

func (e *emu) writeDR(n int, v uint64) error {
	n, err := e.drIndex(n)
	if err != nil {
		return err
	}
	d := &e.c.DR
	switch {
	case n < 4:
		d.DB[n] = v
	case v>>32 != 0:
		return gpErr(0)
	case n == 6:
		d.DR6 = v&dr6Writable | dr6Fixed
	default:
		d.DR7 = v&^dr7Reserved | dr7Fixed
	}
	return nil
}
