package x86emu

import (
	"fmt"
	"strings"
	"sync"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// decoded is an instruction as the decoder sees it: a function of the
// mode and the bytes only. cpu.DecodeNonDet decodes RDRAND, RDSEED and
// RDPID (the register forms of 0f c7 /6 and /7, which x86asm gets wrong);
// x86asm decodes the rest.
type decoded struct {
	x     x86asm.Inst // zero when g9 != 0
	g9    cpu.NonDet  // RDRAND, RDSEED or RDPID, else 0
	g9reg int         // destination register number
	g9bit int         // destination width
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
	switch nd, st := cpu.DecodeNonDet(b, bits); {
	case st == cpu.Truncated:
		if stop != nil {
			return nil, stop
		}
		return nil, unsupportedBytes(b, "(truncated)", "")
	case st == cpu.Invalid:
		return nil, unsupportedBytes(b[:nd.Len], disasmGroup9Bad(b[:nd.Len]), "unknown form of the 0f c7 group")
	case st == cpu.Decoded && nd.Kind != cpu.RDTSC && nd.Kind != cpu.RDTSCP:
		return &decoded{g9: nd.Kind, g9reg: nd.Reg, g9bit: nd.OpSize, len: nd.Len,
			text: strings.ToUpper(nd.Kind.String()) + " " + regName(nd.Reg, nd.OpSize)}, nil
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
