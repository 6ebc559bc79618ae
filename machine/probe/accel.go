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
// picks KVM where this host's KVM can record and replay: it needs an exact
// instruction counter to place asynchronous events (the "CPL0 emulated"
// capability); everywhere else the soft CPU, which counts instructions
// exactly by construction. kvm without a usable /dev/kvm is an error that
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
		return machine.AccelSoft, "this host's KVM cannot record and replay: " + why
	}
	return machine.AccelKVM, "this host's KVM counts instructions exactly"
}

// CanRecord checks that this host's KVM can record what it can replay:
// a recording on a KVM without an exact instruction counter would place
// its asynchronous events where the replay cannot find them again. It
// probes once per process; the error names what the host lacks.
func CanRecord() error {
	r, err := Cached()
	if err != nil {
		return err
	}
	if ok, why, _ := r.Has("CPL0 emulated"); !ok {
		return fmt.Errorf("--accel kvm: this host's KVM cannot record a run it can replay (%s); record with --accel soft", why)
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
