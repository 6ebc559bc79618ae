// Package machine is vmrr's deterministic virtual machine: one vCPU, guest
// RAM, image loaders, userspace device models and the one exit loop that
// record and replay plug into, over a CPU backend: KVM (backend_kvm.go) or
// the soft CPU (backend_soft.go, the interpreter in machine/x86emu). It
// knows nothing of logs.
package machine

// Guest-visible constants of the vmrr machine, named once. docs/guest-abi.md
// describes them for guest authors.
const (
	// PortCOM1 is the first of the 16550 UART's eight ports.
	PortCOM1 = 0x3f8
	// PortPICMaster and PortPICSlave are the 8259 command ports (data at +1).
	PortPICMaster = 0x20
	PortPICSlave  = 0xa0
	// PortPIT is the 8254's channel 0 data port (channels at +0..+2, mode at +3).
	PortPIT = 0x40
	// PortSystemControlB is port 0x61 (PIT gate 2, speaker, refresh toggle).
	PortSystemControlB = 0x61
	// PortCMOSIndex and PortCMOSData address the CMOS RTC.
	PortCMOSIndex = 0x70
	PortCMOSData  = 0x71
	// PortPOST is port 0x80: POST codes and I/O delays, ignored.
	PortPOST = 0x80
	// PortDebugExit is QEMU's isa-debug-exit: writing V ends the run with
	// process status (V<<1)|1.
	PortDebugExit = 0xf4

	// PortTrap is the port a patched non-deterministic instruction writes
	// (a 2-byte `out 0xe0, al`, NOP-padded): the VMM looks the RIP up in the
	// patch table and emulates the original instruction.
	PortTrap = 0xe0
	// PortRingDoorbell is written by a paravirtual guest when the ring is
	// full (record: the VMM flushes it) or used up (replay: it refills it).
	PortRingDoorbell = 0xe1

	// IRQTimer and IRQCOM1 are the ISA IRQ lines of the PIT and COM1.
	IRQTimer = 0
	IRQCOM1  = 4
)

// The non-determinism ring: a reserved region of guest physical memory
// through which every non-deterministic value passes (docs/guest-abi.md).
const (
	// RingBase is the guest physical address of the ring header page. The
	// Multiboot memory map and mem_lower leave it out of usable RAM.
	RingBase = 0x90000
	// RingSize is the size of the region: one header page, then entries.
	RingSize = 0x10000
	// RingMagic is the header's first word, "VRNG" little-endian.
	RingMagic = 0x474e5256
	// RingVersion is the ABI version in the header.
	RingVersion = 1
	// RingEntrySize is the size of one entry: value u64, kind u32 (the
	// cpu.NonDet that produced the value), aux u32.
	RingEntrySize = 16
	// RingEntries is the offset of the first entry from RingBase.
	RingEntries = 0x1000
	// RingCapacity is the number of entries the ring holds.
	RingCapacity = (RingSize - RingEntries) / RingEntrySize

	// Header field offsets from RingBase.
	RingOffMagic    = 0x00 // u32
	RingOffVersion  = 0x04 // u32
	RingOffCapacity = 0x08 // u32
	RingOffEntrySz  = 0x0c // u32
	RingOffHead     = 0x10 // u64: next entry to fill (record) or read (replay)
	RingOffRecMask  = 0x18 // u64: all ones while recording, zero in replay
)
