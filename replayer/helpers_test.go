package replayer

import (
	"os"

	"vmrr/machine"
)

// testAccel is the CPU the tests run guests on: $VMRR_TEST_ACCEL (kvm or
// soft), else the soft CPU, which every host has.
func testAccel() machine.Accel {
	if a := os.Getenv("VMRR_TEST_ACCEL"); a != "" {
		return machine.Accel(a)
	}
	return machine.AccelSoft
}
