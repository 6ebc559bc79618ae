package x86emu

import (
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"vmrr/machine/cpu"
)

// BenchmarkStep measures one emulated instruction in Go (fetch, decode,
// execute, commit), without the KVM exit around it. The baseline, measured
// in the same run, is x86asm.Decode of the same bytes: "x-decode" is how
// many decodes one Step costs. "uncached" runs without the decode cache, as
// for an instruction met for the first time.
func BenchmarkStep(b *testing.B) {
	for _, bc := range []struct {
		name     string
		mode     string
		code     []byte
		setup    func(*fakeEnv, *CPU)
		uncached bool
	}{
		{"IRETD", "prot32", []byte{0xcf}, onStack(4, codeBase, selCode32, flagFixed|0x200), false},
		{"IRETD/uncached", "prot32", []byte{0xcf}, onStack(4, codeBase, selCode32, flagFixed|0x200), true},
		{"IRETD-to-CPL3", "prot32", []byte{0xcf}, onStack(4, codeBase, selCode32U, flagFixed, userStack, selData32U), false},
		{"IRETQ", "long64", []byte{0x48, 0xcf}, onStack(8, codeBase, selCode64, flagFixed, kernStack, 0), false},
		{"INT", "prot32", []byte{0xcd, 0x80}, func(f *fakeEnv, _ *CPU) { f.gate32(0x80, 0xe, selCode32, handler, 0, true) }, false},
		{"POPCNT", "prot32", []byte{0xf3, 0x0f, 0xb8, 0xc1}, nil, false},
		{"POPCNT/uncached", "prot32", []byte{0xf3, 0x0f, 0xb8, 0xc1}, nil, true},
		{"RDRAND", "prot32", []byte{0x0f, 0xc7, 0xf0}, nil, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			setDecodeCache(!bc.uncached)
			defer setDecodeCache(true)
			f, tmpl := newState(b, bc.mode)
			f.put(codeBase, bc.code...)
			if bc.setup != nil {
				bc.setup(f, tmpl)
			}
			env := &benchEnv{fakeEnv: f}
			bits := 32
			if bc.mode == "long64" {
				bits = 64
			}
			start := time.Now()
			for range b.N {
				x86asm.Decode(bc.code, bits)
			}
			decode := time.Since(start)
			b.ResetTimer()
			start = time.Now()
			var c CPU
			for range b.N {
				c = *tmpl
				if _, err := Step(&c, env); err != nil {
					b.Fatal(err)
				}
			}
			step := time.Since(start)
			b.StopTimer()
			if decode > 0 {
				b.ReportMetric(float64(step)/float64(decode), "x-decode")
			}
		})
	}
}

// benchEnv never runs out of non-deterministic values.
type benchEnv struct{ *fakeEnv }

func (benchEnv) NonDet(cpu.NonDet) (uint64, error) { return 0x1234, nil }

func setDecodeCache(on bool) {
	decodeCache.Lock()
	defer decodeCache.Unlock()
	decodeCache.off = !on
	decodeCache.m = nil
}
