package x86emu

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"

	"vmrr/machine/cpu"
)

// TLBSize is the number of entries of a TLB.
const TLBSize = 1024

// TLB is a direct-mapped cache of 4 KiB translations, indexed by linear
// page number modulo TLBSize. The caller's Env.Translate fills and flushes
// it; Fast reads it to reach guest memory without calling Env.
type TLB [TLBSize]TLBEntry

// TLBEntry caches one 4 KiB translation.
type TLBEntry struct {
	Tag   uint64 // linear page number plus one; zero: empty
	PPN   uint64 // physical page number
	Perms uint8  // TLBWritable, TLBUser, ...
}

// TLBEntry.Perms bits.
const (
	TLBWritable = 1 << iota // writes allowed at CPL3
	TLBUser                 // CPL3 accesses allowed
	TLBNX                   // instruction fetches not allowed
	TLBGlobal               // survives a CR3 load
	TLBDirty                // D is set in the leaf entry: a write needs no page walk
	TLBSupWrite             // supervisor writes allowed (CR0.WP=0 or writable)
)

// Fast runs guest code from a cache of pre-decoded instructions, in place
// on the CPU and straight on guest RAM, for the common integer
// instructions of 32 and 64-bit code. It stops before anything else (a
// system or rare instruction, a TLB miss, any access that would fault or
// that needs Env, a mode it does not cover) and leaves that instruction to
// Step, so exceptions, I/O and system state stay Step's alone.
//
// Decoded instructions are cached per guest physical address. A write to
// guest memory that holds decoded code must reach Written (the fast path
// itself leaves such writes to Step), or FlushCode for bulk changes.
type Fast struct {
	ram     []byte
	tlb     *TLB
	watched []byte
	// code has one word per RAM page: bit i is set when the page's
	// 64-byte line i holds decoded instructions.
	code    []uint64
	pageGen []uint32 // bumped when a page's decoded code is invalidated
	gen     uint32   // bumped by FlushCode
	blocks  []*fblock

	// Per-Run state: the general registers (encoding order, then the
	// zero slot and the block's RIP), RFLAGS, and what the mode allows.
	// r is indexed by uint8 slots: 256 entries need no bounds checks.
	r  [256]uint64
	fl uint64
	// Lazy status flags: when lz is not lzNone, the six status flags in
	// fl are stale and follow from the last operation's operands.
	lz                 uint8
	lzA, lzB, lzR, lzS uint64
	// With lzOver in lz, the flags in ovM are ovV, whatever the lazy
	// operation gives for them (a rotate's CF and OF).
	ovM, ovV uint64
	target   uint64 // where a taken branch goes
	paging   bool
	long     bool
	stackOK  bool
	bits     uint8
	rdNeed   uint8
	wrNeed   uint8
	fxMask   uint8
	fxNeed   uint8
	addrMask uint64
	canon    uint
	segOK    [4]bool
	dsOK     bool // DS and SS are flat: offsets are linear addresses
	esOK     bool // ES is too
	segBase  [4]uint64

	// Stats counts what the cache did.
	Stats FastStats
	// Dirty, if set, records every page written: by the fast path's
	// stores and through Written.
	Dirty *DirtyLog
}

// DirtyLog records which RAM pages were written since it was last taken:
// the soft CPU's dirty log, which lets a snapshot copy only those pages.
type DirtyLog struct {
	mark  []byte
	pages []uint64
}

// NewDirtyLog makes a log for RAM of the given number of pages.
func NewDirtyLog(pages int) *DirtyLog { return &DirtyLog{mark: make([]byte, pages)} }

// Mark records page p as written.
func (d *DirtyLog) Mark(p uint64) {
	if p < uint64(len(d.mark)) && d.mark[p] == 0 {
		d.mark[p] = 1
		d.pages = append(d.pages, p)
	}
}

// Take returns the pages written since the last Take, in the order first
// written, and starts afresh.
func (d *DirtyLog) Take() []uint64 {
	pages := d.pages
	for _, p := range pages {
		d.mark[p] = 0
	}
	d.pages = nil
	return pages
}

// FastStats counts the decoded-code cache's work.
type FastStats struct {
	Blocks      uint64 // blocks decoded
	Invalidated uint64 // pages whose decoded code a write invalidated
}

// fblock is a run of instructions decoded from one page, entered at its
// first; it ends at an unconditional branch, an instruction the fast path
// does not cover, or the page end.
type fblock struct {
	gpa   uint64
	gen   uint32
	pgen  uint32
	bits  uint8
	insts []finst
	// succ is the block run after this one last time, found at linear
	// address succLin in the page this one was entered in (see Run).
	succ    *fblock
	succLin uint64
}

const (
	blockSlots = 1 << 14
	maxBlock   = 64
)

// NewFast makes the fast path over guest RAM (guest physical 0 up) and
// the TLB that Env.Translate keeps. watched, if not nil, has a byte per
// RAM page: a non-zero one sends writes to that page through Step and
// Env.WritePhys (the soft MMU's T bit).
func NewFast(ram []byte, tlb *TLB, watched []byte) *Fast {
	pages := (len(ram) + 4095) / 4096
	return &Fast{ram: ram, tlb: tlb, watched: watched, code: make([]uint64, pages),
		pageGen: make([]uint32, pages), blocks: make([]*fblock, blockSlots)}
}

// Written tells the cache of a write to guest physical memory (by the
// guest through Env.WritePhys, or by the VMM): decoded code it overwrites
// is dropped.
func (f *Fast) Written(gpa uint64, n int) {
	if n <= 0 {
		return
	}
	last := gpa + uint64(n) - 1
	if f.Dirty != nil {
		for p := gpa >> 12; p <= last>>12; p++ {
			f.Dirty.Mark(p)
		}
	}
	for p := gpa >> 12; p <= last>>12 && p < uint64(len(f.code)); p++ {
		w := f.code[p]
		if w == 0 {
			continue
		}
		lo, hi := uint64(0), uint64(63)
		if p == gpa>>12 {
			lo = gpa >> 6 & 63
		}
		if p == last>>12 {
			hi = last >> 6 & 63
		}
		if w&(^uint64(0)>>(63-hi))&(^uint64(0)<<lo) != 0 {
			f.code[p] = 0
			f.pageGen[p]++
			f.Stats.Invalidated++
		}
	}
}

// FlushCode drops every decoded instruction: the VMM rewrote guest memory
// wholesale (a snapshot restore).
func (f *Fast) FlushCode() {
	f.gen++
	clear(f.code)
}

func blockSlot(gpa uint64) uint64 { return (gpa ^ gpa>>11) & (blockSlots - 1) }

// decodeBlock decodes the block at gpa; a block with no instructions
// remembers that the first one is Step's.
func (f *Fast) decodeBlock(gpa uint64) *fblock {
	f.Stats.Blocks++
	p := gpa >> 12
	b := &fblock{gpa: gpa, gen: f.gen, pgen: f.pageGen[p], bits: f.bits}
	end := min((p+1)<<12, uint64(len(f.ram)))
	off := gpa
	for len(b.insts) < maxBlock && off < end {
		in, ok := fdec(f.ram[off:end], int(f.bits))
		if !ok || (in.op == fMovs || in.op == fStos) && len(b.insts) > 0 {
			break
		}
		in.start = uint16(off - gpa)
		in.end += in.start
		if in.base == slotRIP {
			in.disp += uint64(in.end)
		}
		specialise(&in)
		b.insts = append(b.insts, in)
		off = gpa + uint64(in.end)
		if in.op == fJmp || in.op == fCall || in.op == fRet || in.op == fJmpInd || in.op == fCallInd ||
			in.op == fMovs || in.op == fStos {
			break
		}
	}
	liveFlags(b.insts)
	last := max(off, gpa+1) - 1
	lo, hi := gpa>>6&63, last>>6&63
	f.code[p] |= (^uint64(0) >> (63 - hi)) & (^uint64(0) << lo)
	f.blocks[blockSlot(gpa)] = b
	return b
}

// setup reads what the CPU's mode allows; false: Step only.
func (f *Fast) setup(c *CPU) bool {
	s := &c.Sregs
	switch modeOf(c) {
	case modeLong64:
		f.bits, f.long = 64, true
		f.addrMask = ^uint64(0)
		f.canon = 48
		if s.CR4&(1<<12) != 0 {
			f.canon = 57
		}
		f.segOK = [4]bool{true, true, true, true}
		f.segBase = [4]uint64{0, 0, s.FS.Base, s.GS.Base}
		f.stackOK = true
	case modeProt32:
		if s.CS.Base != 0 || s.CS.Limit != 0xffffffff || c.Regs.RIP > 0xffffffff {
			return false
		}
		f.bits, f.long = 32, false
		f.addrMask = 0xffffffff
		f.segOK = [4]bool{flatData(&s.DS), flatData(&s.SS), flatData(&s.FS), flatData(&s.GS)}
		f.segBase = [4]uint64{}
		f.stackOK = f.segOK[fsegSS] && s.SS.DB != 0
	default:
		return false
	}
	f.dsOK = f.segOK[fsegDS] && f.segOK[fsegSS]
	f.esOK = f.long || flatData(&s.ES)
	f.paging = s.CR0&cpu.CR0PG != 0
	f.rdNeed, f.wrNeed = 0, TLBDirty|TLBSupWrite
	if s.SS.DPL&3 == 3 {
		f.rdNeed, f.wrNeed = TLBUser, TLBDirty|TLBUser|TLBWritable
	}
	f.fxMask, f.fxNeed = f.rdNeed|TLBNX, f.rdNeed
	return true
}

// flatData: a present, writable, expand-up data segment at 0 with a 4 GiB
// limit, where offsets are linear addresses and need no checks.
func flatData(s *cpu.Segment) bool {
	return s.Unusable == 0 && s.Present != 0 && s.S != 0 && s.Typ&0xe == 2 &&
		s.Base == 0 && s.Limit == 0xffffffff
}

// regSlots maps encoding order to cpu.Regs.
func (f *Fast) loadRegs(r *cpu.Regs) {
	*(*[16]uint64)(f.r[:]) = [16]uint64{r.RAX, r.RCX, r.RDX, r.RBX, r.RSP, r.RBP, r.RSI, r.RDI,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15}
	f.r[slotZero] = 0
	f.fl = r.RFLAGS
	f.lz = lzNone
}

func (f *Fast) storeRegs(r *cpu.Regs) {
	x := &f.r
	r.RAX, r.RCX, r.RDX, r.RBX, r.RSP, r.RBP, r.RSI, r.RDI = x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]
	r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15 = x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15]
	r.RFLAGS = f.flags()
}

// Run executes up to budget instructions at CS:RIP, in place on c. It
// returns how many ran and whether it stopped because the next instruction
// needs Step (slow=false: the budget ran out, or stop was set, checked
// between blocks). Each instruction it runs does exactly what Step would.
func (f *Fast) Run(c *CPU, budget uint64, stop *atomic.Bool) (n uint64, slow bool) {
	if budget == 0 {
		return 0, false
	}
	if !f.setup(c) {
		return 0, true
	}
	f.loadRegs(&c.Regs)
	rip := c.Regs.RIP
	// prev is the block just run and same whether rip, where it went, is
	// in the linear page it was entered in: then rip maps to prev's
	// physical page, and prev.succ, if it was found for the same rip, is
	// the block there. Within one Run the TLB and the decoded code cannot
	// change (the fast path leaves writes to watched pages and to code to
	// Step), so the successor needs only its validity check.
	var prev *fblock
	same := false
	for n < budget {
		if stop != nil && stop.Load() {
			break
		}
		var b *fblock
		if same && prev.succLin == rip && prev.succ != nil {
			if s := prev.succ; s.gen == f.gen && s.pgen == f.pageGen[s.gpa>>12] {
				b = s
			}
		}
		if b == nil {
			gpa := rip
			if f.paging {
				e := &f.tlb[rip>>12%TLBSize]
				if e.Tag != rip>>12+1 || e.Perms&f.fxMask != f.fxNeed {
					slow = true
					break
				}
				gpa = e.PPN<<12 | rip&0xfff
			}
			if gpa >= uint64(len(f.ram)) {
				slow = true
				break
			}
			b = f.blocks[blockSlot(gpa)]
			if b == nil || b.gpa != gpa || b.bits != f.bits || b.gen != f.gen || b.pgen != f.pageGen[gpa>>12] {
				b = f.decodeBlock(gpa)
			}
			if len(b.insts) == 0 {
				slow = true
				break
			}
			if same {
				prev.succ, prev.succLin = b, rip
			}
		}
		left := budget - n
		var k uint64
		var res int
		base := rip
		if in := &b.insts[0]; in.op == fMovs || in.op == fStos {
			k, rip, res = f.runString(in, base, left)
		} else if uint64(len(b.insts)) <= left {
			k, rip, res = f.runFull(b, base, left, stop)
		} else {
			k, rip, res = f.runExact(b, base, left)
		}
		n += k
		if res != rNext {
			slow = res == rBail
			break
		}
		same = rip>>12 == base>>12
		prev = b
	}
	f.storeRegs(&c.Regs)
	c.Regs.RIP = rip
	if n > 0 {
		c.Shadow = false
		c.Regs.RFLAGS = c.Regs.RFLAGS&^cpu.FlagRF | flagFixed
	}
	return n, slow
}

// exec's results.
const (
	xBail   = iota // Step's: nothing changed
	xNext          // fall through
	xBranch        // continue at Fast.target
)

// The flags exec computes.
const (
	flCF = cpu.FlagCF
	flPF = cpu.FlagPF
	flAF = cpu.FlagAF
	flZF = cpu.FlagZF
	flSF = cpu.FlagSF
	flOF = cpu.FlagOF
)

var parityTab = func() (t [256]uint8) {
	for i := range t {
		if bits.OnesCount8(uint8(i))&1 == 0 {
			t[i] = uint8(cpu.FlagPF)
		}
	}
	return
}()

func szpFlags(r, sign uint64) uint64 {
	fl := uint64(parityTab[uint8(r)])
	if r == 0 {
		fl |= flZF
	}
	if r&sign != 0 {
		fl |= flSF
	}
	return fl
}

func addFl(a, b, r, sign uint64) uint64 {
	fl := szpFlags(r, sign) | (a^b^r)&flAF
	if (a&b|(a|b)&^r)&sign != 0 {
		fl |= flCF
	}
	if (a^r)&(b^r)&sign != 0 {
		fl |= flOF
	}
	return fl
}

func subFl(a, b, r, sign uint64) uint64 {
	fl := szpFlags(r, sign) | (a^b^r)&flAF
	if (^a&b|^(a^b)&r)&sign != 0 {
		fl |= flCF
	}
	if (a^b)&(a^r)&sign != 0 {
		fl |= flOF
	}
	return fl
}

// aluDo computes an ALU operation on masked operands.
func (f *Fast) aluDo(op uint8, a, b, m uint64) uint64 {
	sign := m ^ m>>1
	var r, fl uint64
	switch op {
	case aluAdd:
		r = (a + b) & m
		f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzAdd, a, b, r, sign
		return r
	case aluSub, aluCmp:
		r = (a - b) & m
		f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzSub, a, b, r, sign
		return r
	case aluAnd, aluTest:
		r = a & b
		f.lz, f.lzR, f.lzS = lzLogic, r, sign
		return r
	case aluXor:
		r = a ^ b
		f.lz, f.lzR, f.lzS = lzLogic, r, sign
		return r
	case aluAdc:
		r = (a + b + f.flags()&flCF) & m
		fl = addFl(a, b, r, sign)
	case aluSbb:
		r = (a - b - f.flags()&flCF) & m
		fl = subFl(a, b, r, sign)
	default: // aluOr
		r = a | b
		f.lz, f.lzR, f.lzS = lzLogic, r, sign
		return r
	}
	f.fl = f.fl&^arithFlags | fl
	return r
}

// Kinds of lazy flags.
const (
	lzNone  = iota
	lzAdd   // lzA + lzB = lzR
	lzSub   // lzA - lzB = lzR
	lzLogic // lzR of AND, OR, XOR, TEST: CF, OF, AF clear
	lzInc   // lzA + 1 = lzR, CF in fl
	lzDec   // lzA - 1 = lzR, CF in fl

	lzOver = 0x80 // with one of the above: ovM and ovV override it
)

// flags brings the status flags in fl up to date.
func (f *Fast) flags() uint64 {
	lz := f.lz
	if lz == lzNone {
		return f.fl
	}
	var fl uint64
	switch lz &^ lzOver {
	case lzAdd:
		fl = addFl(f.lzA, f.lzB, f.lzR, f.lzS)
	case lzSub:
		fl = subFl(f.lzA, f.lzB, f.lzR, f.lzS)
	case lzLogic:
		fl = szpFlags(f.lzR, f.lzS)
	case lzInc:
		fl = addFl(f.lzA, 1, f.lzR, f.lzS)&^flCF | f.fl&flCF
	case lzDec:
		fl = subFl(f.lzA, 1, f.lzR, f.lzS)&^flCF | f.fl&flCF
	}
	if lz&lzOver != 0 {
		fl = fl&^f.ovM | f.ovV
	}
	f.lz = lzNone
	f.fl = f.fl&^arithFlags | fl
	return f.fl
}

// cf is CF without bringing the other flags up to date.
func (f *Fast) cf() uint64 {
	if f.lz&lzOver != 0 && f.ovM&flCF != 0 {
		return f.ovV & flCF
	}
	switch f.lz &^ lzOver {
	case lzAdd:
		if f.lzR < f.lzA {
			return flCF
		}
		return 0
	case lzSub:
		if f.lzA < f.lzB {
			return flCF
		}
		return 0
	case lzLogic:
		return 0
	}
	return f.fl & flCF
}

// cond evaluates condition code cc, from the lazy state where that is
// cheap (ZF, CF).
func (f *Fast) cond(cc uint8) bool {
	switch cc >> 1 {
	case 1:
		return (f.cf() != 0) != (cc&1 != 0)
	case 2:
		// Every lazy kind has ZF from lzR; an override is never ZF.
		if f.lz != lzNone {
			return (f.lzR == 0) != (cc&1 != 0)
		}
	}
	return fcond(f.flags(), cc)
}

// fcond evaluates condition code cc on the flags.
func fcond(fl uint64, cc uint8) bool {
	var r bool
	switch cc >> 1 {
	case 0:
		r = fl&flOF != 0
	case 1:
		r = fl&flCF != 0
	case 2:
		r = fl&flZF != 0
	case 3:
		r = fl&(flCF|flZF) != 0
	case 4:
		r = fl&flSF != 0
	case 5:
		r = fl&flPF != 0
	case 6:
		r = (fl&flSF != 0) != (fl&flOF != 0)
	default:
		r = fl&flZF != 0 || (fl&flSF != 0) != (fl&flOF != 0)
	}
	return r != (cc&1 != 0)
}

// lin is the linear address of in's memory operand; false when its
// segment needs checks.
func (f *Fast) lin(in *finst) (uint64, bool) {
	a := (f.r[in.base] + f.r[in.index]<<in.scale + in.disp) & f.addrMask
	return (a + f.segBase[in.seg]) & f.addrMask, f.segOK[in.seg]
}

// hostR is the guest physical address of a read of size bytes at lin, if
// the TLB has it, it stays in one page and in RAM.
func (f *Fast) hostR(lin, size uint64) (uint64, bool) {
	if lin&0xfff > 0x1000-size {
		return 0, false
	}
	gpa := lin
	if f.paging {
		e := &f.tlb[lin>>12%TLBSize]
		if e.Tag != lin>>12+1 || e.Perms&f.rdNeed != f.rdNeed {
			return 0, false
		}
		gpa = e.PPN<<12 | lin&0xfff
	}
	return gpa, gpa+size <= uint64(len(f.ram))
}

// hostW is hostR for a write, which also must not touch decoded code or a
// watched page.
func (f *Fast) hostW(lin, size uint64) (uint64, bool) {
	if lin&0xfff > 0x1000-size {
		return 0, false
	}
	gpa := lin
	if f.paging {
		e := &f.tlb[lin>>12%TLBSize]
		if e.Tag != lin>>12+1 || e.Perms&f.wrNeed != f.wrNeed {
			return 0, false
		}
		gpa = e.PPN<<12 | lin&0xfff
	}
	if gpa+size > uint64(len(f.ram)) {
		return 0, false
	}
	p := gpa >> 12
	if f.code[p]&(1<<(gpa>>6&63)|1<<((gpa+size-1)>>6&63)) != 0 {
		return 0, false
	}
	if f.watched != nil && f.watched[p] != 0 {
		return 0, false
	}
	if d := f.Dirty; d != nil && d.mark[p] == 0 {
		d.Mark(p)
	}
	return gpa, true
}

func (f *Fast) ld(gpa uint64, size uint8) uint64 {
	switch size {
	case 1:
		return uint64(f.ram[gpa])
	case 2:
		return uint64(binary.LittleEndian.Uint16(f.ram[gpa:]))
	case 4:
		return uint64(binary.LittleEndian.Uint32(f.ram[gpa:]))
	}
	return binary.LittleEndian.Uint64(f.ram[gpa:])
}

func (f *Fast) st(gpa uint64, size uint8, v uint64) {
	switch size {
	case 1:
		f.ram[gpa] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(f.ram[gpa:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(f.ram[gpa:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(f.ram[gpa:], v)
	}
}

// readRM reads the r/m operand at size bytes with mask m.
func (f *Fast) readRM(in *finst, size uint8, m uint64) (uint64, bool) {
	if !in.mem {
		return f.r[in.rm] >> in.rmSh & m, true
	}
	lin, ok := f.lin(in)
	if !ok {
		return 0, false
	}
	gpa, ok := f.hostR(lin, uint64(size))
	if !ok {
		return 0, false
	}
	return f.ld(gpa, size), true
}

// addrRMW translates a memory r/m operand for a write (checked before the
// read, as the processor does).
func (f *Fast) addrRMW(in *finst) (uint64, bool) {
	lin, ok := f.lin(in)
	if !ok {
		return 0, false
	}
	return f.hostW(lin, uint64(in.size))
}

func (f *Fast) setReg(slot, sh uint8, keep, m, v uint64) {
	f.r[slot] = f.r[slot]&keep | (v&m)<<sh
}

// branch sets a near branch target: canonical in 64-bit mode, within
// the (flat) CS limit otherwise.
func (f *Fast) branch(t uint64) int {
	if !f.long {
		f.target = t & 0xffffffff
		return xBranch
	}
	if top := int64(t) >> (f.canon - 1); top != 0 && top != -1 {
		return xBail
	}
	f.target = t
	return xBranch
}

// push writes v below the stack pointer.
func (f *Fast) push(v uint64) bool {
	if !f.stackOK {
		return false
	}
	size := uint8(4)
	if f.long {
		size = 8
	}
	sp := (f.r[4] - uint64(size)) & f.addrMask
	gpa, ok := f.hostW(sp, uint64(size))
	if !ok {
		return false
	}
	f.st(gpa, size, v)
	f.r[4] = sp
	return true
}

// pop reads the top of the stack; the caller commits the new stack pointer.
func (f *Fast) pop() (v, sp uint64, ok bool) {
	if !f.stackOK {
		return 0, 0, false
	}
	size := uint8(4)
	if f.long {
		size = 8
	}
	sp = f.r[4] & f.addrMask
	gpa, ok := f.hostR(sp, uint64(size))
	if !ok {
		return 0, 0, false
	}
	return f.ld(gpa, size), (sp + uint64(size)) & f.addrMask, true
}

// exec runs one instruction of the block at base: xNext, xBranch (to
// f.target), or xBail having changed nothing.
func (f *Fast) exec(in *finst, base uint64) int {
	m := in.mask
	switch in.op {
	case fAluEG, fAluEI:
		var b uint64
		if in.op == fAluEG {
			b = f.r[in.reg] >> in.regSh & m
		} else {
			b = in.imm & m
		}
		if !in.mem {
			a := f.r[in.rm] >> in.rmSh & m
			r := f.aluDo(in.alu, a, b, m)
			if in.alu < aluCmp {
				f.setReg(in.rm, in.rmSh, in.rmKeep, m, r)
			}
			return xNext
		}
		if in.alu >= aluCmp {
			a, ok := f.readRM(in, in.size, m)
			if !ok {
				return xBail
			}
			f.aluDo(in.alu, a, b, m)
			return xNext
		}
		gpa, ok := f.addrRMW(in)
		if !ok {
			return xBail
		}
		f.st(gpa, in.size, f.aluDo(in.alu, f.ld(gpa, in.size), b, m))
	case fAluGE:
		b, ok := f.readRM(in, in.size, m)
		if !ok {
			return xBail
		}
		r := f.aluDo(in.alu, f.r[in.reg]>>in.regSh&m, b, m)
		if in.alu < aluCmp {
			f.setReg(in.reg, in.regSh, in.regKeep, m, r)
		}
	case fMovEG, fMovEI:
		v := in.imm
		if in.op == fMovEG {
			v = f.r[in.reg] >> in.regSh
		}
		if !in.mem {
			f.setReg(in.rm, in.rmSh, in.rmKeep, m, v)
			return xNext
		}
		lin, ok := f.lin(in)
		if !ok {
			return xBail
		}
		gpa, ok := f.hostW(lin, uint64(in.size))
		if !ok {
			return xBail
		}
		f.st(gpa, in.size, v)
	case fMovGE:
		v, ok := f.readRM(in, in.size, m)
		if !ok {
			return xBail
		}
		f.setReg(in.reg, in.regSh, in.regKeep, m, v)
	case fMovzx, fMovsx:
		v, ok := f.readRM(in, in.ssize, in.smask)
		if !ok {
			return xBail
		}
		if in.op == fMovsx {
			v = signExtend(v, int(in.ssize)*8)
		}
		f.setReg(in.reg, 0, in.regKeep, m, v)
	case fLea:
		a := (f.r[in.base] + f.r[in.index]<<in.scale + in.disp) & f.addrMask
		f.setReg(in.reg, 0, in.regKeep, m, a)
	case fInc, fDec, fNot, fNeg:
		var gpa, a uint64
		if in.mem {
			var ok bool
			if gpa, ok = f.addrRMW(in); !ok {
				return xBail
			}
			a = f.ld(gpa, in.size)
		} else {
			a = f.r[in.rm] >> in.rmSh & m
		}
		sign := m ^ m>>1
		var r uint64
		switch in.op {
		case fInc:
			r = (a + 1) & m
			f.fl = f.fl&^flCF | f.cf()
			f.lz, f.lzA, f.lzR, f.lzS = lzInc, a, r, sign
		case fDec:
			r = (a - 1) & m
			f.fl = f.fl&^flCF | f.cf()
			f.lz, f.lzA, f.lzR, f.lzS = lzDec, a, r, sign
		case fNot:
			r = ^a & m
		default:
			r = -a & m
			f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzSub, 0, a, r, sign
		}
		if in.mem {
			f.st(gpa, in.size, r)
		} else {
			f.setReg(in.rm, in.rmSh, in.rmKeep, m, r)
		}
	case fShift:
		return f.shift(in)
	case fImul:
		b, ok := f.readRM(in, in.size, m)
		if !ok {
			return xBail
		}
		a := f.r[in.reg] & m
		if in.hasImm {
			a, b = b, in.imm&m
		}
		w := int(in.size) * 8
		lo, hi := mulSigned(a, b, w)
		f.setReg(in.reg, 0, in.regKeep, m, lo)
		f.lz = lzNone
		f.fl = f.fl&^arithFlags | mulFlags(lo, w, hi != signFill(lo, w))
	case fPush:
		if !f.push(f.r[in.reg]) {
			return xBail
		}
	case fPushI:
		if !f.push(in.imm) {
			return xBail
		}
	case fPop:
		v, sp, ok := f.pop()
		if !ok {
			return xBail
		}
		f.r[4] = sp
		f.r[in.reg] = v
	case fJcc:
		if !f.cond(in.alu) {
			return xNext
		}
		return f.branch(base + uint64(in.end) + in.imm)
	case fJmp:
		return f.branch(base + uint64(in.end) + in.imm)
	case fCall:
		if f.branch(base+uint64(in.end)+in.imm) == xBail || !f.push((base+uint64(in.end))&f.addrMask) {
			return xBail
		}
		return xBranch
	case fRet:
		v, sp, ok := f.pop()
		if !ok {
			return xBail
		}
		if f.branch(v) == xBail {
			return xBail
		}
		f.r[4] = sp
		return xBranch
	case fCmov:
		v, ok := f.readRM(in, in.size, m)
		if !ok {
			return xBail
		}
		if !f.cond(in.alu) {
			v = f.r[in.reg]
		}
		f.setReg(in.reg, 0, in.regKeep, m, v)
	case fSetcc:
		var v uint64
		if f.cond(in.alu) {
			v = 1
		}
		if !in.mem {
			f.setReg(in.rm, in.rmSh, in.rmKeep, 0xff, v)
			return xNext
		}
		lin, ok := f.lin(in)
		if !ok {
			return xBail
		}
		gpa, ok := f.hostW(lin, 1)
		if !ok {
			return xBail
		}
		f.ram[gpa] = byte(v)
	case fXchg:
		a, b := f.r[in.reg]>>in.regSh&m, f.r[in.rm]>>in.rmSh&m
		f.setReg(in.reg, in.regSh, in.regKeep, m, b)
		f.setReg(in.rm, in.rmSh, in.rmKeep, m, a)
	case fLeave:
		// rSP = rBP, then POP rBP.
		if !f.stackOK {
			return xBail
		}
		size := uint8(4)
		if f.long {
			size = 8
		}
		sp := f.r[5] & f.addrMask
		gpa, ok := f.hostR(sp, uint64(size))
		if !ok {
			return xBail
		}
		f.r[5] = f.ld(gpa, size)
		f.r[4] = (sp + uint64(size)) & f.addrMask
	case fJmpInd, fCallInd:
		t, ok := f.readRM(in, in.size, m)
		if !ok || f.branch(t) == xBail {
			return xBail
		}
		if in.op == fCallInd && !f.push((base+uint64(in.end))&f.addrMask) {
			return xBail
		}
		return xBranch
	case fNop:
	case fCdqe:
		w := int(in.size) * 8
		f.setReg(0, 0, in.rmKeep, m, signExtend(f.r[0]&(m>>(w/2)), w/2))
	case fCdq:
		var v uint64
		if f.r[0]&(m^m>>1) != 0 {
			v = ^uint64(0)
		}
		f.setReg(2, 0, in.rmKeep, m, v)
	default:
		return xBail
	}
	return xNext
}

// shift is ROL, ROR, SHL, SHR and SAR, as Step's shift computes them.
func (f *Fast) shift(in *finst) int {
	m := in.mask
	var gpa, a uint64
	if in.mem {
		var ok bool
		if gpa, ok = f.addrRMW(in); !ok {
			return xBail
		}
		a = f.ld(gpa, in.size)
	} else {
		a = f.r[in.rm] >> in.rmSh & m
	}
	c := in.imm
	if in.cl {
		c = f.r[1]
	}
	w := uint64(in.size) * 8
	c = maskCount(c, int(w))
	if c == 0 {
		if !in.mem && in.size == 4 {
			f.setReg(in.rm, in.rmSh, in.rmKeep, m, a)
		}
		return xNext
	}
	msb := a >> (w - 1) & 1
	next := a >> (w - 2) & 1
	var r, fl uint64
	switch in.alu {
	case 0, 1:
		// Rotates set CF and OF only, and an immediate count other than 1
		// leaves OF alone (as Step does, after the Intel host).
		mask := uint64(flCF | flOF)
		if !in.cl && c != 1 {
			mask = flCF
		}
		rc := c % w
		if in.alu == 0 {
			r = (a<<rc | a>>(w-rc)) & m
			fl = r & 1
			if msb != next {
				fl |= flOF
			}
		} else {
			r = (a>>rc | a<<(w-rc)) & m
			fl = r >> (w - 1) & 1
			if msb != a&1 {
				fl |= flOF
			}
		}
		f.setOver(mask, fl&mask)
		if in.mem {
			f.st(gpa, in.size, r)
		} else {
			f.setReg(in.rm, in.rmSh, in.rmKeep, m, r)
		}
		return xNext
	case 4:
		r = a << c & m
		if c <= w && a>>(w-c)&1 != 0 {
			fl |= flCF
		}
		if msb != next {
			fl |= flOF
		}
	case 5:
		r = a >> c
		if c <= w && a>>(c-1)&1 != 0 {
			fl |= flCF
		}
		if msb != 0 {
			fl |= flOF
		}
	default:
		s := int64(signExtend(a, int(w)))
		r = uint64(s>>c) & m
		fl = uint64(s>>(c-1)) & 1
	}
	fl |= szpFlags(r, m^m>>1)
	f.lz = lzNone
	f.fl = f.fl&^arithFlags | fl
	if in.mem {
		f.st(gpa, in.size, r)
	} else {
		f.setReg(in.rm, in.rmSh, in.rmKeep, m, r)
	}
	return xNext
}
