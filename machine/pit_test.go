package machine

import (
	"testing"
	"time"
)

// pitWrite is one port write to the 8254 at host time now.
type pitWrite struct {
	port uint16
	v    uint8
}

// PIT command bytes (port 0x43): channel << 6 | access << 4 | mode << 1.
const (
	pitCh0LoHiMode2 = 0x34
	pitCh0LoHiMode3 = 0x36
	pitCh0LoHiMode0 = 0x30
	pitCh0LoMode2   = 0x14
	pitCh0HiMode2   = 0x24
	pitCh0Latch     = 0x00
	pitCh2LoHiMode3 = 0xb6
	pitReadBack     = 0xc2
)

func pitProgram(cmd uint8, data ...uint8) []pitWrite {
	w := []pitWrite{{PortPIT + 3, cmd}}
	for _, d := range data {
		w = append(w, pitWrite{PortPIT, d})
	}
	return w
}

func TestPITProgramming(t *testing.T) {
	tests := []struct {
		name     string
		writes   []pitWrite
		fired    bool // call Fired after the writes
		period   time.Duration
		armed    bool
		periodic bool
		changed  bool
		reload   uint32
		mode     uint8
		access   uint8
		bug      string
	}{
		{name: "reset: mode 3, no count loaded", periodic: true, reload: 65536, mode: 3, access: 3},
		{name: "mode 2, lobyte only", writes: pitProgram(0x14, 100),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 2, access: 1},
		{name: "mode 3 square wave", writes: pitProgram(0x16, 100),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 3, access: 1},
		{name: "mode 0 one-shot", writes: pitProgram(0x10, 100),
			period: 83809, armed: true, changed: true, reload: 100, mode: 0, access: 1},
		{name: "mode 0 disarmed once fired", writes: pitProgram(0x10, 100), fired: true,
			changed: true, reload: 100, mode: 0, access: 1},
		{name: "mode 2 stays armed when fired", writes: pitProgram(0x14, 100), fired: true,
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 2, access: 1},
		{name: "mode 1 is not periodic", writes: pitProgram(0x12, 100),
			period: 83809, armed: true, changed: true, reload: 100, mode: 1, access: 1},
		{name: "mode 4 is not periodic", writes: pitProgram(0x18, 100),
			period: 83809, armed: true, changed: true, reload: 100, mode: 4, access: 1},
		{name: "mode 5 is not periodic", writes: pitProgram(0x1a, 100),
			period: 83809, armed: true, changed: true, reload: 100, mode: 5, access: 1},
		{name: "mode 6 is mode 2", writes: pitProgram(0x1c, 100),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 6, access: 1},
		{name: "mode 7 is mode 3", writes: pitProgram(0x1e, 100),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 7, access: 1},
		{name: "BCD bit is ignored", writes: pitProgram(0x15, 100),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 2, access: 1},
		{name: "hibyte only", writes: pitProgram(pitCh0HiMode2, 1),
			period: 214552, armed: true, periodic: true, changed: true, reload: 256, mode: 2, access: 2},
		{name: "lobyte-only zero is 65536", writes: pitProgram(pitCh0LoMode2, 0),
			period: 54925401, armed: true, periodic: true, changed: true, reload: 65536, mode: 2, access: 1},
		{name: "lohi zero count is 65536", writes: pitProgram(pitCh0LoHiMode2, 0, 0),
			period: 54925401, armed: true, periodic: true, changed: true, reload: 65536, mode: 2, access: 3},
		{name: "lohi with only the low byte written is not armed", writes: pitProgram(pitCh0LoHiMode2, 0x9c),
			periodic: true, changed: true, reload: 65536, mode: 2, access: 3},
		{name: "a mode command disarms", writes: append(pitProgram(0x14, 100), pitWrite{PortPIT + 3, pitCh0LoHiMode3}),
			periodic: true, changed: true, reload: 100, mode: 3, access: 3},
		{name: "latch command changes nothing", writes: append(pitProgram(0x14, 100), pitWrite{PortPIT + 3, pitCh0Latch}),
			period: 83809, armed: true, periodic: true, changed: true, reload: 100, mode: 2, access: 1},
		{name: "read-back command is ignored", writes: []pitWrite{{PortPIT + 3, pitReadBack}},
			periodic: true, reload: 65536, mode: 3, access: 3},
		{name: "channel 2 leaves channel 0 alone", writes: pitProgram(pitCh2LoHiMode3),
			periodic: true, reload: 65536, mode: 3, access: 3},
		{name: "lohi 11932 (100 Hz)", writes: pitProgram(pitCh0LoHiMode2, 0x9c, 0x2e),
			period: 10000150, armed: true, periodic: true, changed: true, reload: 11932, mode: 2, access: 3,
			bug: pitLoHiBug},
		{name: "lohi second count reloads", writes: append(pitProgram(pitCh0LoHiMode2, 0x9c, 0x2e), pitWrite{PortPIT, 0xe8}, pitWrite{PortPIT, 0x03}),
			period: 838095, armed: true, periodic: true, changed: true, reload: 1000, mode: 2, access: 3,
			bug: pitLoHiBug},
		{name: "a mode command restarts the lohi byte order", writes: append(pitProgram(pitCh0LoHiMode2, 0x34), pitProgram(pitCh0LoHiMode2, 0xe8, 0x03)...),
			period: 838095, armed: true, periodic: true, changed: true, reload: 1000, mode: 2, access: 3,
			bug: pitLoHiBug},
		{name: "lobyte-only count clears the high byte", writes: append(pitProgram(pitCh0HiMode2, 0x12), pitProgram(pitCh0LoMode2, 0x10)...),
			period: 13409, armed: true, periodic: true, changed: true, reload: 0x10, mode: 2, access: 1,
			bug: "with access 1 (lobyte only) portOut keeps the previous count's high byte (0x1210 " +
				"here); on the 8254, and in QEMU and Bochs, a one-byte access loads that byte and " +
				"zeroes the other. Fix: start from r = 0 for access 1 and 2."},
		{name: "hibyte-only count clears the low byte", writes: append(pitProgram(pitCh0LoMode2, 0x34), pitProgram(pitCh0HiMode2, 0x01)...),
			period: 214552, armed: true, periodic: true, changed: true, reload: 0x100, mode: 2, access: 2,
			bug: "same cause for access 2: the previous low byte is kept (0x134 here)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPIT()
			for _, w := range tt.writes {
				p.portOut(w.port, w.v, 0)
			}
			if tt.fired {
				p.Fired()
			}
			d, ok := p.Period()
			if d != tt.period || ok != tt.armed {
				t.Errorf("Period() = %v, %v; want %v, %v", d, ok, tt.period, tt.armed)
			}
			if got := p.Periodic(); got != tt.periodic {
				t.Errorf("Periodic() = %v, want %v", got, tt.periodic)
			}
			if got := p.TakeChanged(); got != tt.changed {
				t.Errorf("TakeChanged() = %v, want %v", got, tt.changed)
			}
			if p.TakeChanged() {
				t.Error("TakeChanged() true twice in a row")
			}
			c := p.ch[0]
			if c.reload != tt.reload || c.mode != tt.mode || c.access != tt.access {
				t.Errorf("channel 0 reload %#x mode %d access %d, want %#x %d %d", c.reload, c.mode, c.access, tt.reload, tt.mode, tt.access)
			}
		})
	}
}

// pitLoHiBug is the cause of the skipped lobyte/hibyte cases.
const pitLoHiBug = "with access 3 (lobyte then hibyte) PIT.portOut computes the new low byte into " +
	"the local r and returns before storing it, so the second write combines the new high " +
	"byte with the previous count's low byte: the guests' pit_start(1193) (1 kHz) loads " +
	"0x400 = 1024, a 1165 Hz timer, and race.c's 597 loads 512 (deterministic, so record and " +
	"replay agree, but not what the guest asked for). Fix: keep the low byte in a " +
	"pitChannel field (e.g. lo uint8) at the first write and build r = lo | v<<8 at the second."

func TestPITChannel2(t *testing.T) {
	p := newPIT()
	p.portOut(PortPIT+3, 0x96, 0) // channel 2, lobyte, mode 3
	p.portOut(PortPIT+2, 0xa9, 0)
	if c := p.ch[2]; c.reload != 0xa9 || !c.armed || c.mode != 3 || c.access != 1 {
		t.Errorf("channel 2 = %+v, want reload 0xa9 mode 3 access 1 armed", c)
	}
	if p.TakeChanged() {
		t.Error("programming channel 2 reported channel 0 changed")
	}
	if _, ok := p.Period(); ok {
		t.Error("programming channel 2 armed channel 0")
	}
}

// TestPITTakeChanged follows the flag through a programming sequence: the
// mode command and the completed count each set it, a half-written count
// does not.
func TestPITTakeChanged(t *testing.T) {
	steps := []struct {
		w    pitWrite
		want bool
	}{
		{pitWrite{PortPIT + 3, pitCh0LoHiMode2}, true},
		{pitWrite{PortPIT, 0x9c}, false},
		{pitWrite{PortPIT, 0x2e}, true},
		{pitWrite{PortPIT + 3, pitCh0Latch}, false},
		{pitWrite{PortPIT + 3, pitCh2LoHiMode3}, false},
		{pitWrite{PortPIT, 0x10}, false},
		{pitWrite{PortPIT, 0x00}, true},
	}
	p := newPIT()
	for i, s := range steps {
		p.portOut(s.w.port, s.w.v, 0)
		if got := p.TakeChanged(); got != s.want {
			t.Errorf("step %d (out %#x <- %#02x): TakeChanged() = %v, want %v", i, s.w.port, s.w.v, got, s.want)
		}
	}
}

// pitAt is the host time at which the channel has counted n ticks.
func pitAt(n uint64) time.Duration {
	return time.Duration((n*uint64(time.Second) + PITHz - 1) / PITHz)
}

// TestPITCounterReads sets channel 0's count directly (see pitLoHiBug for
// why not through the ports) and reads it back at chosen host times.
func TestPITCounterReads(t *testing.T) {
	type read struct {
		at   uint64 // PIT ticks since the count was loaded
		want uint8
	}
	tests := []struct {
		name   string
		reload uint32
		access uint8
		latch  uint64 // latch at this tick (0 = no latch)
		reads  []read
	}{
		{"lohi reads low then high", 1000, 3, 0, []read{{100, 0x84}, {100, 0x03}, {0, 0xe8}, {0, 0x03}}},
		{"lohi read order survives time passing between bytes", 1000, 3, 0, []read{{100, 0x84}, {356, 0x02}}},
		{"count wraps at reload", 1000, 3, 0, []read{{1100, 0x84}, {1100, 0x03}}},
		{"a full period reads 0 (65536)", 65536, 3, 0, []read{{0, 0}, {0, 0}, {1, 0xff}, {1, 0xff}}},
		{"lobyte access reads the low byte each time", 200, 1, 0, []read{{50, 150}, {60, 140}}},
		{"hibyte access reads the high byte", 0x1000, 2, 0, []read{{0x100, 0x0f}, {0x200, 0x0e}}},
		{"latched value survives time passing", 1000, 3, 100, []read{{500, 0x84}, {900, 0x03}, {200, 0x20}, {200, 0x03}}},
		{"lobyte latch is released by one read", 200, 1, 50, []read{{100, 150}, {100, 100}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPIT()
			p.ch[0] = pitChannel{reload: tt.reload, mode: 2, access: tt.access, armed: true}
			if tt.latch != 0 {
				p.portOut(PortPIT+3, pitCh0Latch, pitAt(tt.latch))
			}
			for i, r := range tt.reads {
				if got := p.portIn(PortPIT, pitAt(r.at)); got != r.want {
					t.Errorf("read %d at tick %d = %#02x, want %#02x", i, r.at, got, r.want)
				}
			}
		})
	}
	if got := newPIT().portIn(PortPIT+3, 0); got != 0xff {
		t.Errorf("reading the command port = %#x, want 0xff", got)
	}
}

func TestPort61(t *testing.T) {
	m := &Machine{pit: newPIT()}
	if v := m.port61Live(0); v != 0 {
		t.Errorf("port 0x61 at 0 = %#x, want 0", v)
	}
	if v := m.port61Live(15 * time.Microsecond); v&0x10 == 0 {
		t.Errorf("port 0x61 at 15us = %#x, want refresh bit 4 toggled", v)
	}
	if v := m.port61Live(30 * time.Microsecond); v&0x10 != 0 {
		t.Errorf("port 0x61 at 30us = %#x, want refresh bit 4 back", v)
	}
	// Timer 2 output (bit 5) follows the square wave only with its gate on.
	p := m.pit
	p.ch[2] = pitChannel{reload: 1000, mode: 3, access: 3, armed: true}
	late := pitAt(600) // count 400 < 1000/2
	if v := m.port61Live(late); v&0x20 != 0 {
		t.Errorf("gate off: port 0x61 = %#x, want bit 5 clear", v)
	}
	p.port61 = 1
	if v := m.port61Live(late); v&0x20 == 0 {
		t.Errorf("gate on, second half-period: port 0x61 = %#x, want bit 5 set", v)
	}
	if v := m.port61Live(pitAt(100)); v&0x20 != 0 {
		t.Errorf("gate on, first half-period: port 0x61 = %#x, want bit 5 clear", v)
	}
}
