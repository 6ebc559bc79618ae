//go:build !linux

package probe

import (
	"fmt"

	"vmrr/machine"
)

// ExactCounter: there is no KVM here.
func ExactCounter() error { return machine.ErrNoKVM }

// ChooseAccel resolves an --accel request where there is no KVM (it needs
// Linux): auto and soft are the soft CPU, kvm is an error.
func ChooseAccel(req machine.Accel) (machine.Accel, string, error) {
	switch req {
	case machine.AccelSoft:
		return machine.AccelSoft, "asked for", nil
	case machine.AccelKVM:
		return "", "", fmt.Errorf("--accel kvm: %w", machine.ErrNoKVM)
	case machine.AccelAuto, "":
		return machine.AccelSoft, "no KVM on this system", nil
	}
	return "", "", fmt.Errorf("unknown accelerator %q (want auto, kvm or soft)", req)
}
