package shell

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"vmrr/machine/cpu"

	"golang.org/x/arch/x86/x86asm"
	"vmrr/replayer"
)

// cpuMode is the decoder width for the vCPU's current mode: 64 in long mode
// with a 64-bit code segment, else 32 or 16 by CS.D in protected mode, and
// 16 in real mode.
func cpuMode(r *replayer.Registers) int {
	s := &r.Sregs
	switch {
	case s.EFER&cpu.EFERLMA != 0 && s.CS.L != 0:
		return 64
	case s.CR0&cpu.CR0PE == 0:
		return 16
	case s.CS.DB != 0:
		return 32
	}
	return 16
}

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
	if n, text, ok := decodeRandGroup(b, mode); ok {
		return n, text
	}
	inst, err := x86asm.Decode(b, mode)
	// A truncated 0f decodes with Op 0 and no error.
	if err != nil || inst.Op == 0 || inst.Len == 0 {
		return 1, "(bad)"
	}
	return inst.Len, x86asm.GNUSyntax(inst, pc, symname)
}

// decodeRandGroup decodes the 0f c7 /6 and /7 register forms (RDRAND,
// RDSEED, RDPID), which x86asm gets wrong: RDSEED is unrecognised, RDPID
// decodes as a bare REP, and RDRAND r64 loses its operand. These are the
// instructions vmrr cares most about showing correctly.
func decodeRandGroup(b []byte, mode int) (int, string, bool) {
	i := 0
	opsize, rep := false, false
	for ; i < len(b) && (b[i] == 0x66 || b[i] == 0xf3); i++ {
		opsize = opsize || b[i] == 0x66
		rep = rep || b[i] == 0xf3
	}
	var rex byte
	if mode == 64 && i < len(b) && b[i]&0xf0 == 0x40 {
		rex = b[i]
		i++
	}
	if i+2 >= len(b) || b[i] != 0x0f || b[i+1] != 0xc7 {
		return 0, "", false
	}
	modrm := b[i+2]
	reg, rm := (modrm>>3)&7, modrm&7
	if modrm>>6 != 3 || reg < 6 {
		return 0, "", false
	}
	if rex&1 != 0 {
		rm += 8
	}
	var name string
	var width int
	switch {
	case reg == 7 && rep:
		name = "rdpid"
		width = 32
		if mode == 64 {
			width = 64
		}
	case rep:
		return 0, "", false
	case reg == 6:
		name = "rdrand"
	default:
		name = "rdseed"
	}
	if name != "rdpid" {
		width = 32
		if mode == 16 {
			width = 16
		}
		if opsize {
			width = 48 - width // 0x66 toggles between 16 and 32
		}
		if rex&8 != 0 {
			width = 64
		}
	}
	return i + 3, fmt.Sprintf("%s %%%s", name, gpr(rm, width)), true
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
