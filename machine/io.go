package machine

import (
	"time"
)

// handleIO dispatches a port access to its device, one element at a time
// for string I/O.
func (m *Machine) handleIO(ex *exit) error {
	for i := 0; i < ex.count; i++ {
		if err := m.portAccess(ex.port, ex.out, ex.data[i*ex.size:(i+1)*ex.size]); err != nil {
			return err
		}
		if m.result != nil {
			return nil
		}
	}
	return nil
}

func (m *Machine) portAccess(port uint16, out bool, b []byte) error {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	in := func(x uint64) {
		for i := range b {
			b[i] = byte(x >> (8 * i))
		}
	}
	switch {
	case port >= PortCOM1 && port < PortCOM1+8:
		if out {
			m.uart.portOut(port-PortCOM1, uint8(v))
		} else {
			in(uint64(m.uart.portIn(port - PortCOM1)))
		}
	case port == PortPICMaster || port == PortPICMaster+1 || port == PortPICSlave || port == PortPICSlave+1:
		if out {
			m.pic.portOut(port, uint8(v))
		} else {
			in(uint64(m.pic.portIn(port)))
		}
	case port >= PortPIT && port < PortPIT+4:
		if out {
			m.pit.portOut(port, uint8(v), m.hooks.Now())
			return nil
		}
		x, err := m.hooks.Input(m, Input{Kind: InputPIT, Port: port, Size: uint8(len(b))}, func() uint64 {
			return uint64(m.pit.portIn(port, m.hooks.Now()))
		})
		if err != nil {
			return err
		}
		in(x)
	case port == PortSystemControlB:
		if out {
			m.pit.port61 = uint8(v) & 0x0f
			return nil
		}
		x, err := m.hooks.Input(m, Input{Kind: InputPort61, Port: port, Size: uint8(len(b))}, func() uint64 {
			return uint64(m.pit.port61&0x0f) | m.port61Live(m.hooks.Now())
		})
		if err != nil {
			return err
		}
		in(x)
	case port == PortCMOSIndex:
		if out {
			m.rtc.index = uint8(v)
		} else {
			in(uint64(m.rtc.index))
		}
	case port == PortCMOSData:
		if out {
			m.rtc.write(uint8(v))
			return nil
		}
		x, err := m.hooks.Input(m, Input{Kind: InputRTC, Port: port, Size: uint8(len(b))}, func() uint64 {
			return uint64(m.rtc.read(time.Now()))
		})
		if err != nil {
			return err
		}
		in(x)
	case port == PortDebugExit:
		if out {
			res := m.finish(ReasonExited, uint32(v), "")
			m.result = &res
		} else {
			in(0xff)
		}
	case port == PortPOST:
		if !out {
			in(0xff)
		}
	default:
		ok, err := m.hooks.Port(m, port, out, b)
		if err != nil || ok {
			return err
		}
		m.warnOnce(port, out)
		if !out {
			in(^uint64(0))
		}
	}
	return nil
}

// port61Live computes the time-dependent bits of port 0x61: the refresh
// toggle (bit 4, every 15 us) and timer 2's output (bit 5).
func (m *Machine) port61Live(now time.Duration) uint64 {
	var v uint64
	if (now/(15*time.Microsecond))%2 == 1 {
		v |= 0x10
	}
	if m.pit.port61&1 != 0 {
		c := m.pit.count(2, now)
		if uint32(c) < m.pit.ch[2].reload/2 {
			v |= 0x20
		}
	}
	return v
}
