//go:build linux

package kvm

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCreateVMUnderSignals builds VMs while the process is flooded with
// SIGURG, the Go runtime's preemption signal. KVM_CREATE_VM gives up with
// EINTR when a signal is pending; the wrappers must retry, not fail (a
// recording once failed this way at start-up).
func TestCreateVMUnderSignals(t *testing.T) {
	sys, err := Open()
	if err != nil {
		t.Skipf("needs /dev/kvm: %v", err)
	}
	defer sys.Close()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			syscall.Kill(os.Getpid(), syscall.SIGURG)
		}
	}()
	defer func() { stop.Store(true); <-done }()
	// KVM_CREATE_VM's lock-taking walks every mapping of the process; many
	// of them widen its window for a signal to land in.
	for i := range 5000 {
		prot := unix.PROT_READ
		if i%2 == 0 {
			prot |= unix.PROT_WRITE // unlike neighbours do not merge
		}
		m, err := unix.Mmap(-1, 0, 4096, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
	}
	mem := make([]byte, 1<<20)
	for i := range 200 {
		vm, err := sys.CreateVM()
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
		err = vm.SetMemoryRegion(0, 0, 0, mem)
		if err == nil {
			var v *VCPU
			if v, err = vm.CreateVCPU(0); err == nil {
				v.Close()
			}
		}
		vm.Close()
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
	}
}
