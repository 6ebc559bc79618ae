// Package x86emu is vmrr's fallback instruction emulator.
//
// KVM emulates CPL0 guest code on this project's hosts, and its in-kernel
// emulator gives up on some instructions with KVM_EXIT_INTERNAL_ERROR,
// suberror 1: 32-bit IRET, INT n, RDTSCP, POPCNT and, in 32-bit mode, RDRAND
// and RDSEED. Every interrupt handler of a 32-bit guest ends in IRET, so the
// machine's exit loop hands such an instruction to Step, which decodes it at
// CS:RIP (golang.org/x/arch/x86/x86asm, plus its own decoder for the 0f c7
// group that x86asm gets wrong), executes it on a copy of the vCPU state and
// guest memory, and commits the result only if the instruction completes.
//
// An exception the instruction raises is delivered to the guest the way the
// processor does (Intel SDM vol. 3, chapter 6): through the IVT in real mode,
// through 8-byte gates in protected mode with a TSS stack switch on a
// privilege change, through 16-byte gates in long mode; #DF when delivery
// itself faults, ErrTripleFault when that fails too. Non-deterministic values
// (RDTSC, RDTSCP, RDRAND, RDSEED) come from Env.NonDet, the same source the
// recorder logs and the replayer reads, and NonDet is called only after every
// check that could fault, so a faulting instruction never consumes a value.
//
// The package is pure Go: no KVM calls. Task switches (task gates, IRET
// with NT=1) and virtual-8086 mode are out of scope and end the run with an
// UnsupportedError. Left to the caller: IRET unblocks NMIs on hardware (the
// machine clears its NMI mask after an emulated IRET if it tracks one), and
// a guest's RFLAGS.TF single-step trap after an emulated instruction is not
// raised. Alignment checks (#AC) and debug-register breakpoints are not
// checked.
package x86emu

import (
	"errors"
	"fmt"
	"strings"

	"vmrr/machine/cpu"
)

// CPU is the vCPU state Step reads and updates.
type CPU struct {
	Regs  cpu.Regs
	Sregs cpu.Sregs
	// TSCAux is IA32_TSC_AUX, the value RDTSCP puts in ECX and RDPID returns.
	TSCAux uint64
	// Shadow blocks external interrupts until the next instruction has
	// run: STI (when IF was clear), MOV SS and POP SS set it, and every
	// instruction clears it.
	Shadow bool
	// DR is DR0-3, DR6 and DR7 as MOV to and from DRn see them. They arm
	// nothing: the machine's own breakpoints are set apart.
	DR cpu.DebugRegs
	// Watch, if set, records data accesses to watched linear ranges: the
	// soft CPU's data breakpoints. Only Step sees them, so a CPU with
	// watches runs on Step alone.
	Watch *Watch
	// KernelGSBase is IA32_KERNEL_GS_BASE, the GS base SWAPGS exchanges.
	KernelGSBase uint64
}

// Watch is a set of watched linear address ranges and which of them data
// accesses touched.
type Watch struct {
	Ranges []WatchRange
	// Hits has bit i set when range i was accessed the way it asks for;
	// the owner clears it.
	Hits uint64
}

// WatchRange is one watched range: reads, writes or both.
type WatchRange struct {
	Addr, Len   uint64
	Read, Write bool
}

// access records a data access of n bytes at lin.
func (w *Watch) access(lin uint64, n int, write bool) {
	for i, r := range w.Ranges {
		if i < 64 && lin < r.Addr+r.Len && r.Addr < lin+uint64(n) && (write && r.Write || !write && r.Read) {
			w.Hits |= 1 << i
		}
	}
}

// TLBFlush says which cached translations an instruction invalidates.
type TLBFlush int

// Kinds of TLB invalidation, as the processor defines them.
const (
	FlushPage      TLBFlush = iota + 1 // INVLPG: the one linear address, global or not
	FlushNonGlobal                     // a CR3 load: every entry but global ones
	FlushAll                           // a change of CR0.PG/WP, CR4.PGE/PAE/PSE, EFER: everything
)

// Env is guest memory and the source of non-deterministic values.
type Env interface {
	// ReadPhys reads guest physical memory; it fails outside RAM.
	ReadPhys(gpa uint64, b []byte) error
	// WritePhys writes guest physical memory; it fails outside RAM.
	WritePhys(gpa uint64, b []byte) error
	// Translate maps a linear address when CR0.PG=1. ok=false means a page
	// fault with the given x86 #PF error code.
	Translate(cpu *CPU, linear uint64, write, user, fetch bool) (gpa uint64, pfErrCode uint32, ok bool)
	// NonDet supplies a non-deterministic value: the recorder executes the
	// instruction on the host and logs the value, the replayer reads it from
	// the log. RDTSCP's aux comes from CPU.TSCAux, not from here.
	NonDet(kind cpu.NonDet) (uint64, error)
	// In reads size (1, 2 or 4) bytes from an I/O port; Out writes them.
	// An error aborts the instruction with the CPU unchanged: the soft CPU
	// uses that to leave the interpreter for the machine's device models
	// and run the instruction again once the value is known.
	In(port uint16, size int) (uint32, error)
	Out(port uint16, size int, v uint32) error
	// CPUID returns the guest's CPUID leaf (all zero for an absent one).
	CPUID(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
	// ReadMSR and WriteMSR access an MSR that x86emu does not keep in CPU
	// itself; ok=false raises #GP.
	ReadMSR(index uint32) (v uint64, ok bool, err error)
	WriteMSR(index uint32, v uint64) (ok bool, err error)
	// FlushTLB drops cached translations (INVLPG, CR3, CR0/CR4/EFER writes).
	FlushTLB(kind TLBFlush, linear uint64)
}

// Result says what Step did.
type Result struct {
	// Inst is the disassembly, e.g. "IRETD", "INT 0x80"; empty when the
	// instruction could not be fetched.
	Inst string
	// Halted is set by HLT: RIP is past it and the CPU waits for an
	// interrupt.
	Halted bool
	// Len is the instruction's length in bytes (0 if not decoded).
	Len int
	// Fault is non-nil when the instruction raised an exception that Step
	// delivered to the guest. It names the exception the guest's handler
	// received, after any escalation to #DF. INT n, INT3 and INTO calling
	// their handler are the instruction working, not faults.
	Fault *Fault
}

// Fault is an exception Step delivered to the guest.
type Fault struct {
	Vector       uint8  // exception vector, e.g. 13 for #GP
	ErrorCode    uint32 // pushed for the handler when HasErrorCode
	HasErrorCode bool   // false for vectors without one, and in real mode
}

// String formats the fault like "#GP(0x402)".
func (f *Fault) String() string {
	name := cpu.ExceptionName(f.Vector)
	if f.HasErrorCode {
		return fmt.Sprintf("%s(%#x)", name, f.ErrorCode)
	}
	return name
}

// UnsupportedError reports an instruction (or a case of one) that x86emu does
// not emulate. The machine ends the run with it as the crash report.
type UnsupportedError struct {
	RIP    uint64 // the instruction's RIP (not CS-relocated)
	Mode   string // as Mode returns it
	Bytes  []byte // the instruction, or every fetched byte if undecodable
	Disasm string // x86asm's disassembly, or "(undecodable)"
	// Why, if set, says which case of the instruction is missing.
	Why string
}

// Error formats "cannot emulate <disasm> (bytes 0f 0b) at RIP 0x... in <mode> mode".
func (e *UnsupportedError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "cannot emulate %s (bytes", e.Disasm)
	for _, b := range e.Bytes {
		fmt.Fprintf(&sb, " %02x", b)
	}
	fmt.Fprintf(&sb, ") at RIP %#x in %s mode", e.RIP, e.Mode)
	if e.Why != "" {
		sb.WriteString(": ")
		sb.WriteString(e.Why)
	}
	return sb.String()
}

// ErrTripleFault means delivering a fault failed, and so did delivering the
// double fault that followed: the processor would shut down, and so does the
// machine.
var ErrTripleFault = errors.New("x86emu: triple fault")

// Mode names the vCPU's execution mode: "real", "protected16",
// "protected32", "long64", "compat", or "vm86" (virtual-8086, not emulated).
func Mode(cpu *CPU) string {
	switch modeOf(cpu) {
	case modeReal:
		return "real"
	case modeVM86:
		return "vm86"
	case modeProt16:
		return "protected16"
	case modeProt32:
		return "protected32"
	case modeCompat:
		return "compat"
	default:
		return "long64"
	}
}

type cpuMode int

const (
	modeReal cpuMode = iota
	modeVM86
	modeProt16
	modeProt32
	modeCompat
	modeLong64
)

func modeOf(c *CPU) cpuMode {
	switch {
	case c.Sregs.CR0&cpu.CR0PE == 0:
		return modeReal
	case c.Sregs.EFER&cpu.EFERLMA != 0:
		if c.Sregs.CS.L != 0 {
			return modeLong64
		}
		return modeCompat
	case c.Regs.RFLAGS&cpu.FlagVM != 0:
		return modeVM86
	case c.Sregs.CS.DB != 0:
		return modeProt32
	}
	return modeProt16
}

// Step emulates the one instruction at CS:RIP, updating cpu (RIP, registers,
// flags, segment state) and memory through env. An exception the instruction
// raises is delivered to the guest and reported in Result.Fault with a nil
// error. The error is non-nil when the run cannot go on: *UnsupportedError,
// ErrTripleFault, or a failure of env (memory outside RAM, no logged value);
// cpu is then unchanged, except CR2 when a page fault came first.
//
// Step is safe for concurrent use on different CPUs.
func Step(cpu *CPU, env Env) (Result, error) {
	var res Result
	// One allocation for the working state: the copy escapes through Env.
	st := &struct {
		work CPU
		e    emu
		in   inst
	}{work: *cpu}
	work, e, in := &st.work, &st.e, &st.in
	*e = emu{c: work, env: env, mode: modeOf(cpu)}
	work.Shadow = false
	err := e.fetchDecode(in)
	switch {
	case err == nil:
		res.Inst, res.Len = in.text, in.len
		if e.mode == modeVM86 {
			err = e.unsupported(in, "virtual-8086 mode")
		} else {
			err = e.exec(in)
		}
	case e.mode == modeVM86:
		err = &UnsupportedError{Disasm: "(not fetched)", Why: "virtual-8086 mode"}
	}
	if err == nil {
		work.Regs.RFLAGS |= flagFixed
		*cpu = *work
		res.Halted = e.halted
		return res, nil
	}
	var x *exception
	if errors.As(err, &x) && e.mode != modeVM86 {
		res.Fault, err = raise(cpu, env, *x)
	}
	var u *UnsupportedError
	if errors.As(err, &u) {
		// Delivery code knows neither the instruction nor where it ran.
		u.RIP, u.Mode = cpu.Regs.RIP, Mode(cpu)
		if u.Bytes == nil && in.len > 0 {
			u.Bytes = append([]byte(nil), in.bytes[:in.len]...)
			u.Why = u.Disasm + ": " + u.Why
			u.Disasm = in.text
		}
	}
	return res, err
}
