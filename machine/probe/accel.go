//go:build linux

package probe

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

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
	why := ""
	if err := ExactCounter(); err != nil {
		why = err.Error()
	}
	a, reason := auto(why)
	return a, reason, nil
}

// Auto is what --accel auto picks on the host the report describes, and
// why: KVM where it has an exact instruction counter, else the soft CPU
// (as ChooseAccel decides from ExactCounter alone).
func (r *Report) Auto() (machine.Accel, string) {
	_, why, _ := r.Has("CPL0 emulated")
	return auto(why)
}

// auto is the choice and its reason, given why this host's KVM has no
// exact instruction counter ("" where it has one).
func auto(noCounter string) (machine.Accel, string) {
	if noCounter != "" {
		return machine.AccelSoft, "this host's KVM cannot place events at any instruction: " + noCounter
	}
	return machine.AccelKVM, "this host's KVM counts instructions exactly"
}

var (
	exactOnce sync.Once
	exactErr  error
)

// ExactCounter checks that this host's KVM counts instructions exactly, so
// that a recording can place asynchronous events at any instruction and
// find them again on replay. Without it a recording places them at the
// guest's own exits only (recorder, machine.SetExitsOnly), which a guest
// that races its timer ticks cannot live with. It runs one small guest
// once per process (the counter probe's, with short loops: a few
// milliseconds, where the whole probe takes a few hundred); the error
// names what the host lacks.
func ExactCounter() error {
	exactOnce.Do(func() { exactErr = checkExactCounter() })
	return exactErr
}

func checkExactCounter() error {
	if err := kvmUsable(); err != nil {
		return err
	}
	// One thread runs the vCPU, so the watchdog's kick finds it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g, err := startCounterGuest(ModeLong64, 10, 100, 2*time.Second)
	if err != nil {
		return fmt.Errorf("probing KVM's instruction counter: %w", err)
	}
	defer g.close()
	c := g.countLoops()
	switch {
	case c.err != nil:
		return fmt.Errorf("probing KVM's instruction counter: %w", c.err)
	case !c.present:
		return errors.New("this host's KVM has no exact instruction counter (no insn_emulation statistic)")
	case c.inexact() != "":
		return fmt.Errorf("this host's KVM has no exact instruction counter (its insn_emulation statistic %s: KVM runs guest code natively)", c.inexact())
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
