package x86emu

import "encoding/binary"

// fop is what a pre-decoded instruction does. fBad marks bytes the fast
// path leaves to Step.
type fop uint8

const (
	fBad   fop = iota
	fAluEG     // alu r/m, reg
	fAluGE     // alu reg, r/m
	fAluEI     // alu r/m, imm
	fMovEG     // mov r/m, reg
	fMovGE     // mov reg, r/m
	fMovEI     // mov r/m, imm (and mov reg, imm)
	fMovzx     // movzx reg, r/m (source width in smask)
	fMovsx     // movsx and movsxd reg, r/m
	fLea
	fInc
	fDec
	fNot
	fNeg
	fShift // alu: 0 ROL, 1 ROR, 4 SHL, 5 SHR, 7 SAR; count in imm, or CL when cl
	fImul  // reg = r/m * (reg, or imm when hasImm)
	fPush  // push reg
	fPushI
	fPop
	fJcc // alu: condition code
	fJmp
	fCall
	fRet
	fCmov
	fSetcc
	fNop
	fCdqe // CWDE, CDQE
	fCdq  // CDQ, CQO
	fMovs // MOVS, alu 1 with REP; runString runs it, always a block of its own
	fStos // STOS, likewise
	fXchg // XCHG of two registers
	fLeave
	fJmpInd  // JMP r/m
	fCallInd // CALL r/m
)

// ALU operations in encoding order, plus TEST.
const (
	aluAdd = iota
	aluOr
	aluAdc
	aluSbb
	aluAnd
	aluSub
	aluXor
	aluCmp
	aluTest
)

// Register slots of Fast.r beyond the 16 general registers.
const (
	slotZero = 16 // always zero: a missing base or index
	slotRIP  = 17 // the RIP of the block's first instruction (RIP-relative operands)
)

// finst is one pre-decoded instruction. Register operands are slots of
// Fast.r with a shift (8 for AH, CH, DH, BH) and the bits a write keeps;
// a memory operand is base + index<<scale + disp in segment seg.
type finst struct {
	op         fop
	k          kind // the specialised form runFull runs (see specialise)
	fl         bool // a later instruction may see the status flags it writes
	d, s       uint8
	alu        uint8
	size       uint8 // operand size in bytes
	ssize      uint8 // source size in bytes (MOVZX, MOVSX)
	mem        bool  // the r/m operand is memory
	cl         bool  // shift count in CL
	hasImm     bool
	reg, regSh uint8
	rm, rmSh   uint8
	base       uint8
	index      uint8
	scale      uint8
	seg        uint8  // fsegDS, fsegSS, fsegFS, fsegGS
	start, end uint16 // offsets from the block's first byte
	mask       uint64 // operand mask
	smask      uint64 // source mask (MOVZX, MOVSX)
	regKeep    uint64 // bits of the reg slot a write keeps
	rmKeep     uint64
	disp       uint64
	imm        uint64
}

// Segments the fast path addresses through.
const (
	fsegDS = iota
	fsegSS
	fsegFS
	fsegGS
)

func sizeMask(size uint8) uint64 {
	if size == 8 {
		return ^uint64(0)
	}
	return 1<<(8*uint(size)) - 1
}

// keepMask is what a register write of size bytes at shift sh keeps: the
// other bits for 8 and 16-bit writes, nothing for 32 (zero-extended) and 64.
func keepMask(size, sh uint8) uint64 {
	if size >= 4 {
		return 0
	}
	return ^(sizeMask(size) << sh)
}

// fdec decodes one instruction of bits-bit code (32 or 64) from b, which
// ends where the page does. ok=false: Step's business.
func fdec(b []byte, bits int) (in finst, ok bool) {
	var opsize, rep bool
	var rex byte
	seg, segs := -1, 0
	pos := 0
prefixes:
	for ; pos < len(b) && pos < 15; pos++ {
		switch c := b[pos]; {
		case c == 0x66:
			opsize = true
		case c == 0xf3:
			rep = true
		case c == 0x2e, c == 0x36, c == 0x3e, c == 0x26:
			segs++
			if bits == 32 {
				switch c {
				case 0x36:
					seg = fsegSS
				case 0x3e:
					seg = fsegDS
				default:
					return in, false // CS and ES overrides: rare, Step
				}
			}
		case c == 0x64:
			seg = fsegFS
			segs++
		case c == 0x65:
			seg = fsegGS
			segs++
		case bits == 64 && c&0xf0 == 0x40:
			rex = c
			if pos+1 < len(b) && (isPrefix(b[pos+1]) || b[pos+1]&0xf0 == 0x40) {
				return in, false // REX not last: Step decides
			}
		case c == 0xf2, c == 0xf0, c == 0x67:
			return in, false
		default:
			break prefixes
		}
	}
	if pos >= len(b) || segs > 1 {
		return in, false
	}
	if rep {
		// Only REP RET, PAUSE (REP NOP) and REP MOVS and STOS; F3
		// elsewhere makes other instructions (POPCNT, TZCNT, ...) or
		// repeats compares, which are Step's.
		switch b[pos] {
		case 0xc3, 0x90:
		case 0xa4, 0xa5, 0xaa, 0xab:
			in.alu = 1
		default:
			return in, false
		}
	}
	d := fdecoder{b: b, pos: pos, bits: bits, rex: rex, seg: seg}
	in.size = 4
	switch {
	case rex&8 != 0:
		in.size = 8
	case opsize:
		in.size = 2
	}
	if !d.body(&in, opsize) || d.bad || d.pos > 15 || d.pos > len(b) {
		return in, false
	}
	in.end = uint16(d.pos)
	in.mask = sizeMask(in.size)
	switch in.smask {
	case 0:
		in.smask, in.ssize = in.mask, in.size
	case 0xff:
		in.ssize = 1
	case 0xffff:
		in.ssize = 2
	default:
		in.ssize = 4
	}
	in.regKeep = keepMask(in.size, in.regSh)
	in.rmKeep = keepMask(in.size, in.rmSh)
	if in.op == fMovzx || in.op == fMovsx {
		in.regKeep = keepMask(in.size, 0)
	}
	return in, true
}

func isPrefix(c byte) bool {
	switch c {
	case 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
		return true
	}
	return false
}

type fdecoder struct {
	b    []byte
	pos  int
	bits int
	rex  byte
	seg  int
	bad  bool
}

func (d *fdecoder) u8() uint64 {
	if d.pos >= len(d.b) {
		d.bad = true
		return 0
	}
	v := d.b[d.pos]
	d.pos++
	return uint64(v)
}

func (d *fdecoder) s8() uint64 { return uint64(int64(int8(d.u8()))) }

func (d *fdecoder) s16() uint64 {
	if d.pos+2 > len(d.b) {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint16(d.b[d.pos:])
	d.pos += 2
	return uint64(int64(int16(v)))
}

func (d *fdecoder) s32() uint64 {
	if d.pos+4 > len(d.b) {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.pos:])
	d.pos += 4
	return uint64(int64(int32(v)))
}

func (d *fdecoder) u64() uint64 {
	if d.pos+8 > len(d.b) {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.pos:])
	d.pos += 8
	return v
}

// immOf reads an immediate of the operand size (at most 32 bits,
// sign-extended).
func (d *fdecoder) immOf(size uint8) uint64 {
	if size == 2 {
		return d.s16()
	}
	return d.s32()
}

// byteReg maps an 8-bit register number to its slot and shift: without
// REX, 4-7 are AH, CH, DH and BH.
func (d *fdecoder) byteReg(n uint8) (slot, sh uint8) {
	if d.rex == 0 && n >= 4 && n < 8 {
		return n - 4, 8
	}
	return n, 0
}

// modrm decodes a ModRM byte and what follows it into in's reg and r/m
// operands. byteOps: 8-bit registers.
func (d *fdecoder) modrm(in *finst, byteOps bool) (regField uint8) {
	m := uint8(d.u8())
	mod, reg, rm := m>>6, m>>3&7, m&7
	regField = reg
	reg |= (d.rex >> 2 & 1) << 3
	in.reg = reg
	if byteOps {
		in.reg, in.regSh = d.byteReg(reg)
	}
	if mod == 3 {
		r := rm | (d.rex&1)<<3
		in.rm = r
		if byteOps {
			in.rm, in.rmSh = d.byteReg(r)
		}
		return regField
	}
	in.mem = true
	in.base, in.index = slotZero, slotZero
	seg := fsegDS
	if rm == 4 {
		sib := uint8(d.u8())
		scale, idx, base := sib>>6, sib>>3&7, sib&7
		idx |= (d.rex >> 1 & 1) << 3
		if idx != 4 {
			in.index, in.scale = idx, scale
		}
		if base == 5 && mod == 0 {
			in.disp = d.s32()
		} else {
			in.base = base | (d.rex&1)<<3
			if base == 4 || base == 5 {
				seg = fsegSS
			}
		}
	} else if rm == 5 && mod == 0 {
		in.disp = d.s32()
		if d.bits == 64 {
			in.base = slotRIP // disp is fixed up to be relative to the block
		}
	} else {
		in.base = rm | (d.rex&1)<<3
		if rm == 4 || rm == 5 {
			seg = fsegSS
		}
	}
	switch mod {
	case 1:
		in.disp = d.s8()
	case 2:
		in.disp = d.s32()
	}
	if d.seg >= 0 {
		seg = d.seg
	}
	in.seg = uint8(seg)
	return regField
}

// body decodes the opcode and operands after the prefixes.
func (d *fdecoder) body(in *finst, opsize bool) bool {
	op := uint8(d.u8())
	long := d.bits == 64
	switch {
	case op < 0x40 && op&7 < 6:
		// 00-3d: ALU in six forms.
		in.alu = op >> 3
		switch op & 7 {
		case 0, 1:
			in.op = fAluEG
			d.modrm(in, op&1 == 0)
		case 2, 3:
			in.op = fAluGE
			d.modrm(in, op&1 == 0)
		case 4:
			in.op, in.size, in.imm = fAluEI, 1, d.s8()
		case 5:
			in.op = fAluEI
			in.imm = d.immOf(in.size)
		}
		if op&7 < 4 && op&1 == 0 {
			in.size = 1
		}
		return true
	case op >= 0x40 && op < 0x50 && !long:
		in.rm = op & 7
		in.op = fInc
		if op >= 0x48 {
			in.op = fDec
		}
		return true
	case op >= 0x50 && op < 0x60:
		if opsize {
			return false
		}
		in.reg = op&7 | (d.rex&1)<<3
		in.op = fPush
		if op >= 0x58 {
			in.op = fPop
		}
		return true
	case op == 0x63 && long && d.rex&8 != 0:
		in.op = fMovsx
		d.modrm(in, false)
		in.smask = 0xffffffff
		return true
	case op == 0x68 || op == 0x6a:
		if opsize {
			return false
		}
		in.op = fPushI
		if op == 0x68 {
			in.imm = d.s32()
		} else {
			in.imm = d.s8()
		}
		return true
	case op == 0x69 || op == 0x6b:
		in.op, in.hasImm = fImul, true
		d.modrm(in, false)
		if op == 0x69 {
			in.imm = d.immOf(in.size)
		} else {
			in.imm = d.s8()
		}
		return true
	case op >= 0x70 && op < 0x80:
		if opsize {
			return false
		}
		in.op, in.alu = fJcc, op&15
		in.imm = d.s8()
		return true
	case op >= 0x80 && op <= 0x83 && op != 0x82:
		in.op = fAluEI
		if op == 0x80 {
			in.size = 1
		}
		in.alu = d.modrm(in, op == 0x80)
		if op == 0x81 {
			in.imm = d.immOf(in.size)
		} else {
			in.imm = d.s8()
		}
		return true
	case op == 0x84 || op == 0x85:
		in.op, in.alu = fAluEG, aluTest
		if op == 0x84 {
			in.size = 1
		}
		d.modrm(in, op == 0x84)
		return true
	case op >= 0x88 && op <= 0x8b:
		in.op = fMovEG
		if op >= 0x8a {
			in.op = fMovGE
		}
		if op&1 == 0 {
			in.size = 1
		}
		d.modrm(in, op&1 == 0)
		return true
	case op == 0x8d:
		in.op = fLea
		d.modrm(in, false)
		return in.mem
	case op == 0x90 && d.rex&1 == 0:
		in.op = fNop
		return true
	case op >= 0x90 && op <= 0x97:
		// XCHG rAX, r (0x90 with REX.B is XCHG rAX, R8).
		in.op = fXchg
		in.rm = op&7 | (d.rex&1)<<3
		return true
	case op == 0x86 || op == 0x87:
		if op == 0x86 {
			in.size = 1
		}
		d.modrm(in, op == 0x86)
		in.op = fXchg
		return !in.mem // with memory: locked, Step's
	case op == 0xc9:
		if opsize {
			return false
		}
		in.op = fLeave
		return true
	case op == 0x98:
		in.op = fCdqe
		return true
	case op == 0x99:
		in.op = fCdq
		return true
	case op == 0xa4 || op == 0xa5 || op == 0xaa || op == 0xab:
		// MOVS from DS only (runString checks DS and ES are flat).
		if d.seg >= 0 {
			return false
		}
		in.op = fMovs
		if op >= 0xaa {
			in.op = fStos
		}
		if op&1 == 0 {
			in.size = 1
		}
		return true
	case op == 0xa8 || op == 0xa9:
		in.op, in.alu = fAluEI, aluTest
		if op == 0xa8 {
			in.size, in.imm = 1, d.s8()
		} else {
			in.imm = d.immOf(in.size)
		}
		return true
	case op >= 0xb0 && op < 0xc0:
		in.op = fMovEI
		in.rm = op&7 | (d.rex&1)<<3
		switch {
		case op < 0xb8:
			in.size = 1
			in.rm, in.rmSh = d.byteReg(in.rm)
			in.imm = d.u8()
		case in.size == 8:
			in.imm = d.u64()
		default:
			in.imm = d.immOf(in.size)
		}
		return true
	case op == 0xc0 || op == 0xc1 || (op >= 0xd0 && op <= 0xd3):
		in.op = fShift
		if op&1 == 0 {
			in.size = 1
		}
		in.alu = d.modrm(in, op&1 == 0)
		if in.alu == 2 || in.alu == 3 || in.alu == 6 {
			return false
		}
		switch {
		case op < 0xd0:
			in.imm = d.u8()
		case op < 0xd2:
			in.imm = 1
		default:
			in.cl = true
		}
		return true
	case op == 0xc3:
		if opsize {
			return false
		}
		in.op = fRet
		return true
	case op == 0xc6 || op == 0xc7:
		in.op = fMovEI
		if op == 0xc6 {
			in.size = 1
		}
		if d.modrm(in, op == 0xc6) != 0 {
			return false
		}
		if op == 0xc6 {
			in.imm = d.u8()
		} else {
			in.imm = d.immOf(in.size)
		}
		return true
	case op == 0xe8 || op == 0xe9 || op == 0xeb:
		if opsize {
			return false
		}
		in.op = fJmp
		if op == 0xe8 {
			in.op = fCall
		}
		if op == 0xeb {
			in.imm = d.s8()
		} else {
			in.imm = d.s32()
		}
		return true
	case op == 0xf6 || op == 0xf7:
		if op == 0xf6 {
			in.size = 1
		}
		switch d.modrm(in, op == 0xf6) {
		case 0:
			in.op, in.alu = fAluEI, aluTest
			if op == 0xf6 {
				in.imm = d.u8()
			} else {
				in.imm = d.immOf(in.size)
			}
		case 2:
			in.op = fNot
		case 3:
			in.op = fNeg
		default:
			return false
		}
		return true
	case op == 0xfe || op == 0xff:
		if op == 0xfe {
			in.size = 1
		}
		switch rf := d.modrm(in, op == 0xfe); rf {
		case 0:
			in.op = fInc
		case 1:
			in.op = fDec
		case 2, 4:
			// Near indirect CALL and JMP: the operand is 64 bits in
			// 64-bit mode whatever REX.W says.
			if op == 0xfe || opsize {
				return false
			}
			in.op, in.size = fCallInd, 4
			if rf == 4 {
				in.op = fJmpInd
			}
			if long {
				in.size = 8
			}
		default:
			return false
		}
		return true
	case op == 0x0f:
		return d.body0f(in, opsize)
	}
	return false
}

func (d *fdecoder) body0f(in *finst, opsize bool) bool {
	op := uint8(d.u8())
	switch {
	case op == 0x1f:
		in.op = fNop
		return d.modrm(in, false) == 0
	case op >= 0x40 && op < 0x50:
		in.op, in.alu = fCmov, op&15
		d.modrm(in, false)
		return true
	case op >= 0x80 && op < 0x90:
		if opsize {
			return false
		}
		in.op, in.alu = fJcc, op&15
		in.imm = d.s32()
		return true
	case op >= 0x90 && op < 0xa0:
		in.op, in.alu, in.size = fSetcc, op&15, 1
		d.modrm(in, true)
		return true
	case op == 0xaf:
		in.op = fImul
		d.modrm(in, false)
		return true
	case op == 0xb6 || op == 0xb7 || op == 0xbe || op == 0xbf:
		in.op = fMovzx
		if op >= 0xbe {
			in.op = fMovsx
		}
		in.smask = 0xffff
		if op&1 == 0 {
			in.smask = 0xff
		}
		d.modrm(in, false)
		if op&1 == 0 && !in.mem {
			in.rm, in.rmSh = d.byteReg(in.rm)
		}
		return true
	}
	return false
}
