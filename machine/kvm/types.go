//go:build linux

// Package kvm is vmrr's one place for KVM ioctls: thin, typed wrappers over
// /dev/kvm. Struct layouts come from github.com/bobuhiro11/gokvm's kvm package
// where they match the kernel (checked by sizes_test.go); the calls gokvm gets
// wrong or lacks (KVM_INTERRUPT, KVM_RUN with kicks, KVM_SET_GUEST_DEBUG,
// KVM_GET/CLEAR_DIRTY_LOG, KVM_ENABLE_CAP, KVM_SET_SIGNAL_MASK, stats, MSR
// filters) are written here on golang.org/x/sys/unix.
package kvm

import (
	gokvm "github.com/bobuhiro11/gokvm/kvm"

	"vmrr/machine/cpu"
)

// Regs mirrors struct kvm_regs (144 bytes).
type Regs = cpu.Regs

// Sregs mirrors struct kvm_sregs (312 bytes).
type Sregs = cpu.Sregs

// Segment mirrors struct kvm_segment.
type Segment = cpu.Segment

// Descriptor mirrors struct kvm_dtable.
type Descriptor = cpu.Descriptor

// DebugRegs mirrors struct kvm_debugregs (128 bytes).
type DebugRegs = cpu.DebugRegs

// VCPUEvents mirrors struct kvm_vcpu_events (64 bytes).
type VCPUEvents = cpu.Events

// CPUIDEntry2 mirrors struct kvm_cpuid_entry2 (40 bytes).
type CPUIDEntry2 = cpu.CPUIDEntry

// MSREntry mirrors struct kvm_msr_entry (16 bytes).
type MSREntry = cpu.MSREntry

// UserspaceMemoryRegion mirrors struct kvm_userspace_memory_region (32 bytes).
type UserspaceMemoryRegion = gokvm.UserspaceMemoryRegion
