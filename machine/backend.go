package machine

import (
	"errors"
	"fmt"

	"vmrr/machine/cpu"
)

// Accel names the CPU that runs the guest (QEMU's word for it).
type Accel string

// The CPU backends. AccelAuto is a choice, not a backend: KVM where this
// host's KVM counts instructions exactly, the soft CPU otherwise.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelSoft Accel = "soft"
)

// ParseAccel checks an --accel value.
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case AccelAuto, AccelKVM, AccelSoft:
		return a, nil
	}
	return "", fmt.Errorf("unknown accelerator %q (want auto, kvm or soft)", s)
}

// exitKind is why the CPU stopped running guest code.
type exitKind int

const (
	exitIO        exitKind = iota + 1 // port I/O, not yet complete (see completeIO)
	exitMMIO                          // a guest access to non-RAM or read-only RAM
	exitHLT                           // HLT; RIP is past it
	exitWindow                        // the guest can now take the interrupt that was asked for
	exitDebug                         // a single-step or an execute breakpoint
	exitShutdown                      // triple fault
	exitEmulate                       // KVM could not emulate the instruction at RIP
	exitInternal                      // the CPU cannot go on; detail says why
	exitMSR                           // RDMSR or WRMSR the VMM handles (see finishMSR)
	exitFailEntry                     // the CPU refused the vCPU state
)

// exit describes one stop of the CPU. Fields are set per kind.
type exit struct {
	kind exitKind
	// deterministic: the guest's own instructions caused the stop, so
	// record and replay see it at the same place.
	deterministic bool

	// exitIO: one element of count for string I/O, data holds count*size
	// bytes (filled by the VMM for an IN).
	port  uint16
	out   bool
	size  int
	count int
	data  []byte

	// exitMMIO: the access and its bytes (filled by the VMM for a read).
	gpa   uint64
	write bool
	mmio  []byte

	debug cpu.DebugExit // exitDebug

	// exitMSR: the MSR; for RDMSR the VMM sets *msrData.
	msrIndex uint32
	msrWrite bool
	msrData  *uint64

	detail string // exitInternal, exitFailEntry
}

// errKicked is returned by backend.run when Kick (or the soft CPU's
// instruction limit) stopped the guest between two instructions.
var errKicked = errors.New("machine: vCPU kicked")

// backend is a CPU that runs the guest for the machine's one exit loop:
// KVM (backend_kvm.go, the only code that knows KVM) or the soft CPU
// (backend_soft.go). The state accessors mirror the KVM vCPU ioctls; run
// enters the guest until the next exit.
type backend interface {
	accel() Accel
	Regs() (cpu.Regs, error)
	SetRegs(*cpu.Regs) error
	Sregs() (cpu.Sregs, error)
	SetSregs(*cpu.Sregs) error
	FPU() (cpu.FPU, error)
	SetFPU(*cpu.FPU) error
	Events() (cpu.Events, error)
	SetEvents(*cpu.Events) error
	DebugRegs() (cpu.DebugRegs, error)
	SetDebugRegs(*cpu.DebugRegs) error
	GetMSRs([]cpu.MSREntry) error
	SetMSRs([]cpu.MSREntry) error
	// interrupt injects an external interrupt at the next entry (KVM) or
	// now (soft); the caller checked that the vCPU can take it.
	interrupt(vector uint8) error
	// setDebug arms single-stepping and execute breakpoints (linear
	// addresses) for the next entries.
	setDebug(step bool, breakpoints []uint64) error
	// run enters the guest until the next exit; window asks for an
	// exitWindow as soon as the guest can take an interrupt.
	run(window bool) (*exit, error)
	// completeIO finishes the I/O exit run returned (with the data the VMM
	// put in exit.data for an IN) without running further.
	completeIO() error
	// finishMSR tells the CPU whether the MSR access of the last exit
	// succeeded (false raises #GP in the guest).
	finishMSR(ok bool)
	// insnCount is the exact number of instructions run so far, where the
	// CPU can count them.
	insnCount() (uint64, bool)
	// kick makes run return errKicked soon; safe from any goroutine.
	kick()
	close()
}
