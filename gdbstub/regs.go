package gdbstub

import (
	"encoding/binary"
	"fmt"
	"strings"

	"vmrr/replayer"
)

// A feature of the target description: gdb identifies the standard x86
// register sets by these names and checks the register names in them; the
// sys feature is ours, and gdb shows its registers without knowing them.
type feature struct {
	name  string
	types string // type definitions the feature's registers use
}

var features = []feature{
	{name: "org.gnu.gdb.i386.core", types: eflagsType},
	{name: "org.gnu.gdb.i386.sse", types: sseTypes},
	{name: "org.gnu.gdb.i386.segments"},
	{name: "org.vmrr.i386.sys", types: sysTypes},
}

const (
	featCore = iota
	featSSE
	featSegments
	featSys
)

// regDef is one register as gdb sees it. The order of regs is the register
// numbering: the g packet, p/P numbers and target.xml all come from it, so
// they cannot disagree.
type regDef struct {
	name    string
	bits    int
	typ     string
	group   string
	feature int
	put     func(b []byte, r *replayer.Registers) []byte
}

func u64(f func(r *replayer.Registers) uint64) func([]byte, *replayer.Registers) []byte {
	return func(b []byte, r *replayer.Registers) []byte { return binary.LittleEndian.AppendUint64(b, f(r)) }
}

func u32(f func(r *replayer.Registers) uint32) func([]byte, *replayer.Registers) []byte {
	return func(b []byte, r *replayer.Registers) []byte { return binary.LittleEndian.AppendUint32(b, f(r)) }
}

func gpr(name string, typ string, f func(r *replayer.Registers) uint64) regDef {
	return regDef{name: name, bits: 64, typ: typ, feature: featCore, put: u64(f)}
}

func seg(name string, f func(r *replayer.Registers) uint16) regDef {
	return regDef{name: name, bits: 32, typ: "int32", feature: featCore,
		put: u32(func(r *replayer.Registers) uint32 { return uint32(f(r)) })}
}

func fpuCtl(name string, f func(r *replayer.Registers) uint32) regDef {
	return regDef{name: name, bits: 32, typ: "int", group: "float", feature: featCore, put: u32(f)}
}

func sys(name, typ string, feat int, f func(r *replayer.Registers) uint64) regDef {
	return regDef{name: name, bits: 64, typ: typ, feature: feat, put: u64(f)}
}

func zero32(*replayer.Registers) uint32 { return 0 }

// regs lists gdb's amd64 register numbering: core 0-39 (gdb's
// 64bit-core.xml), sse 40-56 (64bit-sse.xml), fs_base/gs_base (segments),
// then vmrr's control registers.
var regs = func() []regDef {
	rs := []regDef{
		gpr("rax", "int64", func(r *replayer.Registers) uint64 { return r.RAX }),
		gpr("rbx", "int64", func(r *replayer.Registers) uint64 { return r.RBX }),
		gpr("rcx", "int64", func(r *replayer.Registers) uint64 { return r.RCX }),
		gpr("rdx", "int64", func(r *replayer.Registers) uint64 { return r.RDX }),
		gpr("rsi", "int64", func(r *replayer.Registers) uint64 { return r.RSI }),
		gpr("rdi", "int64", func(r *replayer.Registers) uint64 { return r.RDI }),
		gpr("rbp", "data_ptr", func(r *replayer.Registers) uint64 { return r.RBP }),
		gpr("rsp", "data_ptr", func(r *replayer.Registers) uint64 { return r.RSP }),
		gpr("r8", "int64", func(r *replayer.Registers) uint64 { return r.R8 }),
		gpr("r9", "int64", func(r *replayer.Registers) uint64 { return r.R9 }),
		gpr("r10", "int64", func(r *replayer.Registers) uint64 { return r.R10 }),
		gpr("r11", "int64", func(r *replayer.Registers) uint64 { return r.R11 }),
		gpr("r12", "int64", func(r *replayer.Registers) uint64 { return r.R12 }),
		gpr("r13", "int64", func(r *replayer.Registers) uint64 { return r.R13 }),
		gpr("r14", "int64", func(r *replayer.Registers) uint64 { return r.R14 }),
		gpr("r15", "int64", func(r *replayer.Registers) uint64 { return r.R15 }),
		gpr("rip", "code_ptr", func(r *replayer.Registers) uint64 { return r.RIP }),
		{name: "eflags", bits: 32, typ: "i386_eflags", feature: featCore,
			put: u32(func(r *replayer.Registers) uint32 { return uint32(r.RFLAGS) })},
		seg("cs", func(r *replayer.Registers) uint16 { return r.Sregs.CS.Selector }),
		seg("ss", func(r *replayer.Registers) uint16 { return r.Sregs.SS.Selector }),
		seg("ds", func(r *replayer.Registers) uint16 { return r.Sregs.DS.Selector }),
		seg("es", func(r *replayer.Registers) uint16 { return r.Sregs.ES.Selector }),
		seg("fs", func(r *replayer.Registers) uint16 { return r.Sregs.FS.Selector }),
		seg("gs", func(r *replayer.Registers) uint16 { return r.Sregs.GS.Selector }),
	}
	for i := 0; i < 8; i++ {
		rs = append(rs, regDef{name: fmt.Sprintf("st%d", i), bits: 80, typ: "i387_ext", feature: featCore,
			put: func(b []byte, r *replayer.Registers) []byte { return append(b, r.ST[i][:]...) }})
	}
	rs = append(rs,
		fpuCtl("fctrl", func(r *replayer.Registers) uint32 { return uint32(r.FCW) }),
		fpuCtl("fstat", func(r *replayer.Registers) uint32 { return uint32(r.FSW) }),
		fpuCtl("ftag", func(r *replayer.Registers) uint32 { return uint32(fullTagWord(r)) }),
		fpuCtl("fiseg", zero32),
		fpuCtl("fioff", zero32),
		fpuCtl("foseg", zero32),
		fpuCtl("fooff", zero32),
		fpuCtl("fop", zero32),
	)
	for i := 0; i < 16; i++ {
		rs = append(rs, regDef{name: fmt.Sprintf("xmm%d", i), bits: 128, typ: "vec128", feature: featSSE,
			put: func(b []byte, r *replayer.Registers) []byte { return append(b, r.XMM[i][:]...) }})
	}
	rs = append(rs,
		regDef{name: "mxcsr", bits: 32, typ: "i386_mxcsr", group: "vector", feature: featSSE,
			put: u32(func(r *replayer.Registers) uint32 { return r.MXCSR })},
		sys("fs_base", "int", featSegments, func(r *replayer.Registers) uint64 { return r.Sregs.FS.Base }),
		sys("gs_base", "int", featSegments, func(r *replayer.Registers) uint64 { return r.Sregs.GS.Base }),
		sys("cr0", "vmrr_cr0", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.CR0 }),
		sys("cr2", "int", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.CR2 }),
		sys("cr3", "int", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.CR3 }),
		sys("cr4", "vmrr_cr4", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.CR4 }),
		sys("cr8", "int", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.CR8 }),
		sys("efer", "vmrr_efer", featSys, func(r *replayer.Registers) uint64 { return r.Sregs.EFER }),
	)
	return rs
}()

// Register numbers the stop replies expedite, so gdb can show the frame
// without a g packet.
const (
	regRBP = 6
	regRSP = 7
	regRIP = 16
)

// fullTagWord returns the x87 tag word in gdb's full form (two bits a
// register). KVM, like FXSAVE, keeps the abridged form (one valid bit a
// physical register); a value above 0xff can only be the full form and is
// passed through. The abridged form is expanded from the register contents
// as the processor's FSTENV would (the rules of gdb's i387_supply_fxsave).
func fullTagWord(r *replayer.Registers) uint16 {
	if r.FTW > 0xff {
		return r.FTW
	}
	top := int(r.FSW>>11) & 7
	var tw uint16
	for phys := 7; phys >= 0; phys-- {
		tag := uint16(3) // empty
		if r.FTW&(1<<phys) != 0 {
			st := r.ST[(phys-top)&7]
			exp := int(st[9]&0x7f)<<8 | int(st[8])
			integer := st[7]&0x80 != 0
			fracZero := binary.LittleEndian.Uint64(st[:8])&(1<<63-1) == 0
			switch {
			case exp == 0x7fff:
				tag = 2
			case exp == 0 && fracZero && !integer:
				tag = 1
			case exp == 0:
				tag = 2
			case integer:
				tag = 0
			default:
				tag = 2
			}
		}
		tw |= tag << (2 * phys)
	}
	return tw
}

// registerBytes is the g packet's content: every register in number order,
// little-endian.
func registerBytes(r *replayer.Registers) []byte {
	b := make([]byte, 0, 640)
	for _, d := range regs {
		b = d.put(b, r)
	}
	return b
}

// registerN is one register's bytes, for p.
func registerN(r *replayer.Registers, n int) ([]byte, bool) {
	if n < 0 || n >= len(regs) {
		return nil, false
	}
	return regs[n].put(nil, r), true
}

// targetXML is the target description served through
// qXfer:features:read:target.xml.
var targetXML = func() string {
	var sb strings.Builder
	sb.WriteString(`<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>i386:x86-64</architecture>
`)
	for fi, f := range features {
		fmt.Fprintf(&sb, "  <feature name=%q>\n", f.name)
		sb.WriteString(f.types)
		for n, d := range regs {
			if d.feature != fi {
				continue
			}
			fmt.Fprintf(&sb, "    <reg name=%q bitsize=\"%d\" type=%q regnum=\"%d\"", d.name, d.bits, d.typ, n)
			if d.group != "" {
				fmt.Fprintf(&sb, " group=%q", d.group)
			}
			sb.WriteString("/>\n")
		}
		sb.WriteString("  </feature>\n")
	}
	sb.WriteString("</target>\n")
	return sb.String()
}()

// flagsType renders a <flags> type with one-bit fields.
func flagsType(id string, size int, bits ...any) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "    <flags id=%q size=\"%d\">\n", id, size)
	for i := 0; i+1 < len(bits); i += 2 {
		fmt.Fprintf(&sb, "      <field name=%q start=\"%d\" end=\"%d\"/>\n", bits[i], bits[i+1], bits[i+1])
	}
	sb.WriteString("    </flags>\n")
	return sb.String()
}

var eflagsType = flagsType("i386_eflags", 4,
	"CF", 0, "", 1, "PF", 2, "AF", 4, "ZF", 6, "SF", 7, "TF", 8, "IF", 9, "DF", 10, "OF", 11,
	"NT", 14, "RF", 16, "VM", 17, "AC", 18, "VIF", 19, "VIP", 20, "ID", 21)

var sseTypes = `    <vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v2d" type="ieee_double" count="2"/>
    <vector id="v16i8" type="int8" count="16"/>
    <vector id="v8i16" type="int16" count="8"/>
    <vector id="v4i32" type="int32" count="4"/>
    <vector id="v2i64" type="int64" count="2"/>
    <union id="vec128">
      <field name="v4_float" type="v4f"/>
      <field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/>
      <field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/>
      <field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/>
    </union>
` + flagsType("i386_mxcsr", 4,
	"IE", 0, "DE", 1, "ZE", 2, "OE", 3, "UE", 4, "PE", 5, "DAZ", 6,
	"IM", 7, "DM", 8, "ZM", 9, "OM", 10, "UM", 11, "PM", 12, "FZ", 15)

var sysTypes = flagsType("vmrr_cr0", 8,
	"PE", 0, "MP", 1, "EM", 2, "TS", 3, "ET", 4, "NE", 5, "WP", 16, "AM", 18,
	"NW", 29, "CD", 30, "PG", 31) +
	flagsType("vmrr_cr4", 8,
		"VME", 0, "PVI", 1, "TSD", 2, "DE", 3, "PSE", 4, "PAE", 5, "MCE", 6, "PGE", 7,
		"PCE", 8, "OSFXSR", 9, "OSXMMEXCPT", 10, "UMIP", 11, "LA57", 12, "VMXE", 13,
		"SMXE", 14, "FSGSBASE", 16, "PCIDE", 17, "OSXSAVE", 18, "SMEP", 20, "SMAP", 21, "PKE", 22) +
	flagsType("vmrr_efer", 8,
		"SCE", 0, "LME", 8, "LMA", 10, "NXE", 11, "SVME", 12, "LMSLE", 13, "FFXSR", 14, "TCE", 15)
