//go:build linux

package kvm

import (
	"fmt"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"vmrr/machine/cpu"
)

// ioctl request numbers, named after the kernel's (include/uapi/linux/kvm.h).
var (
	ioGetAPIVersion       = gokvm.IIO(0x00)
	ioCreateVM            = gokvm.IIO(0x01)
	ioCheckExtension      = gokvm.IIO(0x03)
	ioGetVCPUMmapSize     = gokvm.IIO(0x04)
	ioGetSupportedCPUID   = gokvm.IIOWR(0x05, 8)
	ioCreateVCPU          = gokvm.IIO(0x41)
	ioGetDirtyLog         = gokvm.IIOW(0x42, unsafe.Sizeof(dirtyLog{}))
	ioSetUserMemoryRegion = gokvm.IIOW(0x46, unsafe.Sizeof(UserspaceMemoryRegion{}))
	ioSetTSSAddr          = gokvm.IIO(0x47)
	ioSetIdentityMapAddr  = gokvm.IIOW(0x48, 8)
	ioRun                 = gokvm.IIO(0x80)
	ioGetRegs             = gokvm.IIOR(0x81, unsafe.Sizeof(Regs{}))
	ioSetRegs             = gokvm.IIOW(0x82, unsafe.Sizeof(Regs{}))
	ioGetSregs            = gokvm.IIOR(0x83, unsafe.Sizeof(Sregs{}))
	ioSetSregs            = gokvm.IIOW(0x84, unsafe.Sizeof(Sregs{}))
	ioInterrupt           = gokvm.IIOW(0x86, 4)
	ioGetMSRs             = gokvm.IIOWR(0x88, 8)
	ioSetMSRs             = gokvm.IIOW(0x89, 8)
	ioGetFPU              = gokvm.IIOR(0x8c, unsafe.Sizeof(FPU{}))
	ioSetFPU              = gokvm.IIOW(0x8d, unsafe.Sizeof(FPU{}))
	ioSetCPUID2           = gokvm.IIOW(0x90, 8)
	ioSetGuestDebug       = gokvm.IIOW(0x9b, unsafe.Sizeof(GuestDebug{}))
	ioGetVCPUEvents       = gokvm.IIOR(0x9f, unsafe.Sizeof(VCPUEvents{}))
	ioSetVCPUEvents       = gokvm.IIOW(0xa0, unsafe.Sizeof(VCPUEvents{}))
	ioGetDebugRegs        = gokvm.IIOR(0xa1, unsafe.Sizeof(DebugRegs{}))
	ioSetDebugRegs        = gokvm.IIOW(0xa2, unsafe.Sizeof(DebugRegs{}))
	ioEnableCap           = gokvm.IIOW(0xa3, unsafe.Sizeof(enableCap{}))
	ioClearDirtyLog       = gokvm.IIOWR(0xc0, unsafe.Sizeof(clearDirtyLog{}))
	ioSetMSRFilter        = gokvm.IIOW(0xc6, unsafe.Sizeof(msrFilter{}))
	ioGetStatsFD          = gokvm.IIO(0xce)
)

// Capabilities vmrr checks or enables (KVM_CAP_*).
const (
	CapUserMemory        = 3
	CapSetGuestDebug     = 23
	CapReadonlyMem       = 81
	CapX86UserSpaceMSR   = 188
	CapX86MSRFilter      = 189
	CapImmediateExit     = 136
	CapManualDirtyLogPr2 = 168
	CapBinaryStatsFD     = 203
	CapGetMSRFeatures    = 153
)

// Exit reasons (KVM_EXIT_*).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitX86RDMSR      = 29
	ExitX86WRMSR      = 30
)

// Guest debug control bits (KVM_GUESTDBG_*).
const (
	GuestDbgEnable     = 0x1
	GuestDbgSingleStep = 0x2
	GuestDbgUseSWBP    = 0x10000
	GuestDbgUseHWBP    = 0x20000
	GuestDbgInjectDB   = 0x40000
	GuestDbgBlockIRQ   = 0x8
)

// Memory region flags (KVM_MEM_*).
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// GuestDebug mirrors struct kvm_guest_debug with its x86 arch part.
type GuestDebug struct {
	Control  uint32
	_        uint32
	DebugReg [8]uint64
}

// FPU mirrors struct kvm_fpu (416 bytes).
type FPU = cpu.FPU

type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uintptr
}

type clearDirtyLog struct {
	Slot      uint32
	NumPages  uint32
	FirstPage uint64
	Bitmap    uintptr
}

type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]byte
}

type msrFilterRange struct {
	Flags  uint32
	NMSRs  uint32
	Base   uint32
	_      uint32
	Bitmap uintptr
}

type msrFilter struct {
	Flags  uint32
	_      uint32
	Ranges [16]msrFilterRange
}

// ioctl issues a KVM ioctl, again while a signal interrupts it: KVM
// returns EINTR from ioctls that gave up before doing anything because a
// signal was pending, and the Go runtime signals its threads all the time
// (SIGURG preempts goroutines). KVM_CREATE_VM is one: registering its
// MMU notifier takes every lock of the address space and stops at a
// pending signal, so under signals it failed here about one time in three.
// KVM_RUN's EINTR is an exit, not a failure; Run issues it with runIoctl.
func ioctl(fd uintptr, req uintptr, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
		switch errno {
		case 0:
			return r, nil
		case unix.EINTR:
			continue
		}
		return r, errno
	}
}

// runIoctl issues KVM_RUN once, reporting EINTR to the caller.
func runIoctl(fd uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, ioRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ioctlPtr passes a pointer to KVM. The conversion to uintptr is in the
// Syscall call itself, where the compiler keeps the pointee alive and in
// place. Some arguments carry further pointers as uintptr fields (dirty
// bitmaps, MSR filter bitmaps); nosplit keeps the goroutine stack, where
// those may live, from growing (and moving) between the caller and the
// system call.
//
//go:nosplit
func ioctlPtr(fd uintptr, req uintptr, p unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(p))
		if errno == unix.EINTR {
			continue // as in ioctl
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// wrap names the ioctl in an error.
func wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}
