package machine

import (
	"vmrr/machine/cpu"
)

// MSRs a snapshot saves besides those in kvm_sregs: the ones a guest may
// set and that KVM keeps in the vCPU.
var snapshotMSRs = []uint32{
	0x174, 0x175, 0x176, // SYSENTER_CS, ESP, EIP
	0x277,                                          // PAT
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, // STAR, LSTAR, CSTAR, SFMASK
	0xc0000102, // KERNEL_GS_BASE
}

// CPUState is everything KVM holds about the vCPU that a snapshot needs.
type CPUState struct {
	Regs      cpu.Regs
	Sregs     cpu.Sregs
	FPU       cpu.FPU
	Events    cpu.Events
	DebugRegs cpu.DebugRegs
	MSRs      []cpu.MSREntry
}

// DeviceState is the machine's own state: device models and counters.
type DeviceState struct {
	pic                 PIC
	pit                 PIT
	rtc                 RTC
	uart                uartState
	exits               uint64
	insn                uint64
	tscAux              uint64
	atDeterministicExit bool
	emulated            uint64
	consoleN            uint64
	consoleCRC          uint32
}

// uartState is the UART without its output writer and IRQ line.
type uartState struct {
	rx                                []byte
	ier, lcr, mcr, scr, dll, dlm, fcr uint8
	thrInt, line                      bool
}

// SaveCPU reads the vCPU's whole state.
func (m *Machine) SaveCPU() (CPUState, error) {
	var s CPUState
	var err error
	if s.Regs, err = m.vcpu.Regs(); err != nil {
		return s, err
	}
	if s.Sregs, err = m.vcpu.Sregs(); err != nil {
		return s, err
	}
	if s.FPU, err = m.vcpu.FPU(); err != nil {
		return s, err
	}
	if s.Events, err = m.vcpu.Events(); err != nil {
		return s, err
	}
	if s.DebugRegs, err = m.vcpu.DebugRegs(); err != nil {
		return s, err
	}
	s.MSRs = make([]cpu.MSREntry, 0, len(snapshotMSRs))
	for _, idx := range snapshotMSRs {
		e := []cpu.MSREntry{{Index: idx}}
		if m.vcpu.GetMSRs(e) == nil {
			s.MSRs = append(s.MSRs, e[0])
		}
	}
	return s, nil
}

// RestoreCPU writes a saved vCPU state back.
func (m *Machine) RestoreCPU(s *CPUState) error {
	if err := m.vcpu.SetSregs(&s.Sregs); err != nil {
		return err
	}
	if err := m.vcpu.SetRegs(&s.Regs); err != nil {
		return err
	}
	if err := m.vcpu.SetFPU(&s.FPU); err != nil {
		return err
	}
	ev := s.Events
	ev.Flags = 0x1 | 0x2 | 0x4 // NMI_PENDING, SIPI_VECTOR, SHADOW valid
	if err := m.vcpu.SetEvents(&ev); err != nil {
		return err
	}
	if err := m.vcpu.SetDebugRegs(&s.DebugRegs); err != nil {
		return err
	}
	return m.vcpu.SetMSRs(s.MSRs)
}

// SaveDevices copies the device models and the position counters.
func (m *Machine) SaveDevices() DeviceState {
	u := m.uart
	d := DeviceState{
		pic: *m.pic, pit: *m.pit, rtc: *m.rtc,
		uart: uartState{rx: append([]byte(nil), u.rx...), ier: u.ier, lcr: u.lcr, mcr: u.mcr, scr: u.scr,
			dll: u.dll, dlm: u.dlm, fcr: u.fcr, thrInt: u.thrInt, line: u.line},
		exits: m.exits, insn: m.Position().Insn, tscAux: m.TSCAux(),
		atDeterministicExit: m.atDeterministicExit, emulated: m.emulated,
		consoleN: m.console.n, consoleCRC: m.console.crc,
	}
	return d
}

// RestoreDevices puts saved device models and counters back. The
// instruction counter cannot be set, so the machine's base moves instead.
func (m *Machine) RestoreDevices(d *DeviceState) error {
	*m.pic, *m.pit, *m.rtc = d.pic, d.pit, d.rtc
	u := m.uart
	u.rx = append(u.rx[:0], d.uart.rx...)
	u.ier, u.lcr, u.mcr, u.scr, u.dll, u.dlm, u.fcr = d.uart.ier, d.uart.lcr, d.uart.mcr, d.uart.scr, d.uart.dll, d.uart.dlm, d.uart.fcr
	u.thrInt, u.line = d.uart.thrInt, d.uart.line
	m.exits, m.emulated = d.exits, d.emulated
	m.SetTSCAux(d.tscAux)
	m.console.n, m.console.crc = d.consoleN, d.consoleCRC
	m.atDeterministicExit, m.delivered = d.atDeterministicExit, false
	m.result = nil
	m.afterIO = nil
	if n, ok := m.vcpu.insnCount(); ok {
		m.insnBase = n - d.insn
	}
	return nil
}

// InvalidateMappings makes KVM forget every translation it derived from
// guest memory, after the VMM rewrote that memory behind the guest's back
// (restoring a snapshot).
func (m *Machine) InvalidateMappings() error { return m.FlushTLB() }
