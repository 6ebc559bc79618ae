package machine

import (
	"fmt"
	"testing"
)

// picOp is one step of a PIC scenario: a port access, an IRQ edge, or a
// check of what the pair would deliver.
type picOp struct {
	name string
	do   func(p *PIC) error
}

func picOut(port uint16, v uint8) picOp {
	return picOp{fmt.Sprintf("out %#x <- %#02x", port, v), func(p *PIC) error { p.portOut(port, v); return nil }}
}

func picRaise(irq int) picOp {
	return picOp{fmt.Sprintf("raise IRQ %d", irq), func(p *PIC) error { p.Raise(irq); return nil }}
}

func picIn(port uint16, want uint8) picOp {
	return picOp{fmt.Sprintf("in %#x", port), func(p *PIC) error {
		if got := p.portIn(port); got != want {
			return fmt.Errorf("read %#02x, want %#02x", got, want)
		}
		return nil
	}}
}

// picAck acknowledges and wants vector vec; vec < 0 wants nothing pending.
// Pending must agree with Acknowledge, so it is checked first.
func picAck(vec int) picOp {
	return picOp{fmt.Sprintf("INTA want %d", vec), func(p *PIC) error {
		pv, pok := p.Pending()
		v, ok := p.Acknowledge()
		if pok != ok || (ok && pv != v) {
			return fmt.Errorf("Pending said (%#x, %v), Acknowledge gave (%#x, %v)", pv, pok, v, ok)
		}
		switch {
		case vec < 0 && ok:
			return fmt.Errorf("delivered vector %#x, want none", v)
		case vec >= 0 && !ok:
			return fmt.Errorf("nothing delivered, want vector %#x", vec)
		case vec >= 0 && int(v) != vec:
			return fmt.Errorf("delivered vector %#x, want %#x", v, vec)
		}
		return nil
	}}
}

const (
	picEOI      = 0x20 // OCW2 non-specific EOI
	picReadIRR  = 0x0a // OCW3
	picReadISR  = 0x0b // OCW3
	picOCW3NoRR = 0x08 // OCW3 that leaves the read selection alone
)

// picInit is the usual PC initialisation (what rt's pic_remap does): edge
// triggered, cascade, ICW4 with 8086 mode; icw4 may add auto-EOI (bit 1).
func picInit(master, slave, icw4 uint8) []picOp {
	return []picOp{
		picOut(0x20, 0x11), picOut(0x21, master), picOut(0x21, 0x04), picOut(0x21, icw4),
		picOut(0xa0, 0x11), picOut(0xa1, slave), picOut(0xa1, 0x02), picOut(0xa1, icw4),
	}
}

func seq(parts ...[]picOp) []picOp {
	var all []picOp
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func ops(o ...picOp) []picOp { return o }

func TestPIC(t *testing.T) {
	std := picInit(0x20, 0x28, 0x01)
	tests := []struct {
		name string
		ops  []picOp
	}{
		{"reset state: BIOS vectors, all masked", ops(
			picIn(0x21, 0xff), picIn(0xa1, 0xff),
			picRaise(0), picAck(-1),
			picOut(0x21, 0xfe), picAck(0x08),
		)},
		{"ICW1 clears the mask", seq(std, ops(picIn(0x21, 0x00), picIn(0xa1, 0x00)))},
		{"ICW2 remaps, low three bits ignored", seq(picInit(0x27, 0x2f, 0x01), ops(
			picRaise(1), picAck(0x21), picOut(0x20, picEOI),
			picRaise(9), picAck(0x29),
		))},
		{"ICW1 without ICW4: the fourth write is the mask", ops(
			picOut(0x20, 0x10), picOut(0x21, 0x30), picOut(0x21, 0x04), picOut(0x21, 0xfe),
			picIn(0x21, 0xfe), picRaise(0), picAck(0x30),
			picRaise(0), picAck(-1), // not auto-EOI: IRQ 0 is still in service
		)},
		{"ICW1 clears pending requests and in-service bits", seq(std, ops(
			picRaise(3), picRaise(0), picAck(0x20),
		), std, ops(picAck(-1), picOut(0x20, picReadISR), picIn(0x20, 0)))},
		{"masked request is latched and delivered on unmask", seq(std, ops(
			picOut(0x21, 0x01), picRaise(0), picAck(-1),
			picOut(0x20, picReadIRR), picIn(0x20, 0x01),
			picOut(0x21, 0x00), picAck(0x20),
		))},
		{"mask write leaves IRR and ISR alone", seq(std, ops(
			picRaise(3), picRaise(1), picAck(0x21),
			picOut(0x21, 0xff), picOut(0x21, 0x00),
			picIn(0x20, 0x08), picOut(0x20, picReadISR), picIn(0x20, 0x02),
		))},
		{"masked line does not block a lower priority one", seq(std, ops(
			picOut(0x21, 0x01), picRaise(0), picRaise(6), picAck(0x26),
		))},
		{"fixed priority, IRQ 0 highest", seq(std, ops(
			picRaise(5), picRaise(3), picRaise(7),
			picAck(0x23), picOut(0x20, picEOI),
			picAck(0x25), picOut(0x20, picEOI),
			picAck(0x27), picOut(0x20, picEOI),
			picAck(-1),
		))},
		{"lower priority waits for EOI", seq(std, ops(
			picRaise(1), picAck(0x21), picRaise(4), picAck(-1),
			picOut(0x20, picEOI), picAck(0x24),
		))},
		{"equal priority waits for EOI", seq(std, ops(
			picRaise(4), picAck(0x24), picRaise(4), picAck(-1),
			picOut(0x20, picEOI), picAck(0x24),
		))},
		{"higher priority nests", seq(std, ops(
			picRaise(4), picAck(0x24), picRaise(1), picAck(0x21),
			picOut(0x20, picReadISR), picIn(0x20, 0x12),
		))},
		{"non-specific EOI ends the highest in service", seq(std, ops(
			picRaise(4), picAck(0x24), picRaise(1), picAck(0x21),
			picOut(0x20, picEOI), picOut(0x20, picReadISR), picIn(0x20, 0x10),
			picOut(0x20, picEOI), picIn(0x20, 0x00),
		))},
		{"rotate-on-EOI commands still end the interrupt", seq(std, ops(
			picRaise(4), picAck(0x24), picOut(0x20, 0xa0), // rotate on non-specific EOI
			picRaise(3), picAck(0x23), picOut(0x20, 0xe3), // rotate on specific EOI 3
			picOut(0x20, picReadISR), picIn(0x20, 0x00),
		))},
		{"specific EOI ends the named level only", seq(std, ops(
			picRaise(4), picAck(0x24), picRaise(1), picAck(0x21),
			picOut(0x20, 0x64), picOut(0x20, picReadISR), picIn(0x20, 0x02),
			picRaise(4), picAck(-1), // IRQ 1 still in service blocks IRQ 4
			picOut(0x20, 0x61), picAck(0x24),
		))},
		{"EOI with nothing in service is harmless", seq(std, ops(
			picOut(0x20, picEOI), picOut(0x20, 0x67), picRaise(3), picAck(0x23),
		))},
		{"auto-EOI leaves nothing in service", seq(picInit(0x20, 0x28, 0x03), ops(
			picRaise(4), picAck(0x24), picOut(0x20, picReadISR), picIn(0x20, 0x00),
			picRaise(4), picAck(0x24), // no EOI needed
			picRaise(12), picAck(0x2c), picRaise(8), picAck(0x28),
		))},
		{"slave request cascades through master IRQ 2", seq(std, ops(
			picOut(0x21, 0xfb), picOut(0xa1, 0x00),
			picRaise(12), picOut(0x20, picReadIRR), picIn(0x20, 0x04), picIn(0xa0, 0x10),
			picAck(0x2c),
			picIn(0x20, 0x00), // master IRQ 2 request dropped with the slave's
			picOut(0x20, picReadISR), picIn(0x20, 0x04),
			picOut(0xa0, picReadISR), picIn(0xa0, 0x10),
		))},
		{"slave in service blocks the whole slave until both EOIs", seq(std, ops(
			picRaise(12), picAck(0x2c), picRaise(8), picAck(-1),
			picOut(0xa0, picEOI), picAck(-1), // master IRQ 2 still in service
			picOut(0x20, picEOI), picAck(0x28),
		))},
		{"master IRQ 0 and 1 beat the slave", seq(std, ops(
			picRaise(8), picRaise(1), picAck(0x21), picOut(0x20, picEOI), picAck(0x28),
		))},
		{"master mask on IRQ 2 hides the slave", seq(std, ops(
			picOut(0x21, 0x04), picRaise(9), picAck(-1), picOut(0x21, 0x00), picAck(0x29),
		))},
		{"OCW3 selects IRR or ISR, sticky until changed", seq(std, ops(
			picRaise(0), picRaise(3), picIn(0x20, 0x09),
			picAck(0x20), picIn(0x20, 0x08),
			picOut(0x20, picReadISR), picIn(0x20, 0x01),
			picOut(0x20, picOCW3NoRR), picIn(0x20, 0x01),
			picOut(0x20, picReadIRR), picIn(0x20, 0x08),
			picIn(0x21, 0x00), // the data port always reads the mask
		))},
		{"edges coalesce until acknowledged", seq(std, ops(
			picRaise(0), picRaise(0), picRaise(0), picAck(0x20), picOut(0x20, picEOI), picAck(-1),
		))},
		{"an edge during service is kept for after EOI", seq(std, ops(
			picRaise(0), picAck(0x20), picRaise(0), picAck(-1), picOut(0x20, picEOI), picAck(0x20),
		))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runPIC(t, tt.ops) })
	}
}

// TestPICCascade checks the master's IR2 follows the slave's INT output
// (requests the slave will not present do not block master IRQs below 2,
// and a slave request survives the acknowledge of another), and that ICW1
// single mode skips ICW3.
func TestPICCascade(t *testing.T) {
	std := picInit(0x20, 0x28, 0x01)
	tests := []struct {
		name string
		ops  []picOp
	}{
		{"masked slave line does not block master IRQs below 2", seq(std, ops(
			picOut(0xa1, 0xff), picRaise(8), picRaise(4), picAck(0x24),
		))},
		{"slave request blocked by the slave's own ISR does not block master IRQs below 2", seq(std, ops(
			picRaise(12), picAck(0x2c), picOut(0x20, picEOI), // master EOI first, slave still in service
			picRaise(13), picRaise(5), picAck(0x25),
		))},
		{"second slave request survives the first one's acknowledge", seq(std, ops(
			picRaise(10), picRaise(9), picAck(0x29),
			picOut(0xa0, picEOI), picOut(0x20, picEOI), picAck(0x2a),
		))},
		// ICW1 bit 1 (SNGL): after ICW2 comes ICW4, so the next write is the mask.
		{"ICW1 single mode skips ICW3", ops(
			picOut(0x20, 0x13), picOut(0x21, 0x20), picOut(0x21, 0x01), picOut(0x21, 0xfe),
			picIn(0x21, 0xfe), picRaise(0), picAck(0x20), picRaise(0), picAck(-1),
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runPIC(t, tt.ops) })
	}
}

func runPIC(t *testing.T, ops []picOp) {
	t.Helper()
	p := newPIC()
	for i, op := range ops {
		if err := op.do(p); err != nil {
			t.Fatalf("step %d (%s): %v", i, op.name, err)
		}
	}
}
