package nondet

// The host's own instructions (host_amd64.s).
func hostRDTSC() uint64
func hostRDRAND() (v uint64, ok bool)
func hostRDSEED() (v uint64, ok bool)
