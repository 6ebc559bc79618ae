package machine

// pic8259 is one 8259A programmable interrupt controller, enough of it for
// what PC guests do: ICW1-4 initialisation, masking, edge-triggered
// requests, fully nested priority, specific and non-specific EOI, auto-EOI,
// and OCW3 register reads.
type pic8259 struct {
	irr, isr, imr uint8
	base          uint8 // vector of IRQ 0 (ICW2)
	initStep      int   // 0 = ready, 1..3 = expecting ICW2..ICW4
	icw4          bool
	autoEOI       bool
	readISR       bool
	single        bool
}

func (p *pic8259) write(port int, v uint8) {
	if port == 0 {
		switch {
		case v&0x10 != 0: // ICW1
			p.initStep, p.icw4, p.single = 1, v&1 != 0, v&2 != 0
			p.imr, p.isr, p.irr = 0, 0, 0
			p.readISR, p.autoEOI = false, false
		case v&0x18 == 0x08: // OCW3
			if v&2 != 0 {
				p.readISR = v&1 != 0
			}
		default: // OCW2
			switch v >> 5 {
			case 1, 5: // non-specific EOI
				p.eoiHighest()
			case 3, 7: // specific EOI
				p.isr &^= 1 << (v & 7)
			}
		}
		return
	}
	switch p.initStep {
	case 1:
		p.base = v & 0xf8
		p.initStep = 2
		if p.single {
			if p.icw4 {
				p.initStep = 3
			} else {
				p.initStep = 0
			}
		}
	case 2:
		if p.icw4 {
			p.initStep = 3
		} else {
			p.initStep = 0
		}
	case 3:
		p.autoEOI = v&2 != 0
		p.initStep = 0
	default:
		p.imr = v
	}
}

func (p *pic8259) read(port int) uint8 {
	if port == 1 {
		return p.imr
	}
	if p.readISR {
		return p.isr
	}
	return p.irr
}

func (p *pic8259) eoiHighest() {
	for i := uint(0); i < 8; i++ {
		if p.isr&(1<<i) != 0 {
			p.isr &^= 1 << i
			return
		}
	}
}

// pending returns the highest-priority unmasked request that is not blocked
// by an in-service interrupt of equal or higher priority.
func (p *pic8259) pending() (int, bool) {
	req := p.irr &^ p.imr
	for i := 0; i < 8; i++ {
		if p.isr&(1<<i) != 0 {
			return 0, false
		}
		if req&(1<<i) != 0 {
			return i, true
		}
	}
	return 0, false
}

func (p *pic8259) ack(irq int) {
	p.irr &^= 1 << irq
	if !p.autoEOI {
		p.isr |= 1 << irq
	}
}

// PIC is the master/slave 8259 pair, the slave cascaded on master IRQ 2.
type PIC struct {
	master, slave pic8259
}

func newPIC() *PIC {
	p := &PIC{}
	p.master.base, p.slave.base = 0x08, 0x70 // BIOS defaults
	p.master.imr, p.slave.imr = 0xff, 0xff
	return p
}

// Raise signals an edge on ISA IRQ line irq (0-15).
func (p *PIC) Raise(irq int) {
	if irq < 8 {
		p.master.irr |= 1 << irq
		return
	}
	p.slave.irr |= 1 << (irq - 8)
}

func (p *PIC) cascade() {
	if _, ok := p.slave.pending(); ok {
		p.master.irr |= 1 << 2
	} else {
		p.master.irr &^= 1 << 2
	}
}

// next finds the request the pair would deliver now: the master's IRQ, and
// the slave's when the master's is the cascade line 2.
func (p *PIC) next() (irq, sirq int, vec uint8, ok bool) {
	p.cascade()
	if irq, ok = p.master.pending(); !ok {
		return 0, 0, 0, false
	}
	if irq != 2 {
		return irq, 0, p.master.base + uint8(irq), true
	}
	if sirq, ok = p.slave.pending(); !ok {
		return 0, 0, 0, false
	}
	return irq, sirq, p.slave.base + uint8(sirq), true
}

// Pending reports the vector the PIC pair would deliver now, if any.
func (p *PIC) Pending() (uint8, bool) {
	_, _, vec, ok := p.next()
	return vec, ok
}

// Acknowledge is the CPU's INTA cycle: the pending vector goes in service.
func (p *PIC) Acknowledge() (uint8, bool) {
	irq, sirq, vec, ok := p.next()
	if !ok {
		return 0, false
	}
	if irq == 2 {
		p.slave.ack(sirq)
	}
	p.master.ack(irq)
	p.cascade()
	return vec, true
}

func (p *PIC) portIn(port uint16) uint8 {
	p.cascade()
	if port >= PortPICSlave {
		return p.slave.read(int(port - PortPICSlave))
	}
	return p.master.read(int(port - PortPICMaster))
}

func (p *PIC) portOut(port uint16, v uint8) {
	if port >= PortPICSlave {
		p.slave.write(int(port-PortPICSlave), v)
		return
	}
	p.master.write(int(port-PortPICMaster), v)
}
