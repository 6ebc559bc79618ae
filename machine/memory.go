package machine

import (
	"encoding/binary"
	"fmt"
)

// Memory is guest RAM: one anonymous mapping installed at guest physical
// address 0 as memory slot 0.
type Memory struct {
	b []byte
	// written, if set, is told of every write through WritePhys (the soft
	// CPU drops decoded code there).
	written func(gpa uint64, n int)
}

func newMemory(size uint64) (*Memory, error) {
	b, err := allocRAM(size)
	if err != nil {
		return nil, err
	}
	return &Memory{b: b}, nil
}

func (m *Memory) free() {
	if m.b != nil {
		freeRAM(m.b)
		m.b = nil
	}
}

// Size is the RAM size in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.b)) }

// Bytes is the whole of guest RAM. Callers that keep it must not outlive the
// machine.
func (m *Memory) Bytes() []byte { return m.b }

// RangeError reports a guest physical access outside RAM.
type RangeError struct {
	Addr uint64
	Len  int
	Size uint64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("guest physical %#x+%d is outside RAM (%d MiB)", e.Addr, e.Len, e.Size>>20)
}

func (m *Memory) check(gpa uint64, n int) error {
	if gpa > uint64(len(m.b)) || uint64(n) > uint64(len(m.b))-gpa {
		return &RangeError{Addr: gpa, Len: n, Size: uint64(len(m.b))}
	}
	return nil
}

// ReadPhys copies guest physical memory at gpa into b.
func (m *Memory) ReadPhys(gpa uint64, b []byte) error {
	if err := m.check(gpa, len(b)); err != nil {
		return err
	}
	copy(b, m.b[gpa:])
	return nil
}

// WritePhys copies b into guest physical memory at gpa.
func (m *Memory) WritePhys(gpa uint64, b []byte) error {
	if err := m.check(gpa, len(b)); err != nil {
		return err
	}
	copy(m.b[gpa:], b)
	if m.written != nil {
		m.written(gpa, len(b))
	}
	return nil
}

// Uint64 reads a little-endian word (0 outside RAM).
func (m *Memory) Uint64(gpa uint64) uint64 {
	var b [8]byte
	m.ReadPhys(gpa, b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// PutUint64 writes a little-endian word (ignored outside RAM).
func (m *Memory) PutUint64(gpa, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	m.WritePhys(gpa, b[:])
}

// Uint32 reads a little-endian 32-bit word (0 outside RAM).
func (m *Memory) Uint32(gpa uint64) uint32 {
	var b [4]byte
	m.ReadPhys(gpa, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// PutUint32 writes a little-endian 32-bit word (ignored outside RAM).
func (m *Memory) PutUint32(gpa uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	m.WritePhys(gpa, b[:])
}
