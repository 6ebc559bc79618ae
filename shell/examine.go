package shell

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"vmrr/machine/cpu"
)

// examineFormat is a parsed x/FMT: a count, a unit size and a display
// format, as in gdb.
type examineFormat struct {
	count int
	size  int  // 1, 2, 4 or 8 bytes
	fmt   byte // x d u c i s
}

// maxExamine bounds one x command so a typo cannot ask for gigabytes.
const maxExamine = 1 << 16

// parseExamineFormat parses the FMT of x/FMT; size and format default to
// the previous ones, as gdb does.
func parseExamineFormat(s string, prev examineFormat) (examineFormat, error) {
	f := examineFormat{count: 1, size: prev.size, fmt: prev.fmt}
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits > 0 {
		n, err := parseCount(s[:digits], maxExamine)
		if err != nil {
			return f, err
		}
		f.count = n
	}
	for _, c := range []byte(s[digits:]) {
		switch c {
		case 'b':
			f.size = 1
		case 'h':
			f.size = 2
		case 'w':
			f.size = 4
		case 'g':
			f.size = 8
		case 'x', 'd', 'u', 'c', 'i', 's':
			f.fmt = c
		default:
			return f, fmt.Errorf("bad format letter %q in /%s (sizes b h w g, formats x d u c i s)", c, s)
		}
	}
	if f.fmt == 'c' && !strings.ContainsAny(s[digits:], "bhwg") {
		f.size = 1
	}
	return f, nil
}

// examine prints memory from addr in format f and returns the address
// after the last unit shown.
func (sh *shell) examine(w io.Writer, addr uint64, f examineFormat) (uint64, error) {
	switch f.fmt {
	case 'i':
		r, err := sh.session.Registers()
		if err != nil {
			return addr, fmt.Errorf("reading registers: %w", err)
		}
		return sh.disassemble(w, addr, f.count, cpu.Mode(&r.Sregs), r.RIP)
	case 's':
		return sh.examineStrings(w, addr, f.count)
	}
	buf := make([]byte, f.count*f.size)
	got, rerr := sh.session.ReadVirtual(addr, buf)
	// Show the image's bytes where vmrr patched code, as gdb is shown them.
	sh.session.OriginalBytes(addr, buf[:got])
	units := got / f.size
	perLine := 8
	switch f.size {
	case 4:
		perLine = 4
	case 8:
		perLine = 2
	}
	var line strings.Builder
	for i := 0; i < units; i++ {
		a := addr + uint64(i*f.size)
		if i%perLine == 0 {
			if i > 0 {
				fmt.Fprintln(w, line.String())
				line.Reset()
			}
			line.WriteString(sh.label(a) + ":")
		}
		line.WriteString("\t" + formatUnit(buf[i*f.size:(i+1)*f.size], f.fmt))
	}
	if units > 0 {
		fmt.Fprintln(w, line.String())
	}
	next := addr + uint64(units*f.size)
	if units < f.count {
		if rerr == nil {
			rerr = fmt.Errorf("short read")
		}
		return next, fmt.Errorf("cannot read memory at %#x: %w", next, rerr)
	}
	return next, nil
}

// label is an address as gdb shows it: "0x1004 <main+0x4>".
func (sh *shell) label(a uint64) string {
	if d := sh.syms.Describe(a); d != "" {
		return fmt.Sprintf("%#x <%s>", a, d)
	}
	return fmt.Sprintf("%#x", a)
}

func formatUnit(b []byte, format byte) string {
	var v uint64
	switch len(b) {
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(binary.LittleEndian.Uint16(b))
	case 4:
		v = uint64(binary.LittleEndian.Uint32(b))
	default:
		v = binary.LittleEndian.Uint64(b)
	}
	bits := uint(len(b) * 8)
	switch format {
	case 'd':
		// Sign-extend from the unit's width.
		return strconv.FormatInt(int64(v<<(64-bits))>>(64-bits), 10)
	case 'u':
		return strconv.FormatUint(v, 10)
	case 'c':
		return fmt.Sprintf("%d %s", v, strconv.QuoteRune(rune(b[0])))
	}
	return fmt.Sprintf("0x%0*x", len(b)*2, v)
}

// maxString bounds how far x/s looks for a string's NUL.
const maxString = 4096

// examineStrings prints count NUL-terminated strings from addr.
func (sh *shell) examineStrings(w io.Writer, addr uint64, count int) (uint64, error) {
	for i := 0; i < count; i++ {
		var s []byte
		chunk := make([]byte, 64)
		a := addr
		for done := false; !done && len(s) < maxString; {
			got, err := sh.session.ReadVirtual(a, chunk)
			if j := bytes.IndexByte(chunk[:got], 0); j >= 0 {
				s = append(s, chunk[:j]...)
				a += uint64(j + 1)
				break
			}
			s = append(s, chunk[:got]...)
			a += uint64(got)
			if got < len(chunk) {
				if len(s) == 0 {
					if err == nil {
						err = fmt.Errorf("short read")
					}
					return addr, fmt.Errorf("cannot read memory at %#x: %w", a, err)
				}
				done = true
			}
		}
		fmt.Fprintf(w, "%s:\t%s\n", sh.label(addr), strconv.Quote(string(s)))
		addr = a
	}
	return addr, nil
}
