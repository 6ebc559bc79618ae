package machine

import (
	"testing"
	"time"
)

// rtcNow is the wall clock the RTC tests read: a Sunday.
var rtcNow = time.Date(2026, 11, 15, 13, 45, 7, 0, time.UTC)

func TestRTCRead(t *testing.T) {
	const (
		regBBCD    = 0x02 // 24-hour, BCD (the reset value)
		regBBinary = 0x06 // 24-hour, binary
	)
	tests := []struct {
		name  string
		regB  uint8
		index uint8
		now   time.Time
		want  uint8
	}{
		{"BCD seconds", regBBCD, 0x00, rtcNow, 0x07},
		{"BCD minutes", regBBCD, 0x02, rtcNow, 0x45},
		{"BCD hours", regBBCD, 0x04, rtcNow, 0x13},
		{"BCD weekday, Sunday is 1", regBBCD, 0x06, rtcNow, 0x01},
		{"BCD day of month", regBBCD, 0x07, rtcNow, 0x15},
		{"BCD month", regBBCD, 0x08, rtcNow, 0x11},
		{"BCD year", regBBCD, 0x09, rtcNow, 0x26},
		{"BCD century", regBBCD, 0x32, rtcNow, 0x20},
		{"BCD Saturday is 7", regBBCD, 0x06, rtcNow.AddDate(0, 0, 6), 0x07},
		{"BCD year 2100", regBBCD, 0x09, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 0x00},
		{"BCD century 2100", regBBCD, 0x32, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 0x21},
		{"binary seconds", regBBinary, 0x00, rtcNow, 7},
		{"binary minutes", regBBinary, 0x02, rtcNow, 45},
		{"binary hours", regBBinary, 0x04, rtcNow, 13},
		{"binary weekday", regBBinary, 0x06, rtcNow, 1},
		{"binary day", regBBinary, 0x07, rtcNow, 15},
		{"binary month", regBBinary, 0x08, rtcNow, 11},
		{"binary year", regBBinary, 0x09, rtcNow, 26},
		{"binary century", regBBinary, 0x32, rtcNow, 20},
		{"local time is read as UTC", regBBCD, 0x04, rtcNow.In(time.FixedZone("UTC+5", 5*3600)), 0x13},
		{"register A: divider and rate", regBBCD, 0x0a, rtcNow, 0x26},
		{"register B reads back", regBBinary, 0x0b, rtcNow, regBBinary},
		{"register C: no interrupt flags", regBBCD, 0x0c, rtcNow, 0x00},
		{"register D: valid RAM and time", regBBCD, 0x0d, rtcNow, 0x80},
		{"NVRAM byte starts zero", regBBCD, 0x10, rtcNow, 0x00},
		{"index bit 7 (NMI disable) is masked off", regBBCD, 0x80, rtcNow, 0x07},
		{"index 0x84 is hours", regBBCD, 0x84, rtcNow, 0x13},
		{"index 0xb2 is the century", regBBCD, 0xb2, rtcNow, 0x20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRTC()
			r.nvram[0x0b] = tt.regB
			r.index = tt.index
			if got := r.read(tt.now); got != tt.want {
				t.Errorf("read index %#02x = %#02x, want %#02x", tt.index, got, tt.want)
			}
		})
	}
}

func TestRTCWrite(t *testing.T) {
	tests := []struct {
		name      string
		writeIdx  uint8
		v         uint8
		readIdx   uint8
		want      uint8
		nvramAddr uint8 // where the write must land
		nvramWant uint8
	}{
		{"NVRAM byte", 0x10, 0x5a, 0x10, 0x5a, 0x10, 0x5a},
		{"last NVRAM byte", 0x7f, 0xa5, 0x7f, 0xa5, 0x7f, 0xa5},
		{"index bit 7 masked on write", 0x90, 0x33, 0x10, 0x33, 0x10, 0x33},
		{"register C is read-only", 0x0c, 0xff, 0x0c, 0x00, 0x0c, 0x00},
		{"register D is read-only", 0x0d, 0x00, 0x0d, 0x80, 0x0d, 0x80},
		{"register B switches to binary", 0x0b, 0x06, 0x02, 45, 0x0b, 0x06},
		{"time registers keep following the clock", 0x00, 0x59, 0x00, 0x07, 0x00, 0x59},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRTC()
			r.index = tt.writeIdx
			r.write(tt.v)
			r.index = tt.readIdx
			if got := r.read(rtcNow); got != tt.want {
				t.Errorf("read index %#02x = %#02x, want %#02x", tt.readIdx, got, tt.want)
			}
			if got := r.nvram[tt.nvramAddr]; got != tt.nvramWant {
				t.Errorf("nvram[%#02x] = %#02x, want %#02x", tt.nvramAddr, got, tt.nvramWant)
			}
		})
	}
}

// TestRTC12Hour checks 12-hour mode (register B bit 1 clear): hours 1-12,
// bit 7 set after noon.
func TestRTC12Hour(t *testing.T) {
	tests := []struct {
		name string
		regB uint8
		now  time.Time
		want uint8
	}{
		{"12-hour BCD afternoon", 0x00, rtcNow, 0x81},                                        // 13:45 is 1 PM
		{"12-hour binary midnight", 0x04, time.Date(2026, 11, 15, 0, 5, 0, 0, time.UTC), 12}, // 00:05 is 12 AM
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRTC()
			r.nvram[0x0b] = tt.regB
			r.index = 0x04
			if got := r.read(tt.now); got != tt.want {
				t.Errorf("hours = %#02x, want %#02x", got, tt.want)
			}
		})
	}
}
