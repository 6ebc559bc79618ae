//go:build linux

package kvm

import (
	"testing"
	"unsafe"
)

// The kernel's sizes and ioctl numbers (from include/uapi/linux/kvm.h on
// x86_64). A mismatch means an ioctl would read or write the wrong bytes.
func TestStructSizes(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_debugregs", unsafe.Sizeof(DebugRegs{}), 128},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry2{}), 40},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), 16},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), 32},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_guest_debug", unsafe.Sizeof(GuestDebug{}), 72},
		{"kvm_run head+union", unsafe.Sizeof(RunState{}), 288},
		{"kvm_run.io", unsafe.Sizeof(IOExit{}), 16},
		{"kvm_run.mmio", unsafe.Sizeof(MMIOExit{}), 24},
		{"kvm_run.debug", unsafe.Sizeof(DebugExit{}), 32},
		{"kvm_run.internal", unsafe.Sizeof(InternalError{}), 136},
		{"kvm_run.msr", unsafe.Sizeof(MSRExit{}), 24},
		{"kvm_enable_cap", unsafe.Sizeof(enableCap{}), 104},
		{"kvm_dirty_log", unsafe.Sizeof(dirtyLog{}), 16},
		{"kvm_clear_dirty_log", unsafe.Sizeof(clearDirtyLog{}), 24},
		{"kvm_msr_filter", unsafe.Sizeof(msrFilter{}), 392},
		{"kvm_stats_header", unsafe.Sizeof(statsHeader{}), 24},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("sizeof(%s) = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if off := unsafe.Offsetof(RunState{}.Data); off != 32 {
		t.Errorf("kvm_run union at %d, want 32", off)
	}
}

func TestIoctlNumbers(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_GET_API_VERSION", ioGetAPIVersion, 0xae00},
		{"KVM_CREATE_VM", ioCreateVM, 0xae01},
		{"KVM_GET_SUPPORTED_CPUID", ioGetSupportedCPUID, 0xc008ae05},
		{"KVM_CREATE_VCPU", ioCreateVCPU, 0xae41},
		{"KVM_GET_DIRTY_LOG", ioGetDirtyLog, 0x4010ae42},
		{"KVM_SET_USER_MEMORY_REGION", ioSetUserMemoryRegion, 0x4020ae46},
		{"KVM_RUN", ioRun, 0xae80},
		{"KVM_GET_REGS", ioGetRegs, 0x8090ae81},
		{"KVM_SET_REGS", ioSetRegs, 0x4090ae82},
		{"KVM_GET_SREGS", ioGetSregs, 0x8138ae83},
		{"KVM_SET_SREGS", ioSetSregs, 0x4138ae84},
		{"KVM_INTERRUPT", ioInterrupt, 0x4004ae86},
		{"KVM_GET_MSRS", ioGetMSRs, 0xc008ae88},
		{"KVM_SET_MSRS", ioSetMSRs, 0x4008ae89},
		{"KVM_GET_FPU", ioGetFPU, 0x81a0ae8c},
		{"KVM_SET_FPU", ioSetFPU, 0x41a0ae8d},
		{"KVM_SET_CPUID2", ioSetCPUID2, 0x4008ae90},
		{"KVM_SET_GUEST_DEBUG", ioSetGuestDebug, 0x4048ae9b},
		{"KVM_GET_VCPU_EVENTS", ioGetVCPUEvents, 0x8040ae9f},
		{"KVM_SET_VCPU_EVENTS", ioSetVCPUEvents, 0x4040aea0},
		{"KVM_GET_DEBUGREGS", ioGetDebugRegs, 0x8080aea1},
		{"KVM_SET_DEBUGREGS", ioSetDebugRegs, 0x4080aea2},
		{"KVM_ENABLE_CAP", ioEnableCap, 0x4068aea3},
		{"KVM_CLEAR_DIRTY_LOG", ioClearDirtyLog, 0xc018aec0},
		{"KVM_X86_SET_MSR_FILTER", ioSetMSRFilter, 0x4188aec6},
		{"KVM_GET_STATS_FD", ioGetStatsFD, 0xaece},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}
