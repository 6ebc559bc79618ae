package x86emu

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"vmrr/machine/cpu"
)

// The host CPU as an oracle: testdata/oracle/oracle.c runs an instruction
// natively with given registers and prints the registers after it. Random
// register-only instructions in 64-bit mode must leave the same registers
// and flags (undefined ones included) in Step as on the host.

// oracleCase is one instruction and its starting registers (RSP unused).
type oracleCase struct {
	code  []byte
	regs  [16]uint64
	flags uint64
}

// oracleResult is the host's answer: registers and RFLAGS, or the signal.
type oracleResult struct {
	regs  [16]uint64
	flags uint64
	sig   int
}

func buildOracle(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skip("the oracle runs x86-64 code natively on Linux only")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build the native oracle")
	}
	bin := filepath.Join(t.TempDir(), "oracle")
	out, err := exec.Command(gcc, "-O1", "-static", "-fno-pie", "-no-pie", "-o", bin, "testdata/oracle/oracle.c").CombinedOutput()
	if err != nil {
		t.Fatalf("building the oracle: %v\n%s", err, out)
	}
	return bin
}

func runOracle(t *testing.T, bin string, cases []oracleCase) []oracleResult {
	t.Helper()
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(hex.EncodeToString(c.code))
		for _, r := range c.regs {
			fmt.Fprintf(&in, " %x", r)
		}
		fmt.Fprintf(&in, " %x\n", c.flags)
	}
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	var res []oracleResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var r oracleResult
		if f[0] == "SIG" {
			r.sig, _ = strconv.Atoi(f[1])
		} else {
			if len(f) != 17 {
				t.Fatalf("oracle line %q", sc.Text())
			}
			for i := range 16 {
				r.regs[i], _ = strconv.ParseUint(f[i], 16, 64)
			}
			r.flags, _ = strconv.ParseUint(f[16], 16, 64)
		}
		res = append(res, r)
	}
	if len(res) != len(cases) {
		t.Fatalf("oracle answered %d of %d cases", len(res), len(cases))
	}
	return res
}

// oracleOps are the instruction forms generated: opcode bytes, then 'm' for
// a register-only ModRM byte (reg field random unless ext >= 0), 'b' for
// an imm8, 'z' for an imm16/32.
type oracleOp struct {
	op   []byte
	ext  int // ModRM reg field for group opcodes, -1 for a register
	imm  byte
	noRM bool // no ModRM byte
}

func oracleOps() []oracleOp {
	var ops []oracleOp
	reg := func(b ...byte) { ops = append(ops, oracleOp{op: b, ext: -1}) }
	grp := func(imm byte, exts []int, b ...byte) {
		for _, x := range exts {
			ops = append(ops, oracleOp{op: b, ext: x, imm: imm})
		}
	}
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for base := byte(0); base < 0x40; base += 8 {
		reg(base)
		reg(base + 1)
		reg(base + 2)
		reg(base + 3)
		ops = append(ops, oracleOp{op: []byte{base + 4}, imm: 'b', noRM: true}, oracleOp{op: []byte{base + 5}, imm: 'z', noRM: true})
	}
	grp('b', all, 0x80)
	grp('z', all, 0x81)
	grp('b', all, 0x83)
	reg(0x84)
	reg(0x85)
	reg(0x86)
	reg(0x87)
	reg(0x88)
	reg(0x89)
	reg(0x8a)
	reg(0x8b)
	reg(0x63)
	ops = append(ops, oracleOp{op: []byte{0x69}, ext: -1, imm: 'z'}, oracleOp{op: []byte{0x6b}, ext: -1, imm: 'b'})
	grp('b', []int{0}, 0xf6)
	grp('z', []int{0}, 0xf7)
	grp(0, []int{2, 3, 4, 5, 6, 7}, 0xf6)
	grp(0, []int{2, 3, 4, 5, 6, 7}, 0xf7)
	grp(0, []int{0, 1}, 0xfe)
	grp(0, []int{0, 1}, 0xff)
	shifts := []int{0, 1, 2, 3, 4, 5, 7}
	grp('b', shifts, 0xc0)
	grp('b', shifts, 0xc1)
	grp(0, shifts, 0xd0)
	grp(0, shifts, 0xd1)
	grp(0, shifts, 0xd2)
	grp(0, shifts, 0xd3)
	for _, b := range []byte{0xa3, 0xab, 0xb3, 0xbb, 0xbc, 0xbd, 0xa5, 0xad, 0xaf, 0xb6, 0xb7, 0xbe, 0xbf, 0xc0, 0xc1, 0xb0, 0xb1} {
		reg(0x0f, b)
	}
	ops = append(ops, oracleOp{op: []byte{0x0f, 0xa4}, ext: -1, imm: 'b'}, oracleOp{op: []byte{0x0f, 0xac}, ext: -1, imm: 'b'})
	grp('b', []int{4, 5, 6, 7}, 0x0f, 0xba)
	for cc := byte(0); cc < 16; cc++ {
		reg(0x0f, 0x40+cc)
		grp(0, []int{0}, 0x0f, 0x90+cc)
	}
	for r := byte(0); r < 8; r++ {
		if r != 4 {
			ops = append(ops, oracleOp{op: []byte{0x0f, 0xc8 + r}, noRM: true})
		}
	}
	for _, b := range []byte{0x98, 0x99, 0x9e, 0x9f, 0xf5, 0xf8, 0xf9} {
		ops = append(ops, oracleOp{op: []byte{b}, noRM: true})
	}
	return ops
}

// oracleValue is a register value likely to hit edge cases.
func oracleValue(r *rand.Rand) uint64 {
	switch r.IntN(8) {
	case 0:
		return uint64(r.IntN(4))
	case 1:
		return ^uint64(r.IntN(3))
	case 2:
		return 1 << uint(r.IntN(64))
	case 3:
		return uint64(r.IntN(70))
	case 4:
		return uint64(r.Uint32())
	case 5:
		return 0x8000_0000 | uint64(r.IntN(16))
	}
	return r.Uint64()
}

// byteOperands says whether the r/m and reg operands of an opcode are bytes.
func byteOperands(op []byte) (rm, reg bool) {
	b := op[0]
	if b == 0x0f {
		switch b2 := op[1]; {
		case b2 >= 0x90 && b2 <= 0x9f:
			return true, false
		case b2 == 0xb0 || b2 == 0xc0:
			return true, true
		case b2 == 0xb6 || b2 == 0xbe:
			return true, false
		}
		return false, false
	}
	switch {
	case b < 0x40 && b&7 < 4:
		return b&1 == 0, b&1 == 0
	case b == 0x80 || b == 0x84 || b == 0x86 || b == 0x88 || b == 0x8a || b == 0xc0 || b == 0xd0 || b == 0xd2 || b == 0xf6 || b == 0xfe:
		return true, true
	}
	return false, false
}

func genOracleCase(r *rand.Rand, ops []oracleOp) oracleCase {
	op := ops[r.IntN(len(ops))]
	var code []byte
	if r.IntN(4) == 0 {
		code = append(code, 0x66)
	}
	rex := byte(0)
	if r.IntN(2) == 0 {
		rex = 0x40 | byte(r.IntN(16))
		code = append(code, rex)
	}
	code = append(code, op.op...)
	rmByte, regByte := byteOperands(op.op)
	pick := func(extBit byte, byteOp bool) byte {
		for {
			v := byte(r.IntN(8))
			// RSP is the oracle's own stack; with no REX, 4 is AH in
			// byte operations, and those are worth testing.
			if v != 4 || rex&extBit != 0 || rex == 0 && byteOp {
				return v
			}
		}
	}
	if !op.noRM {
		regField := byte(op.ext)
		if op.ext < 0 {
			regField = pick(4, regByte)
		}
		code = append(code, 0xc0|regField<<3|pick(1, rmByte))
	}
	switch op.imm {
	case 'b':
		code = append(code, byte(r.IntN(256)))
	case 'z':
		n := 4
		if code[0] == 0x66 && rex&8 == 0 {
			n = 2
		}
		for range n {
			code = append(code, byte(r.IntN(256)))
		}
	}
	var c oracleCase
	c.code = code
	for i := range c.regs {
		c.regs[i] = oracleValue(r)
	}
	c.regs[4] = 0
	c.flags = flagFixed | cpu.FlagIF | uint64(r.IntN(1<<12))&arithFlags
	return c
}

func TestOracle(t *testing.T) {
	bin := buildOracle(t)
	n := 50000
	if testing.Short() {
		n = 2000
	}
	seed := uint64(1)
	if s := os.Getenv("X86EMU_ORACLE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 0, 64)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	ops := oracleOps()
	var cases []oracleCase
	for range n {
		c := genOracleCase(r, ops)
		if c.code[len(c.code)-1] == 0xc4 || c.code[0] == 0xc4 || c.code[0] == 0xc5 {
			continue
		}
		cases = append(cases, c)
	}
	want := runOracle(t, bin, cases)
	regNames := [16]string{"RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"}
	bad := 0
	f, tmpl := newState(t, "long64")
	installHandlers(f, tmpl)
	for i, c := range cases {
		st := new(CPU)
		*st = *tmpl
		f.put(codeBase, make([]byte, 16)...)
		f.put(codeBase, c.code...)
		f.put(codeBase+uint64(len(c.code)), 0xc3)
		for j := range 16 {
			if j != 4 {
				*(&emu{c: st}).gpr(j) = c.regs[j]
			}
		}
		st.Regs.RFLAGS = c.flags
		res, err := Step(st, f)
		var diffs []string
		w := want[i]
		switch {
		case err != nil:
			diffs = append(diffs, err.Error())
		case w.sig != 0:
			if res.Fault == nil || !(w.sig == 8 && res.Fault.Vector == vecDE || w.sig == 4 && res.Fault.Vector == vecUD) {
				diffs = append(diffs, fmt.Sprintf("host signal %d, emulator fault %v", w.sig, res.Fault))
			}
		case res.Fault != nil:
			diffs = append(diffs, fmt.Sprintf("emulator fault %v, host none", res.Fault))
		default:
			e := &emu{c: st}
			for j := range 16 {
				if j != 4 && *e.gpr(j) != w.regs[j] {
					diffs = append(diffs, fmt.Sprintf("%s=%#x (host %#x, before %#x)", regNames[j], *e.gpr(j), w.regs[j], c.regs[j]))
				}
			}
			if st.Regs.RFLAGS != w.flags {
				diffs = append(diffs, fmt.Sprintf("RFLAGS=%#x (host %#x, before %#x)", st.Regs.RFLAGS, w.flags, c.flags))
			}
		}
		if len(diffs) > 0 {
			bad++
			if bad <= 30 {
				t.Errorf("% x %s: %s", c.code, res.Inst, strings.Join(diffs, ", "))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d cases differ from the host", bad, len(cases))
	}
}
