//go:build unix && !linux

package machine

const mapNoReserve = 0

const madvHugePage = -1 // none
