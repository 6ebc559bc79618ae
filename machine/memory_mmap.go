//go:build unix

package machine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// allocRAM maps guest RAM anonymously: pages the guest never touches cost
// nothing, and KVM can install the mapping as a memory slot.
func allocRAM(size uint64) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|mapNoReserve)
	if err != nil {
		return nil, fmt.Errorf("machine: map %d bytes of guest RAM: %w", size, err)
	}
	// Transparent huge pages: hashing all of RAM at the end of a recording
	// or replay reads every page, and untouched ones then cost a fault each
	// 4 KiB (~14 ms for 64 MiB here) but one each 2 MiB (~4 ms). Advice
	// only: where the kernel declines, RAM works as before.
	if madvHugePage >= 0 {
		_ = unix.Madvise(b, madvHugePage)
	}
	return b, nil
}

func freeRAM(b []byte) { unix.Munmap(b) }
