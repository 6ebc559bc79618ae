package machine

import "io"

// UART is a 16550 on COM1: transmit to a writer, receive from bytes the
// input source delivers, interrupts on IRQ 4 for received data and for an
// empty transmitter. FIFOs are 16 bytes deep as on the real part, but the
// receive side keeps every delivered byte rather than drop on overrun, so a
// slow guest loses no recorded input.
type UART struct {
	out    io.Writer
	raise  func(irq int)
	rx     []byte
	ier    uint8
	lcr    uint8
	mcr    uint8
	scr    uint8
	dll    uint8
	dlm    uint8
	fcr    uint8
	thrInt bool // transmitter-empty interrupt pending
	line   bool // interrupt output level
}

func newUART(out io.Writer, raise func(irq int)) *UART {
	return &UART{out: out, raise: raise, dll: 1}
}

// Receive appends bytes that arrived on the line.
func (u *UART) Receive(b []byte) {
	u.rx = append(u.rx, b...)
	u.update()
}

// RXPending is the number of received bytes the guest has not read yet.
func (u *UART) RXPending() int { return len(u.rx) }

func (u *UART) dlab() bool { return u.lcr&0x80 != 0 }

// update raises IRQ 4 on a rising edge of the interrupt output.
func (u *UART) update() {
	// OUT2 gates the interrupt line on real PCs; QEMU ignores it and guests
	// tested there rely on that, so vmrr ignores it too.
	level := (u.ier&1 != 0 && len(u.rx) > 0) || (u.ier&2 != 0 && u.thrInt)
	if level && !u.line {
		u.raise(IRQCOM1)
	}
	u.line = level
}

func (u *UART) portIn(off uint16) uint8 {
	switch off {
	case 0:
		if u.dlab() {
			return u.dll
		}
		if len(u.rx) == 0 {
			return 0
		}
		b := u.rx[0]
		u.rx = u.rx[1:]
		u.update()
		return b
	case 1:
		if u.dlab() {
			return u.dlm
		}
		return u.ier
	case 2:
		iir := uint8(0x01)
		switch {
		case u.ier&1 != 0 && len(u.rx) > 0:
			iir = 0x04
		case u.ier&2 != 0 && u.thrInt:
			iir = 0x02
			u.thrInt = false
			u.update()
		}
		if u.fcr&1 != 0 {
			iir |= 0xc0
		}
		return iir
	case 3:
		return u.lcr
	case 4:
		return u.mcr
	case 5:
		lsr := uint8(0x60) // transmitter holding and shift registers empty
		if len(u.rx) > 0 {
			lsr |= 1
		}
		return lsr
	case 6:
		return 0xb0 // DCD, DSR, CTS
	default:
		return u.scr
	}
}

func (u *UART) portOut(off uint16, v uint8) {
	switch off {
	case 0:
		if u.dlab() {
			u.dll = v
			return
		}
		u.out.Write([]byte{v})
		u.thrInt = false
		u.update()
		u.thrInt = true
		u.update()
	case 1:
		if u.dlab() {
			u.dlm = v
			return
		}
		if v&2 != 0 && u.ier&2 == 0 {
			u.thrInt = true
		}
		u.ier = v & 0x0f
		u.update()
	case 2:
		u.fcr = v
		if v&2 != 0 {
			u.rx = u.rx[:0]
			u.update()
		}
	case 3:
		u.lcr = v
	case 4:
		u.mcr = v
	case 7:
		u.scr = v
	}
}
