//go:build !unix

package machine

// allocRAM allocates guest RAM on the Go heap where there is no mmap.
func allocRAM(size uint64) ([]byte, error) { return make([]byte, size), nil }

func freeRAM([]byte) {}
