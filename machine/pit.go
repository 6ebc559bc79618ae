package machine

import "time"

// PITHz is the 8254's input clock.
const PITHz = 1193182

// pitChannel is one 8254 counter. Only its programmed state lives here: the
// current count depends on time, so reading it is an outside-world input
// (see Machine.timeValue).
type pitChannel struct {
	reload   uint32 // 1..65536
	mode     uint8
	access   uint8 // 1 lobyte, 2 hibyte, 3 lobyte then hibyte
	writeHi  bool  // next write is the high byte
	lo       uint8
	readHi   bool
	latched  bool
	latch    uint16
	armed    bool // a count has been written since the mode was set
	loadedAt time.Duration
}

// PIT is the 8254 timer: channel 0 drives IRQ 0, channel 2 the speaker gate
// behind port 0x61.
type PIT struct {
	ch      [3]pitChannel
	port61  uint8
	changed bool // channel 0 was reprogrammed since TakeChanged
}

func newPIT() *PIT {
	p := &PIT{}
	for i := range p.ch {
		p.ch[i] = pitChannel{reload: 65536, access: 3, mode: 3}
	}
	return p
}

// Period is channel 0's interrupt period, false while it is not running a
// periodic mode (2 or 3) or one-shot (0) with a count loaded.
func (p *PIT) Period() (time.Duration, bool) {
	c := &p.ch[0]
	if !c.armed {
		return 0, false
	}
	return time.Duration(uint64(c.reload) * uint64(time.Second) / PITHz), true
}

// Periodic reports whether channel 0 fires repeatedly (modes 2 and 3).
func (p *PIT) Periodic() bool { m := p.ch[0].mode & 3; return m == 2 || m == 3 }

// Fired tells the PIT that channel 0's one-shot count expired.
func (p *PIT) Fired() {
	if !p.Periodic() {
		p.ch[0].armed = false
	}
}

// TakeChanged reports (and clears) whether channel 0 was reprogrammed, so a
// live tick source can restart its schedule.
func (p *PIT) TakeChanged() bool { c := p.changed; p.changed = false; return c }

// count computes a channel's current count at time now since the start.
func (p *PIT) count(i int, now time.Duration) uint16 {
	c := &p.ch[i]
	ticks := uint64((now - c.loadedAt).Nanoseconds()) * PITHz / uint64(time.Second)
	n := uint64(c.reload)
	return uint16(n - ticks%n)
}

// portOut handles the PIT's ports; now is the host time used to stamp a
// newly loaded count (it only affects later outside-world reads).
func (p *PIT) portOut(port uint16, v uint8, now time.Duration) {
	if port == PortPIT+3 {
		i := int(v >> 6)
		if i == 3 {
			return // read-back command: latch nothing, status reads are rare
		}
		c := &p.ch[i]
		if v&0x30 == 0 {
			c.latched, c.latch = true, p.count(i, now)
			return
		}
		c.access, c.mode = (v>>4)&3, (v>>1)&7
		c.writeHi, c.readHi, c.armed = false, false, false
		if i == 0 {
			p.changed = true
		}
		return
	}
	i := int(port - PortPIT)
	c := &p.ch[i]
	var r uint32
	switch {
	case c.access == 3 && !c.writeHi:
		c.lo, c.writeHi = v, true
		return
	case c.access == 1:
		r = uint32(v)
	case c.access == 2:
		r = uint32(v) << 8
	default:
		r = uint32(c.lo) | uint32(v)<<8
		c.writeHi = false
	}
	if r == 0 {
		r = 65536
	}
	c.reload, c.armed, c.loadedAt = r, true, now
	if i == 0 {
		p.changed = true
	}
}

// portIn computes a counter read; the caller treats it as an outside input.
func (p *PIT) portIn(port uint16, now time.Duration) uint8 {
	i := int(port - PortPIT)
	if i == 3 {
		return 0xff
	}
	c := &p.ch[i]
	v := p.count(i, now)
	if c.latched {
		v = c.latch
	}
	var b uint8
	switch {
	case c.access == 1:
		b = uint8(v)
		c.latched = false
	case c.access == 2:
		b = uint8(v >> 8)
		c.latched = false
	case !c.readHi:
		b = uint8(v)
		c.readHi = true
	default:
		b = uint8(v >> 8)
		c.readHi, c.latched = false, false
	}
	return b
}
