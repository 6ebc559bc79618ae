package tlbsync_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/machine/cpu"
)

// Guests for tlbsync's tests, built in memory, and hooks where nothing
// happens: the KVM tests (*_kvm_test.go) and the soft CPU's (soft_test.go)
// share them.

// elf64 wraps one segment loaded at addr and entered at entry into a
// minimal ELF64 executable.
func elf64(addr, entry uint64, data []byte) []byte {
	const ehsize, phsize = 64, 56
	img := make([]byte, ehsize+phsize, ehsize+phsize+len(data))
	le := binary.LittleEndian
	copy(img, "\x7fELF\x02\x01\x01")
	le.PutUint16(img[16:], 2)  // ET_EXEC
	le.PutUint16(img[18:], 62) // EM_X86_64
	le.PutUint32(img[20:], 1)
	le.PutUint64(img[24:], entry)
	le.PutUint64(img[32:], ehsize)
	le.PutUint16(img[52:], ehsize)
	le.PutUint16(img[54:], phsize)
	le.PutUint16(img[56:], 1)
	le.PutUint16(img[58:], 64)
	ph := img[ehsize:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 7) // RWX
	le.PutUint64(ph[8:], ehsize+phsize)
	le.PutUint64(ph[16:], addr)
	le.PutUint64(ph[24:], addr)
	le.PutUint64(ph[32:], uint64(len(data)))
	le.PutUint64(ph[40:], uint64(len(data)))
	le.PutUint64(ph[48:], 4096)
	return append(img, data...)
}

// The user-mode PTE guest (userPTE) and the tables tests build by hand use
// this physical layout, all inside one image segment at 1 MiB.
const (
	gBase   = 0x100000
	gUser   = gBase + 0x100 // user-mode code
	gGDT    = gBase + 0x800
	gGDTR   = gBase + 0x840
	gPML4   = gBase + 0x1000
	gPDPT   = gBase + 0x2000
	gPDID   = gBase + 0x3000 // identity map of the first GiB, 2 MiB pages
	gPDWin  = gBase + 0x4000 // the window's page directory
	gPT     = gBase + 0x5000 // the window's page table
	gPageA  = gBase + 0x6000
	gPageB  = gBase + 0x7000
	gPT2    = gBase + 0x8000 // a spare page table
	gSize   = 0x9000
	gWindow = 0x40000000 // virtual address of window page 0
	gStack  = 0x180000
)

// tables writes the layout's page tables into img (offset 0 = gBase): the
// identity map and window page 0 mapped to page A, all user-accessible.
func tables(img []byte) {
	le := binary.LittleEndian
	put := func(gpa, v uint64) { le.PutUint64(img[gpa-gBase:], v) }
	for i := uint64(0); i < 512; i++ {
		put(gPDID+8*i, i<<21|0x87)
	}
	put(gPML4, gPDPT|7)
	put(gPDPT, gPDID|7)
	put(gPDPT+8, gPDWin|7)
	put(gPDWin, gPT|7)
	put(gPT, gPageA|7)
	put(gPageA, 'A')
	put(gPageB, 'B')
}

// userPTE is a guest that runs its test at CPL3, where this host's KVM
// runs guest code natively through shadow page tables (at CPL0 it emulates
// every instruction and walks the guest's tables each time, so nothing is
// ever stale there). It loads its own tables and a GDT with user segments,
// IRETQs to CPL3 with IOPL 3, reads window page 0 (page A) twice, points
// the PTE at page B without INVLPG, reads through the window at once and
// after an `out 0x80` exit, prints the two letters seen and exits with
// value (first == 'B') | (second == 'B')<<1. With settle, the kernel part
// makes an exit (`out 0x80`) right after loading CR3, so tlbsync sees the
// new tables before the guest writes to them.
func userPTE(settle bool) []byte {
	img := make([]byte, gSize)
	kernel := []byte{
		0x0f, 0x01, 0x14, 0x25, 0x40, 0x08, 0x10, 0x00, // lgdt [gGDTR]
		0x48, 0xc7, 0xc0, 0x00, 0x10, 0x10, 0x00, // mov rax, gPML4
		0x0f, 0x22, 0xd8, // mov cr3, rax
		0x90, 0x90, // out 0x80, al with settle, else two NOPs
		0x48, 0xc7, 0xc6, 0x00, 0x00, 0x00, 0x40, // mov rsi, gWindow
		0x48, 0xc7, 0xc7, 0x00, 0x50, 0x10, 0x00, // mov rdi, gPT
		0x48, 0xc7, 0xc2, 0x07, 0x70, 0x10, 0x00, // mov rdx, gPageB|7
		0x6a, 0x23, // push user SS
		0x68, 0x00, 0x00, 0x18, 0x00, // push gStack
		0x68, 0x02, 0x30, 0x00, 0x00, // push RFLAGS with IOPL 3
		0x6a, 0x1b, // push user CS
		0x68, 0x00, 0x01, 0x10, 0x00, // push gUser
		0x48, 0xcf, // iretq
	}
	user := []byte{
		0x48, 0x8b, 0x06, // mov rax, [rsi]
		0x48, 0x8b, 0x06, // mov rax, [rsi]
		0x48, 0x89, 0x17, // mov [rdi], rdx: the PTE now maps page B
		0x48, 0x8b, 0x1e, // mov rbx, [rsi]
		0xe6, 0x80, // out 0x80, al
		0x48, 0x8b, 0x0e, // mov rcx, [rsi]
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0x88, 0xd8, 0xee, // mov al, bl; out dx, al
		0x88, 0xc8, 0xee, // mov al, cl; out dx, al
		0xb0, 0x0a, 0xee, // mov al, '\n'; out dx, al
		0x31, 0xc0, // xor eax, eax
		0x80, 0xfb, 0x42, 0x0f, 0x94, 0xc0, // cmp bl, 'B'; sete al
		0x80, 0xf9, 0x42, 0x0f, 0x94, 0xc2, // cmp cl, 'B'; sete dl
		0xd0, 0xe2, 0x08, 0xd0, // shl dl, 1; or al, dl
		0xe6, 0xf4, // out 0xf4, al
		0xf4, // hlt (never reached)
	}
	if settle {
		kernel[18], kernel[19] = 0xe6, 0x80
	}
	copy(img, kernel)
	copy(img[gUser-gBase:], user)
	le := binary.LittleEndian
	for i, d := range []uint64{0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00affb000000ffff, 0x00cff3000000ffff} {
		le.PutUint64(img[gGDT-gBase+8*i:], d)
	}
	le.PutUint16(img[gGDTR-gBase:], 5*8-1)
	le.PutUint64(img[gGDTR-gBase+2:], gGDT)
	tables(img)
	return elf64(gBase, gBase, img)
}

// guestImage reads a guest from testdata/guests.
func guestImage(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "guests", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// hooks is an outside world where nothing happens; port, if set, is
// offered the ports no device claims.
type hooks struct {
	port func(m *machine.Machine, port uint16, out bool, data []byte) (bool, error)
}

func (h *hooks) BeforeRun(*machine.Machine) error { return nil }
func (h *hooks) Idle(*machine.Machine) error      { return machine.ErrStop }
func (h *hooks) Input(_ *machine.Machine, _ machine.Input, live func() uint64) (uint64, error) {
	return live(), nil
}
func (h *hooks) NonDet(*machine.Machine, cpu.NonDet) (uint64, error) { return 0, nil }
func (h *hooks) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	if h.port == nil {
		return false, nil
	}
	return h.port(m, port, out, data)
}
func (h *hooks) Debug(*machine.Machine, cpu.DebugExit) error { return machine.ErrStop }
func (h *hooks) Interrupted(*machine.Machine) error          { return nil }
func (h *hooks) Now() time.Duration                          { return 0 }

// churn is a CPL0 guest that edits its page tables often: it loads its
// tables, makes an exit (so tlbsync marks them), then n times points
// window page 0 at page A or B in turn, INVLPGs it and adds the word read
// through it to a sum; it exits with value 0 if the sum is right, 1 if not.
func churn(n uint32) []byte {
	le := func(v uint64) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	code := slices.Concat(
		[]byte{0x48, 0xc7, 0xc0}, le(gPML4), // mov rax, gPML4
		[]byte{0x0f, 0x22, 0xd8, 0xe6, 0x80},   // mov cr3, rax; out 0x80, al
		[]byte{0x48, 0xc7, 0xc2}, le(gPageA|7), // mov rdx, gPageA|7
		[]byte{0x49, 0xc7, 0xc0}, le(gPageB|7), // mov r8, gPageB|7
		[]byte{0xb9}, le(uint64(n)), // mov ecx, n
		[]byte{0x31, 0xdb}, // xor ebx, ebx
	)
	loop := slices.Concat(
		[]byte{0x48, 0x89, 0x14, 0x25}, le(gPT), // mov [gPT], rdx
		[]byte{0x0f, 0x01, 0x3c, 0x25}, le(gWindow), // invlpg [gWindow]
		[]byte{0x48, 0x8b, 0x04, 0x25}, le(gWindow), // mov rax, [gWindow]
		[]byte{0x48, 0x01, 0xc3}, // add rbx, rax
		[]byte{0x4c, 0x87, 0xc2}, // xchg rdx, r8
		[]byte{0xff, 0xc9},       // dec ecx
	)
	loop = append(loop, 0x75, byte(-(len(loop) + 2))) // jnz loop
	sum := uint64(n/2)*('A'+'B') + uint64(n%2)*'A'
	code = slices.Concat(code, loop,
		[]byte{0x31, 0xc0},                // xor eax, eax
		[]byte{0x48, 0x81, 0xfb}, le(sum), // cmp rbx, sum
		[]byte{0x0f, 0x95, 0xc0, 0xe6, 0xf4}, // setne al; out 0xf4, al
	)
	img := make([]byte, gSize)
	copy(img, code)
	tables(img)
	return elf64(gBase, gBase, img)
}
