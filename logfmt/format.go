// Package logfmt is vmrr's recording format: a header that says what ran
// and on what machine, then a stream of snappy-compressed, CRC-32C
// checksummed frames of delta-encoded events, then (at a clean close) an
// index of the frames and an end record.
//
// The format is specified in docs/logformat.md. Its design follows from how
// a recording is used: it is kept as a CI artifact and replayed months
// later, so every byte is checksummed and versioned; the recorder can be
// killed at any moment, so a log cut at any byte reads up to its last
// complete frame; logs can be long, so the writer holds one frame at a time
// and the reader seeks by frame headers instead of decoding from the start.
package logfmt

import (
	"encoding/binary"
	"hash/crc32"

	"vmrr/position"
)

// Magic starts every log file.
const Magic = "VMRRLOG\x00"

// Version is the format version this package writes and the only one it
// reads.
const Version = 1

// Record layouts (docs/logformat.md). All integers are little-endian.
const (
	preludeSize     = 12 // magic, format version
	recHeaderSize   = 16 // tag, body length, body CRC, header CRC
	frameHeaderSize = 56 // see the frame header offsets below
	trailerSize     = 16 // footer offset, CRC, trailer magic

	// Frame header field offsets.
	fhTag        = 0
	fhCompLen    = 4
	fhRawLen     = 8
	fhEvents     = 12
	fhSeq        = 16
	fhFirst      = 24
	fhExit       = 32
	fhInsn       = 40
	fhPayloadCRC = 48
	fhHeaderCRC  = 52

	// MaxFrameBytes bounds a frame's uncompressed payload: the writer seals
	// frames well before it, and the reader refuses larger ones before
	// allocating for them.
	MaxFrameBytes = 16 << 20
)

var (
	tagHeader    = [4]byte{'H', 'E', 'A', 'D'}
	tagFrame     = [4]byte{'F', 'R', 'A', 'M'}
	tagFooter    = [4]byte{'F', 'O', 'O', 'T'}
	trailerMagic = [4]byte{'V', 'I', 'D', 'X'}
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// appendRecord appends a header or footer record: a 16-byte record header
// whose own CRC protects the length (so a damaged length is reported as
// damage, not as a torn file), then the body.
func appendRecord(b []byte, tag [4]byte, body []byte) []byte {
	start := len(b)
	b = append(b, tag[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, crc(body))
	b = binary.LittleEndian.AppendUint32(b, crc(b[start:start+12]))
	return append(b, body...)
}

// frameInfo is what a frame header says, and where the frame is.
type frameInfo struct {
	off     int64 // file offset of the frame record
	size    int64 // record size, header included
	seq     uint64
	first   uint64 // index of the frame's first event
	pos     position.Pos
	events  uint32
	rawLen  uint32
	compLen uint32
}

func putFrameHeader(h []byte, f *frameInfo, payload []byte) {
	copy(h[fhTag:], tagFrame[:])
	le := binary.LittleEndian
	le.PutUint32(h[fhCompLen:], f.compLen)
	le.PutUint32(h[fhRawLen:], f.rawLen)
	le.PutUint32(h[fhEvents:], f.events)
	le.PutUint64(h[fhSeq:], f.seq)
	le.PutUint64(h[fhFirst:], f.first)
	le.PutUint64(h[fhExit:], f.pos.Exit)
	le.PutUint64(h[fhInsn:], f.pos.Insn)
	le.PutUint32(h[fhPayloadCRC:], crc(payload))
	le.PutUint32(h[fhHeaderCRC:], crc(h[:fhHeaderCRC]))
}

// parseFrameHeader reads a frame header whose tag is tagFrame; ok is false
// if its CRC does not match.
func parseFrameHeader(h []byte, off int64) (f frameInfo, payloadCRC uint32, ok bool) {
	le := binary.LittleEndian
	if le.Uint32(h[fhHeaderCRC:]) != crc(h[:fhHeaderCRC]) {
		return f, 0, false
	}
	f = frameInfo{
		off:     off,
		compLen: le.Uint32(h[fhCompLen:]),
		rawLen:  le.Uint32(h[fhRawLen:]),
		events:  le.Uint32(h[fhEvents:]),
		seq:     le.Uint64(h[fhSeq:]),
		first:   le.Uint64(h[fhFirst:]),
		pos:     position.Pos{Exit: le.Uint64(h[fhExit:]), Insn: le.Uint64(h[fhInsn:])},
	}
	f.size = frameHeaderSize + int64(f.compLen)
	return f, le.Uint32(h[fhPayloadCRC:]), true
}

// appendFooterBody encodes the frame index and the end record.
func appendFooterBody(b []byte, frames []frameInfo, end *EndRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(frames)))
	var prev position.Pos
	for _, f := range frames {
		b = binary.AppendUvarint(b, uint64(f.size))
		b = binary.AppendUvarint(b, uint64(f.events))
		b = binary.AppendUvarint(b, f.pos.Exit-prev.Exit)
		if f.pos.Exit == prev.Exit {
			b = binary.AppendUvarint(b, f.pos.Insn-prev.Insn)
		} else {
			b = binary.AppendUvarint(b, f.pos.Insn)
		}
		prev = f.pos
	}
	b = appendEnd(b, end)
	b = binary.AppendUvarint(b, end.Pos.Exit)
	return binary.AppendUvarint(b, end.Pos.Insn)
}

func appendTrailer(b []byte, footerOff int64) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint64(b, uint64(footerOff))
	b = binary.LittleEndian.AppendUint32(b, crc(b[start:]))
	return append(b, trailerMagic[:]...)
}
