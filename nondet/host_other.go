//go:build !amd64

package nondet

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// On hosts without the x86 instructions, a recording's values come from
// the nearest equivalents: a nanosecond clock that counts like a 1 GHz TSC
// and the system's random numbers. The guest cannot tell: it only ever
// sees logged values.

var hostEpoch = time.Now()

func hostRDTSC() uint64 { return uint64(time.Since(hostEpoch).Nanoseconds()) }

func hostRDRAND() (uint64, bool) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

func hostRDSEED() (uint64, bool) { return hostRDRAND() }
