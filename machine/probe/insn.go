//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/position"
)

// Outcome is what happened when a guest ran one instruction.
type Outcome string

// The outcomes of an instruction probe.
const (
	// OutcomeKVM: the host's KVM ran it in the kernel (its emulation
	// counter counted it) with no exit to vmrr.
	OutcomeKVM Outcome = "kvm emulates"
	// OutcomeEmulator: KVM gave up with KVM_EXIT_INTERNAL_ERROR and vmrr's
	// emulator (machine/x86emu) ran it: a free trap point.
	OutcomeEmulator Outcome = "exits to vmrr's emulator"
	// OutcomeNative: it ran without any exit to vmrr, so vmrr never saw it.
	// A non-deterministic instruction with this outcome must be patched or
	// single-stepped, whether the CPU or KVM's in-kernel emulator ran it.
	OutcomeNative Outcome = "runs natively without exit"
	// OutcomeUD: the guest got #UD (Cell.Detail says who raised it).
	OutcomeUD Outcome = "#UD"
	// OutcomeFault: the guest got another exception (Cell.Detail names it).
	OutcomeFault Outcome = "fault"
	// OutcomeNA: the instruction does not exist in that mode.
	OutcomeNA Outcome = "n/a"
	// OutcomeFailed: the probe itself did not work (Cell.Detail says why).
	OutcomeFailed Outcome = "probe failed"
)

// Cell is the outcome of one instruction in one mode.
type Cell struct {
	Outcome Outcome `json:"outcome"`
	// Counted reports that KVM's emulation counter advanced by exactly the
	// instruction (the host's exact instruction counter saw it).
	Counted bool `json:"counted,omitempty"`
	// Exits is the number of exits to vmrr the instruction caused.
	Exits  uint64 `json:"exits,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// InsnRow is one instruction across the modes.
type InsnRow struct {
	Name string `json:"name"`
	// NonDet marks instructions whose result differs from run to run.
	NonDet bool          `json:"nondet"`
	Cells  map[Mode]Cell `json:"cells"`
}

// insnSpec describes how to probe one instruction.
type insnSpec struct {
	name   string
	nondet bool
	code   func(mode Mode) []byte // nil result: n/a in that mode
	// frame builds the stack contents the instruction consumes, given the
	// address it should continue at; the guest points its stack at it.
	frame func(mode Mode, next uint64) []byte
	// vector, if nonzero, is the interrupt the instruction raises on
	// success: that vector's stub ends the probe instead of the mark, after
	// running extra more instructions (push, jmp, pop).
	vector int
	extra  int
	// setup runs before the marks (loads operands).
	setup func(a *asm)
	// check, if set, describes the registers after the instruction.
	check func(r cpu.Regs) string
}

func fixed(b ...byte) func(Mode) []byte { return func(Mode) []byte { return b } }

// iretFrame lays out an IRET frame of width bytes a slot returning to next
// at the same privilege level (64-bit IRET always pops SS:RSP too).
func iretFrame(mode Mode, width int, next uint64) []byte {
	var slots []uint64
	switch mode {
	case ModeReal16:
		slots = []uint64{next, 0, 2}
	case ModeProt32:
		slots = []uint64{next, selCode, 2}
	case ModeLong64:
		slots = []uint64{next, selCode, 2, kernelStack, selData}
	case ModeUser64:
		slots = []uint64{next, selUserCode, userRFLAGS, userStack, selUserData}
	}
	b := make([]byte, 0, len(slots)*width)
	for _, s := range slots {
		if width == 8 {
			b = binary.LittleEndian.AppendUint64(b, s)
		} else {
			b = binary.LittleEndian.AppendUint32(b, uint32(s))
		}
	}
	return b
}

// insnSpecs is the instruction table's rows: the instructions this host's
// KVM may not emulate, and the non-deterministic ones.
var insnSpecs = []insnSpec{
	{name: "IRETD", code: func(m Mode) []byte {
		if m == ModeReal16 {
			return []byte{0x66, 0xcf}
		}
		return []byte{0xcf}
	}, frame: func(m Mode, next uint64) []byte { return iretFrame(m, 4, next) }},
	{name: "IRETQ", code: func(m Mode) []byte {
		if m.bits() != 64 {
			return nil
		}
		return []byte{0x48, 0xcf}
	}, frame: func(m Mode, next uint64) []byte { return iretFrame(m, 8, next) }},
	{name: "INT n", code: fixed(0xcd, 0x40), vector: 0x40, extra: 3},
	{name: "POPCNT", code: fixed(0xf3, 0x0f, 0xb8, 0xc1)},
	{name: "RDTSC", nondet: true, code: fixed(0x0f, 0x31)},
	{name: "RDTSCP", nondet: true, code: fixed(0x0f, 0x01, 0xf9)},
	{name: "RDRAND", nondet: true, code: fixed(0x0f, 0xc7, 0xf0)},
	{name: "RDSEED", nondet: true, code: fixed(0x0f, 0xc7, 0xf8)},
	{name: "RDPID", nondet: true, code: fixed(0xf3, 0x0f, 0xc7, 0xf8)},
	{name: "CPUID", code: fixed(0x0f, 0xa2),
		setup: func(a *asm) { a.movR32(regEAX, cpuidHypervisorLeaf) },
		check: func(r cpu.Regs) string {
			if uint32(r.RBX) == cpuidVMRR {
				return "sees vmrr's CPUID table"
			}
			return "sees the host's CPUID, not vmrr's table"
		}},
}

// CPUID leaf 0x40000000 returns vmrr's signature in EBX:ECX:EDX from the
// table vmrr gives KVM; anything else is the host's own CPUID.
const (
	cpuidHypervisorLeaf = 0x40000000
	cpuidVMRR           = 0x72726d76 // "vmrr"
)

// mark is the machine's state when the guest wrote a probe port.
type mark struct {
	pos      position.Pos
	emulated uint64
	regs     cpu.Regs
}

// insnHooks watches an instruction probe: marks, the vector of the first
// interrupt stub that ran, and a watchdog for guests that never exit.
type insnHooks struct {
	marks   []mark
	mode    Mode
	vector  int   // -1 until a stub ran
	errCode int64 // the exception's error code, -1 if none
	at      mark
	expired atomic.Bool
}

func (h *insnHooks) BeforeRun(m *machine.Machine) error { return nil }
func (h *insnHooks) Idle(m *machine.Machine) error {
	m.End(machine.ReasonHung, "halted")
	return nil
}
func (h *insnHooks) Input(m *machine.Machine, in machine.Input, live func() uint64) (uint64, error) {
	return 0, nil
}
func (h *insnHooks) NonDet(m *machine.Machine, kind cpu.NonDet) (uint64, error) { return 0x5eed, nil }
func (h *insnHooks) Debug(m *machine.Machine, d cpu.DebugExit) error            { return nil }
func (h *insnHooks) Now() time.Duration                                         { return 0 }

func (h *insnHooks) Interrupted(m *machine.Machine) error {
	if h.expired.Load() {
		m.End(machine.ReasonTimeout, "the probe guest ran too long")
	}
	return nil
}

func (h *insnHooks) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	k := mark{pos: m.Position(), emulated: m.Emulated()}
	k.regs, _ = m.KVMVCPU().Regs()
	switch port {
	case portMark:
		h.marks = append(h.marks, k)
		return true, nil
	case portFault:
		h.vector, h.at = int(data[0]), k
		h.errCode = -1
		if hasErrorCode(h.vector) && h.mode != ModeReal16 {
			// The stub popped the vector; the error code is on top.
			h.errCode = int64(m.Memory().Uint32(k.regs.RSP))
		}
		return true, machine.ErrStop
	}
	return false, nil
}

// probeInsn runs one instruction in one mode between marks: mark A, mark
// B, the instruction, mark C. A to B is what a mark alone advances the
// instruction counter by, the baseline for B to C.
func probeInsn(spec insnSpec, mode Mode, counter bool, limit time.Duration) Cell {
	insn := spec.code(mode)
	if insn == nil {
		return Cell{Outcome: OutcomeNA}
	}
	a := newAsmFor(mode)
	var frame []byte
	fAddr := uint64(frameAddr)
	if mode == ModeReal16 {
		fAddr = realFrame
	}
	if spec.frame != nil {
		a.movSP(uint32(fAddr))
	}
	if spec.setup != nil {
		spec.setup(a)
	}
	a.out(portMark).out(portMark)
	a.raw(insn...)
	next := a.pc()
	a.out(portMark).out(portExit)
	if spec.frame != nil {
		frame = spec.frame(mode, next)
	}
	h := &insnHooks{vector: -1, mode: mode}
	m, err := newGuest(mode, a.b, h, 0)
	if err != nil {
		return Cell{Outcome: OutcomeFailed, Detail: err.Error()}
	}
	defer m.Close()
	m.Memory().WritePhys(fAddr, frame)
	wd := time.AfterFunc(limit, func() { h.expired.Store(true); m.KVMVCPU().Kick() })
	res, err := m.Run()
	wd.Stop()
	if err != nil {
		return Cell{Outcome: OutcomeFailed, Detail: err.Error()}
	}
	return classify(spec, h, res, counter)
}

// classify turns what the hooks saw into a Cell.
func classify(spec insnSpec, h *insnHooks, res machine.Result, counter bool) Cell {
	if len(h.marks) < 2 {
		return Cell{Outcome: OutcomeFailed, Detail: "the guest did not reach the instruction: " + resultText(h, res)}
	}
	a, b := h.marks[0], h.marks[1]
	var end mark
	extra := 0
	switch {
	case len(h.marks) >= 3:
		end = h.marks[2]
	case h.vector >= 0 && h.vector == spec.vector:
		end, extra = h.at, spec.extra
	case h.vector >= 0:
		name := cpu.ExceptionName(uint8(h.vector))
		if h.errCode >= 0 {
			name += fmt.Sprintf("(%#x)", h.errCode)
		}
		c := Cell{Outcome: OutcomeFault, Detail: name + " raised by KVM"}
		if h.vector == 6 {
			c.Outcome = OutcomeUD
		}
		if h.at.emulated > b.emulated {
			c.Detail = name + " raised by vmrr's emulator"
		}
		return c
	default:
		return Cell{Outcome: OutcomeFailed, Detail: resultText(h, res)}
	}
	c := Cell{Exits: end.pos.Exit - b.pos.Exit - 1}
	base := b.pos.Insn - a.pos.Insn
	c.Counted = counter && end.pos.Insn-b.pos.Insn == base+1+uint64(extra)
	switch {
	case end.emulated > b.emulated:
		c.Outcome = OutcomeEmulator
	case c.Exits > 0:
		c.Outcome, c.Detail = OutcomeFailed, fmt.Sprintf("%d unexpected exits", c.Exits)
	case c.Counted && !spec.nondet:
		c.Outcome = OutcomeKVM
	default:
		c.Outcome = OutcomeNative
		if c.Counted {
			c.Detail = "KVM emulates it in the kernel, unseen by vmrr"
		}
	}
	if spec.check != nil && c.Outcome != OutcomeFailed {
		c.Detail = strings.TrimPrefix(c.Detail+"; "+spec.check(end.regs), "; ")
	}
	return c
}

func resultText(h *insnHooks, res machine.Result) string {
	if h.vector >= 0 {
		return "the guest got " + cpu.ExceptionName(uint8(h.vector))
	}
	return res.Message
}

// hasErrorCode reports whether an exception pushes an error code.
func hasErrorCode(v int) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17, 21:
		return true
	}
	return false
}

// probeInsns fills the instruction table.
func probeInsns(counter bool, limit time.Duration) []InsnRow {
	rows := make([]InsnRow, 0, len(insnSpecs))
	for _, s := range insnSpecs {
		row := InsnRow{Name: s.name, NonDet: s.nondet, Cells: map[Mode]Cell{}}
		for _, mode := range Modes {
			row.Cells[mode] = probeInsn(s, mode, counter, limit)
		}
		rows = append(rows, row)
	}
	return rows
}
