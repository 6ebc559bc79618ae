// Package recorder drives a machine live, with the host clock, the host's
// random numbers and real serial input, and writes every non-deterministic
// input it gives the guest to a log.
package recorder

import (
	"fmt"
	"io"
	"sync"
	"time"

	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/nondet"
)

// maxLateTicks bounds how many timer ticks are delivered back to back after
// the vCPU was away (the host was busy): like a real PIT whose interrupt is
// not acknowledged, later ticks are lost, not queued.
const maxLateTicks = 1

// maxExitWait bounds how long a due timer tick waits for the guest's next
// exit where events are placed at exits only (machine.SetExitsOnly): a
// guest that computes, or spins waiting for the tick, without port I/O or
// HLT for that long cannot be recorded there, and saying so beats a
// recording that never ends.
const maxExitWait = 2 * time.Second

// Live is the outside world of a live run: the host clock drives the PIT,
// serial input comes from a reader, and non-deterministic instructions run
// on the host. It implements machine.Hooks. The recorder wraps it and logs
// what it delivers; `vmrr run` uses it alone.
type Live struct {
	start    time.Time
	deadline time.Time // zero: no time limit

	nextTick time.Duration
	ticking  bool

	serialMu  sync.Mutex
	serialIn  []byte
	serialEOF bool
	hasSerial bool
	wake      chan struct{} // serial input arrived

	kickMu sync.Mutex
	kick   *time.Timer
	m      *machine.Machine // the running machine, for kicks

	// virtual, if set, is the instruction clock; skipped is the time an
	// idle guest skipped ahead on it; perInsn is what one instruction is
	// worth on it.
	virtual func() time.Duration
	skipped time.Duration
	perInsn time.Duration

	// OnTick and OnSerial, if set, are told of each delivery (the recorder).
	OnTick   func(m *machine.Machine)
	OnSerial func(m *machine.Machine, b []byte)
}

// NewLive makes a live outside world. serial may be nil; timeout 0 means
// no limit.
func NewLive(serial io.Reader, timeout time.Duration) *Live {
	l := &Live{start: time.Now(), wake: make(chan struct{}, 1)}
	if timeout > 0 {
		l.deadline = l.start.Add(timeout)
	}
	if serial != nil {
		l.hasSerial = true
		go l.readSerial(serial)
	}
	return l
}

func (l *Live) readSerial(r io.Reader) {
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		l.serialMu.Lock()
		l.serialIn = append(l.serialIn, buf[:n]...)
		if err != nil {
			l.serialEOF = true
		}
		m := l.m
		l.serialMu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		if m != nil && n > 0 {
			m.Kick()
		}
		if err != nil {
			return
		}
	}
}

// Now is the time since the run started.
func (l *Live) Now() time.Duration {
	if l.virtual != nil {
		return l.virtual() + l.skipped
	}
	return time.Since(l.start)
}

// UseInstructionClock makes the guest's time follow the instructions it
// executes, per instruction each, instead of the host clock, and lets an
// idle guest skip ahead to its next timer tick. Exact mode on KVM uses it
// (one microsecond an instruction): it runs the guest some ten times
// slower than the host clock would have a timer expect, so a fast timer
// would leave no time for anything else. On the soft CPU it is --clock:
// the run is then a function of the image, its input and the clock rate
// alone (the TSC follows the same clock), which makes a timing bug
// reproducible on purpose.
func (l *Live) UseInstructionClock(m *machine.Machine, per time.Duration) {
	l.perInsn = per
	l.virtual = func() time.Duration { return time.Duration(m.Position().Insn) * per }
}

// value is what a non-deterministic instruction gives the guest in a live
// run: the host's, but on the instruction clock the TSC counts its
// nanoseconds (a 1 GHz TSC), so the guest's TSC and timer agree.
func (l *Live) value(kind cpu.NonDet) (uint64, error) {
	if l.virtual != nil && (kind == cpu.RDTSC || kind == cpu.RDTSCP) {
		return uint64(l.Now().Nanoseconds()), nil
	}
	return nondet.Host(kind)
}

// deliver raises what is due now: timer ticks and serial bytes. Right
// after an injection, before the vCPU took it, it raises nothing: no stop
// of the replay's debugger is there (replayer.Timeline), so an event placed
// there could not be reached by "goto event"; it waits for the next stop.
// (Asked only when something is due: on KVM the question is an ioctl.)
func (l *Live) deliver(m *machine.Machine) {
	now := l.Now()
	if m.PIT().TakeChanged() {
		p, ok := m.PIT().Period()
		l.ticking = ok
		l.nextTick = now + p
	}
	tickDue := l.ticking && now >= l.nextTick
	l.serialMu.Lock()
	inputDue := len(l.serialIn) > 0
	l.serialMu.Unlock()
	if (tickDue || inputDue) && m.Injecting() {
		return
	}
	if tickDue {
		p, _ := m.PIT().Period()
		m.RaiseIRQ(machine.IRQTimer)
		m.PIT().Fired()
		if l.OnTick != nil {
			l.OnTick(m)
		}
		l.nextTick += p
		if late := now - l.nextTick; late > time.Duration(maxLateTicks)*p {
			l.nextTick = now + p
		}
		if !m.PIT().Periodic() {
			l.ticking = false
		}
	}
	l.serialMu.Lock()
	in := l.serialIn
	l.serialIn = nil
	l.serialMu.Unlock()
	if len(in) > 0 {
		m.UART().Receive(in)
		if l.OnSerial != nil {
			l.OnSerial(m, in)
		}
	}
}

// BeforeRun delivers due events and arms a kick for the next tick.
// Placing events at exits only, a stop that is not one of the guest's
// exits delivers nothing.
func (l *Live) BeforeRun(m *machine.Machine) error {
	if l.m == nil {
		l.serialMu.Lock()
		l.m = m
		l.serialMu.Unlock()
	}
	if m.ExitsOnly() && !m.AtDeterministicExit() {
		if late := l.Now() - l.nextTick; l.ticking && late > maxExitWait {
			return fmt.Errorf("recorder: a timer tick has waited %v for the guest's next port I/O or HLT, the only places this recording puts events (see --exits-only): record on the soft CPU (--accel soft), without --exits-only", late.Round(time.Millisecond))
		}
	} else {
		l.deliver(m)
	}
	if !l.deadline.IsZero() && time.Now().After(l.deadline) {
		m.End(machine.ReasonTimeout, "time limit reached")
		return nil
	}
	l.armKick(m)
	return nil
}

// armKick sets the timer that kicks the vCPU out of the guest at the next
// tick or the deadline, whichever is first.
func (l *Live) armKick(m *machine.Machine) {
	wait := time.Duration(-1)
	switch {
	case l.ticking && m.ExitsOnly():
		// A kick at the tick could not deliver it (see BeforeRun): wake
		// up only to see whether it waited too long.
		wait = max(l.nextTick+maxExitWait-l.Now(), 0) + time.Millisecond
	case l.ticking && l.virtual == nil:
		wait = l.nextTick - l.Now()
	case l.ticking:
		// On the instruction clock the tick is due at an instruction
		// count: stop there (where the CPU counts exactly).
		if n := (l.nextTick - l.skipped + l.perInsn - 1) / l.perInsn; n > 0 {
			m.StopAt(uint64(n)) // the first count at or past the tick
		}
	}
	if !l.deadline.IsZero() {
		if d := time.Until(l.deadline); wait < 0 || d < wait {
			wait = d
		}
	}
	if wait < 0 {
		return
	}
	l.kickMu.Lock()
	defer l.kickMu.Unlock()
	if l.kick == nil {
		l.kick = time.AfterFunc(wait, m.Kick)
		return
	}
	l.kick.Reset(wait)
}

// Idle waits for the next tick, serial input or the deadline. With none
// of them to wait for, nothing can wake the guest: it is hung.
func (l *Live) Idle(m *machine.Machine) error {
	for {
		l.deliver(m)
		if m.Pending() {
			return nil
		}
		if !l.deadline.IsZero() && !time.Now().Before(l.deadline) {
			m.End(machine.ReasonTimeout, "time limit reached while the guest was idle")
			return nil
		}
		l.serialMu.Lock()
		noInput := !l.hasSerial || (l.serialEOF && len(l.serialIn) == 0)
		l.serialMu.Unlock()
		if !l.ticking && noInput && l.deadline.IsZero() {
			m.End(machine.ReasonHung, "halted waiting for an interrupt that can never come (no timer, no serial input)")
			return nil
		}
		if l.virtual != nil && l.ticking {
			// On the instruction clock an idle guest's time stands still:
			// move it to the next tick.
			l.skipped += max(l.nextTick-l.Now(), 0)
			continue
		}
		l.sleep()
	}
}

// sleep waits until the next tick is due, the deadline passes or serial
// input arrives. The tick may be due already (time went on since deliver
// looked), which is no wait at all, not "no timer".
func (l *Live) sleep() {
	var wake <-chan time.Time
	if l.ticking || !l.deadline.IsZero() {
		wait := time.Until(l.deadline)
		if l.ticking && (l.deadline.IsZero() || l.nextTick-l.Now() < wait) {
			wait = l.nextTick - l.Now()
		}
		t := time.NewTimer(max(wait, 0))
		defer t.Stop()
		wake = t.C
	}
	select {
	case <-wake:
	case <-l.wake:
	}
}

// Input returns the live value.
func (l *Live) Input(m *machine.Machine, in machine.Input, live func() uint64) (uint64, error) {
	return live(), nil
}

// NonDet executes the instruction on the host (see value).
func (l *Live) NonDet(m *machine.Machine, kind cpu.NonDet) (uint64, error) { return l.value(kind) }

// Port claims nothing by itself.
func (l *Live) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	return false, nil
}

// Debug ignores debug exits: a live run sets no breakpoints.
func (l *Live) Debug(m *machine.Machine, d cpu.DebugExit) error { return nil }

// Interrupted has nothing to do: BeforeRun delivers what is due.
func (l *Live) Interrupted(m *machine.Machine) error { return nil }

// Stop releases the kick timer.
func (l *Live) Stop() {
	l.kickMu.Lock()
	defer l.kickMu.Unlock()
	if l.kick != nil {
		l.kick.Stop()
	}
}
