package x86emu

import (
	"encoding/binary"
	"errors"

	"vmrr/machine/cpu"
)

// Exception vectors.
const (
	vecDE = 0
	vecDB = 1
	vecBP = 3
	vecOF = 4
	vecUD = 6
	vecDF = 8
	vecTS = 10
	vecNP = 11
	vecSS = 12
	vecGP = 13
	vecPF = 14
)

// exception is an x86 exception raised by the instruction or by delivering
// an event. It travels up to Step as an error.
type exception struct {
	vector  uint8
	code    uint32
	hasCode bool
	addr    uint64 // the faulting linear address, for CR2, of a #PF
}

func (x *exception) Error() string {
	f := Fault{Vector: x.vector, ErrorCode: x.code, HasErrorCode: x.hasCode}
	return "x86emu: " + f.String()
}

// class is the exception's class for double-fault detection (SDM vol. 3,
// table 6-5).
type class int

const (
	benign class = iota
	contributory
	pageFault
	doubleFault
)

func classOf(v uint8) class {
	switch v {
	case vecDE, vecTS, vecNP, vecSS, vecGP:
		return contributory
	case vecPF:
		return pageFault
	case vecDF:
		return doubleFault
	}
	return benign
}

// event is something delivered through the IDT.
type event struct {
	vector  uint8
	code    uint32
	hasCode bool
	// soft marks INT n, INT3 and INTO: the gate's DPL must allow the CPL,
	// and faults while delivering them are the instruction's own (EXT=0).
	soft bool
	// fault marks a fault-class exception: the saved RFLAGS has RF set so
	// that the retried instruction does not hit an instruction breakpoint.
	fault bool
}

// ext is the EXT bit of error codes raised while delivering ev.
func (ev *event) ext() uint32 {
	if ev.soft {
		return 0
	}
	return 1
}

// raise delivers exception x, raised by the instruction at cpu's RIP, to
// the guest, escalating to #DF and then to a triple fault as the processor
// does when delivery itself faults.
func raise(cpu *CPU, env Env, x exception) (*Fault, error) {
	for range 8 {
		if x.vector == vecPF {
			cpu.Sregs.CR2 = x.addr
		}
		work := *cpu
		e := emu{c: &work, env: env, mode: modeOf(cpu)}
		ev := event{vector: x.vector, code: x.code, hasCode: x.hasCode, fault: x.vector != vecDB}
		err := e.deliver(ev, cpu.Regs.RIP)
		if err == nil {
			work.Regs.RFLAGS |= flagFixed
			work.Shadow = false
			*cpu = work
			if e.mode == modeReal {
				// Real mode pushes no error codes.
				x.code, x.hasCode = 0, false
			}
			return &Fault{Vector: x.vector, ErrorCode: x.code, HasErrorCode: x.hasCode}, nil
		}
		var next *exception
		if !errors.As(err, &next) {
			return nil, err
		}
		if next.vector == vecPF {
			cpu.Sregs.CR2 = next.addr
		}
		first, second := classOf(x.vector), classOf(next.vector)
		switch {
		case first == doubleFault:
			return nil, ErrTripleFault
		case first == contributory && second == contributory,
			first == pageFault && second != benign:
			x = exception{vector: vecDF, hasCode: true}
		default:
			x = *next
		}
	}
	return nil, ErrTripleFault
}

// deliver calls the handler of ev; ret is the RIP the handler returns to.
func (e *emu) deliver(ev event, ret uint64) error {
	switch {
	case e.mode == modeReal:
		return e.deliverReal(ev, ret)
	case e.long():
		return e.deliverLong(ev, ret)
	case e.mode == modeVM86:
		return &UnsupportedError{Disasm: "delivery of " + cpu.ExceptionName(ev.vector), Why: "interrupt in virtual-8086 mode"}
	}
	return e.deliverProt(ev, ret)
}

// Flags an event's delivery clears.
const (
	flagNT = 1 << 14
	flagAC = 1 << 18
)

// deliverReal goes through the real-mode IVT: 4-byte far pointers at the
// IDTR base; FLAGS, CS and IP pushed as words, no error code.
func (e *emu) deliverReal(ev event, ret uint64) error {
	c := e.c
	v := uint64(ev.vector)
	if v*4+3 > uint64(c.Sregs.IDT.Limit) {
		return gpErr(0)
	}
	b := e.scratch()
	if err := e.readSys(c.Sregs.IDT.Base+v*4, b[:4]); err != nil {
		return err
	}
	off, sel := binary.LittleEndian.Uint16(b[:]), binary.LittleEndian.Uint16(b[2:])
	fl := c.Regs.RFLAGS
	if ev.fault {
		fl |= cpu.FlagRF
	}
	for _, w := range [...]uint64{fl, uint64(c.Sregs.CS.Selector), ret} {
		if err := e.push(w, 2); err != nil {
			return err
		}
	}
	c.Sregs.CS = realSegment(c.Sregs.CS, sel)
	c.Regs.RIP = uint64(off)
	c.Regs.RFLAGS &^= cpu.FlagIF | cpu.FlagTF | flagAC | cpu.FlagRF
	return nil
}

// gate is a decoded IDT gate.
type gate struct {
	typ     uint8
	dpl     int
	present bool
	sel     uint16
	off     uint64
	ist     int
}

// readGate reads and checks ev's gate: past the limit, of a wrong type, too
// privileged for INT n, or not present.
func (e *emu) readGate(ev *event, size uint64) (gate, error) {
	c := e.c
	v := uint64(ev.vector)
	idtCode := uint32(v*8+2) | ev.ext()
	if v*size+size-1 > uint64(c.Sregs.IDT.Limit) {
		return gate{}, gpErr(idtCode)
	}
	b := e.scratch()
	if err := e.readSys(c.Sregs.IDT.Base+v*size, b[:size]); err != nil {
		return gate{}, err
	}
	lo, hi := binary.LittleEndian.Uint32(b[:]), binary.LittleEndian.Uint32(b[4:])
	g := gate{
		typ:     uint8(hi>>8) & 0x1f, // with the S bit, which gates have clear
		dpl:     int(hi>>13) & 3,
		present: hi&(1<<15) != 0,
		sel:     uint16(lo >> 16),
		off:     uint64(lo&0xffff | hi&0xffff0000),
		ist:     int(hi & 7),
	}
	if size == 16 {
		g.off |= uint64(binary.LittleEndian.Uint32(b[8:])) << 32
	} else {
		g.ist = 0
		if g.typ == 0x6 || g.typ == 0x7 {
			g.off &= 0xffff
		}
	}
	switch {
	case g.typ == 0x5 && size == 8:
		if ev.soft && g.dpl < e.cpl() {
			return g, gpErr(idtCode)
		}
		return g, &UnsupportedError{Disasm: "delivery of " + cpu.ExceptionName(ev.vector), Why: "task gate in the IDT"}
	case size == 8 && g.typ != 0x6 && g.typ != 0x7 && g.typ != 0xe && g.typ != 0xf,
		size == 16 && g.typ != 0xe && g.typ != 0xf,
		ev.soft && g.dpl < e.cpl():
		return g, gpErr(idtCode)
	case !g.present:
		return g, npErr(idtCode)
	}
	return g, nil
}

// gateCS checks the gate's code segment and returns its descriptor.
func (e *emu) gateCS(ev *event, g *gate) (desc, error) {
	ext := ev.ext()
	if g.sel&^3 == 0 {
		return desc{}, gpErr(ext)
	}
	d, ok, err := e.readDesc(g.sel)
	if err != nil {
		return d, err
	}
	if !ok || !d.code() || d.dpl() > e.cpl() || e.long() && (!d.l() || d.db()) {
		return d, gpErr(selCode(g.sel, ext))
	}
	if !d.present() {
		return d, npErr(selCode(g.sel, ext))
	}
	return d, nil
}

// tssRead reads a size-byte field at off in the current TSS, or raises
// #TS(TR) when the field lies past the TSS limit.
func (e *emu) tssRead(off uint64, size int, ext uint32) (uint64, error) {
	tr := &e.c.Sregs.TR
	if tr.Unusable != 0 || tr.Present == 0 || off+uint64(size)-1 > uint64(tr.Limit) {
		return 0, tsErr(selCode(tr.Selector, ext))
	}
	b := e.scratch()
	if err := e.readSys(tr.Base+off, b[:size]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// stackSegFault rewrites the #SS(0) of a push during delivery to the code
// the SDM gives: #SS(EXT), or #SS(new SS | EXT) after a stack switch.
func stackSegFault(err error, code uint32) error {
	var x *exception
	if errors.As(err, &x) && x.vector == vecSS {
		return ssErr(code)
	}
	return err
}

// deliverProt goes through a 32-bit protected-mode IDT of 8-byte gates:
// 16- and 32-bit interrupt and trap gates, with a stack switch through the
// TSS when the handler is more privileged.
func (e *emu) deliverProt(ev event, ret uint64) error {
	c := e.c
	g, err := e.readGate(&ev, 8)
	if err != nil {
		return err
	}
	d, err := e.gateCS(&ev, &g)
	if err != nil {
		return err
	}
	ext := ev.ext()
	size := 4
	if g.typ&8 == 0 {
		size = 2
	}
	cpl := e.cpl()
	newCPL := cpl
	if !d.conforming() && d.dpl() < cpl {
		newCPL = d.dpl()
	}
	if g.off > uint64(d.limit()) {
		return gpErr(ext)
	}
	oldSS, oldSP := c.Sregs.SS.Selector, c.Regs.RSP
	oldCS := c.Sregs.CS.Selector
	ssCode := ext
	if newCPL < cpl {
		// Inner stack from the TSS: 32-bit TSS (types 9, 11) has ESPn at
		// 4+8n and SSn at 8+8n, the 16-bit one SPn at 2+4n and SSn at 4+4n.
		var spOff, ssOff uint64
		spSize := 4
		if c.Sregs.TR.Typ&8 != 0 {
			spOff, ssOff = uint64(4+8*newCPL), uint64(8+8*newCPL)
		} else {
			spOff, ssOff, spSize = uint64(2+4*newCPL), uint64(4+4*newCPL), 2
		}
		sp, err := e.tssRead(spOff, spSize, ext)
		if err != nil {
			return err
		}
		ssv, err := e.tssRead(ssOff, 2, ext)
		if err != nil {
			return err
		}
		ss := uint16(ssv)
		if ss&^3 == 0 {
			return tsErr(ext)
		}
		sd, ok, err := e.readDesc(ss)
		if err != nil {
			return err
		}
		if !ok || int(ss&3) != newCPL || sd.dpl() != newCPL || !sd.writableData() {
			return tsErr(selCode(ss, ext))
		}
		if !sd.present() {
			return ssErr(selCode(ss, ext))
		}
		if err := e.markAccessed(ss, &sd); err != nil {
			return err
		}
		c.Sregs.SS = sd.segment(ss)
		c.Regs.RSP = sp
		ssCode = selCode(ss, ext)
		for _, w := range [...]uint64{uint64(oldSS), oldSP} {
			if err := e.push(w, size); err != nil {
				return stackSegFault(err, ssCode)
			}
		}
	}
	fl := c.Regs.RFLAGS
	if ev.fault {
		fl |= cpu.FlagRF
	}
	for _, w := range [...]uint64{fl, uint64(oldCS), ret} {
		if err := e.push(w, size); err != nil {
			return stackSegFault(err, ssCode)
		}
	}
	if ev.hasCode {
		if err := e.push(uint64(ev.code), size); err != nil {
			return stackSegFault(err, ssCode)
		}
	}
	if err := e.markAccessed(g.sel, &d); err != nil {
		return err
	}
	sel := g.sel&^3 | uint16(newCPL)
	c.Sregs.CS = d.segment(sel)
	c.Regs.RIP = g.off
	c.Regs.RFLAGS &^= cpu.FlagTF | flagNT | cpu.FlagRF | cpu.FlagVM
	if g.typ&1 == 0 {
		c.Regs.RFLAGS &^= cpu.FlagIF
	}
	e.setMode()
	return nil
}

// deliverLong goes through a long-mode IDT of 16-byte gates: the handler
// runs in 64-bit mode on a 16-byte aligned stack (from the TSS when the
// privilege changes or the gate names an IST slot), and SS:RSP is always
// pushed.
func (e *emu) deliverLong(ev event, ret uint64) error {
	c := e.c
	g, err := e.readGate(&ev, 16)
	if err != nil {
		return err
	}
	d, err := e.gateCS(&ev, &g)
	if err != nil {
		return err
	}
	ext := ev.ext()
	cpl := e.cpl()
	newCPL := cpl
	if !d.conforming() && d.dpl() < cpl {
		newCPL = d.dpl()
	}
	rsp := c.Regs.RSP
	if e.mode != modeLong64 {
		rsp = truncate(rsp, e.stackBits())
	}
	switch {
	case g.ist != 0:
		rsp, err = e.tssRead(uint64(0x24+8*(g.ist-1)), 8, ext)
	case newCPL < cpl:
		rsp, err = e.tssRead(uint64(4+8*newCPL), 8, ext)
	}
	if err != nil {
		return err
	}
	if !e.canonical(rsp) {
		return ssErr(ext)
	}
	if !e.canonical(g.off) {
		return gpErr(ext)
	}
	oldSS, oldSP := c.Sregs.SS.Selector, c.Regs.RSP
	oldCS := c.Sregs.CS.Selector
	if err := e.markAccessed(g.sel, &d); err != nil {
		return err
	}
	// Switch to the handler's CS first: the pushes are 64-bit ones.
	c.Sregs.CS = d.segment(g.sel&^3 | uint16(newCPL))
	if newCPL < cpl {
		c.Sregs.SS = flatNullSS(newCPL)
	}
	e.setMode()
	c.Regs.RSP = rsp &^ 0xf
	fl := c.Regs.RFLAGS
	if ev.fault {
		fl |= cpu.FlagRF
	}
	for _, w := range [...]uint64{uint64(oldSS), oldSP, fl, uint64(oldCS), ret} {
		if err := e.push(w, 8); err != nil {
			return stackSegFault(err, ext)
		}
	}
	if ev.hasCode {
		if err := e.push(uint64(ev.code), 8); err != nil {
			return stackSegFault(err, ext)
		}
	}
	c.Regs.RIP = g.off
	c.Regs.RFLAGS &^= cpu.FlagTF | flagNT | cpu.FlagRF | cpu.FlagVM
	if g.typ&1 == 0 {
		c.Regs.RFLAGS &^= cpu.FlagIF
	}
	return nil
}
