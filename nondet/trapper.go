package nondet

import (
	"fmt"

	"vmrr/machine"
	"vmrr/machine/cpu"
)

// Mode is how non-deterministic instructions the host's KVM runs natively
// are caught.
type Mode string

// The trapping modes. Instructions KVM cannot emulate exit to vmrr's
// emulator in both (on hosts like PVM that is RDTSCP, and in 32-bit mode
// RDRAND and RDSEED too).
const (
	// ModeExact single-steps every instruction and emulates the
	// non-deterministic ones before they run: universal, slow.
	ModeExact Mode = "exact"
	// ModeFast patches the instructions found in the image's code at load
	// to trap (`out PortTrap, al`); guests may also use the paravirtual ring.
	ModeFast Mode = "fast"
)

// ParseMode checks a --mode flag.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeExact, ModeFast:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown mode %q (want exact or fast)", s)
}

// Values is where trapped instructions' values come from, through the ring:
// the host plus the log when recording, the log when replaying.
type Values interface {
	// Value returns the value for a trapped instruction of the given kind.
	Value(m *machine.Machine, kind cpu.NonDet) (uint64, error)
	// Doorbell is the guest saying the ring is full (record) or used up
	// (replay).
	Doorbell(m *machine.Machine) error
}

// Trapper catches non-deterministic instructions in the chosen mode and
// gives them their values. Record and replay use it alike, with different
// Values.
type Trapper struct {
	Mode    Mode
	Patches Patches
	Values  Values
	// Ring is the guest's own ring code, which exact mode leaves alone.
	Ring []Range
}

// NewTrapper makes the trapper of image, for a recording and a replay
// alike (call Install after the machine loaded the image). In fast mode a
// recording passes recorded == nil and gets the patches FindPatches finds;
// a replay passes the recording's (only Addr and Original are used: each
// instruction is decoded again, in the image's mode), so it patches what
// the recording patched even if this version of vmrr would find others.
func NewTrapper(mode Mode, image []byte, values Values, recorded []Patch) (*Trapper, error) {
	t := &Trapper{Mode: mode, Values: values, Ring: RingCode(image)}
	switch {
	case recorded != nil:
		bits := imageMode(image)
		for _, p := range recorded {
			in, _ := Match(p.Original, bits)
			t.Patches = append(t.Patches, Patch{Addr: p.Addr, Original: p.Original, Inst: in})
		}
	case mode == ModeFast:
		ps, err := FindPatches(image)
		if err != nil {
			return nil, err
		}
		t.Patches = ps
	}
	return t, nil
}

// Install applies the patches to the loaded guest and, in exact mode,
// starts single-stepping. The soft CPU needs neither: its interpreter
// hands every non-deterministic instruction to NonDet, so there the
// trapper patches nothing and the modes do not differ.
func (t *Trapper) Install(m *machine.Machine) error {
	if m.Accel() == machine.AccelSoft {
		t.Patches = nil
		return nil
	}
	if t.Mode == ModeExact {
		m.SetSingleStep(true)
	}
	return t.Patches.Install(m.Memory())
}

// value fetches a trapped instruction's value (RDPID's is IA32_TSC_AUX, not
// non-deterministic).
func (t *Trapper) value(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	if kind == cpu.RDPID {
		return m.TSCAux(), nil
	}
	return t.Values.Value(m, kind)
}

// NonDet serves the machine's emulator and MSR exits. An instruction in
// the guest's own ring code (the paravirtual ring) gets a host value that
// does not go through the ring: the guest appends it there itself.
func (t *Trapper) NonDet(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	if len(t.Ring) > 0 {
		regs, err := m.Regs()
		if err != nil {
			return 0, err
		}
		sregs, err := m.Sregs()
		if err != nil {
			return 0, err
		}
		if t.inRing(sregs.CS.Base + regs.RIP) {
			return Host(kind)
		}
	}
	return t.value(m, kind)
}

// BeforeRun, in exact mode, emulates the non-deterministic instructions at
// RIP before the guest runs them (single-stepping brings it here before
// every instruction).
func (t *Trapper) BeforeRun(m *machine.Machine) error {
	if t.Mode != ModeExact || m.Accel() == machine.AccelSoft {
		return nil
	}
	for {
		regs, err := m.Regs()
		if err != nil {
			return err
		}
		sregs, err := m.Sregs()
		if err != nil {
			return err
		}
		mode := cpu.Mode(&sregs)
		if t.inRing(sregs.CS.Base + regs.RIP) {
			return nil
		}
		var code [15]byte
		n, _ := m.ReadVirtual(&sregs, sregs.CS.Base+regs.RIP, code[:])
		in, ok := Match(code[:n], mode)
		if !ok {
			return nil
		}
		v, err := t.value(m, in.Kind)
		if err != nil {
			return err
		}
		Apply(in, &regs, v, uint32(m.TSCAux()), mode)
		if err := m.SetRegs(&regs); err != nil {
			return err
		}
		// KVM's counter does not see this instruction: count it as a VMM
		// exit so the states before and after it have distinct positions.
		m.CountExit()
	}
}

func (t *Trapper) inRing(addr uint64) bool {
	for _, r := range t.Ring {
		if addr >= r.Start && addr < r.End {
			return true
		}
	}
	return false
}

// Port handles the trap port (a patched instruction) and the ring doorbell.
func (t *Trapper) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	switch port {
	case machine.PortRingDoorbell:
		return true, t.Values.Doorbell(m)
	case machine.PortTrap:
	default:
		return false, nil
	}
	m.AfterIO(func() error {
		regs, err := m.Regs()
		if err != nil {
			return err
		}
		p := t.Patches.Find(regs.RIP)
		if p == nil {
			return fmt.Errorf("nondet: trap port written at RIP %#x, where vmrr patched nothing", regs.RIP)
		}
		v, err := t.value(m, p.Inst.Kind)
		if err != nil {
			return err
		}
		sregs, err := m.Sregs()
		if err != nil {
			return err
		}
		regs.RIP = p.Addr
		Apply(p.Inst, &regs, v, uint32(m.TSCAux()), cpu.Mode(&sregs))
		return m.SetRegs(&regs)
	})
	return true, nil
}
