package cpu

// NonDetInst is a non-deterministic instruction decoded from its bytes.
type NonDetInst struct {
	Kind   NonDet
	Len    int // bytes, prefixes included
	Reg    int // destination register number 0-15 (RDRAND, RDSEED, RDPID)
	OpSize int // destination size in bits, 16, 32 or 64 (RDRAND, RDSEED, RDPID)
}

// Decoding is what DecodeNonDet made of some bytes.
type Decoding int

// The outcomes of DecodeNonDet.
const (
	// NotNonDet: the bytes start with some other instruction (or none).
	NotNonDet Decoding = iota
	// Truncated: the bytes end before they say which instruction this is.
	Truncated
	// Invalid: a register form of 0f c7 /6 or /7 with prefixes no
	// instruction has (f2, or f3 with /6), or an instruction over 15 bytes.
	// NonDetInst.Len is its length, at most 15.
	Invalid
	// Decoded: a non-deterministic instruction, in the NonDetInst.
	Decoded
)

// DecodeNonDet decodes the non-deterministic instruction code starts with,
// for a CPU executing mode-bit code (16, 32 or 64). It is the one decoder of
// these instructions: the soft CPU executes what it decodes, nondet traps
// it under KVM and the shell disassembles it. x86asm cannot be used for the
// 0f c7 group: it does not know RDSEED, decodes RDPID as a bare REP and
// gives RDRAND r64 no operand.
//
// Prefixes are read as the processor reads them: a legacy prefix after REX
// cancels the REX, and of f2 and f3 the last one counts. RDTSC and RDTSCP
// ignore prefixes, as the processor does.
func DecodeNonDet(code []byte, mode int) (NonDetInst, Decoding) {
	var opsize, rep, repne bool
	var rex byte
	pos := 0
prefixes:
	// Prefixes past the 15th make no instruction; stopping there also
	// bounds the work when code is a long run of prefix bytes.
	for ; pos < len(code) && pos < 15; pos++ {
		c := code[pos]
		switch {
		case c == 0x66:
			opsize = true
		case c == 0xf3:
			rep, repne = true, false
		case c == 0xf2:
			rep, repne = false, true
		case c == 0x67, c == 0x26, c == 0x2e, c == 0x36, c == 0x3e, c == 0x64, c == 0x65, c == 0xf0:
		case mode == 64 && c&0xf0 == 0x40:
			rex = c
			continue
		default:
			break prefixes
		}
		rex = 0
	}
	if pos >= 15 {
		return NonDetInst{}, NotNonDet
	}
	rest := code[pos:]
	switch {
	case len(rest) == 0:
		return NonDetInst{}, Truncated
	case rest[0] != 0x0f:
		return NonDetInst{}, NotNonDet
	case len(rest) == 1:
		return NonDetInst{}, Truncated
	}
	var in NonDetInst
	switch rest[1] {
	case 0x31:
		in = NonDetInst{Kind: RDTSC, Len: pos + 2}
	case 0x01:
		switch {
		case len(rest) == 2:
			return NonDetInst{}, Truncated
		case rest[2] != 0xf9:
			return NonDetInst{}, NotNonDet
		}
		in = NonDetInst{Kind: RDTSCP, Len: pos + 3}
	case 0xc7:
		if len(rest) == 2 {
			return NonDetInst{}, Truncated
		}
		m := rest[2]
		r := int(m>>3) & 7
		if m>>6 != 3 || r < 6 {
			return NonDetInst{}, NotNonDet // CMPXCHG8B/16B, VMPTRLD, ...
		}
		in.Len = pos + 3
		in.Reg = int(m&7) | int(rex&1)<<3
		switch {
		case rex&8 != 0:
			in.OpSize = 64
		case (mode == 16) != opsize:
			in.OpSize = 16
		default:
			in.OpSize = 32
		}
		switch {
		case r == 6 && !rep && !repne:
			in.Kind = RDRAND
		case r == 7 && !rep && !repne:
			in.Kind = RDSEED
		case r == 7 && rep:
			// RDPID's operand is the mode's size whatever the prefixes.
			in.Kind, in.OpSize = RDPID, 32
			if mode == 64 {
				in.OpSize = 64
			}
		default:
			return NonDetInst{Len: min(in.Len, 15)}, Invalid
		}
	default:
		return NonDetInst{}, NotNonDet
	}
	if in.Len > 15 {
		return NonDetInst{Len: 15}, Invalid
	}
	return in, Decoded
}
