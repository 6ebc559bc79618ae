// Package pagewalk walks x86 guest page tables in software: 32-bit paging (with CR4.PSE 4 MiB
// pages and PSE-36), PAE paging, and 4-level long-mode paging (4 KiB, 2 MiB and 1 GiB pages).
//
// It serves three callers with different needs. The instruction emulator and the gdb/shell
// front ends translate one virtual address and want the x86 page-fault error code when that
// fails (Translate). tlbsync needs every page that holds page-table entries reachable from CR3,
// so it can write-protect exactly those (TablePages, Scan). `vmrr dump` and the shell list the
// present mappings (Mappings).
//
// Guest page tables are guest data and may be garbage: entries with reserved bits, tables that
// point at themselves, tables outside RAM. Every walk here is bounded and reports such tables as
// errors or faults; none of them panics or loops. The rules follow the Intel SDM, volume 3A,
// chapter 4 ("Paging"); SMEP, SMAP, protection keys and 5-level paging are not modelled.
package pagewalk

import (
	"errors"
	"fmt"
)

// DefaultMaxPhysAddr is the MAXPHYADDR a walk assumes when its Flags do not give one.
const DefaultMaxPhysAddr = 48

// Memory is the guest-physical memory a walk reads its tables from.
type Memory interface {
	// ReadPhys fills b from guest-physical address gpa; it fails (never panics) when any part of
	// the range lies outside RAM.
	ReadPhys(gpa uint64, b []byte) error
}

// RAM is a Memory whose guest-physical address 0 is the first byte of the slice, as for a
// machine whose RAM is one mapping starting at 0. It also serves as a fake memory in tests.
type RAM []byte

// ReadPhys implements Memory.
func (r RAM) ReadPhys(gpa uint64, b []byte) error {
	n := uint64(len(b))
	if gpa > uint64(len(r)) || n > uint64(len(r))-gpa {
		return fmt.Errorf("pagewalk: read of %d bytes at %#x outside RAM (size %#x)", len(b), gpa, len(r))
	}
	copy(b, r[gpa:gpa+n])
	return nil
}

// Mode is the paging mode the guest's control registers select.
type Mode int

const (
	// ModeNone is paging disabled (CR0.PG=0): linear addresses are physical addresses.
	ModeNone Mode = iota
	// ModeLegacy32 is 32-bit paging: two levels of 1024 4-byte entries.
	ModeLegacy32
	// ModePAE is PAE paging: a 4-entry PDPT, then two levels of 512 8-byte entries.
	ModePAE
	// ModeLong4 is 4-level paging (IA-32e mode): four levels of 512 8-byte entries.
	ModeLong4
	// ModeLong5 is 5-level paging (CR4.LA57). It is reported by ModeOf so that such a guest is not
	// mistaken for a 4-level one, but no walk supports it.
	ModeLong5
)

// String names the mode as the SDM does.
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "no paging"
	case ModeLegacy32:
		return "32-bit paging"
	case ModePAE:
		return "PAE paging"
	case ModeLong4:
		return "4-level paging"
	case ModeLong5:
		return "5-level paging"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Control-register bits the mode and flags depend on.
const (
	cr0WP   = 1 << 16
	cr0PG   = 1 << 31
	cr4PSE  = 1 << 4
	cr4PAE  = 1 << 5
	cr4LA57 = 1 << 12
	eferLME = 1 << 8
	eferLMA = 1 << 10
	eferNXE = 1 << 11
)

// ModeOf returns the paging mode selected by CR0, CR4 and IA32_EFER.
func ModeOf(cr0, cr4, efer uint64) Mode {
	switch {
	case cr0&cr0PG == 0:
		return ModeNone
	case cr4&cr4PAE == 0:
		return ModeLegacy32
	// LMA is what the CPU reports, but a caller building registers by hand may set only LME;
	// with PG and PAE set the CPU would have activated long mode from it.
	case efer&(eferLMA|eferLME) != 0:
		if cr4&cr4LA57 != 0 {
			return ModeLong5
		}
		return ModeLong4
	}
	return ModePAE
}

// Flags are the control-register bits that change how entries are interpreted.
type Flags struct {
	WP  bool // CR0.WP: supervisor writes honour R/W
	NXE bool // IA32_EFER.NXE: bit 63 is execute-disable rather than reserved
	PSE bool // CR4.PSE: a 32-bit PDE with PS set maps a 4 MiB page
	// MaxPhysAddr is the guest's MAXPHYADDR (CPUID 0x80000008 EAX[7:0]): entry bits from it up
	// to bit 51 are reserved and set the RSVD bit of a fault. 0 means DefaultMaxPhysAddr;
	// other values outside 32..52 are clamped. It is a field, not a setting of the package, so
	// machines that advertise different widths can walk side by side.
	MaxPhysAddr int
}

// FlagsOf returns the Flags set in CR0, CR4 and IA32_EFER.
func FlagsOf(cr0, cr4, efer uint64) Flags {
	return Flags{WP: cr0&cr0WP != 0, NXE: efer&eferNXE != 0, PSE: cr4&cr4PSE != 0}
}

// Access describes the access being translated; the zero value is a supervisor data read.
type Access struct {
	Write bool // a data write
	User  bool // made at CPL 3
	Fetch bool // an instruction fetch
}

// Walk is a successful translation, or the part of one done before a fault.
type Walk struct {
	Phys     uint64 // translated physical address
	PageSize uint64 // 4096, 2<<20, 4<<20 (32-bit PSE) or 1<<30
	Writable bool   // R/W set at every level
	User     bool   // U/S set at every level
	NX       bool   // XD set at some level (only with EFER.NXE)
	// Tables holds the page-aligned physical address of each table page read, root first.
	Tables []uint64
	// Entries holds the physical address of each entry read, parallel to Tables.
	Entries []uint64
}

// Page-fault error code bits (SDM 4.7).
const (
	PFPresent  = 1 << 0 // the fault was a protection or reserved-bit violation, not a missing page
	PFWrite    = 1 << 1 // the access was a write
	PFUser     = 1 << 2 // the access was made at CPL 3
	PFReserved = 1 << 3 // a reserved bit was set in a paging entry
	PFFetch    = 1 << 4 // the access was an instruction fetch (and NX is in force)
)

// PageFault is the #PF the access would raise.
type PageFault struct {
	Addr uint64 // the faulting linear address (what CR2 receives)
	Code uint32 // the error code, PF* bits
	// Level is the level of the entry that was not present or had reserved bits set, or of the
	// leaf entry for a permission fault: 1 is a page table, 2 a page directory, 3 a PDPT and
	// 4 a PML4.
	Level int
}

// Error describes the fault.
func (f *PageFault) Error() string {
	why := "not present"
	switch {
	case f.Code&PFReserved != 0:
		why = "reserved bit set"
	case f.Code&PFPresent != 0:
		why = "protection violation"
	}
	return fmt.Sprintf("pagewalk: page fault at %#x: %s at level %d (error code %#x)", f.Addr, why, f.Level, f.Code)
}

// TableError is a table that could not be read (it lies outside RAM) during a walk or a scan.
type TableError struct {
	Mode  Mode
	Level int    // level of the table, as in PageFault.Level
	Addr  uint64 // physical address of the entry (Translate) or table (scans) that was read
	Entry bool   // Addr is one entry rather than a whole table
	Err   error  // the Memory's error
}

// Error names the level and the address.
func (e *TableError) Error() string {
	what := "table"
	if e.Entry {
		what = "entry"
	}
	return fmt.Sprintf("pagewalk: %s %s at %#x: %v", levelName(e.Mode, e.Level), what, e.Addr, e.Err)
}

// Unwrap returns the Memory's error.
func (e *TableError) Unwrap() error { return e.Err }

var (
	// ErrNonCanonical is returned for a long-mode address whose bits 63:47 differ: the CPU
	// raises #GP (or #SS), not #PF, so it is the caller's to deliver.
	ErrNonCanonical = errors.New("pagewalk: non-canonical address")
	// ErrTooManyTables is returned by a scan that reaches more table pages than its limit.
	ErrTooManyTables = errors.New("pagewalk: too many page-table pages")
)

func levelName(m Mode, level int) string {
	switch {
	case level == 1:
		return "PT"
	case level == 2 && m == ModeLegacy32, level == 2 && m == ModePAE, level == 2 && m == ModeLong4:
		return "PD"
	case level == 3 && m == ModePAE, level == 3 && m == ModeLong4:
		return "PDPT"
	case level == 4 && m == ModeLong4:
		return "PML4"
	}
	return fmt.Sprintf("level-%d", level)
}

// checkMode rejects the modes that have no tables to walk.
func checkMode(m Mode) error {
	switch m {
	case ModeLegacy32, ModePAE, ModeLong4:
		return nil
	case ModeLong5:
		return errors.New("pagewalk: 5-level paging (CR4.LA57) is not supported")
	}
	return fmt.Errorf("pagewalk: unknown paging mode %d", int(m))
}
