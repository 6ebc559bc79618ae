//go:build linux

package machine

// FlushTLBReadOnly is flushTLBReadOnly for the tests outside the package.
var FlushTLBReadOnly = flushTLBReadOnly
