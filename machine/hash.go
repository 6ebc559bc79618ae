package machine

import (
	"encoding/binary"
	"hash/crc32"
	"hash/fnv"

	"vmrr/machine/cpu"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RegHash hashes the general registers, RIP and the arithmetic and control
// flags. TF and RF are left out: the VMM's own single-stepping and
// breakpoint stepping touch them.
func RegHash(r *cpu.Regs) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, v := range RegList(r) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	return h.Sum64()
}

// RegNames names the values RegList returns, in order.
var RegNames = []string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"}

// RegList lists the registers RegHash covers, in RegNames order.
func RegList(r *cpu.Regs) []uint64 {
	return []uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP,
		r.RFLAGS &^ (cpu.FlagTF | cpu.FlagRF)}
}

// PageHash hashes one 4 KiB guest page.
func (m *Machine) PageHash(page uint64) uint32 {
	return crc32.Checksum(m.mem.b[page*4096:(page+1)*4096], castagnoli)
}

// PageHashes returns the CRC-32C of every 4 KiB page of guest RAM, with the
// ring's pages left at zero: its unread entries differ between a recording
// (old values) and a replay (values still to come) by design, and everything
// the guest takes from it lands in registers or memory elsewhere. dst is
// reused when it has the right length.
func (m *Machine) PageHashes(dst []uint32) []uint32 {
	n := len(m.mem.b) / 4096
	if len(dst) != n {
		dst = make([]uint32, n)
	}
	for p := range dst {
		if p >= RingBase/4096 && p < (RingBase+RingSize)/4096 {
			dst[p] = 0
			continue
		}
		dst[p] = crc32.Checksum(m.mem.b[p*4096:(p+1)*4096], castagnoli)
	}
	return dst
}

// HashPages folds a page hash table into one memory hash.
func HashPages(pages []uint32) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, c := range pages {
		binary.LittleEndian.PutUint32(b[:], c)
		h.Write(b[:])
	}
	return h.Sum64()
}

// MemHash hashes guest RAM but the ring (see PageHashes).
func (m *Machine) MemHash() uint64 { return HashPages(m.PageHashes(nil)) }

// StateHash hashes registers, memory and the console output so far: equal
// hashes at the end of a recording and of its replay mean the replay ended
// in the same state having printed the same thing.
func (m *Machine) StateHash() (uint64, error) {
	r, err := m.vcpu.Regs()
	if err != nil {
		return 0, err
	}
	n, crc := m.ConsoleHash()
	return RegHash(&r) ^ m.MemHash()*0x9e3779b97f4a7c15 ^ (n<<32|uint64(crc))*0xbf58476d1ce4e5b9, nil
}
