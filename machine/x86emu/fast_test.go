package x86emu

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// tlbEnv is fakeEnv with a TLB in front of its page walker, as the
// machine's soft MMU keeps one, and a Fast told of every write. Writes to
// the page tables drop the TLB (the T bit), and those pages are watched.
type tlbEnv struct {
	*fakeEnv
	tlb     TLB
	fast    *Fast
	watched []byte
}

const tablesEnd = 0x5000 // the test machine's page tables end here

func newTLBEnv(f *fakeEnv) *tlbEnv {
	e := &tlbEnv{fakeEnv: f, watched: make([]byte, len(f.ram)/4096)}
	for p := pml4Base >> 12; p < tablesEnd>>12; p++ {
		e.watched[p] = 1
	}
	e.fast = NewFast(f.ram, &e.tlb, e.watched)
	return e
}

func (e *tlbEnv) WritePhys(gpa uint64, b []byte) error {
	if err := e.fakeEnv.WritePhys(gpa, b); err != nil {
		return err
	}
	if gpa < tablesEnd {
		e.tlb = TLB{}
	}
	e.fast.Written(gpa, len(b))
	return nil
}

func (e *tlbEnv) FlushTLB(kind TLBFlush, lin uint64) {
	e.fakeEnv.FlushTLB(kind, lin)
	e.tlb = TLB{}
}

// Translate caches what the walker allows for the page.
func (e *tlbEnv) Translate(c *CPU, lin uint64, write, user, fetch bool) (uint64, uint32, bool) {
	gpa, code, ok := e.fakeEnv.Translate(c, lin, write, user, fetch)
	if !ok {
		return gpa, code, ok
	}
	page := lin &^ 0xfff
	allowed := func(w, u, x bool) bool { _, _, ok := e.fakeEnv.Translate(c, page, w, u, x); return ok }
	perms := uint8(TLBDirty)
	if allowed(false, true, false) {
		perms |= TLBUser
	}
	if allowed(true, true, false) {
		perms |= TLBWritable
	}
	if allowed(true, false, false) {
		perms |= TLBSupWrite
	}
	if !allowed(false, false, true) {
		perms |= TLBNX
	}
	e.tlb[lin>>12%TLBSize] = TLBEntry{Tag: lin>>12 + 1, PPN: gpa >> 12, Perms: perms}
	return gpa, code, ok
}

// fastOps are the opcodes the differential test draws from: those the
// fast path decodes, and neighbours it leaves to Step.
var fastOps = [][]byte{
	{0x00}, {0x01}, {0x02}, {0x03}, {0x04}, {0x05}, {0x08}, {0x09}, {0x0a}, {0x0b}, {0x0c}, {0x0d},
	{0x10}, {0x11}, {0x12}, {0x13}, {0x14}, {0x15}, {0x18}, {0x19}, {0x1a}, {0x1b}, {0x1c}, {0x1d},
	{0x20}, {0x21}, {0x22}, {0x23}, {0x24}, {0x25}, {0x28}, {0x29}, {0x2a}, {0x2b}, {0x2c}, {0x2d},
	{0x30}, {0x31}, {0x32}, {0x33}, {0x34}, {0x35}, {0x38}, {0x39}, {0x3a}, {0x3b}, {0x3c}, {0x3d},
	{0x40}, {0x43}, {0x48}, {0x4d}, {0x50}, {0x53}, {0x54}, {0x55}, {0x58}, {0x5c}, {0x5d}, {0x5f},
	{0x63}, {0x68}, {0x69}, {0x6a}, {0x6b}, {0x70}, {0x72}, {0x74}, {0x75}, {0x76}, {0x7a}, {0x7c}, {0x7f},
	{0x80}, {0x81}, {0x83}, {0x84}, {0x85}, {0x86}, {0x87}, {0x88}, {0x89}, {0x8a}, {0x8b}, {0x8d},
	{0x8f}, {0x90}, {0x91}, {0x96}, {0x98}, {0x99}, {0x9c}, {0x9d}, {0xa4}, {0xa8}, {0xa9}, {0xaa}, {0xb0}, {0xb4}, {0xb8}, {0xbc},
	{0xc0}, {0xc1}, {0xc3}, {0xc6}, {0xc7}, {0xc9}, {0xd0}, {0xd1}, {0xd2}, {0xd3}, {0xe8}, {0xe9},
	{0xeb}, {0xf4}, {0xf5}, {0xf6}, {0xf7}, {0xf8}, {0xfe}, {0xff}, {0xff, 0xd0}, {0xff, 0x60}, {0xff, 0x14},
	{0x0f, 0x1f}, {0x0f, 0x44}, {0x0f, 0x4c}, {0x0f, 0x4f}, {0x0f, 0x84}, {0x0f, 0x85}, {0x0f, 0x8e},
	{0x0f, 0x94}, {0x0f, 0x9f}, {0x0f, 0xa2}, {0x0f, 0xaf}, {0x0f, 0xb6}, {0x0f, 0xb7}, {0x0f, 0xbe},
	{0x0f, 0xbf}, {0x0f, 0xc1}, {0x0f, 0xa3},
}

// genCode is random instructions: prefixes, an opcode from fastOps, a
// ModRM byte and operand bytes that are mostly small, so branches stay
// near, RIP-relative operands land in the code (self-modifying code) and
// displacements stay near the registers' addresses.
func genCode(r *rand.Rand, long bool, n int) []byte {
	var b []byte
	for range n {
		if r.Intn(16) == 0 {
			// REP MOVS or STOS (or without REP), with its prefixes in
			// the order fdec takes them.
			if r.Intn(4) != 0 {
				b = append(b, 0xf3)
			}
			if r.Intn(4) == 0 {
				b = append(b, 0x66)
			}
			if long && r.Intn(2) == 0 {
				b = append(b, 0x40|byte(r.Intn(16)))
			}
			b = append(b, []byte{0xa4, 0xa5, 0xaa, 0xab}[r.Intn(4)])
			continue
		}
		if r.Intn(8) == 0 {
			b = append(b, 0x66)
		}
		if r.Intn(24) == 0 {
			p := []byte{0x64, 0x65, 0x2e, 0x36, 0x3e, 0x26, 0xf3, 0xf2, 0x67, 0xf0}
			b = append(b, p[r.Intn(len(p))])
		}
		if long && r.Intn(2) == 0 {
			b = append(b, 0x40|byte(r.Intn(16)))
		}
		b = append(b, fastOps[r.Intn(len(fastOps))]...)
		b = append(b, byte(r.Intn(256)))
		for range 4 + r.Intn(5) {
			switch r.Intn(6) {
			case 0, 1, 2:
				b = append(b, 0)
			case 3:
				b = append(b, byte(r.Intn(16)))
			case 4:
				b = append(b, 0xff)
			default:
				b = append(b, byte(r.Intn(256)))
			}
		}
	}
	return b
}

// genDense is a loop of instructions runFull specialises, in long runs:
// ECX counts the iterations (the body never names register 1), and the
// body mixes register ALU, MOV, shift, rotate, IMUL, INC/DEC and LEA forms
// with memory loads, stores and compares, flag readers (Jcc, CMOVcc,
// SETcc, ADC), 8 and 16-bit forms exec runs, and instructions that end a
// block (PUSH, CPUID). Flags a later instruction overwrites are skipped
// only where nothing can see them; the stream checks that.
func genDense(r *rand.Rand, long bool, n int) []byte {
	reg := func() byte {
		for {
			if x := byte(r.Intn(8)); x != 1 {
				return x
			}
		}
	}
	modrm := func() byte { return 0xc0 | reg()<<3 | reg() }
	// A memory operand: [reg], [reg+disp8] or [reg+disp32] (small), or
	// [base+index*scale].
	mem := func(regField byte) []byte {
		switch r.Intn(4) {
		case 0:
			for {
				if b := reg(); b != 4 && b != 5 {
					return []byte{regField<<3 | b}
				}
			}
		case 1:
			return []byte{0x40 | regField<<3 | reg(), byte(r.Intn(256))}
		case 2:
			return []byte{0x44 | regField<<3, byte(r.Intn(4))<<6 | reg()<<3 | reg(), byte(r.Intn(128))}
		}
		return []byte{0x80 | regField<<3 | reg(), byte(r.Intn(256)), byte(r.Intn(16)), 0, 0}
	}
	rex := func() []byte {
		if !long || r.Intn(2) == 0 {
			return nil
		}
		return []byte{0x48 | byte(r.Intn(8))&5} // W, maybe R and B (never X: SIB index)
	}
	alu := []byte{0x01, 0x03, 0x09, 0x0b, 0x21, 0x23, 0x29, 0x2b, 0x31, 0x33, 0x39, 0x3b, 0x85, 0x11, 0x1b, 0x89, 0x8b, 0x87}
	b := []byte{0xb9, byte(1 + r.Intn(12)), 0, 0, 0} // mov ecx, k
	for range n {
		var in []byte
		switch k := r.Intn(20); k {
		case 0, 1, 2, 3:
			in = append(rex(), alu[r.Intn(len(alu))], modrm())
		case 4:
			in = append(rex(), 0x83, 0xc0|byte(r.Intn(8))<<3|reg(), byte(r.Intn(256)))
		case 5:
			in = append(rex(), 0x81, 0xc0|byte(r.Intn(8))<<3|reg(), byte(r.Intn(256)), byte(r.Intn(256)), 0, byte(r.Intn(2))*0x80)
		case 6:
			in = append(rex(), 0xb8|reg(), byte(r.Intn(256)), byte(r.Intn(256)), 0x10+byte(r.Intn(2)), 0)
		case 7:
			op := []byte{0xc1, 0xd1, 0xd3}[r.Intn(3)]
			in = append(rex(), op, 0xc0|[]byte{0, 1, 4, 5, 7, 2}[r.Intn(6)]<<3|reg())
			if op == 0xc1 {
				in = append(in, byte(r.Intn(70)))
			}
		case 8:
			in = append(rex(), 0x0f, 0xaf, modrm())
		case 9:
			in = append(rex(), 0x6b, modrm(), byte(r.Intn(256)))
		case 10:
			in = append(rex(), 0xff, 0xc0|byte(r.Intn(2))<<3|reg())
		case 11:
			in = append(append(rex(), 0x8d), mem(reg())...)
		case 12, 13:
			op := []byte{0x8b, 0x89, 0x03, 0x3b, 0x39, 0x85, 0x33, 0x2b, 0x0b}[r.Intn(9)]
			in = append(append(rex(), op), mem(reg())...)
		case 14:
			in = append(append(rex(), 0x83), mem(byte(r.Intn(8)))...)
			in = append(in, byte(r.Intn(256)))
		case 15:
			in = append(append(rex(), 0xc7), mem(0)...)
			in = append(in, byte(r.Intn(256)), 0, 0, 0)
		case 16:
			// Flag readers.
			switch r.Intn(4) {
			case 0:
				in = []byte{0x70 | byte(r.Intn(16)), byte(r.Intn(8))}
			case 1:
				in = append(rex(), 0x0f, 0x40|byte(r.Intn(16)), modrm())
			case 2:
				in = []byte{0x0f, 0x90 | byte(r.Intn(16)), 0xc0 | reg()}
			default:
				in = append(rex(), 0x13, modrm())
			}
		case 17:
			// 8 and 16-bit forms.
			in = []byte{[]byte{0x00, 0x28, 0x30, 0x88, 0x38}[r.Intn(5)], modrm()}
			if r.Intn(2) == 0 {
				in = append([]byte{0x66}, in...)
			}
		case 18:
			if r.Intn(2) == 0 {
				// A store into the code ahead (self-modifying code).
				at := uint32(r.Intn(64))
				if !long {
					at += codeBase + uint32(len(b)) + 6
				}
				in = append(append(rex(), 0x89, reg()<<3|5), byte(at), byte(at>>8), byte(at>>16), byte(at>>24))
			} else if !long && r.Intn(2) == 0 {
				in = []byte{0x40 | byte(r.Intn(2))<<3 | reg()} // inc, dec
			} else {
				in = []byte{0x90}
			}
		default:
			in = [][]byte{{0x50 | reg()}, {0x0f, 0xa2}, {0x58 | reg()}, {0xeb, 0}}[r.Intn(4)]
		}
		b = append(b, in...)
	}
	// dec ecx ; jnz to the top (a rel32 the body's length needs).
	b = append(b, 0xff, 0xc9, 0x0f, 0x85)
	rel := -(len(b) + 4 - 5)
	return append(b, byte(rel), byte(rel>>8), byte(rel>>16), byte(rel>>24))
}

// genString is groups of MOVS and STOS, with and without REP, forwards
// and backwards, each after loading ECX, ESI, EDI and EAX: counts that end
// inside a page or run past it, operands near page ends, in the code
// (earlier groups, run again as the stream loops) and in the page tables
// (watched), unmapped, or anywhere.
func genString(r *rand.Rand, long bool, n int) []byte {
	var b []byte
	addr := func() uint32 {
		switch r.Intn(6) {
		case 0:
			return codeBase + uint32(r.Intn(0x100))
		case 1:
			return 0x100000 + uint32(r.Intn(24))<<12 - uint32(r.Intn(16))
		case 2:
			if r.Intn(2) == 0 {
				return uint32(0x4000 + 8*(0x100+r.Intn(24))) // PTEs of the data pages
			}
			return uint32(0x1000 + r.Intn(0x4000)) // the page tables
		case 3:
			return 0x108000 + uint32(r.Intn(0x1000)) // unmapped
		}
		return 0x100000 + uint32(r.Intn(0x20000))
	}
	imm := func(op byte, v uint32) { b = append(b, op, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)) }
	for range n {
		cnt := uint32(r.Intn(40))
		if r.Intn(3) == 0 {
			cnt = uint32(r.Intn(0x3000))
		}
		imm(0xb9, cnt)
		dst := addr()
		// mov edx, [dst]: a read that puts dst's page in the TLB (the
		// page tables' pages too, which Step's writes would flush).
		b = append(b, 0x8b, 0x14, 0x25, byte(dst), byte(dst>>8), byte(dst>>16), byte(dst>>24))
		imm(0xbf, dst)
		if r.Intn(3) == 0 {
			// mov [dst], eax: a store there, into the page tables too.
			b = append(b, 0x89, 0x04, 0x25, byte(dst), byte(dst>>8), byte(dst>>16), byte(dst>>24))
		}
		imm(0xbe, addr())
		imm(0xb8, r.Uint32())
		b = append(b, []byte{0xfc, 0xfd}[r.Intn(2)]) // cld, std
		if r.Intn(4) != 0 {
			b = append(b, 0xf3)
		}
		if r.Intn(4) == 0 {
			b = append(b, 0x66)
		}
		if long && r.Intn(3) == 0 {
			b = append(b, 0x48)
		}
		b = append(b, []byte{0xa4, 0xa5, 0xaa, 0xab}[r.Intn(4)])
	}
	rel := -(len(b) + 2)
	return append(b, 0xeb, byte(rel)) // jmp to the start (n is small)
}

// ptStreams rewrite the PTE of page 0x100000 to map 0x101000, each with
// a different kind of store, once both pages are in the TLB: the store
// must go to Step, whose write drops the translation (the page tables'
// pages are watched), so the load after it sees 0x101000's value.
var ptStreams = func() [][]byte {
	pre := []byte{
		0xc7, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, 0x55, 0, 0, 0, // mov dword [0x101000], 0x55
		0xb9, 0x07, 0x10, 0x10, 0x00, // mov ecx, 0x101007
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, // mov eax, [0x100000]
		0x8b, 0x14, 0x25, 0x00, 0x48, 0x00, 0x00, // mov edx, [0x4800]
	}
	post := []byte{
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, // mov eax, [0x100000]
		0xeb, 0xfe, // jmp $
	}
	var streams [][]byte
	for _, store := range [][]byte{
		{0x89, 0x0c, 0x25, 0x00, 0x48, 0x00, 0x00},                                     // mov [0x4800], ecx
		{0x88, 0x2c, 0x25, 0x01, 0x48, 0x00, 0x00},                                     // mov [0x4801], ch
		{0xbf, 0x00, 0x48, 0x00, 0x00, 0x89, 0xc8, 0xb9, 1, 0, 0, 0, 0xfc, 0xf3, 0xab}, // mov edi, 0x4800; mov eax, ecx; mov ecx, 1; cld; rep stosd
	} {
		streams = append(streams, slices.Concat(pre, store, post))
	}
	return streams
}()

// fastValue is a register value: an address in the data pages, near a
// page end, in the code, in the page tables, or anything.
func fastValue(r *rand.Rand) uint64 {
	switch r.Intn(10) {
	case 0, 1, 2:
		return 0x100000 + uint64(r.Intn(0x20000))
	case 3:
		return 0x100000 + uint64(r.Intn(16))<<12 - uint64(r.Intn(8))
	case 4:
		return codeBase + uint64(r.Intn(0x400))
	case 5:
		return uint64(r.Intn(0x6000))
	case 6:
		return uint64(r.Intn(64))
	case 7:
		return 0x210000 + uint64(r.Intn(0x1000)) // in the 2 MiB page
	}
	return r.Uint64()
}

// TestFastDifferential runs random instruction streams through Fast (with
// Step for what it leaves) and through Step alone, comparing the whole CPU
// after every stretch Fast ran and guest RAM regularly. The streams fault
// (page faults, #GP, #UD), write their own code and the page tables.
func TestFastDifferential(t *testing.T) {
	episodes := 600
	if testing.Short() {
		episodes = 100
	}
	modes := []string{"long64", "long64u", "prot32", "prot32u"}
	r := rand.New(rand.NewSource(1))
	var ran, fast uint64
	for ep := range episodes + len(ptStreams)*len(modes) {
		mode := modes[ep%len(modes)]
		long := mode == "long64" || mode == "long64u"
		fs, cs := newState(t, mode)
		installHandlers(fs, cs)
		// Each handler goes back to the start of the code.
		for v := range 32 {
			at := uint64(handler + v*16)
			fs.put(at, 0xe9)
			fs.put32(at+1, uint32(int32(codeBase-int64(at+5))))
		}
		fs.unmap(0x108000)
		fs.unmap(codeBase + 0x2000)
		// Code and data share pages.
		code := genCode(r, long, 120)
		switch ep % 6 {
		case 2, 5:
			code = genDense(r, long, 5+r.Intn(40))
		case 3:
			code = genString(r, long, 1+r.Intn(4))
		}
		if ep >= episodes {
			code = ptStreams[(ep-episodes)/len(modes)]
		}
		fs.put(codeBase, code...)
		for i := range 8 {
			*(&emu{c: cs}).gpr(i) = fastValue(r)
			*(&emu{c: cs}).gpr(i + 8) = fastValue(r)
		}
		if !long {
			for i := range 8 {
				*(&emu{c: cs}).gpr(i) &= 0xffffffff
			}
		}
		cs.Regs.RSP = kernStack - uint64(r.Intn(64))
		if mode == "long64u" || mode == "prot32u" {
			cs.Regs.RSP = userStack - uint64(r.Intn(64))
		}
		cs.Regs.RFLAGS = flagFixed | uint64(r.Intn(0x1000))&(arithFlags|1<<10) | 1<<9
		if r.Intn(4) == 0 {
			cs.Sregs.FS.Base = 0x100000
		}
		fs.values = []uint64{1, 2, 3, 4, 5, 6, 7, 8}

		fe := fastTwin(fs)
		fq := fe.fakeEnv
		fe.fast.Dirty = NewDirtyLog(len(fq.ram) / 4096)
		ram0 := append([]byte(nil), fq.ram...)
		cf := *cs

		for step := 0; step < 400; {
			budget := uint64(1 + r.Intn(24))
			if r.Intn(3) == 0 {
				budget = uint64(1 + r.Intn(300))
			}
			before := cf
			n, byFast, errS := lockstep(t, fmt.Sprintf("episode %d (%s) step %d", ep, mode, step), fe, fs, &cf, cs, budget)
			fast += byFast
			step += int(n)
			ran += n
			if cf != *cs {
				t.Fatalf("episode %d (%s) step %d, from RIP %#x after %d: CPU differs:\nStep: %+v\nFast: %+v\ncode % x",
					ep, mode, step, before.Regs.RIP, n, *cs, cf, code)
			}
			if step%50 < int(n) || errS != nil {
				if i := firstDiff(fs.ram, fq.ram); i >= 0 {
					t.Fatalf("episode %d (%s) step %d: memory differs at %#x: Step %#x, Fast %#x", ep, mode, step, i, fs.ram[i], fq.ram[i])
				}
			}
			if errS != nil {
				break
			}
		}
		if i := firstDiff(fs.ram, fq.ram); i >= 0 {
			t.Fatalf("episode %d (%s): memory differs at %#x", ep, mode, i)
		}
		// Every page written is in the dirty log.
		dirty := make(map[uint64]bool)
		for _, p := range fe.fast.Dirty.Take() {
			dirty[p] = true
		}
		for p := 0; p < len(ram0); p += 4096 {
			if !bytes.Equal(ram0[p:p+4096], fq.ram[p:p+4096]) && !dirty[uint64(p/4096)] {
				t.Fatalf("episode %d (%s): page %#x written but not in the dirty log", ep, mode, p)
			}
		}
	}
	t.Logf("%d instructions, %d by Fast", ran, fast)
	if fast < ran/4 {
		t.Errorf("Fast ran only %d of %d instructions", fast, ran)
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// TestFastSelfModifying: a store into the block being run changes the
// instruction that follows it, and a VMM write (Written) or FlushCode
// changes code between runs.
func TestFastSelfModifying(t *testing.T) {
	f, c := newState(t, "long64")
	e := newTLBEnv(f)
	run := func(budget uint64) {
		t.Helper()
		for budget > 0 {
			n, slow := e.fast.Run(c, budget, nil)
			budget -= n
			if slow && budget > 0 {
				if _, err := Step(c, e); err != nil {
					t.Fatal(err)
				}
				budget--
			}
		}
	}
	// mov byte [rip+1], 7 ; mov eax, 1 (its immediate's first byte is the
	// byte after the mov byte) ; jmp $-? back is not needed.
	f.put(codeBase, 0xc6, 0x05, 0x01, 0, 0, 0, 7, 0xb8, 1, 0, 0, 0, 0x90)
	// Warm the cache with the unpatched block first.
	saved := *c
	run(3)
	if c.Regs.RAX != 7 {
		t.Fatalf("RAX = %#x after patching the next instruction, want 7", c.Regs.RAX)
	}
	// The VMM rewrites the immediate: the decoded block must not survive.
	*c = saved
	f.put(codeBase, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xb8, 1, 0, 0, 0, 0x90)
	e.fast.Written(codeBase, 13)
	run(9)
	if c.Regs.RAX != 1 {
		t.Fatalf("RAX = %#x after a VMM write, want 1", c.Regs.RAX)
	}
	*c = saved
	f.put(codeBase+8, 9)
	e.fast.FlushCode()
	run(9)
	if c.Regs.RAX != 9 {
		t.Fatalf("RAX = %#x after FlushCode, want 9", c.Regs.RAX)
	}
}

// computeLoop is 64-bit code: an ALU loop (add, xor, dec, jnz: 4
// instructions, 1000 iterations), then a load/store loop over 16 pages
// (mov, add, mov, add, cmp, jb: 2 memory accesses in 6), then back.
var computeLoop = []byte{
	0xb9, 0xe8, 0x03, 0, 0, // mov ecx, 1000
	0x48, 0x01, 0xd8, // add rax, rbx
	0x48, 0x31, 0xc3, // xor rbx, rax
	0xff, 0xc9, // dec ecx
	0x75, 0xf6, // jnz -10
	0xbe, 0, 0, 0x10, 0, // mov esi, 0x100000
	0x48, 0x8b, 0x16, // mov rdx, [rsi]
	0x48, 0x01, 0xc2, // add rdx, rax
	0x48, 0x89, 0x16, // mov [rsi], rdx
	0x48, 0x83, 0xc6, 0x40, // add rsi, 64
	0x48, 0x81, 0xfe, 0, 0, 0x11, 0, // cmp rsi, 0x110000
	0x72, 0xea, // jb -22
	0xeb, 0xd4, // jmp to the start
}

func newComputeLoop(tb testing.TB) (*tlbEnv, *CPU) {
	f, c := newState(tb, "long64")
	f.put(codeBase, computeLoop...)
	c.Regs.RAX, c.Regs.RBX = 0x9e3779b97f4a7c15, 0x2545f4914f6cdd1d
	return newTLBEnv(f), c
}

// runLoop runs n instructions of the compute loop, with Step for TLB misses.
func runLoop(tb testing.TB, e *tlbEnv, c *CPU, n uint64) {
	for n > 0 {
		k, slow := e.fast.Run(c, n, nil)
		n -= k
		if slow && n > 0 {
			if _, err := Step(c, e); err != nil {
				tb.Fatal(err)
			}
			n--
		}
	}
}

// TestFastComputeLoop checks the benchmark's loop against Step.
func TestFastComputeLoop(t *testing.T) {
	e, c := newComputeLoop(t)
	f, d := newComputeLoop(t)
	const n = 20000
	runLoop(t, e, c, n)
	for range n {
		if _, err := Step(d, f.fakeEnv); err != nil {
			t.Fatal(err)
		}
	}
	if *c != *d || !bytes.Equal(e.ram, f.ram) {
		t.Fatalf("Fast and Step differ:\n%+v\n%+v", *c, *d)
	}
}

// BenchmarkFast is the compute loop on Fast: instructions per second.
func BenchmarkFast(b *testing.B) {
	e, c := newComputeLoop(b)
	runLoop(b, e, c, 100000)
	b.ResetTimer()
	start := time.Now()
	const chunk = 1 << 20
	for range b.N {
		runLoop(b, e, c, chunk)
	}
	b.ReportMetric(float64(b.N)*chunk/time.Since(start).Seconds()/1e6, "Minsn/s")
}

// BenchmarkStepLoop is the same loop on Step alone.
func BenchmarkStepLoop(b *testing.B) {
	e, c := newComputeLoop(b)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := Step(c, e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds()/1e6, "Minsn/s")
}

// fastTwin is a copy of fs (RAM, CPUID, the values NonDet hands out) for
// the fast path to run beside Step on fs.
func fastTwin(fs *fakeEnv) *tlbEnv {
	fq := newFakeEnv(ramSize)
	copy(fq.ram, fs.ram)
	fq.cpuid, fq.values = fs.cpuid, append([]uint64(nil), fs.values...)
	return newTLBEnv(fq)
}

// lockstep runs up to budget instructions on the fast path from cf (one
// Step where it asks for Step) and as many on Step alone from cs. It
// returns how many ran, how many of them by the fast path, and Step's
// error; it fails t where Run breaks its budget contract or the two paths
// end with different errors. The caller compares the CPUs and memory.
func lockstep(t testing.TB, where string, fe *tlbEnv, fs *fakeEnv, cf, cs *CPU, budget uint64) (n, byFast uint64, errS error) {
	t.Helper()
	n, slow := fe.fast.Run(cf, budget, nil)
	if n > budget || n < budget && !slow || n == 0 && !slow {
		t.Fatalf("%s: Run(%d) = %d, slow %v", where, budget, n, slow)
	}
	var errF error
	if n == 0 {
		_, errF = Step(cf, fe)
		_, errS = Step(cs, fs)
		n = 1
	} else {
		byFast = n
		for range n {
			if _, errS = Step(cs, fs); errS != nil {
				break
			}
		}
	}
	if (errS == nil) != (errF == nil) || errS != nil && errS.Error() != errF.Error() {
		t.Fatalf("%s, %d instructions on: Step alone: %v, with Fast: %v", where, n, errS, errF)
	}
	return n, byFast, errS
}
