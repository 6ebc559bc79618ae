package pagewalk

import "testing"

var sinkPhys uint64

// BenchmarkTranslate translates an address on a 4 KiB page in long mode. Its baseline, measured
// first in the same run, is the floor any walk pays: reading the four 8-byte entries of a
// 4-level walk through the Memory interface. The translate case reports x-baseline, its cost as
// a multiple of that.
func BenchmarkTranslate(b *testing.B) {
	mem := longRAM()
	var baseNs float64
	b.Run("baseline", func(b *testing.B) {
		var m Memory = mem
		entries := [4]uint64{lPML4, lPDPT, lPD, lPT + 5*8}
		buf := make([]byte, 8)
		for b.Loop() {
			for _, e := range entries {
				if err := m.ReadPhys(e, buf); err != nil {
					b.Fatal(err)
				}
			}
			sinkPhys += uint64(buf[0])
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("translate", func(b *testing.B) {
		var m Memory = mem
		flags := Flags{WP: true, NXE: true}
		b.ReportAllocs()
		for b.Loop() {
			w, err := Translate(m, ModeLong4, lPML4, 0x5123, Access{Write: true}, flags)
			if err != nil {
				b.Fatal(err)
			}
			sinkPhys += w.Phys
		}
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x-baseline")
		}
	})
}
