// Package kvm is vmrr's one place for KVM ioctls: thin, typed wrappers over
// /dev/kvm. Struct layouts come from github.com/bobuhiro11/gokvm's kvm package
// where they match the kernel (checked by sizes_test.go); the calls gokvm gets
// wrong or lacks (KVM_INTERRUPT, KVM_RUN with kicks, KVM_SET_GUEST_DEBUG,
// KVM_GET/CLEAR_DIRTY_LOG, KVM_ENABLE_CAP, KVM_SET_SIGNAL_MASK, stats, MSR
// filters) are written here on golang.org/x/sys/unix.
package kvm

import gokvm "github.com/bobuhiro11/gokvm/kvm"

// Regs mirrors struct kvm_regs (144 bytes).
type Regs = gokvm.Regs

// Sregs mirrors struct kvm_sregs (312 bytes).
type Sregs = gokvm.Sregs

// Segment mirrors struct kvm_segment.
type Segment = gokvm.Segment

// Descriptor mirrors struct kvm_dtable.
type Descriptor = gokvm.Descriptor

// DebugRegs mirrors struct kvm_debugregs (128 bytes).
type DebugRegs = gokvm.DebugRegs

// VCPUEvents mirrors struct kvm_vcpu_events (64 bytes).
type VCPUEvents = gokvm.VCPUEvents

// CPUIDEntry2 mirrors struct kvm_cpuid_entry2 (40 bytes).
type CPUIDEntry2 = gokvm.CPUIDEntry2

// MSREntry mirrors struct kvm_msr_entry (16 bytes).
type MSREntry = gokvm.MSREntry

// UserspaceMemoryRegion mirrors struct kvm_userspace_memory_region (32 bytes).
type UserspaceMemoryRegion = gokvm.UserspaceMemoryRegion

// RFLAGS bits the VMM looks at.
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
	FlagRF = 1 << 16
	FlagVM = 1 << 17
)

// Control register and EFER bits.
const (
	CR0PE   = 1 << 0
	CR0MP   = 1 << 1
	CR0ET   = 1 << 4
	CR0NE   = 1 << 5
	CR0WP   = 1 << 16
	CR0PG   = 1 << 31
	CR4PAE  = 1 << 5
	CR4PGE  = 1 << 7
	EFERSCE = 1 << 0
	EFERLME = 1 << 8
	EFERLMA = 1 << 10
	EFERNXE = 1 << 11
)
