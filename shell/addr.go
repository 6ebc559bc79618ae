package shell

import (
	"fmt"
	"strconv"
	"strings"
)

// evalAddr evaluates an address expression: terms joined by + and -, each
// a number (0x hex or decimal), a symbol, or a register ($rip, $rsp, ...).
// A symbol already stands for its address; &SYM is accepted as the same
// thing because gdb users type it (x/1wx &tick_count).
// Arithmetic wraps like the CPU's, so HighBase-8 works.
func (sh *shell) evalAddr(expr string) (uint64, error) {
	if expr == "" {
		return 0, fmt.Errorf("missing address")
	}
	var sum uint64
	sign := uint64(1)
	rest := expr
	for first := true; ; first = false {
		if !first || rest[0] == '-' || rest[0] == '+' {
			switch rest[0] {
			case '+':
				sign = 1
			case '-':
				sign = ^uint64(0) // -1: multiplying wraps to negation
			default:
				return 0, fmt.Errorf("bad address %q", expr)
			}
			rest = rest[1:]
		}
		end := strings.IndexAny(rest, "+-")
		term := rest
		if end >= 0 {
			term, rest = rest[:end], rest[end:]
		} else {
			rest = ""
		}
		v, err := sh.evalTerm(term)
		if err != nil {
			return 0, err
		}
		sum += sign * v
		if rest == "" {
			return sum, nil
		}
	}
}

func (sh *shell) evalTerm(term string) (uint64, error) {
	if term == "" {
		return 0, fmt.Errorf("missing term in address")
	}
	switch c := term[0]; {
	case c >= '0' && c <= '9':
		v, err := parseNumber(term)
		if err != nil {
			return 0, err
		}
		return v, nil
	case c == '$':
		r, err := sh.session.Registers()
		if err != nil {
			return 0, fmt.Errorf("reading registers for %s: %w", term, err)
		}
		v, ok := regValue(&r, term[1:])
		if !ok {
			return 0, fmt.Errorf("unknown register %q", term)
		}
		return v, nil
	}
	name := term
	if amp, ok := strings.CutPrefix(term, "&"); ok {
		if amp == "" || amp[0] == '$' || amp[0] >= '0' && amp[0] <= '9' || amp[0] == '&' {
			return 0, fmt.Errorf("bad address %q: & takes a symbol", term)
		}
		name = amp
	}
	if v, ok := sh.syms.Lookup(name); ok {
		return v, nil
	}
	if sh.syms.Len() == 0 {
		return 0, fmt.Errorf("unknown symbol %q (no symbols loaded)", name)
	}
	return 0, fmt.Errorf("unknown symbol %q", name)
}

// parseNumber reads an unsigned 64-bit number: 0x hex or decimal.
func parseNumber(s string) (uint64, error) {
	var v uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err = strconv.ParseUint(h, 16, 64)
	} else {
		v, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("number %q does not fit in 64 bits", s)
		}
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v, nil
}

// parseCount reads a positive count no larger than max.
func parseCount(s string, max int) (int, error) {
	v, err := parseNumber(s)
	if err != nil {
		return 0, err
	}
	if v == 0 || v > uint64(max) {
		return 0, fmt.Errorf("count %s out of range 1..%d", s, max)
	}
	return int(v), nil
}
