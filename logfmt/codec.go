package logfmt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"vmrr/machine/cpu"
	"vmrr/position"
)

// The event encoding inside a frame payload (docs/logformat.md, "Events").
// Every event starts with one byte: the kind in the low four bits and the
// position's form in bits 4-5; bits 6-7 are zero in version 1. Positions are
// deltas from the previous event of the same frame (the first event's from
// the frame header), and TSC values are deltas from the previous TSC value
// of the frame, so a run of trapped RDTSCs costs four or five bytes each.

// Position forms, bits 4-5 of an event's first byte.
const (
	posSame     = 0 // same position as the previous event
	posNextExit = 1 // one exit later, at the exit (Insn 0): a trapped instruction
	posInsn     = 2 // same exit, Insn grows by a uvarint
	posExit     = 3 // Exit grows by a uvarint (>= 1), then Insn as a uvarint

	kindMask = 0x0f
	formMask = 0x30
	formShft = 4
)

// maxValues is the number of values a KindNonDet event may carry: the
// count shares a byte with the instruction number.
const (
	maxValues = 7
	maxInstr  = 31
)

// maxCheckpointValues is the most registers a checkpoint may carry (the
// recorder stores 18); a bound keeps a corrupt count from costing memory.
const maxCheckpointValues = 64

// Page lists are bounded by the frame: a landing's page costs at least one
// byte, a checkpoint's at least five (frame delta, CRC).
const (
	maxLandingPages    = MaxFrameBytes
	maxCheckpointPages = MaxFrameBytes / 5
)

// codec is the state the encoding of one frame carries from event to event.
// It starts afresh at every frame, so a reader can begin at any frame.
type codec struct {
	prev position.Pos
	tsc  uint64
	// regs are the previous checkpoint's Values, which the next checkpoint
	// is stored as deltas from. The slice is replaced, never written to:
	// the writer undoes a refused event by restoring a copy of the codec.
	regs []uint64
}

func (c *codec) reset(first position.Pos) { *c = codec{prev: first} }

// valueClass says how value i of a nondet instruction (or a ring entry of
// that kind) is stored.
type valueClass int

const (
	classVarint valueClass = iota // small numbers: aux, processor IDs
	classTSC                      // zigzag delta from the frame's previous TSC
	classRaw                      // 8 bytes: random numbers do not shrink
)

func classOf(instr uint32, i int) valueClass {
	switch {
	case (instr == uint32(cpu.RDTSC) || instr == uint32(cpu.RDTSCP)) && i == 0:
		return classTSC
	case instr == uint32(cpu.RDRAND) || instr == uint32(cpu.RDSEED):
		return classRaw
	}
	return classVarint
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (c *codec) appendValue(b []byte, class valueClass, v uint64) []byte {
	switch class {
	case classTSC:
		b = binary.AppendUvarint(b, zigzag(int64(v-c.tsc)))
		c.tsc = v
		return b
	case classRaw:
		return binary.LittleEndian.AppendUint64(b, v)
	}
	return binary.AppendUvarint(b, v)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// checkEvent refuses an event the writer cannot store faithfully.
func checkEvent(e *Event) error {
	switch e.Kind {
	case KindNonDet:
		if len(e.Values) == 0 || len(e.Values) > maxValues {
			return fmt.Errorf("nondet event has %d values (1 to %d)", len(e.Values), maxValues)
		}
		if e.Instr > maxInstr {
			return fmt.Errorf("nondet instruction number %d is over %d", e.Instr, maxInstr)
		}
	case KindPortIn, KindMMIORead:
		if len(e.Values) != 1 {
			return fmt.Errorf("%s event has %d values (needs exactly 1)", e.Kind, len(e.Values))
		}
	case KindInterrupt, KindInject, KindSerialRX:
		if n := len(e.Landing.Pages); n > maxLandingPages {
			return fmt.Errorf("%s event has %d pages (at most %d)", e.Kind, n, maxLandingPages)
		}
	case KindCheckpoint:
		if n := len(e.Values); n > maxCheckpointValues {
			return fmt.Errorf("checkpoint event has %d values (at most %d)", n, maxCheckpointValues)
		}
		if n := len(e.Landing.Pages); n > maxCheckpointPages {
			return fmt.Errorf("checkpoint event has %d pages (at most %d)", n, maxCheckpointPages)
		}
	case KindRingFlush:
	case KindEnd:
		if e.End == nil {
			return errors.New("end event without an EndRecord")
		}
	default:
		return fmt.Errorf("unknown event kind %d", uint8(e.Kind))
	}
	return nil
}

// appendEvent encodes e, which checkEvent accepted and whose position is not
// before c.prev.
func (c *codec) appendEvent(b []byte, e *Event) []byte {
	var form byte
	p := e.Pos
	switch {
	case p == c.prev:
		form = posSame
	case p.Exit == c.prev.Exit+1 && p.Insn == 0:
		form = posNextExit
	case p.Exit == c.prev.Exit:
		form = posInsn
	default:
		form = posExit
	}
	b = append(b, byte(e.Kind)|form<<formShft)
	switch form {
	case posInsn:
		b = binary.AppendUvarint(b, p.Insn-c.prev.Insn)
	case posExit:
		b = binary.AppendUvarint(b, p.Exit-c.prev.Exit)
		b = binary.AppendUvarint(b, p.Insn)
	}
	c.prev = p

	switch e.Kind {
	case KindNonDet:
		b = append(b, byte(e.Instr)|byte(len(e.Values))<<5)
		for i, v := range e.Values {
			b = c.appendValue(b, classOf(uint32(e.Instr), i), v)
		}
	case KindPortIn:
		b = binary.AppendUvarint(b, uint64(e.Port))
		b = append(b, e.Size)
		b = binary.AppendUvarint(b, e.Values[0])
	case KindMMIORead:
		b = binary.AppendUvarint(b, e.Addr)
		b = append(b, e.Size)
		b = binary.AppendUvarint(b, e.Values[0])
	case KindInterrupt, KindInject:
		b = append(b, e.Vector)
		b = appendLanding(b, &e.Landing)
	case KindSerialRX:
		b = appendBytes(b, e.Data)
		b = appendLanding(b, &e.Landing)
	case KindCheckpoint:
		b = binary.AppendUvarint(b, e.RIP)
		b = binary.LittleEndian.AppendUint64(b, e.RegHash)
		b = binary.LittleEndian.AppendUint64(b, e.MemHash)
		// Most registers change little or not at all between checkpoints:
		// a delta from the previous checkpoint of the frame costs one byte
		// for an unchanged one.
		b = binary.AppendUvarint(b, uint64(len(e.Values)))
		for i, v := range e.Values {
			b = binary.AppendUvarint(b, zigzag(int64(v-c.reg(i))))
		}
		c.regs = append([]uint64(nil), e.Values...)
		b = appendCheckpointPages(b, e.Landing.Pages)
	case KindRingFlush:
		b = binary.AppendUvarint(b, uint64(len(e.Ring)))
		for _, r := range e.Ring {
			// The aux word is almost always zero: a flag bit saves its byte.
			head := uint64(r.Kind) << 1
			if r.Aux != 0 {
				head |= 1
			}
			b = binary.AppendUvarint(b, head)
			if r.Aux != 0 {
				b = binary.AppendUvarint(b, uint64(r.Aux))
			}
			b = c.appendValue(b, classOf(r.Kind, 0), r.Value)
		}
	case KindEnd:
		b = appendEnd(b, e.End)
	}
	return b
}

// reg is register i of the previous checkpoint of the frame, 0 if it had
// fewer.
func (c *codec) reg(i int) uint64 {
	if i < len(c.regs) {
		return c.regs[i]
	}
	return 0
}

// appendLanding encodes an interrupt's, injection's or serial input's
// landing.
func appendLanding(b []byte, l *Landing) []byte {
	b = binary.AppendUvarint(b, l.RIP)
	b = binary.LittleEndian.AppendUint64(b, l.RegHash)
	b = binary.LittleEndian.AppendUint64(b, l.MemHash)
	b = binary.AppendUvarint(b, uint64(len(l.Pages)))
	var prev uint64
	for _, pg := range l.Pages {
		b = binary.AppendUvarint(b, zigzag(int64(pg-prev)))
		prev = pg
	}
	return b
}

// appendCheckpointPages encodes a checkpoint's page list: each entry's
// frame number (high half) as a delta from the previous entry's, which is
// a byte for the usual ascending run, and its CRC (low half) as it is,
// since checksums do not shrink.
func appendCheckpointPages(b []byte, pages []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(pages)))
	var prev uint32
	for _, pg := range pages {
		hi := uint32(pg >> 32)
		b = binary.AppendUvarint(b, zigzag(int64(int32(hi-prev))))
		b = binary.LittleEndian.AppendUint32(b, uint32(pg))
		prev = hi
	}
	return b
}

// appendEnd encodes an end record without its position, which the event
// (or the footer) stores.
func appendEnd(b []byte, end *EndRecord) []byte {
	b = appendBytes(b, []byte(end.Reason))
	b = binary.AppendUvarint(b, zigzag(int64(end.Status)))
	b = binary.AppendUvarint(b, end.RIP)
	b = binary.LittleEndian.AppendUint64(b, end.StateHash)
	return binary.AppendUvarint(b, end.Events)
}

// decoder reads the primitive fields of the encoding. The first problem it
// meets is kept in bad and every later read returns zero, so a decode
// function checks once at its end.
type decoder struct {
	b   []byte
	i   int
	bad string
}

func (d *decoder) fail(why string) {
	if d.bad == "" {
		d.bad = why
	}
	d.i = len(d.b)
}

func (d *decoder) left() int { return len(d.b) - d.i }

func (d *decoder) byte1() byte {
	if d.i >= len(d.b) {
		d.fail("record ends inside a field")
		return 0
	}
	v := d.b[d.i]
	d.i++
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		if n == 0 {
			d.fail("record ends inside a field")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) u32() uint32 {
	if d.left() < 4 {
		d.fail("record ends inside a field")
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.i:])
	d.i += 4
	return v
}

func (d *decoder) u64() uint64 {
	if d.left() < 8 {
		d.fail("record ends inside a field")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.i:])
	d.i += 8
	return v
}

// count reads an element count and refuses one that the remaining bytes
// cannot hold at minSize bytes an element, so a corrupt count never makes
// the reader allocate more than the record's size.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64(d.left()/minSize) {
		d.fail(fmt.Sprintf("count %d does not fit in the %d bytes left", n, d.left()))
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed byte string into a new slice (nil if empty).
func (d *decoder) bytes() []byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[d.i:])
	d.i += n
	return v
}

func (c *codec) value(d *decoder, class valueClass) uint64 {
	switch class {
	case classTSC:
		c.tsc += uint64(unzigzag(d.uvarint()))
		return c.tsc
	case classRaw:
		return d.u64()
	}
	return d.uvarint()
}

// errUnknownKind is returned by decodeEvent for a kind this version does
// not know; the reader adds the frame number.
type errUnknownKind uint8

func (e errUnknownKind) Error() string { return fmt.Sprintf("unknown event kind %d", uint8(e)) }

// eventBox lets a small event and its values share one allocation.
type eventBox struct {
	ev   Event
	vals [2]uint64
}

// decodeEvent decodes the next event of a frame payload.
func (c *codec) decodeEvent(d *decoder) (*Event, error) {
	head := d.byte1()
	if d.bad != "" {
		return nil, errors.New(d.bad)
	}
	k := Kind(head & kindMask)
	if k == 0 || k > maxKind {
		return nil, errUnknownKind(k)
	}
	if head&^(kindMask|formMask) != 0 {
		return nil, fmt.Errorf("event header 0x%02x has reserved bits set", head)
	}
	p := c.prev
	switch (head & formMask) >> formShft {
	case posNextExit:
		p = position.Pos{Exit: p.Exit + 1}
	case posInsn:
		p.Insn += d.uvarint()
	case posExit:
		p.Exit += d.uvarint()
		p.Insn = d.uvarint()
	}
	if p.Less(c.prev) {
		return nil, fmt.Errorf("position %v overflows", p)
	}
	c.prev = p

	box := &eventBox{}
	e := &box.ev
	e.Kind = k
	e.Pos = p
	switch k {
	case KindNonDet:
		b := d.byte1()
		e.Instr = cpu.NonDet(b & maxInstr)
		n := int(b >> 5)
		if n == 0 && d.bad == "" {
			return nil, errors.New("nondet event without values")
		}
		e.Values = box.vals[:0:len(box.vals)]
		if n > len(box.vals) {
			e.Values = make([]uint64, 0, n)
		}
		for i := 0; i < n; i++ {
			e.Values = append(e.Values, c.value(d, classOf(uint32(e.Instr), i)))
		}
	case KindPortIn:
		port := d.uvarint()
		if port > 0xffff {
			d.fail(fmt.Sprintf("port 0x%x is over 0xffff", port))
		}
		e.Port = uint16(port)
		e.Size = d.byte1()
		box.vals[0] = d.uvarint()
		e.Values = box.vals[:1:1]
	case KindMMIORead:
		e.Addr = d.uvarint()
		e.Size = d.byte1()
		box.vals[0] = d.uvarint()
		e.Values = box.vals[:1:1]
	case KindInterrupt, KindInject:
		e.Vector = d.byte1()
		decodeLanding(d, &e.Landing)
	case KindSerialRX:
		e.Data = d.bytes()
		decodeLanding(d, &e.Landing)
	case KindCheckpoint:
		e.RIP = d.uvarint()
		e.RegHash = d.u64()
		e.MemHash = d.u64()
		n := d.count(1)
		if n > maxCheckpointValues {
			d.fail(fmt.Sprintf("%d values (at most %d)", n, maxCheckpointValues))
			n = 0
		}
		if n > 0 {
			e.Values = make([]uint64, n)
			for i := range e.Values {
				e.Values[i] = c.reg(i) + uint64(unzigzag(d.uvarint()))
			}
		}
		if d.bad == "" {
			// A copy: the caller owns e.Values.
			c.regs = append([]uint64(nil), e.Values...)
		}
		e.Landing.Pages = decodeCheckpointPages(d)
	case KindRingFlush:
		if n := d.count(2); n > 0 {
			e.Ring = make([]RingEntry, n)
			for i := range e.Ring {
				r := &e.Ring[i]
				head := d.uvarint()
				if head>>1 > 0xffffffff {
					d.fail("ring entry kind is over 32 bits")
				}
				r.Kind = uint32(head >> 1)
				if head&1 != 0 {
					aux := d.uvarint()
					if aux > 0xffffffff {
						d.fail("ring entry aux is over 32 bits")
					}
					r.Aux = uint32(aux)
				}
				r.Value = c.value(d, classOf(r.Kind, 0))
			}
		}
	case KindEnd:
		e.End = decodeEnd(d)
		e.End.Pos = p
	}
	if d.bad != "" {
		return nil, fmt.Errorf("%s event: %s", k, d.bad)
	}
	return e, nil
}

func decodeLanding(d *decoder, l *Landing) {
	l.RIP = d.uvarint()
	l.RegHash = d.u64()
	l.MemHash = d.u64()
	if n := d.count(1); n > 0 {
		l.Pages = make([]uint64, n)
		var prev uint64
		for i := range l.Pages {
			prev += uint64(unzigzag(d.uvarint()))
			l.Pages[i] = prev
		}
	}
}

func decodeCheckpointPages(d *decoder) []uint64 {
	n := d.count(5)
	if n == 0 {
		return nil
	}
	pages := make([]uint64, n)
	var hi uint32
	for i := range pages {
		dh := unzigzag(d.uvarint())
		if dh != int64(int32(dh)) {
			d.fail("page frame delta is over 32 bits")
		}
		hi += uint32(dh)
		pages[i] = uint64(hi)<<32 | uint64(d.u32())
	}
	return pages
}

func decodeEnd(d *decoder) *EndRecord {
	return &EndRecord{
		Reason:    string(d.bytes()),
		Status:    int(unzigzag(d.uvarint())),
		RIP:       d.uvarint(),
		StateHash: d.u64(),
		Events:    d.uvarint(),
	}
}
