//go:build linux

package probe

import (
	"errors"
	"fmt"

	"vmrr/machine"
	"vmrr/machine/kvm"
)

// ChooseAccel resolves an --accel request to the CPU a run will use, with
// the reason in a few words for the one line vmrr says about it. auto
// picks KVM where this host's KVM has an exact instruction counter, which
// placing asynchronous events at any instruction needs (the "CPL0
// emulated" capability); everywhere else the soft CPU, which counts
// instructions exactly by construction. kvm without a usable /dev/kvm is an error that
// names it.
func ChooseAccel(req machine.Accel) (machine.Accel, string, error) {
	switch req {
	case machine.AccelSoft:
		return machine.AccelSoft, "asked for", nil
	case machine.AccelKVM:
		if err := kvmUsable(); err != nil {
			return "", "", fmt.Errorf("--accel kvm: %w", err)
		}
		return machine.AccelKVM, "asked for", nil
	case machine.AccelAuto, "":
	default:
		return "", "", fmt.Errorf("unknown accelerator %q (want auto, kvm or soft)", req)
	}
	if err := kvmUsable(); err != nil {
		return machine.AccelSoft, err.Error(), nil
	}
	r, err := Cached()
	if err != nil {
		return machine.AccelSoft, "probing KVM failed: " + err.Error(), nil
	}
	a, why := r.Auto()
	return a, why, nil
}

// Auto is what --accel auto picks on the host the report describes, and
// why: KVM where it has an exact instruction counter, else the soft CPU.
func (r *Report) Auto() (machine.Accel, string) {
	if ok, why, _ := r.Has("CPL0 emulated"); !ok {
		return machine.AccelSoft, "this host's KVM cannot place events at any instruction: " + why
	}
	return machine.AccelKVM, "this host's KVM counts instructions exactly"
}

// ExactCounter checks that this host's KVM counts instructions exactly, so
// that a recording can place asynchronous events at any instruction and
// find them again on replay. Without it a recording places them at the
// guest's own exits only (recorder, machine.SetExitsOnly), which a guest
// that races its timer ticks cannot live with. It probes once per
// process; the error names what the host lacks.
func ExactCounter() error {
	r, err := Cached()
	if err != nil {
		return err
	}
	if !r.CPL0Emulated {
		return errors.New("this host's KVM has no exact instruction counter (it runs guest code natively, uncounted)")
	}
	return nil
}

// kvmUsable opens and closes /dev/kvm.
func kvmUsable() error {
	sys, err := kvm.Open()
	if err != nil {
		if errors.Is(err, kvm.ErrNoKVM) {
			return err
		}
		return fmt.Errorf("/dev/kvm: %w", err)
	}
	return sys.Close()
}
