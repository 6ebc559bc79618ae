//go:build linux

package probe

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/machine/kvm"
)

// errTimeout is a probe guest that ran past its time limit.
var errTimeout = errors.New("the probe guest ran too long")

// rawGuest is a probe guest driven KVM_RUN by KVM_RUN, without the
// machine's exit loop: the mechanism probes want to see each exit as KVM
// reports it, and to time it without vmrr's own work around it.
type rawGuest struct {
	m       *machine.Machine
	v       *kvm.VCPU
	expired atomic.Bool
	wd      *time.Timer
}

// idleHooks satisfies machine.Hooks for machines whose exit loop never
// runs.
type idleHooks struct{}

func (idleHooks) BeforeRun(*machine.Machine) error { return nil }
func (idleHooks) Idle(*machine.Machine) error      { return nil }
func (idleHooks) Input(*machine.Machine, machine.Input, func() uint64) (uint64, error) {
	return 0, nil
}
func (idleHooks) NonDet(*machine.Machine, cpu.NonDet) (uint64, error) { return 0, nil }
func (idleHooks) Port(*machine.Machine, uint16, bool, []byte) (bool, error) {
	return false, nil
}
func (idleHooks) Debug(*machine.Machine, cpu.DebugExit) error { return nil }
func (idleHooks) Interrupted(*machine.Machine) error          { return nil }
func (idleHooks) Now() time.Duration                          { return 0 }

// startRaw builds a guest running a's code in mode. Its watchdog kicks the
// vCPU out after limit. The caller must close it.
func startRaw(mode Mode, a *asm, memBytes uint64, limit time.Duration) (*rawGuest, error) {
	m, err := newGuest(mode, a.b, idleHooks{}, memBytes)
	if err != nil {
		return nil, err
	}
	g := &rawGuest{m: m, v: m.KVMVCPU()}
	g.wd = time.AfterFunc(limit, func() {
		g.expired.Store(true)
		g.v.Kick()
	})
	return g, nil
}

func (g *rawGuest) close() {
	g.wd.Stop()
	g.m.Close()
}

// next runs the guest to its next exit and returns the exit reason. Kicks
// that are not the watchdog's (signals for the Go runtime) are retried.
func (g *rawGuest) next() (uint32, error) {
	for {
		err := g.v.Run()
		if errors.Is(err, kvm.ErrInterrupted) {
			if g.expired.Load() {
				return 0, errTimeout
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		return g.v.State().ExitReason, nil
	}
}

// port returns the port and first data byte of a PIO exit.
func (g *rawGuest) port() (uint16, byte) {
	io, data := g.v.IO()
	if len(data) == 0 {
		return io.Port, 0
	}
	return io.Port, data[0]
}

// until runs the guest until it writes port p, handing every other exit
// to fn (nil: any other exit is unexpected). fn returns false to stop.
func (g *rawGuest) until(p uint16, fn func(reason uint32) (bool, error)) error {
	for {
		r, err := g.next()
		if err != nil {
			return err
		}
		if r == kvm.ExitIO {
			if port, _ := g.port(); port == p {
				return nil
			}
		}
		if fn == nil {
			return g.unexpected(r)
		}
		more, err := fn(r)
		if err != nil || !more {
			return err
		}
	}
}

// unexpected describes an exit a probe did not expect, as an error.
func (g *rawGuest) unexpected(r uint32) error {
	return errors.New(g.describe(r))
}

// describe names an exit: the guest's own exception (its stub wrote the
// vector) is the most common surprise.
func (g *rawGuest) describe(r uint32) string {
	switch r {
	case kvm.ExitIO:
		port, v := g.port()
		if port == portFault {
			return "the guest got " + cpu.ExceptionName(uint8(v))
		}
		return fmt.Sprintf("port %#x exit", port)
	case kvm.ExitInternalError:
		return fmt.Sprintf("KVM_EXIT_INTERNAL_ERROR (suberror %d)", g.v.Internal().Suberror)
	case kvm.ExitDebug:
		d := g.v.Debug()
		return fmt.Sprintf("debug exit (exception %d at %#x)", d.Exception, d.PC)
	case kvm.ExitMMIO:
		return fmt.Sprintf("MMIO exit at %#x", g.v.MMIO().PhysAddr)
	case kvm.ExitShutdown:
		return "triple fault"
	case kvm.ExitHLT:
		return "HLT exit"
	case kvm.ExitFailEntry:
		return "KVM refused to enter the guest"
	}
	return fmt.Sprintf("exit reason %d", r)
}

// rip is the guest's RIP (0 if it cannot be read).
func (g *rawGuest) rip() uint64 {
	r, _ := g.v.Regs()
	return r.RIP
}
