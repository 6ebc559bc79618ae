//go:build linux

package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoKVM is returned by Open when /dev/kvm is missing or not accessible.
var ErrNoKVM = errors.New("/dev/kvm is not available")

// System is an open /dev/kvm.
type System struct {
	fd   uintptr
	file *os.File
}

// Open opens /dev/kvm and checks the API version.
func Open() (*System, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: no such device (is KVM enabled in this kernel or VM?)", ErrNoKVM)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: permission denied (add yourself to the kvm group)", ErrNoKVM)
		}
		return nil, fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	s := &System{fd: f.Fd(), file: f}
	v, err := ioctl(s.fd, ioGetAPIVersion, 0)
	if err != nil || v != 12 {
		f.Close()
		return nil, fmt.Errorf("%w: KVM API version %d, want 12 (%v)", ErrNoKVM, v, err)
	}
	return s, nil
}

// Close closes /dev/kvm.
func (s *System) Close() error { return s.file.Close() }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for a capability.
func (s *System) CheckExtension(capability int) int {
	r, err := ioctl(s.fd, ioCheckExtension, uintptr(capability))
	if err != nil {
		return 0
	}
	return int(r)
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID.
func (s *System) SupportedCPUID() ([]CPUIDEntry2, error) {
	const max = 256
	buf := make([]byte, 8+max*int(unsafe.Sizeof(CPUIDEntry2{})))
	binary.LittleEndian.PutUint32(buf, max)
	if err := ioctlPtr(s.fd, ioGetSupportedCPUID, unsafe.Pointer(&buf[0])); err != nil {
		return nil, wrap("KVM_GET_SUPPORTED_CPUID", err)
	}
	n := binary.LittleEndian.Uint32(buf)
	out := make([]CPUIDEntry2, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), int(n)*int(unsafe.Sizeof(CPUIDEntry2{}))), buf[8:])
	return out, nil
}

// VM is a KVM virtual machine.
type VM struct {
	sys *System
	fd  uintptr
}

// CreateVM creates a VM with no in-kernel irqchip or PIT.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, ioCreateVM, 0)
	if err != nil {
		return nil, wrap("KVM_CREATE_VM", err)
	}
	return &VM{sys: s, fd: fd}, nil
}

// Close closes the VM.
func (vm *VM) Close() error { return unix.Close(int(vm.fd)) }

// CheckExtension asks the VM (not /dev/kvm) about a capability.
func (vm *VM) CheckExtension(capability int) int {
	r, err := ioctl(vm.fd, ioCheckExtension, uintptr(capability))
	if err != nil {
		return 0
	}
	return int(r)
}

// SetTSSAddr sets the three pages KVM needs for real-mode emulation on Intel.
func (vm *VM) SetTSSAddr(addr uint32) error {
	_, err := ioctl(vm.fd, ioSetTSSAddr, uintptr(addr))
	return wrap("KVM_SET_TSS_ADDR", err)
}

// SetIdentityMapAddr sets the identity-map page KVM needs on Intel.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	return wrap("KVM_SET_IDENTITY_MAP_ADDR", ioctlPtr(vm.fd, ioSetIdentityMapAddr, unsafe.Pointer(&addr)))
}

// SetMemoryRegion installs, moves or (with size 0) deletes a memory slot.
func (vm *VM) SetMemoryRegion(slot uint32, flags uint32, gpa uint64, mem []byte) error {
	r := UserspaceMemoryRegion{Slot: slot, Flags: flags, GuestPhysAddr: gpa}
	if len(mem) > 0 {
		r.MemorySize = uint64(len(mem))
		r.UserspaceAddr = uint64(uintptr(unsafe.Pointer(&mem[0])))
	}
	err := ioctlPtr(vm.fd, ioSetUserMemoryRegion, unsafe.Pointer(&r))
	runtime.KeepAlive(mem)
	return wrap(fmt.Sprintf("KVM_SET_USER_MEMORY_REGION slot %d", slot), err)
}

// DirtyLog fills bitmap (one bit per page of the slot) with the pages
// written since the previous call (KVM_GET_DIRTY_LOG, which also clears it
// unless manual protection is enabled).
func (vm *VM) DirtyLog(slot uint32, bitmap []uint64) error {
	d := dirtyLog{Slot: slot, Bitmap: uintptr(unsafe.Pointer(&bitmap[0]))}
	err := ioctlPtr(vm.fd, ioGetDirtyLog, unsafe.Pointer(&d))
	runtime.KeepAlive(bitmap)
	return wrap(fmt.Sprintf("KVM_GET_DIRTY_LOG slot %d", slot), err)
}

// ClearDirtyLog re-protects the pages set in bitmap, starting at firstPage
// (KVM_CLEAR_DIRTY_LOG; needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled).
func (vm *VM) ClearDirtyLog(slot uint32, firstPage uint64, numPages uint32, bitmap []uint64) error {
	d := clearDirtyLog{Slot: slot, NumPages: numPages, FirstPage: firstPage, Bitmap: uintptr(unsafe.Pointer(&bitmap[0]))}
	err := ioctlPtr(vm.fd, ioClearDirtyLog, unsafe.Pointer(&d))
	runtime.KeepAlive(bitmap)
	return wrap("KVM_CLEAR_DIRTY_LOG", err)
}

// EnableCap enables a VM capability with arguments.
func (vm *VM) EnableCap(capability uint32, args ...uint64) error {
	c := enableCap{Cap: capability}
	copy(c.Args[:], args)
	return wrap(fmt.Sprintf("KVM_ENABLE_CAP %d", capability), ioctlPtr(vm.fd, ioEnableCap, unsafe.Pointer(&c)))
}

// MSR filter range flags and user-space MSR exit reasons.
const (
	MSRFilterRead       = 1
	MSRFilterWrite      = 2
	MSRFilterDefaultAll = 0
	MSRExitFilter       = 1 << 2
	MSRExitUnknown      = 1 << 0
	MSRExitInval        = 1 << 1
)

// TrapMSRs makes reads and writes of the given MSRs exit to user space
// (KVM_CAP_X86_USER_SPACE_MSR with a filter that denies exactly them).
func (vm *VM) TrapMSRs(msrs []uint32) error {
	if err := vm.EnableCap(CapX86UserSpaceMSR, MSRExitFilter); err != nil {
		return err
	}
	var f msrFilter
	bitmaps := make([][]byte, len(msrs))
	for i, m := range msrs {
		if i >= len(f.Ranges) {
			return fmt.Errorf("kvm: too many MSRs to trap (%d)", len(msrs))
		}
		bitmaps[i] = []byte{0} // bit clear = denied = exits to user space
		f.Ranges[i] = msrFilterRange{Flags: MSRFilterRead | MSRFilterWrite, NMSRs: 1, Base: m, Bitmap: uintptr(unsafe.Pointer(&bitmaps[i][0]))}
	}
	err := ioctlPtr(vm.fd, ioSetMSRFilter, unsafe.Pointer(&f))
	runtime.KeepAlive(bitmaps)
	return wrap("KVM_X86_SET_MSR_FILTER", err)
}
