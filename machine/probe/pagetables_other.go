//go:build !linux

package probe

import "vmrr/machine"

// ReadOnlyPageTables: there is no KVM here.
func ReadOnlyPageTables() error { return machine.ErrNoKVM }
