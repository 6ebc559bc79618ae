package logfmt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang/snappy"

	"vmrr/position"
)

// Default frame bounds: a frame is sealed at about 64 KiB of encoded events,
// or one second after its first event, whichever comes first.
const (
	DefaultFrameBytes    = 64 << 10
	DefaultFlushInterval = time.Second
)

// WriterOptions tunes a Writer. The zero value means the defaults.
type WriterOptions struct {
	// FrameBytes seals a frame once its encoded events reach this size
	// (0: DefaultFrameBytes; at most MaxFrameBytes/2).
	FrameBytes int
	// FlushInterval seals a frame once this long has passed since its
	// first event, checked on Append (0: DefaultFlushInterval; negative:
	// never). It bounds how much a killed recording loses while events
	// keep coming; a recorder that may go idle should call Flush.
	FlushInterval time.Duration
	// Now is the clock for FlushInterval (nil: time.Now).
	Now func() time.Time
}

// Writer writes a log. It buffers one frame of events, so its memory is
// one frame plus one index entry per frame written. A Writer is not safe
// for concurrent use.
type Writer struct {
	w     io.Writer
	file  *os.File // owned: Close closes it (Create)
	opt   WriterOptions
	off   int64 // bytes written so far
	err   error // sticky: after a failed write the log is left as it is
	done  bool
	codec codec

	raw        []byte // the open frame's encoded events
	out        []byte // frame header + compressed payload
	cur        frameInfo
	frameStart time.Time
	last       position.Pos // position of the last event appended
	events     uint64
	index      []frameInfo
}

// Create creates (or truncates) the file at path and writes the header.
// Close fsyncs and closes the file.
func Create(path string, h *Header, opt WriterOptions) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logfmt: %w", err)
	}
	w, err := NewWriter(f, h, opt)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.file = f
	return w, nil
}

// NewWriter writes the magic, version and header to w at once, so the
// header is readable even if no frame is ever completed. If w has a
// Sync() error method (an *os.File), Close calls it; NewWriter never closes
// w.
func NewWriter(w io.Writer, h *Header, opt WriterOptions) (*Writer, error) {
	if h == nil {
		return nil, errors.New("logfmt: no header")
	}
	if h.FormatVersion != 0 && h.FormatVersion != Version {
		return nil, fmt.Errorf("logfmt: cannot write format version %d (this vmrr writes %d)", h.FormatVersion, Version)
	}
	switch {
	case opt.FrameBytes < 0 || opt.FrameBytes > MaxFrameBytes/2:
		return nil, fmt.Errorf("logfmt: frame size %d is outside 0..%d", opt.FrameBytes, MaxFrameBytes/2)
	case opt.FrameBytes == 0:
		opt.FrameBytes = DefaultFrameBytes
	}
	if opt.FlushInterval == 0 {
		opt.FlushInterval = DefaultFlushInterval
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	body, err := encodeHeader(h)
	if err != nil {
		return nil, fmt.Errorf("logfmt: header: %w", err)
	}
	if uint64(len(body)) > 0xffffffff {
		return nil, fmt.Errorf("logfmt: header is %d bytes, over 4 GiB", len(body))
	}
	b := append([]byte(Magic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[len(Magic):], Version)
	b = appendRecord(b, tagHeader, body)
	wr := &Writer{w: w, opt: opt, raw: make([]byte, 0, opt.FrameBytes+opt.FrameBytes/8)}
	if err := wr.write(b); err != nil {
		return nil, err
	}
	return wr, nil
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("logfmt: write at offset %d: %w", w.off, err)
		return w.err
	}
	return nil
}

// Events is the number of events appended so far (the end event written by
// Close is not counted).
func (w *Writer) Events() uint64 { return w.events }

// Append adds an event to the open frame. It seals and writes the frame when
// the frame reaches FrameBytes or FlushInterval has passed since its first
// event. Positions must not go backwards; KindEnd is written by Close.
func (w *Writer) Append(e *Event) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("logfmt: append after close")
	}
	if e.Kind == KindEnd {
		return fmt.Errorf("logfmt: event %d: the end event is written by Close", w.events)
	}
	return w.append(e)
}

func (w *Writer) append(e *Event) error {
	if err := checkEvent(e); err != nil {
		return fmt.Errorf("logfmt: event %d: %w", w.events, err)
	}
	if e.Pos.Less(w.last) {
		return fmt.Errorf("logfmt: event %d: position %v is before the previous event's %v", w.events, e.Pos, w.last)
	}
	now := w.opt.Now()
	if w.cur.events == 0 {
		w.cur = frameInfo{seq: uint64(len(w.index)), first: w.events, pos: e.Pos}
		w.codec.reset(e.Pos)
		w.frameStart = now
	}
	mark, saved := len(w.raw), w.codec
	w.raw = w.codec.appendEvent(w.raw, e)
	if len(w.raw) > MaxFrameBytes {
		w.raw, w.codec = w.raw[:mark], saved
		if w.cur.events == 0 {
			w.cur = frameInfo{}
		}
		return fmt.Errorf("logfmt: event %d: %s event does not fit in a frame (%d bytes)", w.events, e.Kind, MaxFrameBytes)
	}
	w.cur.events++
	w.events++
	w.last = e.Pos
	if len(w.raw) >= w.opt.FrameBytes || (w.opt.FlushInterval > 0 && now.Sub(w.frameStart) >= w.opt.FlushInterval) {
		return w.seal()
	}
	return nil
}

// Flush seals the open frame now and writes it, so its events survive the
// recorder being killed. It does not fsync.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("logfmt: flush after close")
	}
	return w.seal()
}

// seal compresses the open frame and writes it with one Write call, so a
// reader following the file sees a frame either whole or torn at its end.
func (w *Writer) seal() error {
	if w.cur.events == 0 {
		return nil
	}
	need := frameHeaderSize + snappy.MaxEncodedLen(len(w.raw))
	if cap(w.out) < need {
		w.out = make([]byte, need)
	}
	w.out = w.out[:need]
	payload := snappy.Encode(w.out[frameHeaderSize:], w.raw)
	f := w.cur
	f.off = w.off
	f.rawLen = uint32(len(w.raw))
	f.compLen = uint32(len(payload))
	f.size = frameHeaderSize + int64(len(payload))
	putFrameHeader(w.out[:frameHeaderSize], &f, payload)
	if err := w.write(w.out[:f.size]); err != nil {
		return err
	}
	w.index = append(w.index, f)
	w.cur = frameInfo{}
	w.raw = w.raw[:0]
	return nil
}

// Close ends the log: it writes the open frame with the end event as its
// last, then the footer (frame index and end record) and trailer, fsyncs,
// and closes a file opened by Create. end.Events is set to Events(); an
// end.Pos before the last event's position (such as the zero position.Pos)
// becomes that position. A nil end means &EndRecord{Reason: "closed"}.
func (w *Writer) Close(end *EndRecord) error {
	if w.done {
		return errors.New("logfmt: close after close")
	}
	w.done = true
	err := w.finish(end)
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("logfmt: %w", cerr)
		}
	}
	return err
}

func (w *Writer) finish(end *EndRecord) error {
	if w.err != nil {
		return w.err
	}
	rec := EndRecord{Reason: "closed"}
	if end != nil {
		rec = *end
	}
	rec.Events = w.events
	if rec.Pos.Less(w.last) {
		rec.Pos = w.last
	}
	if err := w.append(&Event{Kind: KindEnd, Pos: rec.Pos, End: &rec}); err != nil {
		return err
	}
	w.events-- // Events counts what the caller appended
	if err := w.seal(); err != nil {
		return err
	}
	footerOff := w.off
	b := appendRecord(nil, tagFooter, appendFooterBody(nil, w.index, &rec))
	b = appendTrailer(b, footerOff)
	if err := w.write(b); err != nil {
		return err
	}
	if s, ok := w.w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("logfmt: sync: %w", err)
		}
	}
	return nil
}
