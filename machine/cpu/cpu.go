// Package cpu holds the x86 vCPU state that vmrr's two CPU backends share:
// KVM (machine/kvm) and the software interpreter (machine/x86emu). It
// depends on neither. The structs keep the Linux KVM layouts (struct
// kvm_regs, kvm_sregs, ...) so the KVM backend can pass them to the kernel
// unchanged; machine/kvm's sizes_test checks that.
package cpu

// Regs are the general registers, RIP and RFLAGS (struct kvm_regs, 144 bytes).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is a segment register with its hidden descriptor part (struct
// kvm_segment).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Typ      uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// Descriptor is a descriptor-table register, GDTR or IDTR (struct kvm_dtable).
type Descriptor struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs are the segment, descriptor-table and control registers and EFER
// (struct kvm_sregs, 312 bytes).
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               Descriptor
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	ApicBase               uint64
	InterruptBitmap        [4]uint64
}

// DebugRegs are DR0-3, DR6 and DR7 (struct kvm_debugregs, 128 bytes).
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// Exception is a pending or injected exception (kvm_vcpu_events.exception).
type Exception struct {
	Inject       uint8
	Nr           uint8
	HadErrorCode uint8
	Pending      uint8
	ErrorCode    uint32
}

// Interrupt is an injected external interrupt and the interrupt shadow
// (kvm_vcpu_events.interrupt). Shadow is non-zero for the one instruction
// after STI or MOV SS during which interrupts stay blocked.
type Interrupt struct {
	Inject uint8
	Nr     uint8
	Soft   uint8
	Shadow uint8
}

// NMI is the NMI state (kvm_vcpu_events.nmi).
type NMI struct {
	Inject  uint8
	Pending uint8
	Masked  uint8
	_       uint8
}

// SMI is the SMM state (kvm_vcpu_events.smi).
type SMI struct {
	SMM          uint8
	Pending      uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// Events are the vCPU's pending events (struct kvm_vcpu_events, 64 bytes).
type Events struct {
	E                   Exception
	I                   Interrupt
	N                   NMI
	SipiVector          uint32
	Flags               uint32
	S                   SMI
	TripleFault         uint8
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// CPUIDEntry is one CPUID leaf as the guest sees it (struct
// kvm_cpuid_entry2, 40 bytes).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	Eax      uint32
	Ebx      uint32
	Ecx      uint32
	Edx      uint32
	Padding  [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf (ECX) selects the
// entry (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
const CPUIDFlagSignificantIndex = 1

// Lookup finds the entry CPUID returns for leaf and subleaf, as the
// processor does: nil when the table has no such leaf.
func Lookup(table []CPUIDEntry, leaf, subleaf uint32) *CPUIDEntry {
	for i := range table {
		e := &table[i]
		if e.Function == leaf && (e.Flags&CPUIDFlagSignificantIndex == 0 || e.Index == subleaf) {
			return e
		}
	}
	return nil
}

// MSREntry is one model-specific register (struct kvm_msr_entry, 16 bytes).
type MSREntry struct {
	Index   uint32
	Padding uint32
	Data    uint64
}

// FPU is the x87 and SSE state (struct kvm_fpu, 416 bytes).
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// DebugExit describes a debug stop: a single-step or an execute
// breakpoint (kvm_run.debug.arch on x86).
type DebugExit struct {
	Exception uint32
	_         uint32
	PC        uint64
	DR6       uint64
	DR7       uint64
}

// RFLAGS bits.
const (
	FlagCF = 1 << 0
	FlagPF = 1 << 2
	FlagAF = 1 << 4
	FlagZF = 1 << 6
	FlagSF = 1 << 7
	FlagTF = 1 << 8
	FlagIF = 1 << 9
	FlagDF = 1 << 10
	FlagOF = 1 << 11
	FlagNT = 1 << 14
	FlagRF = 1 << 16
	FlagVM = 1 << 17
	FlagAC = 1 << 18
	FlagID = 1 << 21
)

// Control register and EFER bits.
const (
	CR0PE   = 1 << 0
	CR0MP   = 1 << 1
	CR0EM   = 1 << 2
	CR0TS   = 1 << 3
	CR0ET   = 1 << 4
	CR0NE   = 1 << 5
	CR0WP   = 1 << 16
	CR0AM   = 1 << 18
	CR0NW   = 1 << 29
	CR0CD   = 1 << 30
	CR0PG   = 1 << 31
	CR4TSD  = 1 << 2
	CR4PSE  = 1 << 4
	CR4PAE  = 1 << 5
	CR4PGE  = 1 << 7
	CR4LA57 = 1 << 12
	EFERSCE = 1 << 0
	EFERLME = 1 << 8
	EFERLMA = 1 << 10
	EFERNXE = 1 << 11
)

// Mode is the code size the vCPU executes in: 16, 32 or 64 bits.
func Mode(s *Sregs) int {
	switch {
	case s.CR0&CR0PE == 0:
		return 16
	case s.EFER&EFERLMA != 0 && s.CS.L != 0:
		return 64
	case s.CS.DB != 0:
		return 32
	}
	return 16
}
