package x86emu

// fullCPUID is a CPUID table advertising every feature x86emu checks, so
// that tests run the instructions; tests of absent features delete bits.
func fullCPUID() map[[2]uint32][4]uint32 {
	return map[[2]uint32][4]uint32{
		{1, 0}: {0, 0, 1<<30 | 1<<23 | 1<<13 | 1<<17 | 1<<26, 0},
		{7, 0}: {0, 1<<18 | 1<<3 | 1<<0 | 1<<7 | 1<<20, 1<<22 | 1<<2 | 1<<16 | 1<<3, 0},
		{0x80000001, 0}: {0, 0, 1 << 5, 1<<27 | 1<<11 | 1<<20 | 1<<29},
		{0x80000008, 0}: {0x3028, 0, 0, 0},
	}
}

// withoutFeature clears one CPUID feature bit.
func withoutFeature(f *fakeEnv, ft feat) {
	r := f.cpuid[[2]uint32{ft.leaf, ft.sub}]
	r[ft.reg] &^= 1 << ft.bit
	f.cpuid[[2]uint32{ft.leaf, ft.sub}] = r
}
