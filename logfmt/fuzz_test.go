package logfmt

import "testing"

// FuzzReader feeds arbitrary bytes to the reader: it must return events or
// a clean error, never panic, hang or allocate without bound. Each input is
// read as it is and again with its checksums made to match, so mutations
// reach the header, footer and event decoders behind the checksums. The
// seeds in testdata/fuzz/FuzzReader are small valid, stripped and torn
// logs (TestSeedCorpus keeps them current).
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, data)
		exercise(t, fixCRCs(data))
	})
}
