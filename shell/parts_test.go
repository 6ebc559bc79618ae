package shell

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vmrr/machine/cpu"
	"vmrr/replayer"
	"vmrr/shell/internal/fakesession"
)

func TestSymbols(t *testing.T) {
	s := fakeSymbols(t)
	lookups := []struct {
		name string
		addr uint64
		ok   bool
	}{
		{"main", 0x1000, true},
		{"_start", 0x1000, true},
		{"store", 0x1005, true},
		{"counter", 0x2000, true}, // the global, not the local at 0x2100
		{"message", 0x3000, true},
		{"fake.c", 0, false}, // file symbols are not addresses
		{"nosuch", 0, false},
		{"", 0, false},
	}
	for _, tt := range lookups {
		a, ok := s.Lookup(tt.name)
		if a != tt.addr || ok != tt.ok {
			t.Errorf("Lookup(%q) = %#x, %v; want %#x, %v", tt.name, a, ok, tt.addr, tt.ok)
		}
	}
	describes := []struct {
		addr uint64
		want string
	}{
		{0x1000, "main"}, // a sized function wins over _start
		{0x1004, "main+0x4"},
		{0x1005, "store"},        // the nearest symbol below
		{0x100e, "store+0x9"},    // an unsized label runs to its section's end
		{0x100f, ""},             // past .text
		{0x2007, "counter+0x7"},  // within the object's size
		{0x2008, ""},             // past it: .data padding is not counter
		{0x2100, "counter"},      // the local one, found by address
		{0x3015, "message+0x15"}, // the NUL
		{0x3016, ""},
		{0xfff, ""},
		{0xffffffffffffffff, ""},
	}
	for _, tt := range describes {
		if got := s.Describe(tt.addr); got != tt.want {
			t.Errorf("Describe(%#x) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got, want := s.withPrefix("m"), []string{"main", "message"}; !reflect.DeepEqual(got, want) {
		t.Errorf("withPrefix(m) = %v, want %v", got, want)
	}
	if got := s.Len(); got != 5 {
		t.Errorf("Len = %d, want 5", got)
	}
	var none *Symbols
	if _, ok := none.Lookup("main"); ok || none.Describe(0x1000) != "" || none.Len() != 0 || none.withPrefix("") != nil {
		t.Error("nil Symbols is not empty")
	}
}

func TestLoadSymbolsErrors(t *testing.T) {
	dir := t.TempDir()
	arm := filepath.Join(dir, "arm.elf")
	if err := os.WriteFile(arm, fakesession.ELF(elf.EM_AARCH64), 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "text")
	if err := os.WriteFile(text, []byte("not an elf"), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.elf")
	if err := os.WriteFile(truncated, fakesession.ELF(elf.EM_X86_64)[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{arm, "not an x86 ELF"},
		{text, "not a valid ELF image"},
		{truncated, "truncated.elf"},
		{filepath.Join(dir, "missing"), "no such file"},
	}
	for _, tt := range tests {
		_, err := LoadSymbols(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadSymbols(%s) = %v, want an error with %q", filepath.Base(tt.path), err, tt.want)
		}
	}
}

func TestEvalAddr(t *testing.T) {
	sh := &shell{session: fakesession.New(fakesession.Config{}), syms: fakeSymbols(t)}
	tests := []struct {
		expr string
		want uint64
		err  string
	}{
		{"0x1000", 0x1000, ""},
		{"0X1F", 0x1f, ""},
		{"4096", 4096, ""},
		{"main", 0x1000, ""},
		{"main+4", 0x1004, ""},
		{"main+0x10-2", 0x100e, ""},
		{"store-main", 5, ""},
		{"$rip", 0x1000, ""},
		{"$RSP-8", 0x7ff8, ""},
		{"$pc+1", 0x1001, ""},
		{"$esp", 0x8000, ""},
		{"-1", 0xffffffffffffffff, ""},
		{"0-1", 0xffffffffffffffff, ""},
		{"0xffffffffffffffff+2", 1, ""},
		{"", 0, "missing address"},
		{"+", 0, "missing term"},
		{"main+", 0, "missing term"},
		{"main++1", 0, "missing term"},
		{"0xg", 0, `bad number "0xg"`},
		{"1e3", 0, `bad number "1e3"`},
		{"18446744073709551616", 0, "does not fit"},
		{"nosuch", 0, `unknown symbol "nosuch"`},
		{"$", 0, `unknown register "$"`},
		{"$xmm0", 0, `unknown register "$xmm0"`},
		{"&main", 0x1000, ""},
		{"&store+1", 0x1006, ""},
		{"&nosuch", 0, `unknown symbol "nosuch"`},
		{"&", 0, `bad address "&": & takes a symbol`},
		{"&0x10", 0, `& takes a symbol`},
		{"&$rip", 0, `& takes a symbol`},
		{"&&main", 0, `& takes a symbol`},
	}
	for _, tt := range tests {
		got, err := sh.evalAddr(tt.expr)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("evalAddr(%q) = %#x, %v; want error %q", tt.expr, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("evalAddr(%q) = %#x, %v; want %#x", tt.expr, got, err, tt.want)
		}
	}
	sh.syms = nil
	if _, err := sh.evalAddr("main"); err == nil || !strings.Contains(err.Error(), "no symbols loaded") {
		t.Errorf("without symbols: %v", err)
	}
}

func TestParseExamineFormat(t *testing.T) {
	prev := examineFormat{count: 1, size: 4, fmt: 'x'}
	tests := []struct {
		in   string
		want examineFormat
		err  string
	}{
		{"", examineFormat{1, 4, 'x'}, ""},
		{"4gx", examineFormat{4, 8, 'x'}, ""},
		{"xg", examineFormat{1, 8, 'x'}, ""},
		{"16xb", examineFormat{16, 1, 'x'}, ""},
		{"2dh", examineFormat{2, 2, 'd'}, ""},
		{"3i", examineFormat{3, 4, 'i'}, ""},
		{"c", examineFormat{1, 1, 'c'}, ""},
		{"cw", examineFormat{1, 4, 'c'}, ""},
		{"5", examineFormat{5, 4, 'x'}, ""},
		{"0x", examineFormat{}, "out of range"},
		{"65537x", examineFormat{}, "out of range"},
		{"4q", examineFormat{}, "bad format letter 'q'"},
		{"-1x", examineFormat{}, "bad format letter '-'"},
	}
	for _, tt := range tests {
		got, err := parseExamineFormat(tt.in, prev)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parse(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestCPUMode(t *testing.T) {
	tests := []struct {
		mode int
	}{{64}, {32}, {16}}
	for _, tt := range tests {
		r, _ := fakesession.New(fakesession.Config{Mode: tt.mode}).Registers()
		if got := cpu.Mode(&r.Sregs); got != tt.mode {
			t.Errorf("cpu.Mode(fake %d-bit) = %d", tt.mode, got)
		}
	}
	// Long mode with a 32-bit code segment (compatibility mode) decodes as 32.
	r, _ := fakesession.New(fakesession.Config{}).Registers()
	r.Sregs.CS.L, r.Sregs.CS.DB = 0, 1
	if got := cpu.Mode(&r.Sregs); got != 32 {
		t.Errorf("compatibility mode = %d, want 32", got)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		b    []byte
		mode int
		n    int
		want string
	}{
		{[]byte{0x0f, 0xc7, 0xf0}, 64, 3, "rdrand %eax"},
		{[]byte{0x48, 0x0f, 0xc7, 0xf0}, 64, 4, "rdrand %rax"},
		{[]byte{0x49, 0x0f, 0xc7, 0xf9}, 64, 4, "rdseed %r9"},
		{[]byte{0x41, 0x0f, 0xc7, 0xf9}, 64, 4, "rdseed %r9d"},
		{[]byte{0x66, 0x0f, 0xc7, 0xf3}, 64, 4, "rdrand %bx"},
		{[]byte{0x0f, 0xc7, 0xf8}, 32, 3, "rdseed %eax"},
		{[]byte{0x0f, 0xc7, 0xf0}, 16, 3, "rdrand %ax"},
		{[]byte{0x66, 0x0f, 0xc7, 0xf0}, 16, 4, "rdrand %eax"},
		{[]byte{0xf3, 0x0f, 0xc7, 0xf8}, 64, 4, "rdpid %rax"},
		{[]byte{0xf3, 0x0f, 0xc7, 0xf9}, 32, 4, "rdpid %ecx"},
		{[]byte{0x0f, 0x31}, 64, 2, "rdtsc"},
		{[]byte{0x0f, 0x01, 0xf9}, 64, 3, "rdtscp"},
		{[]byte{0xe6, 0xe0}, 64, 2, "out %al,$0xe0"},
		{[]byte{0x0f}, 64, 1, "(bad)"},
		{[]byte{0x0f, 0x0b}, 64, 2, "ud2"},
		{[]byte{0x0f, 0xc7, 0x0e}, 64, 3, "cmpxchg8b (%rsi)"},
		{[]byte{0x0f, 0xc7}, 64, 1, "(bad)"},
		{[]byte{0x06}, 64, 1, "(bad)"}, // push %es is invalid in long mode
	}
	for _, tt := range tests {
		n, text := decode(tt.b, tt.mode, 0x1000, nil)
		if n != tt.n || text != tt.want {
			t.Errorf("decode(% x, %d) = %d %q, want %d %q", tt.b, tt.mode, n, text, tt.n, tt.want)
		}
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		v    uint64
		want string
	}{
		{0x2, "[ ]"},
		{0x246, "[ PF ZF IF ]"},
		{0x3202, "[ IF IOPL=3 ]"},
		{0x10001, "[ CF RF ]"},
	}
	for _, tt := range tests {
		if got := flagsString(tt.v); got != tt.want {
			t.Errorf("flagsString(%#x) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestHistoryBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hist")
	var lines []string
	for i := 0; i < 50; i++ {
		lines = append(lines, fmt.Sprintf("p %d", i))
	}
	if err := writeHistory(path, lines, 10); err != nil {
		t.Fatal(err)
	}
	got, err := readHistory(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != "p 40" || got[9] != "p 49" {
		t.Errorf("history = %v", got)
	}
	// A file grown by something else is cut back on reading too.
	if err := os.WriteFile(path, []byte(strings.Repeat("x\n", 5000)+"last\n\n\xff\xfe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = readHistory(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"x", "x", "last"}; !reflect.DeepEqual(got, want) {
		t.Errorf("history = %q, want %q", got, want)
	}
	if got, err := readHistory(filepath.Join(t.TempDir(), "none"), 3); got != nil || err != nil {
		t.Errorf("missing file: %v, %v", got, err)
	}
	if err := writeHistory(filepath.Join(t.TempDir(), "no", "dir", "hist"), lines, 3); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestComplete(t *testing.T) {
	s := fakesession.New(fakesession.Config{})
	sh := &shell{session: s, syms: fakeSymbols(t)}
	s.AddBreakpoint(replayer.BreakSoftware, 0x1000, 1)
	s.AddBreakpoint(replayer.BreakSoftware, 0x1005, 1)
	tests := []struct {
		line string
		pos  int
		head string
		want []string
	}{
		{"wh", -1, "", []string{"where "}},
		{"re", -1, "", []string{"reverse-step", "reverse-continue", "regs", "reverse"}},
		{"zz", -1, "", nil},
		{"b ma", -1, "b ", []string{"main "}},
		{"b m", -1, "b ", []string{"main", "message"}},
		{"x/4gx sto", -1, "x/4gx ", []string{"store "}},
		{"x/4gx &sto", -1, "x/4gx ", []string{"&store "}},
		{"p &m", -1, "p ", []string{"&main", "&message"}},
		{"disas $rs", -1, "disas ", []string{"$rsi", "$rsp"}},
		{"regs rfl", -1, "regs ", []string{"rflags "}},
		{"goto e", -1, "goto ", []string{"event", "end"}},
		{"goto event ", -1, "goto event ", nil},
		{"help di", -1, "help ", []string{"disas "}},
		{"rev c", -1, "rev ", []string{"continue "}},
		{"delete ", -1, "delete ", []string{"1", "2", "all"}},
		{"s; wh", -1, "s; ", []string{"where "}},
		{"b ma rest", 4, "b ", []string{"main "}},
		{"where x", -1, "where ", nil},
	}
	for _, tt := range tests {
		pos := tt.pos
		if pos < 0 {
			pos = len(tt.line)
		}
		head, got, tail := sh.complete(tt.line, pos)
		if head != tt.head || !reflect.DeepEqual(got, tt.want) || tail != tt.line[pos:] {
			t.Errorf("complete(%q, %d) = %q %q %q; want %q %q %q", tt.line, pos, head, got, tail, tt.head, tt.want, tt.line[pos:])
		}
	}
}
