// Command difftest writes difftest32.S and difftest64.S, the random
// instruction blocks of the differential-test guests (difftest.c drives
// them; testdata/guests/README.md says what they print).
//
// Each block is a function that starts from registers, flags and a scratch
// buffer the driver fills from a per-block seed, runs random integer
// instructions on them and returns; the driver then hashes the registers,
// the flags and the buffer. The generator tracks which arithmetic flags are
// defined at every point (the Intel SDM leaves some undefined, and CPUs and
// QEMU differ there): no instruction reads an undefined flag, each flag
// capture (PUSHF into dt_flaglog) comes with the mask of the defined flags,
// and so does the block's final RFLAGS. Values the generator must know
// (divisors and dividends, shift counts in CL, bit offsets into memory,
// string pointers and counts) are loaded by MOV/LEA just before use.
// Addresses never reach a hashed register: memory is reached through a base
// register the driver does not hash (R15 or EBP), string pointers are
// turned into their distance from it afterwards.
//
// Usage, in testdata/guests: go run ./gen/difftest (the Makefile's rule).
// Other seeds and more blocks (-seed32, -seed64, -blocks, -o DIR) make
// other programs for hunting bugs; the committed files use the defaults.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Arithmetic flags.
const (
	fCF  = 0x001
	fPF  = 0x004
	fAF  = 0x010
	fZF  = 0x040
	fSF  = 0x080
	fOF  = 0x800
	fAll = fCF | fPF | fAF | fZF | fSF | fOF
)

// Layout shared with difftest.c.
const (
	scratchSize = 4096 // dt_scratch; the base register points at its middle
	baseOff     = 2048
	maxLog      = 64 // dt_flaglog entries a block may write
)

// Features a block may need, as difftest.c numbers them.
const (
	featNone = iota
	featPOPCNT
	featLZCNT
	featTZCNT
)

var (
	names64 = [16]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}
	names32 = [16]string{"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d"}
	names16 = [16]string{"ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w"}
	names8  = [16]string{"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b"}
	high8   = [4]string{"ah", "ch", "dh", "bh"}
)

const (
	rAX = 0
	rCX = 1
	rDX = 2
	rBX = 3
	rSI = 6
	rDI = 7
)

// opnd is an operand: a register (high: AH..BH), memory or an immediate.
type opnd struct {
	kind int
	reg  int
	high bool
	mem  string
	imm  int64
}

const (
	oReg = iota
	oMem
	oImm
)

type gen struct {
	bits   int
	r      *rand.Rand
	regs   []int // registers random instructions use
	base   int   // the scratch base register
	w      int   // bytes of a stack slot
	body   []string
	def    int   // arithmetic flags defined now
	log    []int // mask of each flag capture in this block
	feat   int   // the feature this block may use
	qemu   bool  // the image is compared with QEMU: mask where QEMU errs
	ninsn  int   // random instructions in this block
	counts map[string]int
}

func (g *gen) regName(r, size int, high bool) string {
	if high {
		return "%" + high8[r]
	}
	switch size {
	case 8:
		return "%" + names8[r]
	case 16:
		return "%" + names16[r]
	case 32:
		return "%" + names32[r]
	}
	return "%" + names64[r]
}

func (g *gen) text(o opnd, size int) string {
	switch o.kind {
	case oReg:
		return g.regName(o.reg, size, o.high)
	case oMem:
		return o.mem
	}
	return fmt.Sprintf("$%d", o.imm)
}

func suffix(size int) string {
	return map[int]string{8: "b", 16: "w", 32: "l", 64: "q"}[size]
}

// emit writes one line of the block.
func (g *gen) emit(format string, args ...any) {
	g.body = append(g.body, "\t"+fmt.Sprintf(format, args...))
}

// insn writes a random instruction: name counts it, wr are the flags it
// leaves defined, und those it leaves undefined; capture says to log the
// flags after it (also when it may leave them unchanged, to check that).
func (g *gen) insn(name string, wr, und int, capture bool, format string, args ...any) {
	g.emit(format, args...)
	g.counts[name]++
	g.ninsn++
	g.def = (g.def | wr) &^ und
	if (capture || wr|und != 0) && g.def != 0 && len(g.log) < maxLog {
		g.emit("pushf%s", map[int]string{32: "l", 64: "q"}[g.bits])
		if g.bits == 64 {
			g.emit("popq dt_flaglog+%d(%%rip)", 8*len(g.log))
		} else {
			g.emit("popl dt_flaglog+%d", 4*len(g.log))
		}
		g.log = append(g.log, g.def)
	}
}

// setup writes an instruction that prepares known values; not counted.
func (g *gen) setup(format string, args ...any) { g.emit(format, args...) }

func (g *gen) size() int {
	if g.bits == 64 {
		return []int{8, 16, 32, 64, 64}[g.r.IntN(5)]
	}
	return []int{8, 16, 32, 32}[g.r.IntN(4)]
}

func (g *gen) size16up() int {
	if g.bits == 64 {
		return []int{16, 32, 64}[g.r.IntN(3)]
	}
	return []int{16, 32}[g.r.IntN(2)]
}

// value is a random value of size bits, often an edge case.
func (g *gen) value(size int) uint64 {
	var v uint64
	switch g.r.IntN(8) {
	case 0:
		v = uint64(g.r.IntN(4))
	case 1:
		v = ^uint64(g.r.IntN(3))
	case 2:
		v = 1 << uint(g.r.IntN(size))
	case 3:
		v = uint64(g.r.IntN(70))
	case 4:
		v = 1<<uint(size-1) | uint64(g.r.IntN(16))
	case 5:
		v = 1<<uint(size-1) - uint64(g.r.IntN(3))
	default:
		v = g.r.Uint64()
	}
	if size < 64 {
		v &= 1<<uint(size) - 1
	}
	return v
}

// sext sign-extends the low size bits of v.
func sext(v uint64, size int) int64 {
	s := uint(64 - size)
	return int64(v<<s) >> s
}

// imm is a random immediate for an instruction of size bits (imm32
// sign-extended for 64-bit operations).
func (g *gen) imm(size int) opnd {
	if size == 64 {
		return opnd{kind: oImm, imm: sext(g.value(32), 32)}
	}
	return opnd{kind: oImm, imm: sext(g.value(size), size)}
}

type regset uint32

func (s regset) has(r int) bool { return s&(1<<r) != 0 }

// reg picks a register operand of size bits. High byte registers come
// only when allowed (in 64-bit mode they exclude a REX prefix).
func (g *gen) reg(size int, avoid regset, allowHigh, noRex bool) opnd {
	for {
		if size == 8 && allowHigh && g.r.IntN(4) == 0 {
			return opnd{kind: oReg, reg: g.r.IntN(4), high: true}
		}
		r := g.regs[g.r.IntN(len(g.regs))]
		if avoid.has(r) {
			continue
		}
		if size == 8 && g.bits == 32 && r > 3 {
			continue
		}
		if noRex && (r >= 8 || size == 8 && r >= 4) {
			continue
		}
		return opnd{kind: oReg, reg: r}
	}
}

// needsRex says whether o, in an instruction of size bits, needs a REX
// prefix in 64-bit mode (and so cannot go with AH..BH).
func (g *gen) needsRex(o opnd, size int) bool {
	if g.bits != 64 || size == 64 {
		return g.bits == 64 && size == 64
	}
	switch o.kind {
	case oReg:
		return !o.high && (o.reg >= 8 || size == 8 && o.reg >= 4)
	case oMem:
		return true // R15 base
	}
	return false
}

// mem picks a memory operand of n bytes inside the scratch buffer, writing
// the index register's setup if it has one; the index is none of avoid.
func (g *gen) mem(n int, avoid regset, noIndex bool) opnd {
	form := g.r.IntN(4)
	if noIndex {
		form = []int{0, 2}[g.r.IntN(2)]
	}
	baseName := g.regName(g.base, g.bits, false)
	switch form {
	case 0, 2:
		var a int
		if g.r.IntN(2) == 0 {
			a = baseOff - 128 + g.r.IntN(256-n) // disp8
		} else {
			a = g.r.IntN(scratchSize - n)
		}
		if form == 0 {
			return opnd{kind: oMem, mem: fmt.Sprintf("%d(%s)", a-baseOff, baseName)}
		}
		if g.bits == 64 {
			return opnd{kind: oMem, mem: fmt.Sprintf("dt_scratch+%d(%%rip)", a)}
		}
		return opnd{kind: oMem, mem: fmt.Sprintf("dt_scratch+%d", a)}
	}
	scale := []int{1, 2, 4, 8}[g.r.IntN(4)]
	idx := g.reg(32, avoid, false, false)
	switch {
	case g.bits == 64 || idx.reg <= 3:
		if g.r.IntN(4) != 0 {
			g.setup("movzbl %s, %s", g.regName(idx.reg, 8, false), g.regName(idx.reg, 32, false))
			break
		}
		fallthrough
	default:
		g.setup("movl $%d, %s", g.r.IntN(256), g.regName(idx.reg, 32, false))
	}
	span := 255 * scale
	var a int
	if g.r.IntN(2) == 0 {
		a = baseOff - 128 + g.r.IntN(128-n) // disp8 below the base
	} else {
		a = g.r.IntN(scratchSize - span - n)
	}
	idxName := g.regName(idx.reg, g.bits, false)
	if form == 1 {
		return opnd{kind: oMem, mem: fmt.Sprintf("%d(%s,%s,%d)", a-baseOff, baseName, idxName, scale)}
	}
	return opnd{kind: oMem, mem: fmt.Sprintf("dt_scratch+%d(,%s,%d)", a, idxName, scale)}
}

// needFlags makes the flags in m defined before an instruction reads them.
func (g *gen) needFlags(m int) {
	if g.def&m == m {
		return
	}
	if m == fCF && g.r.IntN(2) == 0 {
		if g.r.IntN(2) == 0 {
			g.insn("clc", fCF, 0, false, "clc")
		} else {
			g.insn("stc", fCF, 0, false, "stc")
		}
		return
	}
	op := []string{"add", "sub", "cmp", "neg"}[g.r.IntN(4)]
	size := g.size()
	d := g.reg(size, 0, true, false)
	if op == "neg" {
		g.insn(op, fAll, 0, false, "neg%s %s", suffix(size), g.text(d, size))
		return
	}
	s := g.reg(size, 0, d.high || !g.needsRex(d, size), d.high)
	g.insn(op, fAll, 0, false, "%s%s %s, %s", op, suffix(size), g.text(s, size), g.text(d, size))
}

func (g *gen) lockPrefix(dst opnd) string {
	if dst.kind == oMem && g.r.IntN(3) == 0 {
		return "lock "
	}
	return ""
}

// twoOperands picks source and destination for an ALU-like instruction:
// reg,reg / imm,reg / mem,reg / reg,mem / imm,mem.
func (g *gen) twoOperands(size int, immOK bool) (src, dst opnd) {
	form := g.r.IntN(5)
	if !immOK && (form == 1 || form == 4) {
		form = []int{0, 2, 3}[g.r.IntN(3)]
	}
	switch form {
	case 0:
		dst = g.reg(size, 0, true, false)
		src = g.reg(size, 0, dst.high || !g.needsRex(dst, size), dst.high)
	case 1:
		dst = g.reg(size, 0, true, false)
		src = g.imm(size)
	case 2:
		src = g.mem(size/8, 0, false)
		dst = g.reg(size, 0, false, false)
	case 3:
		src = g.reg(size, 0, false, false)
		dst = g.mem(size/8, 0, false)
	case 4:
		dst = g.mem(size/8, 0, false)
		src = g.imm(size)
	}
	return src, dst
}

func (g *gen) alu() {
	op := []string{"add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test"}[g.r.IntN(9)]
	size := g.size()
	if op == "adc" || op == "sbb" {
		g.needFlags(fCF)
	}
	src, dst := g.twoOperands(size, true)
	if op == "test" && src.kind == oMem {
		src, dst = dst, src
	}
	wr, und := fAll, 0
	if op == "and" || op == "or" || op == "xor" || op == "test" {
		wr, und = fAll&^fAF, fAF
	}
	lock := ""
	if op != "cmp" && op != "test" {
		lock = g.lockPrefix(dst)
	}
	g.insn(op, wr, und, false, "%s%s%s %s, %s", lock, op, suffix(size), g.text(src, size), g.text(dst, size))
}

func (g *gen) unary() {
	op := []string{"inc", "dec", "neg", "not"}[g.r.IntN(4)]
	size := g.size()
	var d opnd
	if g.r.IntN(3) == 0 {
		d = g.mem(size/8, 0, false)
	} else {
		d = g.reg(size, 0, true, false)
	}
	wr := map[string]int{"inc": fAll &^ fCF, "dec": fAll &^ fCF, "neg": fAll, "not": 0}[op]
	g.insn(op, wr, 0, false, "%s%s%s %s", g.lockPrefix(d), op, suffix(size), g.text(d, size))
}

func (g *gen) shift() {
	op := []string{"shl", "shr", "sar", "rol", "ror", "rcl", "rcr"}[g.r.IntN(7)]
	size := g.size()
	if op == "rcl" || op == "rcr" {
		g.needFlags(fCF)
	}
	var d opnd
	useCL := g.r.IntN(3) == 0
	if g.r.IntN(3) == 0 {
		d = g.mem(size/8, 1<<rCX, false)
	} else {
		d = g.reg(size, 0, true, false)
	}
	var count int
	switch g.r.IntN(4) {
	case 0:
		count = 1
	case 1:
		count = g.r.IntN(256)
	default:
		count = g.r.IntN(size + 2)
	}
	var cnt string
	switch {
	case useCL:
		g.setup("movb $%d, %%cl", count)
		cnt = "%cl, "
	case count == 1 && g.r.IntN(2) == 0:
		cnt = "" // the D0/D1 form
	default:
		cnt = fmt.Sprintf("$%d, ", count)
	}
	mask := 31
	if size == 64 {
		mask = 63
	}
	c := count & mask
	wr, und := 0, 0
	switch {
	case c == 0:
	case op == "shl" || op == "shr" || op == "sar":
		wr, und = fCF|fPF|fZF|fSF, fAF
		if c == 1 {
			wr |= fOF
		} else {
			und |= fOF
		}
		if c >= size && op != "sar" {
			wr, und = wr&^fCF, und|fCF
		}
	default: // rotates
		wr = fCF
		if c == 1 {
			wr |= fOF
		} else {
			und = fOF
		}
	}
	g.insn(op, wr, und, true, "%s%s %s%s", op, suffix(size), cnt, g.text(d, size))
}

func (g *gen) doubleShift() {
	op := []string{"shld", "shrd"}[g.r.IntN(2)]
	size := g.size16up()
	useCL := g.r.IntN(3) == 0
	var d opnd
	if g.r.IntN(3) == 0 {
		d = g.mem(size/8, 1<<rCX, false)
	} else {
		d = g.reg(size, 0, false, false)
	}
	s := g.reg(size, 0, false, false)
	var count int
	switch {
	case size == 16:
		count = g.r.IntN(17) // beyond 16 the result is undefined
		if g.r.IntN(4) == 0 {
			count += 32 // masked to the same count
		}
	case g.r.IntN(4) == 0:
		count = g.r.IntN(256)
	default:
		count = g.r.IntN(size + 1)
	}
	if useCL && (d.kind == oReg && d.reg == rCX || s.reg == rCX) {
		useCL = false // the count register would be an operand too
	}
	cnt := fmt.Sprintf("$%d", count)
	if useCL {
		g.setup("movb $%d, %%cl", count)
		cnt = "%cl"
	}
	mask := 31
	if size == 64 {
		mask = 63
	}
	c := count & mask
	wr, und := 0, 0
	if c != 0 {
		wr, und = fCF|fPF|fZF|fSF, fAF
		if c == 1 {
			wr |= fOF
		} else {
			und |= fOF
		}
	}
	g.insn(op, wr, und, true, "%s%s %s, %s, %s", op, suffix(size), cnt, g.text(s, size), g.text(d, size))
}

func (g *gen) mul() {
	size := g.size()
	switch g.r.IntN(3) {
	case 0: // MUL/IMUL r/m: rDX:rAX
		op := []string{"mul", "imul"}[g.r.IntN(2)]
		var s opnd
		if g.r.IntN(3) == 0 {
			s = g.mem(size/8, 0, false)
		} else {
			s = g.reg(size, 0, true, false)
		}
		g.insn(op, fCF|fOF, fAll&^(fCF|fOF), false, "%s%s %s", op, suffix(size), g.text(s, size))
	case 1: // IMUL r/m, r
		size = g.size16up()
		src, dst := g.twoOperands(size, false)
		if dst.kind == oMem {
			src, dst = dst, src
		}
		g.insn("imul", fCF|fOF, fAll&^(fCF|fOF), false, "imul%s %s, %s", suffix(size), g.text(src, size), g.text(dst, size))
	case 2: // IMUL imm, r/m, r
		size = g.size16up()
		var s opnd
		if g.r.IntN(3) == 0 {
			s = g.mem(size/8, 0, false)
		} else {
			s = g.reg(size, 0, false, false)
		}
		d := g.reg(size, 0, false, false)
		im := g.imm(size)
		if g.r.IntN(2) == 0 {
			im.imm = int64(int8(im.imm))
		}
		g.insn("imul", fCF|fOF, fAll&^(fCF|fOF), false, "imul%s %s, %s, %s", suffix(size), g.text(im, size), g.text(s, size), g.text(d, size))
	}
}

// movImm loads a known value into register r (size bits).
func (g *gen) movImm(r opnd, size int, v uint64) {
	if size == 64 {
		g.setup("movabsq $%d, %s", int64(v), g.regName(r.reg, 64, false))
		return
	}
	g.setup("mov%s $%d, %s", suffix(size), sext(v, size), g.text(r, size))
}

// div writes DIV or IDIV with a dividend and divisor chosen so that it
// never faults.
func (g *gen) div() {
	op := []string{"div", "idiv"}[g.r.IntN(2)]
	size := g.size()
	signed := op == "idiv"
	var hi, lo, d uint64
	for {
		d = g.value(size)
		lo = g.value(size)
		switch g.r.IntN(3) {
		case 0:
			hi = g.value(size)
		case 1: // a sign extension, as CDQ leaves it
			hi = 0
			if sext(lo, size) < 0 {
				hi = ^uint64(0) >> uint(64-size)
			}
		default:
			hi = uint64(g.r.IntN(4))
		}
		if d == 0 {
			continue
		}
		n := new(big.Int).Lsh(new(big.Int).SetUint64(hi), uint(size))
		n.Or(n, new(big.Int).SetUint64(lo))
		dv := new(big.Int).SetUint64(d)
		if signed {
			if sext(hi, size) < 0 {
				n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(2*size)))
			}
			dv.SetInt64(sext(d, size))
		}
		q := new(big.Int).Quo(n, dv)
		lim := new(big.Int).Lsh(big.NewInt(1), uint(size))
		min := big.NewInt(0)
		if signed {
			lim.Rsh(lim, 1)
			min.Neg(lim)
		}
		if q.Cmp(lim) < 0 && q.Cmp(min) >= 0 {
			break
		}
	}
	var s opnd
	if g.r.IntN(3) == 0 {
		s = g.mem(size/8, 0, true)
		if size == 64 {
			t := g.reg(64, 1<<rAX|1<<rDX, false, false)
			g.movImm(t, 64, d)
			g.setup("movq %s, %s", g.regName(t.reg, 64, false), s.mem)
		} else {
			g.setup("mov%s $%d, %s", suffix(size), sext(d, size), s.mem)
		}
	} else {
		s = g.reg(size, 1<<rAX|1<<rDX, false, false)
		g.movImm(s, size, d)
	}
	if size == 8 {
		g.movImm(opnd{kind: oReg, reg: rAX}, 16, hi<<8|lo)
	} else {
		g.movImm(opnd{kind: oReg, reg: rAX}, size, lo)
		g.movImm(opnd{kind: oReg, reg: rDX}, size, hi)
	}
	g.insn(op, 0, fAll, false, "%s%s %s", op, suffix(size), g.text(s, size))
}

func (g *gen) bitTest() {
	op := []string{"bt", "bts", "btr", "btc"}[g.r.IntN(4)]
	size := g.size16up()
	var src, dst opnd
	lock := ""
	switch g.r.IntN(4) {
	case 0:
		dst = g.reg(size, 0, false, false)
		src = opnd{kind: oImm, imm: int64(g.r.IntN(256))}
	case 1:
		dst = g.mem(size/8, 0, false)
		src = opnd{kind: oImm, imm: int64(g.r.IntN(256))}
	case 2:
		dst = g.reg(size, 0, false, false)
		src = g.reg(size, 0, false, false)
	case 3: // a register bit offset reaches beyond the operand: keep it in the buffer
		a := g.r.IntN(scratchSize-16) &^ (size/8 - 1)
		dst = opnd{kind: oMem, mem: fmt.Sprintf("%d(%s)", a-baseOff, g.regName(g.base, g.bits, false))}
		lo, hi := -8*min(a, 256), 8*min(scratchSize-a-size/8, 256)
		k := lo + g.r.IntN(hi-lo)
		src = g.reg(size, 0, false, false)
		g.movImm(src, size, uint64(k))
	}
	if op != "bt" {
		lock = g.lockPrefix(dst)
	}
	g.insn(op, fCF, fOF|fSF|fAF|fPF, false, "%s%s%s %s, %s", lock, op, suffix(size), g.text(src, size), g.text(dst, size))
}

// bitScan writes BSF/BSR on a source made nonzero first (the destination
// is undefined for zero), or a feature block's POPCNT/LZCNT/TZCNT.
func (g *gen) bitScan() {
	size := g.size16up()
	op := []string{"bsf", "bsr"}[g.r.IntN(2)]
	switch g.feat {
	case featPOPCNT:
		op = "popcnt"
	case featLZCNT:
		op = "lzcnt"
	case featTZCNT:
		op = "tzcnt"
	}
	var s opnd
	if g.r.IntN(3) == 0 {
		s = g.mem(size/8, 0, false)
	} else {
		s = g.reg(size, 0, false, false)
	}
	d := g.reg(size, 0, false, false)
	if op == "bsf" || op == "bsr" {
		g.insn("bts", fCF, fOF|fSF|fAF|fPF, false, "bts%s $%d, %s", suffix(size), g.r.IntN(size), g.text(s, size))
	}
	wr, und := fZF, fAll&^fZF
	switch op {
	case "popcnt":
		wr, und = fAll, 0
	case "lzcnt", "tzcnt":
		wr, und = fCF|fZF, fAll&^(fCF|fZF)
	}
	g.insn(op, wr, und, false, "%s%s %s, %s", op, suffix(size), g.text(s, size), g.text(d, size))
}

var conds = []struct {
	name  string
	flags int
}{
	{"o", fOF}, {"no", fOF}, {"b", fCF}, {"ae", fCF}, {"e", fZF}, {"ne", fZF}, {"be", fCF | fZF}, {"a", fCF | fZF},
	{"s", fSF}, {"ns", fSF}, {"p", fPF}, {"np", fPF}, {"l", fSF | fOF}, {"ge", fSF | fOF}, {"le", fZF | fSF | fOF}, {"g", fZF | fSF | fOF},
}

// cond picks a condition whose flags are defined, defining them if needed.
func (g *gen) cond() string {
	var ok []string
	for _, c := range conds {
		if g.def&c.flags == c.flags {
			ok = append(ok, c.name)
		}
	}
	if len(ok) == 0 {
		g.needFlags(fAll)
		return g.cond()
	}
	return ok[g.r.IntN(len(ok))]
}

func (g *gen) condMove() {
	switch g.r.IntN(3) {
	case 0: // SETcc
		cc := g.cond()
		var d opnd
		if g.r.IntN(3) == 0 {
			d = g.mem(1, 0, false)
		} else {
			d = g.reg(8, 0, true, false)
		}
		g.insn("set"+cc, 0, 0, false, "set%s %s", cc, g.text(d, 8))
	case 1: // CMOVcc
		cc := g.cond()
		size := g.size16up()
		var s opnd
		if g.r.IntN(3) == 0 {
			s = g.mem(size/8, 0, false)
		} else {
			s = g.reg(size, 0, false, false)
		}
		d := g.reg(size, 0, false, false)
		g.insn("cmov"+cc, 0, 0, false, "cmov%s%s %s, %s", cc, suffix(size), g.text(s, size), g.text(d, size))
	case 2: // Jcc over one flagless instruction
		cc := g.cond()
		g.insn("j"+cc, 0, 0, false, "j%s 1f", cc)
		g.move()
		g.emit("1:")
	}
}

// move writes a flagless data movement.
func (g *gen) move() {
	size := g.size()
	switch g.r.IntN(6) {
	case 0, 1:
		src, dst := g.twoOperands(size, true)
		if src.kind == oImm && dst.kind == oReg && size == 64 && g.r.IntN(2) == 0 {
			g.insn("movabs", 0, 0, false, "movabsq $%d, %s", int64(g.value(64)), g.text(dst, 64))
			return
		}
		g.insn("mov", 0, 0, false, "mov%s %s, %s", suffix(size), g.text(src, size), g.text(dst, size))
	case 2: // XCHG
		var a, b opnd
		if g.r.IntN(3) == 0 {
			a = g.reg(size, 0, false, false)
			b = g.mem(size/8, 0, false)
		} else {
			a = g.reg(size, 0, true, false)
			b = g.reg(size, 0, a.high || !g.needsRex(a, size), a.high)
		}
		g.insn("xchg", 0, 0, false, "xchg%s %s, %s", suffix(size), g.text(a, size), g.text(b, size))
	case 3: // MOVZX/MOVSX/MOVSXD
		from := []int{8, 16}[g.r.IntN(2)]
		to := g.size16up()
		if to <= from {
			to = 32
		}
		op := []string{"movz", "movs"}[g.r.IntN(2)]
		if g.bits == 64 && to == 64 && g.r.IntN(3) == 0 {
			from, op = 32, "movs"
		}
		var s opnd
		if g.r.IntN(3) == 0 {
			s = g.mem(from/8, 0, false)
		} else {
			s = g.reg(from, 0, to != 64, false)
		}
		d := g.reg(to, 0, false, s.high)
		g.insn(op+"x", 0, 0, false, "%s%s%s %s, %s", op, suffix(from), suffix(to), g.text(s, from), g.text(d, to))
	case 4: // BSWAP
		size = 32
		if g.bits == 64 && g.r.IntN(2) == 0 {
			size = 64
		}
		g.insn("bswap", 0, 0, false, "bswap %s", g.text(g.reg(size, 0, false, false), size))
	case 5: // NOT, the flagless unary
		d := g.reg(size, 0, true, false)
		g.insn("not", 0, 0, false, "not%s %s", suffix(size), g.text(d, size))
	}
}

// lea writes LEA on random registers (no memory access): 64-bit mode also
// with 32-bit addresses, 32-bit mode also with 16-bit ones.
func (g *gen) lea() {
	size := g.size16up()
	d := g.reg(size, 0, false, false)
	disp := sext(g.value(32), 32)
	if g.r.IntN(2) == 0 {
		disp = int64(int8(disp))
	}
	if g.bits == 32 && g.r.IntN(4) == 0 {
		forms := []string{"(%bx,%si)", "(%bx,%di)", "(%si)", "(%di)", "(%bx)"}
		g.insn("lea", 0, 0, false, "lea%s %d%s, %s", suffix(size), int16(disp), forms[g.r.IntN(len(forms))], g.text(d, size))
		return
	}
	asize := g.bits
	if g.bits == 64 && g.r.IntN(4) == 0 {
		asize = 32
	}
	b := g.reg(asize, 0, false, false)
	addr := fmt.Sprintf("%d(%s", disp, g.regName(b.reg, asize, false))
	if g.r.IntN(3) != 0 {
		i := g.reg(asize, 0, false, false)
		addr += fmt.Sprintf(",%s,%d", g.regName(i.reg, asize, false), []int{1, 2, 4, 8}[g.r.IntN(4)])
	}
	g.insn("lea", 0, 0, false, "lea%s %s), %s", suffix(size), addr, g.text(d, size))
}

// exchange writes XADD, CMPXCHG or CMPXCHG8B.
func (g *gen) exchange() {
	size := g.size()
	switch g.r.IntN(5) {
	case 0, 1:
		var d opnd
		if g.r.IntN(2) == 0 {
			d = g.mem(size/8, 0, false)
		} else {
			d = g.reg(size, 0, true, false)
		}
		s := g.reg(size, 0, d.kind == oReg && (d.high || !g.needsRex(d, size)), d.kind == oReg && d.high)
		g.insn("xadd", fAll, 0, false, "%sxadd%s %s, %s", g.lockPrefix(d), suffix(size), g.text(s, size), g.text(d, size))
	case 2, 3:
		var d opnd
		if g.r.IntN(2) == 0 {
			d = g.mem(size/8, 0, false)
		} else {
			d = g.reg(size, 0, true, false)
		}
		s := g.reg(size, 0, d.kind == oReg && (d.high || !g.needsRex(d, size)), d.kind == oReg && d.high)
		g.insn("cmpxchg", fAll, 0, false, "%scmpxchg%s %s, %s", g.lockPrefix(d), suffix(size), g.text(s, size), g.text(d, size))
	case 4:
		d := g.mem(8, 0, false)
		und := 0
		if g.qemu {
			// QEMU 7.2 TCG computes the other flags from a stale lazy
			// state when CMPXCHG8B follows another flag-setting
			// instruction in a translation block (seen after SCAS: CF and
			// AF cleared); the SDM says only ZF changes.
			und = fAll &^ fZF
		}
		g.insn("cmpxchg8b", fZF, und, false, "%scmpxchg8b %s", g.lockPrefix(d), d.mem)
	}
}

// str writes a string instruction with known pointers and count, then
// turns the pointers into their distance below the base register.
func (g *gen) str() {
	op := []string{"movs", "stos", "lods", "cmps", "scas"}[g.r.IntN(5)]
	size := g.size()
	n := size / 8
	prefix := ""
	switch g.r.IntN(3) {
	case 1, 2:
		switch op {
		case "cmps", "scas":
			prefix = []string{"repe ", "repne "}[g.r.IntN(2)]
		default:
			prefix = "rep "
		}
	}
	count := 1
	if prefix != "" {
		count = g.r.IntN(17)
	}
	back := g.r.IntN(5) == 0
	span := max(count, 1) * n
	addr := func() int {
		if back {
			return span - n + g.r.IntN(scratchSize-span)
		}
		return g.r.IntN(scratchSize - span)
	}
	bn := g.regName(g.base, g.bits, false)
	w := g.bits
	if op != "stos" && op != "scas" {
		g.setup("lea %d(%s), %s", addr()-baseOff, bn, g.regName(rSI, w, false))
	}
	if op != "lods" {
		g.setup("lea %d(%s), %s", addr()-baseOff, bn, g.regName(rDI, w, false))
	}
	if prefix != "" {
		g.setup("movl $%d, %%ecx", count)
	}
	if back {
		g.insn("std", 0, 0, false, "std")
	}
	wr := 0
	if (op == "cmps" || op == "scas") && (prefix == "" || count > 0) {
		wr = fAll
	}
	g.insn(prefix+op, wr, 0, op == "cmps" || op == "scas", "%s%s%s", prefix, op, suffix(size))
	if back {
		g.insn("cld", 0, 0, false, "cld")
	}
	// base - pointer, without touching the flags: NOT gives -pointer-1.
	for _, r := range []int{rSI, rDI} {
		if r == rSI && (op == "stos" || op == "scas") || r == rDI && op == "lods" {
			continue
		}
		rn := g.regName(r, w, false)
		g.setup("not %s", rn)
		g.setup("lea 1(%s,%s), %s", rn, bn, rn)
	}
}

// misc writes the accumulator extensions, LAHF/SAHF and the CF operations.
func (g *gen) misc() {
	switch g.r.IntN(4) {
	case 0:
		ops := []string{"cbtw", "cwtl", "cwtd", "cltd"}
		if g.bits == 64 {
			ops = append(ops, "cltq", "cqto")
		}
		op := ops[g.r.IntN(len(ops))]
		g.insn(op, 0, 0, false, "%s", op)
	case 1:
		if g.def&(fSF|fZF|fAF|fPF|fCF) == fSF|fZF|fAF|fPF|fCF {
			g.insn("lahf", 0, 0, false, "lahf")
		} else {
			g.insn("sahf", fSF|fZF|fAF|fPF|fCF, 0, false, "sahf")
		}
	case 2:
		g.insn("sahf", fSF|fZF|fAF|fPF|fCF, 0, false, "sahf")
	case 3:
		if g.def&fCF != 0 && g.r.IntN(2) == 0 {
			g.insn("cmc", fCF, 0, false, "cmc")
		} else {
			op := []string{"clc", "stc"}[g.r.IntN(2)]
			g.insn(op, fCF, 0, false, "%s", op)
		}
	}
}

func (g *gen) block(i, feat int) []string {
	g.body, g.log, g.def, g.feat, g.ninsn = nil, nil, fAll, feat, 0
	n := 8 + g.r.IntN(9)
	kinds := []func(){
		g.alu, g.alu, g.alu, g.unary, g.shift, g.shift, g.doubleShift, g.mul, g.div,
		g.bitTest, g.bitScan, g.condMove, g.condMove, g.move, g.move, g.lea, g.exchange, g.str, g.str, g.misc,
	}
	for g.ninsn < n && len(g.log) < maxLog-4 {
		if feat != featNone && g.r.IntN(3) == 0 {
			g.bitScan()
			continue
		}
		kinds[g.r.IntN(len(kinds))]()
	}
	out := []string{fmt.Sprintf("dt_block_%d:", i)}
	out = append(out, g.body...)
	return append(out, "\tret")
}

// compress packs a flag mask into a byte: CF PF AF ZF SF OF in bits 0-5.
func compress(m int) byte {
	var b byte
	for i, f := range []int{fCF, fPF, fAF, fZF, fSF, fOF} {
		if m&f != 0 {
			b |= 1 << i
		}
	}
	return b
}

func generate(bits int, seed uint64, nblocks int) string {
	// The 32-bit image is compared with QEMU, the 64-bit one with the host.
	g := &gen{bits: bits, r: rand.New(rand.NewPCG(seed, 0x646966667465)), counts: map[string]int{}, qemu: bits == 32}
	if bits == 64 {
		g.regs = []int{0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
		g.base, g.w = 15, 8
	} else {
		g.regs = []int{0, 1, 2, 3, 6, 7}
		g.base, g.w = 5, 4
	}
	var code []string
	var feats, ends []byte
	var logs [][]byte
	total := 0
	for i := range nblocks {
		feat := featNone
		switch i % 16 {
		case 5:
			feat = featPOPCNT
		case 9:
			feat = featLZCNT
		case 13:
			feat = featTZCNT
		}
		code = append(code, g.block(i, feat)...)
		total += g.ninsn
		feats = append(feats, byte(feat))
		ends = append(ends, compress(g.def))
		var l []byte
		for _, m := range g.log {
			l = append(l, compress(m))
		}
		logs = append(logs, l)
	}

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("/*")
	p(" * difftest%d.S: %d random instruction blocks (%d instructions, seed %d) for", bits, nblocks, total, seed)
	p(" * difftest.c. Generated by gen/difftest (go run ./gen/difftest); do not edit.")
	p(" * Instructions by mnemonic:")
	var names []string
	for k := range g.counts {
		names = append(names, k)
	}
	sort.Strings(names)
	line := " *"
	for _, k := range names {
		item := fmt.Sprintf(" %s %d", k, g.counts[k])
		if len(line)+len(item) > 78 {
			p("%s", line)
			line = " *"
		}
		line += item
	}
	p("%s", line)
	p(" */")
	if bits == 64 {
		p("\t.code64")
	} else {
		p("\t.code32")
	}
	p("\t.text")
	p("\t.globl dt_call")
	p("\t.type dt_call, @function")
	p("/* dt_call(block): runs a block on dt_regs and stores its registers and flags back. */")
	p("dt_call:")
	if bits == 64 {
		for _, r := range []string{"rbx", "rbp", "r12", "r13", "r14", "r15"} {
			p("\tpush %%%s", r)
		}
		p("\tmov %%rdi, dt_target(%%rip)")
		p("\tpushq dt_regs+128(%%rip)")
		p("\tpopfq")
		for r := 0; r < 15; r++ {
			if r != 4 {
				p("\tmov dt_regs+%d(%%rip), %%%s", 8*r, names64[r])
			}
		}
		p("\tlea dt_scratch+%d(%%rip), %%r15", baseOff)
		p("\tcall *dt_target(%%rip)")
		for r := 0; r < 16; r++ {
			if r != 4 {
				p("\tmov %%%s, dt_regs+%d(%%rip)", names64[r], 8*r)
			}
		}
		p("\tpushfq")
		p("\tpopq dt_regs+128(%%rip)")
		p("\tcld")
		for _, r := range []string{"r15", "r14", "r13", "r12", "rbp", "rbx"} {
			p("\tpop %%%s", r)
		}
	} else {
		for _, r := range []string{"ebx", "esi", "edi", "ebp"} {
			p("\tpush %%%s", r)
		}
		p("\tmov 20(%%esp), %%eax")
		p("\tmov %%eax, dt_target")
		p("\tpushl dt_regs+32")
		p("\tpopfl")
		for r := 0; r < 8; r++ {
			if r != 4 && r != 5 {
				p("\tmov dt_regs+%d, %%%s", 4*r, names32[r])
			}
		}
		p("\tmov $dt_scratch+%d, %%ebp", baseOff)
		p("\tcall *dt_target")
		for r := 0; r < 8; r++ {
			if r != 4 {
				p("\tmov %%%s, dt_regs+%d", names32[r], 4*r)
			}
		}
		p("\tpushfl")
		p("\tpopl dt_regs+32")
		p("\tcld")
		for _, r := range []string{"ebp", "edi", "esi", "ebx"} {
			p("\tpop %%%s", r)
		}
	}
	p("\tret")
	p("\t.size dt_call, . - dt_call")
	p("")
	for _, l := range code {
		b.WriteString(l + "\n")
	}
	p("")
	p("\t.section .rodata")
	p("\t.globl dt_nblocks, dt_blocks, dt_feature, dt_endmask, dt_logstart, dt_logmask")
	p("\t.balign 8")
	p("dt_nblocks:\n\t.long %d", nblocks)
	p("dt_blocks:")
	ptr := ".quad"
	if bits == 32 {
		ptr = ".long"
	}
	for i := range nblocks {
		p("\t%s dt_block_%d", ptr, i)
	}
	bytesLine := func(name string, v []byte) {
		p("%s:", name)
		for i := 0; i < len(v); i += 16 {
			var s []string
			for _, x := range v[i:min(i+16, len(v))] {
				s = append(s, fmt.Sprint(x))
			}
			p("\t.byte %s", strings.Join(s, ","))
		}
	}
	bytesLine("dt_feature", feats)
	bytesLine("dt_endmask", ends)
	p("/* Block i's flag captures are dt_logmask[dt_logstart[i] .. dt_logstart[i+1]). */")
	p("\t.balign 2")
	p("dt_logstart:")
	start := 0
	var all []byte
	for _, l := range logs {
		p("\t.short %d", start)
		start += len(l)
		all = append(all, l...)
	}
	p("\t.short %d", start)
	bytesLine("dt_logmask", all)
	p("")
	p("\t.bss")
	p("\t.globl dt_regs, dt_flaglog, dt_scratch")
	p("\t.balign 8")
	p("dt_regs:\n\t.skip %d", 17*g.w)
	p("dt_flaglog:\n\t.skip %d", maxLog*g.w)
	p("dt_target:\n\t.skip %d", g.w)
	p("\t.balign 64")
	p("dt_scratch:\n\t.skip %d", scratchSize)
	p("\t.section .note.GNU-stack, \"\", @progbits")
	return b.String()
}

func main() {
	dir := flag.String("o", ".", "directory to write difftest32.S and difftest64.S into")
	seed32 := flag.Uint64("seed32", 1, "seed of difftest32.S")
	seed64 := flag.Uint64("seed64", 2, "seed of difftest64.S")
	blocks := flag.Int("blocks", 256, "blocks in each file")
	flag.Parse()
	for _, v := range []struct {
		bits int
		seed uint64
	}{{32, *seed32}, {64, *seed64}} {
		name := filepath.Join(*dir, fmt.Sprintf("difftest%d.S", v.bits))
		if err := os.WriteFile(name, []byte(generate(v.bits, v.seed, *blocks)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
