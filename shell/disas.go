package shell

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"golang.org/x/arch/x86/x86asm"
	"vmrr/machine/cpu"
	"vmrr/nondet"
)

// maxInsnLen is the architectural limit on an x86 instruction's length.
const maxInsnLen = 15

// disassemble prints n instructions from addr, marking the one at rip, and
// returns the address after the last one printed. Bytes vmrr patched are
// shown as they were in the image, with the patch noted.
func (sh *shell) disassemble(w io.Writer, addr uint64, n, mode int, rip uint64) (uint64, error) {
	symname := func(a uint64) (string, uint64) {
		name, off, ok := sh.syms.find(a)
		if !ok {
			return "", 0
		}
		return name, a - off
	}
	for i := 0; i < n; i++ {
		cur := make([]byte, maxInsnLen)
		got, err := sh.session.ReadVirtual(addr, cur)
		if got == 0 {
			if err == nil {
				err = fmt.Errorf("nothing read")
			}
			return addr, fmt.Errorf("cannot read memory at %#x: %w", addr, err)
		}
		cur = cur[:got]
		orig := append([]byte(nil), cur...)
		sh.session.OriginalBytes(addr, orig)

		size, text := decode(orig, mode, addr, symname)
		marker := "   "
		if addr == rip {
			marker = "=> "
		}
		loc := fmt.Sprintf("%#x", addr)
		if d := sh.syms.Describe(addr); d != "" {
			loc += " <" + d + ">"
		}
		line := fmt.Sprintf("%s%s: %-24s %s", marker, loc, hexBytes(orig[:size]), text)
		if !bytes.Equal(orig[:size], cur[:size]) {
			line += fmt.Sprintf("    (patched by vmrr; memory holds %s)", hexBytes(cur[:size]))
		}
		fmt.Fprintln(w, line)
		addr += uint64(size)
	}
	return addr, nil
}

// decode decodes one instruction, returning its length and its text in
// GNU syntax; undecodable bytes come back as one byte of "(bad)".
func decode(b []byte, mode int, pc uint64, symname x86asm.SymLookup) (int, string) {
	// x86asm gets the 0f c7 group wrong (RDSEED is unrecognised, RDPID
	// decodes as a bare REP, RDRAND r64 loses its operand), and these are
	// the instructions vmrr cares most about showing correctly: nondet,
	// which must find them, decodes them.
	if in, ok := nondet.Match(b, mode); ok && (in.Kind == cpu.RDRAND || in.Kind == cpu.RDSEED || in.Kind == cpu.RDPID) {
		return in.Len, fmt.Sprintf("%s %%%s", in.Kind, gpr(byte(in.Reg), in.OpSize))
	}
	inst, err := x86asm.Decode(b, mode)
	// A truncated 0f decodes with Op 0 and no error.
	if err != nil || inst.Op == 0 || inst.Len == 0 {
		return 1, "(bad)"
	}
	return inst.Len, x86asm.GNUSyntax(inst, pc, symname)
}

// gpr names general register n at a width, as GNU syntax spells it.
func gpr(n byte, width int) string {
	r64 := []string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"}
	if n >= 8 {
		s := fmt.Sprintf("r%d", n)
		switch width {
		case 32:
			return s + "d"
		case 16:
			return s + "w"
		}
		return s
	}
	switch width {
	case 32:
		return "e" + r64[n][1:]
	case 16:
		return r64[n][1:]
	}
	return r64[n]
}

func hexBytes(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}
