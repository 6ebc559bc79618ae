package shell

import (
	"fmt"
	"io"
	"strings"
	"vmrr/machine/cpu"
	"vmrr/replayer"
)

// gpNames lists the general registers in the order `regs` prints them.
var gpNames = []string{
	"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
}

// segNames lists the segment registers in the order `regs` prints them.
var segNames = []string{"cs", "ss", "ds", "es", "fs", "gs", "tr", "ldtr"}

// regAliases maps the other accepted spellings to canonical names.
var regAliases = map[string]string{
	"pc": "rip", "sp": "rsp", "fp": "rbp", "eflags": "rflags", "flags": "rflags",
	"eax": "rax", "ebx": "rbx", "ecx": "rcx", "edx": "rdx",
	"esi": "rsi", "edi": "rdi", "ebp": "rbp", "esp": "rsp", "eip": "rip",
}

// regNames returns every register name `regs NAME` and `$NAME` accept,
// for completion.
func regNames() []string {
	names := append([]string{}, gpNames...)
	names = append(names, "rip", "rflags")
	names = append(names, segNames...)
	names = append(names, "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "gdtr", "idtr",
		"fs_base", "gs_base", "mxcsr", "fcw", "fsw", "ftw")
	for i := 0; i < 16; i++ {
		names = append(names, fmt.Sprintf("xmm%d", i))
	}
	for i := 0; i < 8; i++ {
		names = append(names, fmt.Sprintf("st%d", i))
	}
	for a := range regAliases {
		names = append(names, a)
	}
	return names
}

func segment(r *replayer.Registers, name string) (*cpu.Segment, bool) {
	s := &r.Sregs
	switch name {
	case "cs":
		return &s.CS, true
	case "ss":
		return &s.SS, true
	case "ds":
		return &s.DS, true
	case "es":
		return &s.ES, true
	case "fs":
		return &s.FS, true
	case "gs":
		return &s.GS, true
	case "tr":
		return &s.TR, true
	case "ldtr":
		return &s.LDT, true
	}
	return nil, false
}

// regValue returns a register's value as an integer. The 32-bit names
// (eax, eip, ...) give the low half of their 64-bit register.
func regValue(r *replayer.Registers, name string) (uint64, bool) {
	name = strings.ToLower(name)
	mask := ^uint64(0)
	if c, ok := regAliases[name]; ok {
		if name[0] == 'e' && name != "eflags" {
			mask = 0xffffffff
		}
		name = c
	}
	v, ok := regValue64(r, name)
	return v & mask, ok
}

func regValue64(r *replayer.Registers, name string) (uint64, bool) {
	g := &r.Regs
	gp := map[string]uint64{
		"rax": g.RAX, "rbx": g.RBX, "rcx": g.RCX, "rdx": g.RDX,
		"rsi": g.RSI, "rdi": g.RDI, "rbp": g.RBP, "rsp": g.RSP,
		"r8": g.R8, "r9": g.R9, "r10": g.R10, "r11": g.R11,
		"r12": g.R12, "r13": g.R13, "r14": g.R14, "r15": g.R15,
		"rip": g.RIP, "rflags": g.RFLAGS,
		"cr0": r.Sregs.CR0, "cr2": r.Sregs.CR2, "cr3": r.Sregs.CR3, "cr4": r.Sregs.CR4,
		"cr8": r.Sregs.CR8, "efer": r.Sregs.EFER,
		"gdtr": r.Sregs.GDT.Base, "idtr": r.Sregs.IDT.Base,
		"fs_base": r.Sregs.FS.Base, "gs_base": r.Sregs.GS.Base,
		"mxcsr": uint64(r.MXCSR), "fcw": uint64(r.FCW), "fsw": uint64(r.FSW), "ftw": uint64(r.FTW),
	}
	if v, ok := gp[name]; ok {
		return v, true
	}
	if seg, ok := segment(r, name); ok {
		return uint64(seg.Selector), true
	}
	return 0, false
}

// flagNames names RFLAGS bits, low to high.
var flagNames = []struct {
	bit  uint
	name string
}{
	{0, "CF"}, {2, "PF"}, {4, "AF"}, {6, "ZF"}, {7, "SF"}, {8, "TF"}, {9, "IF"},
	{10, "DF"}, {11, "OF"}, {14, "NT"}, {16, "RF"}, {17, "VM"}, {18, "AC"},
	{19, "VIF"}, {20, "VIP"}, {21, "ID"},
}

// flagsString decodes RFLAGS like gdb: "[ PF ZF IF ]", with IOPL when set.
func flagsString(v uint64) string {
	var b strings.Builder
	b.WriteString("[ ")
	for _, f := range flagNames {
		if v&(1<<f.bit) != 0 {
			b.WriteString(f.name + " ")
		}
	}
	if iopl := (v >> 12) & 3; iopl != 0 {
		fmt.Fprintf(&b, "IOPL=%d ", iopl)
	}
	b.WriteString("]")
	return b.String()
}

type bitName struct {
	bit  uint
	name string
}

var (
	cr0Bits = []bitName{{0, "PE"}, {1, "MP"}, {2, "EM"}, {3, "TS"}, {4, "ET"}, {5, "NE"},
		{16, "WP"}, {18, "AM"}, {29, "NW"}, {30, "CD"}, {31, "PG"}}
	cr4Bits = []bitName{{0, "VME"}, {1, "PVI"}, {2, "TSD"}, {3, "DE"}, {4, "PSE"}, {5, "PAE"},
		{6, "MCE"}, {7, "PGE"}, {8, "PCE"}, {9, "OSFXSR"}, {10, "OSXMMEXCPT"}, {11, "UMIP"},
		{12, "LA57"}, {13, "VMXE"}, {16, "FSGSBASE"}, {17, "PCIDE"}, {18, "OSXSAVE"},
		{20, "SMEP"}, {21, "SMAP"}, {22, "PKE"}}
	eferBits = []bitName{{0, "SCE"}, {8, "LME"}, {10, "LMA"}, {11, "NXE"}, {12, "SVME"}, {14, "FFXSR"}}
)

func bitsString(v uint64, names []bitName) string {
	var b strings.Builder
	b.WriteString("[ ")
	for _, n := range names {
		if v&(1<<n.bit) != 0 {
			b.WriteString(n.name + " ")
		}
	}
	b.WriteString("]")
	return b.String()
}

func segmentString(seg *cpu.Segment) string {
	var attrs []string
	if seg.Unusable != 0 {
		attrs = append(attrs, "unusable")
	}
	if seg.L != 0 {
		attrs = append(attrs, "L")
	}
	if seg.DB != 0 {
		attrs = append(attrs, "DB")
	}
	if seg.G != 0 {
		attrs = append(attrs, "G")
	}
	if seg.Present == 0 {
		attrs = append(attrs, "not-present")
	}
	return fmt.Sprintf("%#-18x base %#x limit %#x type %#x dpl %d %s",
		seg.Selector, seg.Base, seg.Limit, seg.Typ, seg.DPL, strings.Join(attrs, " "))
}

// printReg prints one register line, with a decoding where it has one.
func (sh *shell) printReg(w io.Writer, r *replayer.Registers, name string) error {
	lname := strings.ToLower(name)
	if seg, ok := segment(r, lname); ok {
		fmt.Fprintf(w, "%-8s %s\n", lname, strings.TrimRight(segmentString(seg), " "))
		return nil
	}
	var idx int
	if n, _ := fmt.Sscanf(lname, "xmm%d", &idx); n == 1 && idx >= 0 && idx < 16 && lname == fmt.Sprintf("xmm%d", idx) {
		x := r.XMM[idx]
		fmt.Fprintf(w, "%-8s 0x", lname)
		for i := 15; i >= 0; i-- {
			fmt.Fprintf(w, "%02x", x[i])
		}
		fmt.Fprintln(w)
		return nil
	}
	if n, _ := fmt.Sscanf(lname, "st%d", &idx); n == 1 && idx >= 0 && idx < 8 && lname == fmt.Sprintf("st%d", idx) {
		x := r.ST[idx]
		fmt.Fprintf(w, "%-8s 0x", lname)
		for i := 9; i >= 0; i-- {
			fmt.Fprintf(w, "%02x", x[i])
		}
		fmt.Fprintln(w)
		return nil
	}
	v, ok := regValue(r, lname)
	if !ok {
		return fmt.Errorf("unknown register %q", name)
	}
	extra := ""
	switch canon(lname) {
	case "rip":
		if d := sh.syms.Describe(v); d != "" {
			extra = "<" + d + ">"
		}
	case "rflags":
		extra = flagsString(v)
	case "cr0":
		extra = bitsString(v, cr0Bits)
	case "cr4":
		extra = bitsString(v, cr4Bits)
	case "efer":
		extra = bitsString(v, eferBits)
	case "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15":
		extra = fmt.Sprint(int64(v))
		if lname[0] == 'e' {
			extra = fmt.Sprint(int32(v))
		}
	case "rsp", "rbp", "cr2", "cr3", "gdtr", "idtr", "fs_base", "gs_base":
		if d := sh.syms.Describe(v); d != "" {
			extra = "<" + d + ">"
		}
	}
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-8s %#-18x %s", lname, v, extra), " "))
	return nil
}

func canon(name string) string {
	if c, ok := regAliases[name]; ok {
		return c
	}
	return name
}

// printRegs prints the register file: general registers, rip, rflags,
// segments, control registers and EFER; all adds the descriptor tables and
// the FPU/SSE state.
func (sh *shell) printRegs(w io.Writer, r *replayer.Registers, all bool) {
	names := append(append([]string{}, gpNames...), "rip", "rflags")
	names = append(names, segNames...)
	names = append(names, "cr0", "cr2", "cr3", "cr4", "efer")
	if all {
		names = append(names, "cr8", "gdtr", "idtr", "fs_base", "gs_base", "fcw", "fsw", "ftw", "mxcsr")
		for i := 0; i < 8; i++ {
			names = append(names, fmt.Sprintf("st%d", i))
		}
		for i := 0; i < 16; i++ {
			names = append(names, fmt.Sprintf("xmm%d", i))
		}
	}
	for _, n := range names {
		// Every name in the list is known, so printReg cannot fail here.
		_ = sh.printReg(w, r, n)
	}
}
