package machine

import "time"

// RTC is the CMOS real-time clock and its NVRAM. Time registers read the
// wall clock, so every data-port read is an outside-world input.
type RTC struct {
	index uint8
	nvram [128]uint8
}

func newRTC() *RTC {
	r := &RTC{}
	r.nvram[0x0a] = 0x26 // 32.768 kHz base, 1024 Hz rate
	r.nvram[0x0b] = 0x02 // 24-hour, BCD
	r.nvram[0x0d] = 0x80 // valid RAM and time
	return r
}

func bcd(v int) uint8 { return uint8(v/10<<4 | v%10) }

// read computes the value at the current index for wall-clock time now.
func (r *RTC) read(now time.Time) uint8 {
	i := r.index & 0x7f
	binary := r.nvram[0x0b]&0x04 != 0
	enc := func(v int) uint8 {
		if binary {
			return uint8(v)
		}
		return bcd(v)
	}
	now = now.UTC()
	switch i {
	case 0x00:
		return enc(now.Second())
	case 0x02:
		return enc(now.Minute())
	case 0x04:
		if r.nvram[0x0b]&0x02 == 0 {
			h := now.Hour()
			v := enc((h+11)%12 + 1)
			if h >= 12 {
				v |= 0x80
			}
			return v
		}
		return enc(now.Hour())
	case 0x06:
		return enc(int(now.Weekday()) + 1)
	case 0x07:
		return enc(now.Day())
	case 0x08:
		return enc(int(now.Month()))
	case 0x09:
		return enc(now.Year() % 100)
	case 0x32:
		return enc(now.Year() / 100)
	case 0x0c:
		return 0
	}
	return r.nvram[i]
}

func (r *RTC) write(v uint8) {
	i := r.index & 0x7f
	if i == 0x0c || i == 0x0d {
		return
	}
	r.nvram[i] = v
}
