// Package replayer drives a machine from a recording: it feeds logged inputs,
// places asynchronous events, checks for divergence, keeps snapshots and
// moves through the recording in both directions.
//
// Two parts share the package. Engine is the replay: the machine's hooks,
// the only reader of the log. Timeline is the debugger's history (the
// Session): snapshots, breakpoints, motions in both directions. Their
// boundary in one sentence: Timeline uses Engine only through the replay
// interface (timeline.go) - the machine, one run under the debugger's
// control (breakpoints, single-stepping, a stop check), the Engine's part
// of a snapshot (save, restore) and what the log says (next event, header,
// image, patches, path) - and never touches Engine's fields.
package replayer

import (
	"vmrr/machine/cpu"
	"vmrr/position"
)

// StopKind says why a Session stopped moving.
type StopKind int

// Reasons a Session stops.
const (
	StopStep        StopKind = iota // a step finished
	StopBreakpoint                  // an execution breakpoint was reached
	StopWatchpoint                  // a watched range was written (or read)
	StopBegin                       // moving backwards reached the start
	StopEnd                         // moving forwards reached the end of the log
	StopInterrupted                 // Interrupt was called
	StopExited                      // the guest ended the run (debug-exit port)
	StopCrashed                     // the guest crashed (triple fault, ...)
	StopDiverged                    // replay no longer matches the recording
)

// Stop describes where and why a Session stopped.
type Stop struct {
	Kind    StopKind
	Pos     position.Pos
	RIP     uint64
	Addr    uint64 // the watched address for StopWatchpoint
	Status  int    // guest exit status for StopExited
	Message string // one line for people: crash reason, divergence, ...
}

// BreakKind is the kind of a breakpoint or watchpoint.
type BreakKind int

// Breakpoint kinds, numbered as in the GDB remote protocol's Z packets.
const (
	BreakSoftware BreakKind = 0
	BreakHardware BreakKind = 1
	WatchWrite    BreakKind = 2
	WatchRead     BreakKind = 3
	WatchAccess   BreakKind = 4
)

// Breakpoint is a breakpoint or watchpoint set on a Session. Addresses are
// guest virtual addresses.
type Breakpoint struct {
	ID   int
	Kind BreakKind
	Addr uint64
	Len  uint64
}

// Registers is the full register state of the vCPU.
type Registers struct {
	cpu.Regs
	Sregs cpu.Sregs
	// FPU/SSE state: x87 stack as 80-bit values, control words, XMM0-15, MXCSR.
	ST    [8][10]byte
	FCW   uint16
	FSW   uint16
	FTW   uint16
	XMM   [16][16]byte
	MXCSR uint32
}

// EventInfo is one event of the recording, rendered for people.
type EventInfo struct {
	Index int
	Pos   position.Pos
	Kind  string // "rdtsc", "irq", "port-in", "serial-rx", ...
	Text  string // kind-specific values
}

// SnapshotInfo describes one snapshot a Session keeps.
type SnapshotInfo struct {
	Pos   position.Pos
	Event int    // index of the next event at that point
	Bytes uint64 // memory the snapshot holds
}

// Session is a recording being replayed under control: the interface the
// gdbstub and the shell share. Methods other than Interrupt are called from
// one goroutine at a time.
type Session interface {
	// Position is where the replay stands now.
	Position() position.Pos
	// Registers reads the vCPU's registers at the current position.
	Registers() (Registers, error)
	// ReadVirtual reads guest memory at a virtual address, translated
	// through the guest's page tables; it returns how much it could read.
	ReadVirtual(addr uint64, b []byte) (int, error)
	// ReadPhysical reads guest physical memory.
	ReadPhysical(addr uint64, b []byte) (int, error)
	// Translate maps a guest virtual address to a physical one.
	Translate(addr uint64) (uint64, error)

	// Step runs n instructions forwards (or to a breakpoint, or the end).
	Step(n int) (Stop, error)
	// ReverseStep moves n instructions backwards.
	ReverseStep(n int) (Stop, error)
	// Continue runs forwards to a breakpoint, watchpoint, the end or Interrupt.
	Continue() (Stop, error)
	// ReverseContinue moves back to the last breakpoint or watchpoint hit
	// before now, or to the start.
	ReverseContinue() (Stop, error)
	// Goto moves to a position.
	Goto(p position.Pos) (Stop, error)
	// GotoEvent moves to the point where event k of the log is applied.
	GotoEvent(k int) (Stop, error)
	// GotoStart and GotoEnd move to the ends of the recording.
	GotoStart() (Stop, error)
	GotoEnd() (Stop, error)
	// Interrupt asks a running Continue, Step or reverse motion to stop
	// soon; it may be called from any goroutine.
	Interrupt()

	// AddBreakpoint sets a breakpoint or watchpoint and returns its ID.
	AddBreakpoint(kind BreakKind, addr, length uint64) (int, error)
	// RemoveBreakpoint deletes a breakpoint by ID.
	RemoveBreakpoint(id int) error
	// Breakpoints lists the breakpoints set.
	Breakpoints() []Breakpoint

	// Events returns up to count events starting at index from.
	Events(from, count int) ([]EventInfo, error)
	// EventCount is the number of events in the log.
	EventCount() int
	// NextEvent is the index of the next event to be applied from here.
	NextEvent() int
	// Console is the guest's serial output up to the current position.
	Console() []byte
	// Snapshots lists the snapshots held now.
	Snapshots() []SnapshotInfo
	// ImagePath is the guest image's path (for symbols); "" if unknown.
	ImagePath() string
	// OriginalBytes rewrites b, read from virtual address addr, so that
	// bytes vmrr patched show their original values.
	OriginalBytes(addr uint64, b []byte)
}
