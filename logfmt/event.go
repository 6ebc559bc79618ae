package logfmt

import (
	"fmt"
	"vmrr/machine/cpu"
	"vmrr/position"
)

// Kind is the kind of an event in a recording.
type Kind uint8

// Event kinds. The numbers are part of the format: never renumber them. A
// kind added later gets the next number; readers that do not know it refuse
// the log with an *UnknownKindError instead of guessing at its layout.
const (
	KindNonDet     Kind = 1 // a non-deterministic instruction's result(s); Instr says which
	KindPortIn     Kind = 2 // value of a port read from a device that sees the outside
	KindMMIORead   Kind = 3 // value of an MMIO read from a device that sees the outside
	KindInterrupt  Kind = 4 // an asynchronous interrupt injected at Pos, with a Landing
	KindSerialRX   Kind = 5 // bytes that arrived on the serial line at Pos
	KindCheckpoint Kind = 6 // periodic state hash
	KindRingFlush  Kind = 7 // a batch of ring entries (the in-guest ring buffer was flushed)
	KindEnd        Kind = 8 // written by Close; also in the footer
	// KindInject: the interrupt the PIC was holding was injected into the
	// vCPU at Pos, with a Landing. It is recorded where replay cannot find
	// the injection point by itself (after a kick, say).
	KindInject Kind = 9

	// maxKind is the highest kind this version reads. The event encoding
	// keeps the kind in the low four bits of its first byte, so kinds up to
	// 15 fit without a format change.
	maxKind = KindInject
)

// String names a kind the way vmrr dump prints it.
func (k Kind) String() string {
	switch k {
	case KindNonDet:
		return "nondet"
	case KindPortIn:
		return "port-in"
	case KindMMIORead:
		return "mmio-read"
	case KindInterrupt:
		return "irq"
	case KindSerialRX:
		return "serial-rx"
	case KindCheckpoint:
		return "checkpoint"
	case KindRingFlush:
		return "ring-flush"
	case KindEnd:
		return "end"
	case KindInject:
		return "inject"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Landing is where an asynchronous event was delivered when there is no
// exact instruction count: the replayer runs to the exit count, then stops
// at the first hit of RIP whose register and memory hashes match.
type Landing struct {
	RIP     uint64
	RegHash uint64
	MemHash uint64
	// Pages are the pages dirtied since the previous event: guest frame
	// numbers for KindInterrupt, KindInject and KindSerialRX; for
	// KindCheckpoint, frame<<32 | CRC-32C of the page's 4 KiB, for the pages
	// written since the previous checkpoint.
	Pages []uint64
}

// RingEntry is one entry of the in-guest non-determinism ring, as the guest
// wrote it (machine.RingEntrySize bytes: value, kind, aux).
type RingEntry struct {
	Kind  uint32 // a cpu.NonDet, in the ring's 32 bits
	Aux   uint32 // IA32_TSC_AUX for RDTSCP
	Value uint64
}

// Event is one record of the event stream. Only the fields its Kind names
// are stored; the others are ignored by the writer and zero when read.
type Event struct {
	Kind  Kind
	Pos   position.Pos
	Instr cpu.NonDet // KindNonDet: the instruction
	// Values are a KindNonDet's results (1 to 7; rdtscp: tsc, aux), the
	// value of a KindPortIn or KindMMIORead (exactly one), or a
	// KindCheckpoint's registers (0 to 64, in the order the recorder
	// gives them: machine.RegNames, then the console's length and CRC).
	Values []uint64
	Port   uint16 // KindPortIn
	Addr   uint64 // KindMMIORead
	Size   uint8  // KindPortIn/KindMMIORead access size in bytes
	Vector uint8  // KindInterrupt, KindInject
	// Landing is where a KindInterrupt, KindInject or KindSerialRX was
	// delivered. A KindCheckpoint stores its Pages only.
	Landing Landing
	Data    []byte // KindSerialRX
	// RIP, RegHash and MemHash are a KindCheckpoint's state.
	RIP, RegHash, MemHash uint64
	Ring                  []RingEntry // KindRingFlush
	End                   *EndRecord  // KindEnd
}

// EndRecord says how a recording ended. Close writes it as the last event
// and again in the footer.
type EndRecord struct {
	Reason    string // one line: "guest exited", "triple fault at ...", "interrupted"
	Status    int    // the exit status vmrr record returned
	RIP       uint64
	StateHash uint64
	Events    uint64       // events before the end event; Close fills it in
	Pos       position.Pos // where the run ended
}

// SetBetweenExits marks an end that came between two exits of a recording
// that placed its events at exits only (Header.ExitsOnly): its position
// counts exits alone, so the replay stops at the last exit, and no RIP or
// state of the real end is kept to compare with.
func (e *EndRecord) SetBetweenExits() { e.RIP, e.StateHash = 0, 0 }

// BetweenExits reports an end marked by SetBetweenExits (in a log whose
// header says ExitsOnly; elsewhere both fields are always set).
func (e *EndRecord) BetweenExits() bool { return e.RIP == 0 && e.StateHash == 0 }

// FixedSize is the size of e written the simple way: every number as a
// fixed-width field (8 bytes for values, addresses and positions), no
// deltas, no compression. It is the baseline the format's size is measured
// against (vmrr dump --stats, the benchmarks).
func FixedSize(e *Event) int {
	n := 1 + 16 // kind, position
	switch e.Kind {
	case KindNonDet:
		n += 2 + 8*len(e.Values)
	case KindPortIn:
		n += 2 + 1 + 8
	case KindMMIORead:
		n += 8 + 1 + 8
	case KindInterrupt, KindInject:
		n += 1 + 24 + 4 + 8*len(e.Landing.Pages)
	case KindSerialRX:
		n += 4 + len(e.Data) + 24 + 4 + 8*len(e.Landing.Pages)
	case KindCheckpoint:
		n += 24 + 4 + 8*len(e.Values) + 4 + 8*len(e.Landing.Pages)
	case KindRingFlush:
		n += 4 + 16*len(e.Ring)
	case KindEnd:
		n += 4 + 32
		if e.End != nil {
			n += len(e.End.Reason)
		}
	}
	return n
}
