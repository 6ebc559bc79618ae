package x86emu

import (
	"fmt"
	"sync"

	"golang.org/x/arch/x86/x86asm"
)

// group9Op is an instruction of the 0f c7 group (register forms) that x86emu
// decodes itself: x86asm does not know RDSEED, decodes RDPID as a bare REP
// and gives RDRAND r64 no operand.
type group9Op int

const (
	g9None group9Op = iota
	g9RDRAND
	g9RDSEED
	g9RDPID
)

func (g group9Op) String() string {
	return [...]string{"", "RDRAND", "RDSEED", "RDPID"}[g]
}

// decoded is an instruction as the decoder sees it: a function of the
// mode and the bytes only.
type decoded struct {
	x     x86asm.Inst // zero when g9 != g9None
	g9    group9Op
	g9reg int // destination register number
	g9bit int // destination width
	text  string
	len   int
}

// inst is a fetched and decoded instruction.
type inst struct {
	decoded
	bytes [15]byte
	next  uint64 // RIP of the following instruction
}

// codeBits is the default operand and address size of the code segment.
func (e *emu) codeBits() int {
	switch e.mode {
	case modeLong64:
		return 64
	case modeProt32:
		return 32
	case modeCompat:
		if e.c.Sregs.CS.DB != 0 {
			return 32
		}
	}
	return 16
}

// fetchDecode reads up to 15 bytes at CS:RIP and decodes them. Fetching
// stops at the CS limit or at a page that does not translate; the #GP or #PF
// that caused the stop is raised only if the instruction needs those bytes.
func (e *emu) fetchDecode(in *inst) error {
	bits := e.codeBits()
	rip := e.c.Regs.RIP
	avail := 15
	var lin uint64
	var stop error
	if e.mode == modeLong64 {
		lin = rip
		if !e.canonical(rip) {
			return gpErr(0)
		}
	} else {
		rip &= 0xffffffff
		cs := &e.c.Sregs.CS
		switch {
		case rip > uint64(cs.Limit):
			return gpErr(0)
		case uint64(cs.Limit)-rip < 14:
			avail = int(uint64(cs.Limit)-rip) + 1
			stop = gpErr(0)
		}
		lin = (cs.Base + rip) & 0xffffffff
	}
	n := 0
	for n < avail {
		a := (lin + uint64(n)) & e.linMask()
		k := min(avail-n, 4096-int(a&0xfff))
		gpa, err := e.phys(a, false, e.userAccess(), true)
		if err == nil {
			if rerr := e.env.ReadPhys(gpa, in.bytes[n:n+k]); rerr != nil {
				err = fmt.Errorf("x86emu: fetch at guest physical %#x: %w", gpa, rerr)
			}
		}
		if err != nil {
			stop = err
			break
		}
		n += k
	}
	if n == 0 {
		return stop
	}
	key := decodeKey{bits: uint8(bits), n: uint8(n), b: in.bytes}
	d, ok := cachedDecode(&key)
	if !ok {
		var err error
		if d, err = decodeBytes(in.bytes[:n], bits, stop); err != nil {
			return err
		}
		cacheDecode(&key, d)
	}
	in.decoded = *d
	in.next = truncate(e.c.Regs.RIP+uint64(d.len), bits)
	return nil
}

// decodeBytes decodes the n fetched bytes; stop is why fetching stopped
// short of 15 bytes, if it did.
func decodeBytes(b []byte, bits int, stop error) (*decoded, error) {
	switch g, reg, width, l, st := decodeGroup9(b, bits); st {
	case g9Truncated:
		if stop != nil {
			return nil, stop
		}
		return nil, unsupportedBytes(b, "(truncated)", "")
	case g9Bad:
		return nil, unsupportedBytes(b[:l], disasmGroup9Bad(b[:l]), "unknown form of the 0f c7 group")
	case g9OK:
		return &decoded{g9: g, g9reg: reg, g9bit: width, len: l,
			text: g.String() + " " + regName(reg, width)}, nil
	}
	x, err := x86asm.Decode(b, bits)
	if err != nil || x.Op == 0 || x.Len == 0 || x.Len > len(b) {
		// x86asm reports a cut-off instruction in several ways (ErrTruncated,
		// Op 0 without an error, ErrUnrecognized for a partial VEX prefix),
		// so bytes that do not decode before a fetch stop raise the stop's
		// fault: if the guest's handler maps the page, the retry sees the
		// whole instruction; reporting it unsupported instead could end a
		// run that hardware would have continued.
		if bits == 64 && invalidIn64(b) {
			return nil, &exception{vector: vecUD}
		}
		if stop != nil {
			return nil, stop
		}
		return nil, unsupportedBytes(b, "(undecodable)", "")
	}
	if x.AddrSize == 64 && (x.Opcode>>24 < 0xa0 || x.Opcode>>24 > 0xa3) {
		// x86asm zero-extends a ModRM disp32; with 64-bit addresses it is
		// signed (the moffs64 of A0-A3 is a whole address, kept as is).
		for i, a := range x.Args {
			if m, ok := a.(x86asm.Mem); ok {
				m.Disp = int64(int32(m.Disp))
				x.Args[i] = m
			}
		}
	}
	d := &decoded{x: x, len: x.Len, text: x.String()}
	if x.Opcode>>24 == 0xcc {
		d.text = "INT3"
	}
	return d, nil
}

// The decode cache. Formatting the disassembly costs as much as decoding,
// and a guest meets the same few instructions (its handlers' IRETs) over and
// over; decoding is a pure function of the mode and the fetched bytes, so
// both are remembered, up to decodeCacheMax entries.
type decodeKey struct {
	bits, n uint8
	b       [15]byte
}

const decodeCacheMax = 1024

var decodeCache struct {
	sync.Mutex
	m   map[decodeKey]*decoded
	off bool // for the benchmark's uncached baseline
}

func cachedDecode(k *decodeKey) (*decoded, bool) {
	decodeCache.Lock()
	defer decodeCache.Unlock()
	d, ok := decodeCache.m[*k]
	return d, ok
}

func cacheDecode(k *decodeKey, d *decoded) {
	decodeCache.Lock()
	defer decodeCache.Unlock()
	if decodeCache.off {
		return
	}
	if decodeCache.m == nil || len(decodeCache.m) >= decodeCacheMax {
		decodeCache.m = make(map[decodeKey]*decoded)
	}
	decodeCache.m[*k] = d
}

// regName names general register idx at a width, e.g. "EAX", "R9W".
func regName(idx, bits int) string {
	base := x86asm.EAX
	switch bits {
	case 16:
		base = x86asm.AX
	case 64:
		base = x86asm.RAX
	}
	return (base + x86asm.Reg(idx&15)).String()
}

func disasmGroup9Bad(b []byte) string {
	x, err := x86asm.Decode(b, 64)
	if err == nil && x.Op != 0 {
		return x.String()
	}
	return "(0f c7 group)"
}

// unsupportedBytes reports bytes x86emu cannot emulate; Step fills in RIP
// and mode.
func unsupportedBytes(b []byte, disasm, why string) error {
	return &UnsupportedError{Bytes: append([]byte(nil), b...), Disasm: disasm, Why: why}
}

func (e *emu) unsupported(in *inst, why string) error {
	return unsupportedBytes(in.bytes[:in.len], in.text, why)
}

// Results of decodeGroup9.
const (
	g9NotOurs = iota
	g9Truncated
	g9Bad
	g9OK
)

// decodeGroup9 recognises the register forms of 0f c7 /6 and /7: RDRAND,
// RDSEED (no prefix or 66) and RDPID (f3). It returns the destination
// register number and width and the instruction length.
func decodeGroup9(b []byte, mode int) (op group9Op, reg, width, length, status int) {
	var opsize, rep, repne bool
	var rex byte
	pos := 0
prefixes:
	for ; pos < len(b); pos++ {
		c := b[pos]
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
		// A legacy prefix after REX cancels the REX.
		rex = 0
	}
	rest := b[pos:]
	switch {
	case len(rest) == 0:
		if len(b) < 15 {
			return 0, 0, 0, 0, g9Truncated
		}
		return 0, 0, 0, 0, g9NotOurs
	case rest[0] != 0x0f:
		return 0, 0, 0, 0, g9NotOurs
	case len(rest) == 1:
		return 0, 0, 0, 0, g9Truncated
	case rest[1] != 0xc7:
		return 0, 0, 0, 0, g9NotOurs
	case len(rest) == 2:
		return 0, 0, 0, 0, g9Truncated
	}
	m := rest[2]
	r := int(m>>3) & 7
	if m>>6 != 3 || r < 6 {
		return 0, 0, 0, 0, g9NotOurs
	}
	length = pos + 3
	reg = int(m&7) | int(rex&1)<<3
	switch {
	case rex&8 != 0:
		width = 64
	case (mode == 16) != opsize:
		width = 16
	default:
		width = 32
	}
	switch {
	case r == 6 && !rep && !repne:
		op = g9RDRAND
	case r == 7 && !rep && !repne:
		op = g9RDSEED
	case r == 7 && rep:
		op, width = g9RDPID, 32
		if mode == 64 {
			width = 64
		}
	default:
		return 0, 0, 0, length, g9Bad
	}
	if length > 15 {
		return 0, 0, 0, 15, g9Bad
	}
	return op, reg, width, length, g9OK
}
