package x86emu

import (
	"encoding/binary"
	"sync/atomic"
)

// kind is a pre-decoded instruction specialised for runFull: one case of
// its switch each, operands resolved at decode time, so the common
// register and memory forms run without the call into exec and without
// exec's tests of what the instruction is. kGen is everything else, run
// by exec.
type kind uint8

const (
	kGen kind = iota
	// ALU register, register (and register, immediate) at 32 or 64
	// bits: d op= s (imm); CMP and TEST write no register.
	kAddRR
	kOrRR
	kAndRR
	kSubRR
	kXorRR
	kCmpRR
	kTestRR
	kAddRI
	kOrRI
	kAndRI
	kSubRI
	kXorRI
	kCmpRI
	kTestRI
	kMovRR   // d = s
	kMovRI   // d = imm
	kLoad    // d = [mem]
	kStore   // [mem] = s
	kStoreI  // [mem] = imm
	kAluLoad // d alu= [mem] (alu: ADD, OR, AND, SUB, XOR, CMP)
	kAluMI   // CMP or TEST [mem], imm
	kAluMR   // CMP or TEST [mem], s
	kInc
	kDec
	kRol // d by the count in imm (1 to the width less one)
	kRor
	kShl
	kShr
	kSar
	kImulRR  // d *= s
	kImulRRI // d = s * imm
	kLea
	kJcc
	kJmp
)

// aluKinds maps an ALU operation to its register-register kind; the
// register-immediate kind is 7 further on.
var aluKinds = [...]kind{aluAdd: kAddRR, aluOr: kOrRR, aluAnd: kAndRR, aluSub: kSubRR,
	aluXor: kXorRR, aluCmp: kCmpRR, aluTest: kTestRR, aluAdc: kGen, aluSbb: kGen}

// specialise picks in's kind: 32 and 64-bit operands, registers without
// the 8-bit high-byte shift, memory through DS or SS (flat wherever the
// fast path runs, see Fast.dsOK).
func specialise(in *finst) {
	in.k = kGen
	if in.size < 4 {
		return
	}
	if in.mem && in.op != fLea && in.seg != fsegDS && in.seg != fsegSS {
		return
	}
	m := in.mask
	switch in.op {
	case fAluEG, fAluGE, fAluEI:
		k := aluKinds[in.alu]
		if k == kGen {
			return
		}
		if in.mem {
			switch {
			case in.op == fAluGE:
				if in.alu != aluTest {
					in.k, in.d = kAluLoad, in.reg
				}
			case in.alu == aluCmp || in.alu == aluTest:
				if in.op == fAluEI {
					in.k, in.imm = kAluMI, in.imm&m
				} else {
					in.k, in.s = kAluMR, in.reg
				}
			}
			return
		}
		switch in.op {
		case fAluEG:
			in.k, in.d, in.s = k, in.rm, in.reg
		case fAluGE:
			in.k, in.d, in.s = k, in.reg, in.rm
		default:
			in.k, in.d, in.imm = k+kAddRI-kAddRR, in.rm, in.imm&m
		}
	case fMovEG:
		if in.mem {
			in.k, in.s = kStore, in.reg
		} else {
			in.k, in.d, in.s = kMovRR, in.rm, in.reg
		}
	case fMovGE:
		if in.mem {
			in.k, in.d = kLoad, in.reg
		} else {
			in.k, in.d, in.s = kMovRR, in.reg, in.rm
		}
	case fMovEI:
		in.imm &= m
		if in.mem {
			in.k = kStoreI
		} else {
			in.k, in.d = kMovRI, in.rm
		}
	case fInc, fDec:
		if !in.mem {
			in.k, in.d = kInc, in.rm
			if in.op == fDec {
				in.k = kDec
			}
		}
	case fShift:
		c := in.imm & (uint64(in.size)*8 - 1)
		if in.mem || in.cl || c == 0 {
			return
		}
		in.d, in.imm = in.rm, c
		switch in.alu {
		case 0:
			in.k = kRol
		case 1:
			in.k = kRor
		case 4:
			in.k = kShl
		case 5:
			in.k = kShr
		case 7:
			in.k = kSar
		}
	case fImul:
		if !in.mem {
			in.k, in.d, in.s = kImulRR, in.reg, in.rm
			if in.hasImm {
				in.k, in.imm = kImulRRI, in.imm&m
			}
		}
	case fLea:
		in.k, in.d = kLea, in.reg
	case fJcc:
		in.k = kJcc
	case fJmp:
		in.k = kJmp
	}
}

// flagUse is which status flags in reads and which it always writes, and
// whether it may end the block early (a branch, or a bail to Step).
func flagUse(in *finst) (reads, writes uint64, exits bool) {
	exits = in.mem && in.op != fLea && in.op != fNop
	switch in.op {
	case fAluEG, fAluGE, fAluEI:
		writes = arithFlags
		if in.alu == aluAdc || in.alu == aluSbb {
			reads = arithFlags
		}
	case fInc, fDec:
		writes = arithFlags &^ flCF
	case fNeg, fImul:
		writes = arithFlags
	case fShift:
		// A count of zero writes nothing; CL may hold zero.
		if c := in.imm & (uint64(in.size)*8 - 1); !in.cl && c != 0 {
			switch in.alu {
			case 0, 1:
				writes = flCF
				if c == 1 {
					writes |= flOF
				}
			default:
				writes = arithFlags
			}
		}
	case fCmov, fSetcc:
		reads = arithFlags
	case fMovEG, fMovGE, fMovEI, fMovzx, fMovsx, fLea, fNot, fNop, fCdqe, fCdq, fXchg:
	default:
		exits = true
	}
	return
}

// liveFlags sets each instruction's fl: whether the status flags it
// writes can be seen, by an instruction that reads them, or because the
// block may end (a branch, a bail to Step, its end) before all of them
// are written again. runFull skips flags nobody sees; exec, which runs
// blocks the budget cuts short, computes them all.
func liveFlags(insts []finst) {
	live := uint64(arithFlags)
	for i := len(insts) - 1; i >= 0; i-- {
		in := &insts[i]
		reads, writes, exits := flagUse(in)
		in.fl = live&writes != 0
		if exits {
			live = arithFlags
		} else {
			live = live&^writes | reads
		}
	}
}

// Results of running a block.
const (
	rNext   = iota // go on at next
	rBail          // the instruction at next is Step's
	rBudget        // the budget ran out at next
)

// runFull runs block b entered at base, all of it (left, the budget,
// allows): how many instructions ran, where to go on, and rNext or rBail.
// A block that branches to its own start runs again here while the budget
// allows and stop is not set (the check Run makes between blocks).
func (f *Fast) runFull(b *fblock, base, left uint64, stop *atomic.Bool) (n, next uint64, res int) {
	r := &f.r
	r[slotRIP] = base
	insts := b.insts
	ram := f.ram
	for i := 0; i < len(insts); i++ {
		in := &insts[i]
		switch in.k {
		case kAddRR:
			m := in.mask
			x, y := r[in.d]&m, r[in.s]&m
			v := (x + y) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzAdd, x, y, v, m^m>>1
			}
			continue
		case kSubRR, kCmpRR:
			m := in.mask
			x, y := r[in.d]&m, r[in.s]&m
			v := (x - y) & m
			if in.k == kSubRR {
				r[in.d] = v
			}
			if in.fl {
				f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzSub, x, y, v, m^m>>1
			}
			continue
		case kAndRR, kTestRR:
			m := in.mask
			v := r[in.d] & r[in.s] & m
			if in.k == kAndRR {
				r[in.d] = v
			}
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kOrRR:
			m := in.mask
			v := (r[in.d] | r[in.s]) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kXorRR:
			m := in.mask
			v := (r[in.d] ^ r[in.s]) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kAddRI:
			m := in.mask
			x := r[in.d] & m
			v := (x + in.imm) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzAdd, x, in.imm, v, m^m>>1
			}
			continue
		case kSubRI, kCmpRI:
			m := in.mask
			x := r[in.d] & m
			v := (x - in.imm) & m
			if in.k == kSubRI {
				r[in.d] = v
			}
			if in.fl {
				f.lz, f.lzA, f.lzB, f.lzR, f.lzS = lzSub, x, in.imm, v, m^m>>1
			}
			continue
		case kAndRI, kTestRI:
			m := in.mask
			v := r[in.d] & in.imm
			if in.k == kAndRI {
				r[in.d] = v
			}
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kOrRI:
			m := in.mask
			v := (r[in.d] | in.imm) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kXorRI:
			m := in.mask
			v := (r[in.d] ^ in.imm) & m
			r[in.d] = v
			if in.fl {
				f.lz, f.lzR, f.lzS = lzLogic, v, m^m>>1
			}
			continue
		case kMovRR:
			r[in.d] = r[in.s] & in.mask
			continue
		case kMovRI:
			r[in.d] = in.imm
			continue
		case kLoad:
			// fastR by hand: runFull is too big for the compiler to
			// inline it.
			lin := (r[in.base] + r[in.index]<<in.scale + in.disp) & f.addrMask
			gpa := lin
			if f.paging {
				e := &f.tlb[lin>>12%TLBSize]
				if e.Tag != lin>>12+1 || e.Perms&f.rdNeed != f.rdNeed {
					break
				}
				gpa = e.PPN<<12 | lin&0xfff
			}
			if !f.dsOK || lin&0xfff > 0x1000-uint64(in.size) || gpa+8 > uint64(len(ram)) {
				break
			}
			if in.size == 4 {
				r[in.d] = uint64(binary.LittleEndian.Uint32(ram[gpa:]))
			} else {
				r[in.d] = binary.LittleEndian.Uint64(ram[gpa:])
			}
			continue
		case kStore, kStoreI:
			// fastW by hand.
			lin := (r[in.base] + r[in.index]<<in.scale + in.disp) & f.addrMask
			gpa := lin
			if f.paging {
				e := &f.tlb[lin>>12%TLBSize]
				if e.Tag != lin>>12+1 || e.Perms&f.wrNeed != f.wrNeed {
					break
				}
				gpa = e.PPN<<12 | lin&0xfff
			}
			size := uint64(in.size)
			if !f.dsOK || lin&0xfff > 0x1000-size || gpa+8 > uint64(len(ram)) {
				break
			}
			p := gpa >> 12
			if f.code[p]&(1<<(gpa>>6&63)|1<<((gpa+size-1)>>6&63)) != 0 || f.watched != nil && f.watched[p] != 0 {
				break
			}
			if d := f.Dirty; d != nil && d.mark[p] == 0 {
				d.Mark(p)
			}
			v := in.imm
			if in.k == kStore {
				v = r[in.s]
			}
			if size == 4 {
				binary.LittleEndian.PutUint32(ram[gpa:], uint32(v))
			} else {
				binary.LittleEndian.PutUint64(ram[gpa:], v)
			}
			continue
		case kAluLoad:
			if gpa, ok := f.fastR(in); ok {
				m := in.mask
				v := f.aluDo(in.alu, r[in.d]&m, f.ld(gpa, in.size), m)
				if in.alu != aluCmp {
					r[in.d] = v
				}
				continue
			}
		case kAluMI:
			if gpa, ok := f.fastR(in); ok {
				f.aluDo(in.alu, f.ld(gpa, in.size), in.imm, in.mask)
				continue
			}
		case kAluMR:
			if gpa, ok := f.fastR(in); ok {
				f.aluDo(in.alu, f.ld(gpa, in.size), r[in.s]&in.mask, in.mask)
				continue
			}
		case kInc:
			m := in.mask
			x := r[in.d] & m
			v := (x + 1) & m
			r[in.d] = v
			if in.fl {
				f.fl = f.fl&^flCF | f.cf()
				f.lz, f.lzA, f.lzR, f.lzS = lzInc, x, v, m^m>>1
			}
			continue
		case kDec:
			m := in.mask
			x := r[in.d] & m
			v := (x - 1) & m
			r[in.d] = v
			if in.fl {
				f.fl = f.fl&^flCF | f.cf()
				f.lz, f.lzA, f.lzR, f.lzS = lzDec, x, v, m^m>>1
			}
			continue
		case kRol:
			m, c := in.mask, in.imm
			w := uint64(in.size) * 8
			x := r[in.d] & m
			v := (x<<c | x>>(w-c)) & m
			r[in.d] = v
			if in.fl {
				fl, mask := v&1, uint64(flCF)
				if c == 1 {
					mask |= flOF
					if x>>(w-1)&1 != x>>(w-2)&1 {
						fl |= flOF
					}
				}
				f.setOver(mask, fl)
			}
			continue
		case kRor:
			m, c := in.mask, in.imm
			w := uint64(in.size) * 8
			x := r[in.d] & m
			v := (x>>c | x<<(w-c)) & m
			r[in.d] = v
			if in.fl {
				fl, mask := v>>(w-1)&1, uint64(flCF)
				if c == 1 {
					mask |= flOF
					if x>>(w-1)&1 != x&1 {
						fl |= flOF
					}
				}
				f.setOver(mask, fl)
			}
			continue
		case kShl:
			m, c := in.mask, in.imm
			x := r[in.d] & m
			v := x << c & m
			r[in.d] = v
			if in.fl {
				w := uint64(in.size) * 8
				fl := x >> (w - c) & 1
				if x>>(w-1)&1 != x>>(w-2)&1 {
					fl |= flOF
				}
				f.setFlags(fl | szpFlags(v, m^m>>1))
			}
			continue
		case kShr:
			m, c := in.mask, in.imm
			x := r[in.d] & m
			v := x >> c
			r[in.d] = v
			if in.fl {
				w := uint64(in.size) * 8
				fl := x >> (c - 1) & 1
				if x>>(w-1)&1 != 0 {
					fl |= flOF
				}
				f.setFlags(fl | szpFlags(v, m^m>>1))
			}
			continue
		case kSar:
			m, c := in.mask, in.imm
			w := int(in.size) * 8
			s := int64(signExtend(r[in.d]&m, w))
			v := uint64(s>>c) & m
			r[in.d] = v
			if in.fl {
				f.setFlags(uint64(s>>(c-1))&1 | szpFlags(v, m^m>>1))
			}
			continue
		case kImulRR, kImulRRI:
			m := in.mask
			x, y := r[in.d]&m, r[in.s]&m
			if in.k == kImulRRI {
				x = in.imm
			}
			if !in.fl {
				r[in.d] = x * y & m
				continue
			}
			w := int(in.size) * 8
			lo, hi := mulSigned(x, y, w)
			r[in.d] = lo
			f.setFlags(mulFlags(lo, w, hi != signFill(lo, w)))
			continue
		case kLea:
			r[in.d] = (r[in.base] + r[in.index]<<in.scale + in.disp) & f.addrMask & in.mask
			continue
		case kJcc, kJmp:
			if in.k == kJcc {
				// ZF and CF straight from the lazy state, as cond does.
				cc := in.alu
				var taken bool
				switch {
				case cc>>1 == 2 && f.lz != lzNone:
					taken = f.lzR == 0
				case cc>>1 == 1 && f.lz == lzSub:
					taken = f.lzA < f.lzB
				default:
					taken = f.cond(cc &^ 1)
				}
				if taken == (cc&1 != 0) {
					continue
				}
			}
			t := base + uint64(in.end) + in.imm
			if !f.long {
				t &= 0xffffffff
			} else if top := int64(t) >> (f.canon - 1); top != 0 && top != -1 {
				break
			}
			n += uint64(i) + 1
			if t == base && left-n >= uint64(len(insts)) && (stop == nil || !stop.Load()) {
				i = -1
				continue
			}
			return n, t, rNext
		}
		switch f.exec(in, base) {
		case xBail:
			return n + uint64(i), (base + uint64(in.start)) & f.addrMask, rBail
		case xBranch:
			return n + uint64(i) + 1, f.target, rNext
		}
	}
	return n + uint64(len(insts)), (base + uint64(insts[len(insts)-1].end)) & f.addrMask, rNext
}

// runExact runs the first left instructions of b (fewer than all of it)
// through exec, which computes every flag: the budget ends inside the
// block, where flags runFull leaves stale must be right.
func (f *Fast) runExact(b *fblock, base, left uint64) (n, next uint64, res int) {
	f.r[slotRIP] = base
	for i := range b.insts[:left] {
		in := &b.insts[i]
		switch f.exec(in, base) {
		case xBail:
			return uint64(i), (base + uint64(in.start)) & f.addrMask, rBail
		case xBranch:
			return uint64(i) + 1, f.target, rNext
		}
	}
	return left, (base + uint64(b.insts[left].start)) & f.addrMask, rBudget
}

// setFlags sets all six status flags.
func (f *Fast) setFlags(fl uint64) {
	f.lz = lzNone
	f.fl = f.fl&^arithFlags | fl
}

// setOver sets the flags in mask (CF, OF) to v, leaving the others lazy.
func (f *Fast) setOver(mask, v uint64) {
	switch {
	case f.lz == lzNone:
		f.fl = f.fl&^mask | v
	case f.lz&lzOver == 0:
		f.lz |= lzOver
		f.ovM, f.ovV = mask, v
	default:
		f.ovM |= mask
		f.ovV = f.ovV&^mask | v
	}
}

// fastR is the guest physical address of in's memory operand for a read
// when it is flat, in the TLB, within a page and in RAM.
func (f *Fast) fastR(in *finst) (uint64, bool) {
	if !f.dsOK {
		return 0, false
	}
	lin := (f.r[in.base] + f.r[in.index]<<in.scale + in.disp) & f.addrMask
	return f.hostR(lin, uint64(in.size))
}
