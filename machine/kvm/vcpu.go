//go:build linux

package kvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"vmrr/machine/cpu"
)

// RunState mirrors the head of struct kvm_run, the page shared with KVM
// that describes each exit. The exit-specific union starts at Data.
type RunState struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IFFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
	Data                       [256]byte
}

// IOExit mirrors kvm_run.io.
type IOExit struct {
	Direction  uint8 // 0 in, 1 out
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64 // from the start of the kvm_run page
}

// MMIOExit mirrors kvm_run.mmio.
type MMIOExit struct {
	PhysAddr uint64
	Data     [8]byte
	Len      uint32
	IsWrite  uint8
}

// DebugExit mirrors kvm_run.debug.arch (x86).
type DebugExit = cpu.DebugExit

// InternalError mirrors kvm_run.internal.
type InternalError struct {
	Suberror uint32
	NData    uint32
	Data     [16]uint64
}

// MSRExit mirrors kvm_run.msr.
type MSRExit struct {
	Error  uint8
	_      [7]uint8
	Reason uint32
	Index  uint32
	Data   uint64
}

// Internal error suberrors (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation = 1
)

// VCPU is one virtual CPU with its mmapped kvm_run page. Run must be called
// from one locked OS thread; Kick may be called from anywhere.
type VCPU struct {
	vm      *VM
	fd      uintptr
	runMem  []byte
	run     *RunState
	tid     atomic.Int32
	kickMu  sync.Mutex // orders Kick against Close
	closed  bool
	statsFD int
	// regs and sregs cache the registers between entries (see Regs).
	regs                  Regs
	sregs                 Sregs
	regsValid, sregsValid bool
	insnOff               int64 // offset of insn_emulation in the stats fd, -1 if absent
}

// CreateVCPU creates vCPU id and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, ioCreateVCPU, uintptr(id))
	if err != nil {
		return nil, wrap("KVM_CREATE_VCPU", err)
	}
	size, err := ioctl(vm.sys.fd, ioGetVCPUMmapSize, 0)
	if err != nil {
		unix.Close(int(fd))
		return nil, wrap("KVM_GET_VCPU_MMAP_SIZE", err)
	}
	mem, err := unix.Mmap(int(fd), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mmap kvm_run: %w", err)
	}
	v := &VCPU{vm: vm, fd: fd, runMem: mem, run: (*RunState)(unsafe.Pointer(&mem[0])), statsFD: -1, insnOff: -1}
	v.openStats()
	return v, nil
}

// Close unmaps and closes the vCPU.
func (v *VCPU) Close() error {
	v.kickMu.Lock()
	v.closed = true
	v.kickMu.Unlock()
	if v.statsFD >= 0 {
		unix.Close(v.statsFD)
	}
	unix.Munmap(v.runMem)
	return unix.Close(int(v.fd))
}

// State is the shared kvm_run page.
func (v *VCPU) State() *RunState { return v.run }

// IO returns the PIO exit description and the data bytes it refers to.
func (v *VCPU) IO() (*IOExit, []byte) {
	io := (*IOExit)(unsafe.Pointer(&v.run.Data[0]))
	n := int(io.Size) * int(io.Count)
	off := int(io.DataOffset)
	if off < 0 || off+n > len(v.runMem) {
		return io, nil
	}
	return io, v.runMem[off : off+n]
}

// MMIO returns the MMIO exit description.
func (v *VCPU) MMIO() *MMIOExit { return (*MMIOExit)(unsafe.Pointer(&v.run.Data[0])) }

// Debug returns the debug exit description.
func (v *VCPU) Debug() *DebugExit { return (*DebugExit)(unsafe.Pointer(&v.run.Data[0])) }

// Internal returns the internal error description.
func (v *VCPU) Internal() *InternalError {
	return (*InternalError)(unsafe.Pointer(&v.run.Data[0]))
}

// MSR returns the MSR exit description.
func (v *VCPU) MSR() *MSRExit { return (*MSRExit)(unsafe.Pointer(&v.run.Data[0])) }

// ErrInterrupted is returned by Run when KVM_RUN ended with EINTR: a kick,
// immediate_exit, or a signal for the Go runtime. The guest stopped at an
// instruction boundary and can simply be run again.
var ErrInterrupted = errors.New("kvm: run interrupted")

// Run enters the guest until the next exit. Unlike gokvm's Run it reports
// EINTR as ErrInterrupted instead of hiding it.
func (v *VCPU) Run() error {
	v.regsValid, v.sregsValid = false, false
	v.tid.Store(int32(unix.Gettid()))
	if err := runIoctl(v.fd); err != nil {
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			v.run.ImmediateExit = 0
			return ErrInterrupted
		}
		return wrap("KVM_RUN", err)
	}
	return nil
}

// KickSignal is the signal Kick sends; the program must not let it kill the
// process (machine installs a handler with signal.Notify).
const KickSignal = unix.SIGUSR2

// Kick makes a running (or about to run) KVM_RUN return ErrInterrupted soon.
func (v *VCPU) Kick() {
	v.kickMu.Lock()
	defer v.kickMu.Unlock()
	if v.closed {
		return
	}
	v.run.ImmediateExit = 1
	if tid := v.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), KickSignal)
	}
}

// Regs reads the general registers. Between two entries into the guest
// they cannot change but through SetRegs, so the VMM's many readers at one
// stop share one KVM_GET_REGS.
func (v *VCPU) Regs() (Regs, error) {
	if v.regsValid {
		return v.regs, nil
	}
	err := ioctlPtr(v.fd, ioGetRegs, unsafe.Pointer(&v.regs))
	v.regsValid = err == nil
	return v.regs, wrap("KVM_GET_REGS", err)
}

// SetRegs writes the general registers.
func (v *VCPU) SetRegs(r *Regs) error {
	v.regsValid = false
	err := ioctlPtr(v.fd, ioSetRegs, unsafe.Pointer(r))
	return wrap("KVM_SET_REGS", err)
}

// Sregs reads the special registers (cached between entries, as Regs).
func (v *VCPU) Sregs() (Sregs, error) {
	if v.sregsValid {
		return v.sregs, nil
	}
	err := ioctlPtr(v.fd, ioGetSregs, unsafe.Pointer(&v.sregs))
	v.sregsValid = err == nil
	return v.sregs, wrap("KVM_GET_SREGS", err)
}

// SetSregs writes the special registers.
func (v *VCPU) SetSregs(s *Sregs) error {
	v.sregsValid = false
	return wrap("KVM_SET_SREGS", ioctlPtr(v.fd, ioSetSregs, unsafe.Pointer(s)))
}

// FPU reads the x87/SSE state.
func (v *VCPU) FPU() (FPU, error) {
	var f FPU
	err := ioctlPtr(v.fd, ioGetFPU, unsafe.Pointer(&f))
	return f, wrap("KVM_GET_FPU", err)
}

// SetFPU writes the x87/SSE state.
func (v *VCPU) SetFPU(f *FPU) error {
	return wrap("KVM_SET_FPU", ioctlPtr(v.fd, ioSetFPU, unsafe.Pointer(f)))
}

// Events reads pending exceptions, interrupts and NMIs.
func (v *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	err := ioctlPtr(v.fd, ioGetVCPUEvents, unsafe.Pointer(&e))
	return e, wrap("KVM_GET_VCPU_EVENTS", err)
}

// SetEvents writes pending exceptions, interrupts and NMIs.
func (v *VCPU) SetEvents(e *VCPUEvents) error {
	return wrap("KVM_SET_VCPU_EVENTS", ioctlPtr(v.fd, ioSetVCPUEvents, unsafe.Pointer(e)))
}

// DebugRegs reads DR0-3, DR6, DR7.
func (v *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	err := ioctlPtr(v.fd, ioGetDebugRegs, unsafe.Pointer(&d))
	return d, wrap("KVM_GET_DEBUGREGS", err)
}

// SetDebugRegs writes DR0-3, DR6, DR7.
func (v *VCPU) SetDebugRegs(d *DebugRegs) error {
	return wrap("KVM_SET_DEBUGREGS", ioctlPtr(v.fd, ioSetDebugRegs, unsafe.Pointer(d)))
}

// SetGuestDebug sets single-stepping and the VMM's hardware breakpoints
// (DebugReg[0..3] addresses, [7] DR7).
func (v *VCPU) SetGuestDebug(d *GuestDebug) error {
	v.regsValid = false
	return wrap("KVM_SET_GUEST_DEBUG", ioctlPtr(v.fd, ioSetGuestDebug, unsafe.Pointer(d)))
}

// Interrupt queues an external interrupt vector (KVM_INTERRUPT; only valid
// without an in-kernel irqchip). gokvm's version passes the vector as the
// pointer.
func (v *VCPU) Interrupt(vector uint8) error {
	irq := uint32(vector)
	return wrap("KVM_INTERRUPT", ioctlPtr(v.fd, ioInterrupt, unsafe.Pointer(&irq)))
}

// SetCPUID installs the CPUID table the guest sees.
func (v *VCPU) SetCPUID(entries []CPUIDEntry2) error {
	sz := int(unsafe.Sizeof(CPUIDEntry2{}))
	buf := make([]byte, 8+len(entries)*sz)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	if len(entries) > 0 {
		copy(buf[8:], unsafe.Slice((*byte)(unsafe.Pointer(&entries[0])), len(entries)*sz))
	}
	return wrap("KVM_SET_CPUID2", ioctlPtr(v.fd, ioSetCPUID2, unsafe.Pointer(&buf[0])))
}

// SetMSRs writes model-specific registers.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	v.sregsValid = false // EFER and the segment bases live in both
	return v.msrs(ioSetMSRs, "KVM_SET_MSRS", entries)
}

// GetMSRs reads the MSRs named by entries[i].Index into entries[i].Data.
func (v *VCPU) GetMSRs(entries []MSREntry) error {
	return v.msrs(ioGetMSRs, "KVM_GET_MSRS", entries)
}

func (v *VCPU) msrs(req uintptr, name string, entries []MSREntry) error {
	if len(entries) == 0 {
		return nil
	}
	sz := int(unsafe.Sizeof(MSREntry{}))
	buf := make([]byte, 8+len(entries)*sz)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	body := unsafe.Slice((*byte)(unsafe.Pointer(&entries[0])), len(entries)*sz)
	copy(buf[8:], body)
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, v.fd, req, uintptr(unsafe.Pointer(&buf[0])))
	for errno == unix.EINTR { // as in ioctl
		n, _, errno = unix.Syscall(unix.SYS_IOCTL, v.fd, req, uintptr(unsafe.Pointer(&buf[0])))
	}
	if errno != 0 {
		return wrap(name, errno)
	}
	copy(body, buf[8:])
	if int(n) != len(entries) {
		return fmt.Errorf("%s: only %d of %d MSRs (first refused: %#x)", name, n, len(entries), entries[n].Index)
	}
	return nil
}

// statsHeader mirrors struct kvm_stats_header.
type statsHeader struct {
	Flags      uint32
	NameSize   uint32
	NumDesc    uint32
	IDOffset   uint32
	DescOffset uint32
	DataOffset uint32
}

// openStats finds the vCPU's insn_emulation counter in its binary stats fd.
func (v *VCPU) openStats() {
	fd, err := ioctl(v.fd, ioGetStatsFD, 0)
	if err != nil {
		return
	}
	v.statsFD = int(fd)
	var h statsHeader
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	if _, err := unix.Pread(v.statsFD, hb, 0); err != nil {
		return
	}
	descSize := 16 + int(h.NameSize)
	descs := make([]byte, int(h.NumDesc)*descSize)
	if _, err := unix.Pread(v.statsFD, descs, int64(h.DescOffset)); err != nil {
		return
	}
	for i := 0; i < int(h.NumDesc); i++ {
		d := descs[i*descSize : (i+1)*descSize]
		name := d[16:]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		if string(name) == "insn_emulation" {
			off := binary.LittleEndian.Uint32(d[8:])
			v.insnOff = int64(h.DataOffset) + int64(off)
			return
		}
	}
}

// HasInsnCounter reports whether the vCPU exposes an exact instruction
// counter (the insn_emulation statistic, exact when KVM emulates all guest
// code, as PVM does at CPL0).
func (v *VCPU) HasInsnCounter() bool { return v.insnOff >= 0 }

// InsnCount reads the insn_emulation statistic.
func (v *VCPU) InsnCount() (uint64, error) {
	if v.insnOff < 0 {
		return 0, errors.New("kvm: no insn_emulation statistic")
	}
	var b [8]byte
	if _, err := unix.Pread(v.statsFD, b[:], v.insnOff); err != nil {
		return 0, fmt.Errorf("kvm: read insn_emulation: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
