package x86emu

import (
	"fmt"
	"testing"
)

// FuzzFast runs fuzzer bytes as code through the fast path (falling back
// to Step as the soft CPU does) and through Step alone, from the same
// state: the two must never panic and must agree, instruction for
// instruction, on the CPU and on memory.
//
//	byte 0: mode; byte 1: budget per Run; bytes 2-9: a register seed;
//	the rest: code at codeBase.
func FuzzFast(f *testing.F) {
	f.Add([]byte{0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x48, 0x01, 0xd8, 0x48, 0x31, 0xc9, 0xeb, 0xf8})     // add rax,rbx; xor rcx,rcx; jmp back
	f.Add([]byte{2, 3, 9, 9, 9, 9, 9, 9, 9, 9, 0x89, 0x03, 0x8b, 0x0b, 0x40, 0x75, 0xf9, 0xf4})     // mov [ebx],eax; mov ecx,[ebx]; inc eax; jnz; hlt
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x0b})                                         // ud2 at CPL3
	f.Add([]byte{0, 16, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xc6, 0x05, 0x01, 0, 0, 0, 7, 0xb8, 1, 0, 0, 0}) // a store into the next instruction
	modes := []string{"long64", "long64u", "prot32", "prot32u"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 10 {
			return
		}
		mode := modes[int(data[0])%len(modes)]
		budget := uint64(data[1]%32) + 1
		fs, cs := newState(t, mode)
		installHandlers(fs, cs)
		code := data[10:]
		if len(code) > 4096 {
			code = code[:4096]
		}
		fs.put(codeBase, code...)
		for i := range 8 {
			v := uint64(data[2+i]) * 0x0101010101
			if mode == "prot32" || mode == "prot32u" {
				v &= 0xffffffff
			}
			*(&emu{c: cs}).gpr(i) = v
		}
		fs.values = []uint64{1, 2, 3, 4}
		fe := fastTwin(fs)
		fq := fe.fakeEnv
		cf := *cs
		for step := 0; step < 200; {
			n, _, errS := lockstep(t, fmt.Sprintf("%s step %d", mode, step), fe, fs, &cf, cs, budget)
			step += int(n)
			if cf != *cs {
				t.Fatalf("%s step %d: CPU differs:\nStep: %+v\nFast: %+v", mode, step, *cs, cf)
			}
			if i := firstDiff(fs.ram, fq.ram); i >= 0 {
				t.Fatalf("%s step %d: memory differs at %#x", mode, step, i)
			}
			if errS != nil {
				return
			}
		}
	})
}
