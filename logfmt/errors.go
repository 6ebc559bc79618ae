package logfmt

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLog is returned by Open for a file that does not start with
	// Magic.
	ErrNotLog = errors.New("not a vmrr log")
	// ErrUnsupportedVersion matches (errors.Is) the *VersionError returned
	// for a log of a format version this vmrr does not read.
	ErrUnsupportedVersion = errors.New("unsupported log format version")
)

// VersionError is returned for a log whose format version this vmrr does
// not read. It matches ErrUnsupportedVersion.
type VersionError struct{ Version uint32 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("log format version %d is not supported by this vmrr (supports %d)", e.Version, Version)
}

// Is makes errors.Is(err, ErrUnsupportedVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }

// TruncatedError says the log stops in the middle: the recording was killed
// before Close. Every event before it was read intact.
type TruncatedError struct {
	Events uint64 // events read intact: the log is good up to event Events-1
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("log ends early after event %d (recording was interrupted)", e.Events)
}

// ChecksumError reports a record whose CRC-32C does not match: the file was
// damaged after it was written.
type ChecksumError struct {
	Frame  uint64 // the frame's sequence number
	Offset int64  // file offset of the record
	// Record is "header" or "footer" for those records, "" for a frame.
	Record string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("logfmt: %s at offset %d: checksum mismatch", e.where(), e.Offset)
}

func (e *ChecksumError) where() string {
	if e.Record != "" {
		return e.Record
	}
	return fmt.Sprintf("frame %d", e.Frame)
}

// CorruptError reports a record whose checksum is right but whose contents
// make no sense: a writer bug or a deliberately crafted file.
type CorruptError struct {
	Frame  uint64 // the frame's sequence number
	Offset int64  // file offset of the record
	Record string // "header" or "footer", "" for a frame
	Reason string
}

func (e *CorruptError) Error() string {
	w := (&ChecksumError{Frame: e.Frame, Record: e.Record}).where()
	return fmt.Sprintf("logfmt: %s at offset %d: corrupt: %s", w, e.Offset, e.Reason)
}

// UnknownKindError reports an event kind this version of vmrr does not
// know, most likely from a log written by a newer vmrr. Events are not
// skippable (their length depends on their kind), so reading stops there.
type UnknownKindError struct {
	Kind  uint8
	Frame uint64
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("logfmt: frame %d: unknown event kind %d (this vmrr reads kinds 1-%d; was the log written by a newer vmrr?)",
		e.Frame, e.Kind, maxKind)
}

// ImageMismatchError refuses to replay a log against an image other than
// the one it was recorded from.
type ImageMismatchError struct {
	Path      string   // the image path the log names
	Want, Got [32]byte // the recorded image's SHA-256, and the given one's
}

func (e *ImageMismatchError) Error() string {
	path := e.Path
	if path == "" {
		path = "an image"
	}
	return fmt.Sprintf("log was recorded from %s (sha256 %x…), this image is sha256 %x…", path, e.Want[:6], e.Got[:6])
}
