package x86emu

import (
	"encoding/binary"
	"errors"
	"testing"

	"vmrr/machine/cpu"
)

// fuzzReader hands out the fuzzer's bytes, then zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) u64(n int) uint64 {
	var buf [8]byte
	for i := range n {
		buf[i] = r.byte()
	}
	return binary.LittleEndian.Uint64(buf[:])
}

var fuzzModes = [...]string{"real", "prot16", "prot32", "prot32u", "long64", "long64u", "compat", "compatu"}

// fuzzState builds a machine from fuzz input: a mode, the instruction
// bytes, then a list of mutations of registers, tables and memory.
//
//	byte 0: mode; byte 1: where the code sits (bit 0: 6 bytes before a page
//	end); bytes 2-16: code; byte 17: mutation count; then mutations.
func fuzzState(t testing.TB, data []byte) (*fakeEnv, *CPU) {
	r := &fuzzReader{data}
	f, c := newState(t, fuzzModes[int(r.byte())%len(fuzzModes)])
	installHandlers(f, c)
	f.values = []uint64{0x1122334455667788, 42, 7}
	c.TSCAux = 3
	at := uint64(codeBase)
	if r.byte()&1 != 0 {
		at = codeBase + 0xffa
		c.Regs.RIP += 0xffa
	}
	for i := range 15 {
		f.ram[at+uint64(i)] = r.byte()
	}
	segs := []*cpu.Segment{&c.Sregs.CS, &c.Sregs.DS, &c.Sregs.ES, &c.Sregs.FS, &c.Sregs.GS, &c.Sregs.SS, &c.Sregs.TR, &c.Sregs.LDT}
	for n := int(r.byte()) % 16; n > 0; n-- {
		switch r.byte() % 16 {
		case 0:
			c.Regs.RSP = r.u64(8)
		case 1:
			c.Regs.RSP = kernStack - uint64(r.byte())
		case 2:
			c.Regs.RFLAGS = r.u64(4)
		case 3:
			c.Sregs.IDT.Limit = uint16(r.u64(2))
		case 4:
			f.put64(idtBase+uint64(r.byte())*8, r.u64(8))
		case 5:
			sp := c.Sregs.SS.Base + c.Regs.RSP&0xffffff + uint64(r.byte()%64)
			if sp < ramSize-8 {
				f.put64(sp, r.u64(8))
			}
		case 6:
			f.put64(gdtBase+uint64(r.byte()%16)*8, r.u64(8))
		case 7:
			s := segs[int(r.byte())%len(segs)]
			switch r.byte() % 8 {
			case 0:
				s.DPL = r.byte() & 3
			case 1:
				s.Typ = r.byte() & 15
			case 2:
				s.DB ^= 1
			case 3:
				s.L ^= 1
			case 4:
				s.Unusable ^= 1
			case 5:
				s.Present ^= 1
			case 6:
				s.Limit = uint32(r.u64(4))
			default:
				s.Base = r.u64(8)
			}
		case 8:
			c.Sregs.CR0 ^= 1 << (r.byte() % 32)
		case 9:
			c.Sregs.EFER ^= 1 << (r.byte() % 12)
		case 10:
			c.Sregs.CR4 ^= 1 << (r.byte() % 24)
		case 11:
			f.unmap(r.u64(2) % 0x200 << 12)
		case 12:
			*(&emu{c: c}).gpr(int(r.byte())) = r.u64(8)
		case 13:
			c.Regs.RIP = r.u64(8)
		case 14:
			c.Sregs.GDT.Limit = uint16(r.u64(2))
		default:
			f.put64(tssBase+uint64(r.byte()%0x68), r.u64(8))
		}
	}
	return f, c
}

// FuzzStep runs up to three instructions from a fuzzed machine state: Step
// must not panic, must return, and must leave a consistent state.
func FuzzStep(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, c := fuzzState(t, data)
		for range 3 {
			before := *c
			res, err := Step(c, env)
			if err != nil {
				after := *c
				after.Sregs.CR2 = before.Sregs.CR2 // a #PF before a triple fault sets it
				if after != before {
					t.Fatalf("Step failed (%v) but changed the cpu", err)
				}
				var u *UnsupportedError
				if errors.As(err, &u) && u.Error() == "" {
					t.Fatal("empty error")
				}
				return
			}
			if c.Regs.RFLAGS&flagFixed == 0 {
				t.Fatalf("%s: RFLAGS bit 1 clear", res.Inst)
			}
			if res.Fault == nil && res.Len == 0 {
				t.Fatalf("no fault and no instruction")
			}
		}
	})
}

// fuzzSeeds are the instructions x86emu exists for, in every mode.
var fuzzSeeds = func() [][]byte {
	codes := [][]byte{
		{0xcf}, {0x66, 0xcf}, {0x48, 0xcf}, {0xcd, 0x80}, {0xcc}, {0xce}, {0xf1}, {0x0f, 0x0b},
		{0xf3, 0x0f, 0xb8, 0xc1}, {0xf3, 0x0f, 0xb8, 0x04, 0x24}, {0xf3, 0x0f, 0xb8, 0x05, 0x10, 0, 0, 0},
		{0xf3, 0x0f, 0xbd, 0xc1}, {0xf3, 0x48, 0x0f, 0xbc, 0xc1}, {0x0f, 0x31}, {0x0f, 0x01, 0xf9},
		{0x0f, 0xc7, 0xf0}, {0x66, 0x0f, 0xc7, 0xf3}, {0x49, 0x0f, 0xc7, 0xf9}, {0xf3, 0x0f, 0xc7, 0xf8},
		{0xc4, 0xe2, 0x79, 0x18, 0x00},
	}
	var seeds [][]byte
	for m := range fuzzModes {
		for i, code := range codes {
			s := []byte{byte(m), byte(i % 2)}
			var c [15]byte
			copy(c[:], code)
			s = append(s, c[:]...)
			// A few mutations: an IRET frame on the stack, a DPL3 gate.
			s = append(s, 2, 5, 0, 0x00, 0x01, 0x04, 0, 0x08, 0, 0, 0, 4, 0x80, 0, 0, 8, 0, 0, 0xee, 5, 0)
			seeds = append(seeds, s)
		}
	}
	return seeds
}()
