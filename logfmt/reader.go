package logfmt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/golang/snappy"

	"vmrr/position"
)

// errNoMoreFrames ends a scan at the footer record: the log was closed.
var errNoMoreFrames = errors.New("no more frames")

// Stats counts the frame payload bytes a Reader has loaded.
type Stats struct {
	Frames          uint64
	CompressedBytes uint64 // snappy payload bytes
	RawBytes        uint64 // the same payloads decompressed (delta/varint-encoded events)
}

// Reader reads a log: the header at Open, then events one at a time. It
// holds the frame it is reading and one small entry per frame seen. A
// Reader is not safe for concurrent use.
type Reader struct {
	ra     io.ReaderAt
	size   int64
	closer io.Closer
	hdr    *Header
	data   int64 // offset of the first frame

	// The frames known so far, from the footer of a closed log or found by
	// scanning record headers from the start of a log without one.
	frames    []frameInfo
	scanOff   int64 // offset of the first record not scanned yet
	scanEnd   error // why scanning stopped (errNoMoreFrames, *TruncatedError, damage); nil if it may go on
	footerOff int64 // offset of the footer record once known, else -1
	indexed   bool  // frames came from the footer
	footerErr error // damage found in the footer at Open, reported after the last event
	zeroTail  int64 // where the run of zero bytes that ends the file starts; -1 until needed
	end       *EndRecord

	rec      []byte // the record last read
	recFrame int    // the frame rec holds, or -1
	raw      []byte // the current frame's payload, decompressed

	// The cursor: frame cur is loaded and left of its events remain in dec.
	cur     int
	dec     decoder
	left    uint32
	codec   codec
	next    uint64 // index of the event Next returns next
	pending *Event // an event SeekPosition decoded to find its place
	ended   bool   // the end event has been passed
	err     error  // sticky: what Next returns until a seek
	tailOK  bool   // what follows the end event has been checked
	stats   Stats
}

// Open opens the log at path and reads its header.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("logfmt: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logfmt: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("logfmt: %s is not a regular file", path)
	}
	r, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads the header of the size-byte log in ra. A log cut short
// before its header is complete is refused with an error wrapping a
// *TruncatedError; a log cut anywhere after it opens, and Next reports the
// cut when it gets there.
func NewReader(ra io.ReaderAt, size int64) (*Reader, error) {
	if size < 0 {
		return nil, fmt.Errorf("logfmt: negative log size %d", size)
	}
	r := &Reader{ra: ra, size: size, footerOff: -1, recFrame: -1, cur: -1, zeroTail: -1}
	if err := r.readHeader(); err != nil {
		return nil, err
	}
	r.scanOff = r.data
	r.readFooter()
	return r, nil
}

// readAt reads exactly len(b) bytes at off, which the caller has checked
// lie within the file.
func (r *Reader) readAt(b []byte, off int64) error {
	n, err := r.ra.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("logfmt: read %d bytes at offset %d: %w", len(b), off, err)
}

func (r *Reader) readHeader() error {
	torn := fmt.Errorf("logfmt: header: %w", &TruncatedError{})
	pre := make([]byte, min(r.size, int64(preludeSize)))
	if err := r.readAt(pre, 0); err != nil {
		return err
	}
	n := min(len(pre), len(Magic))
	if string(pre[:n]) != Magic[:n] {
		return ErrNotLog
	}
	if len(pre) < preludeSize {
		return torn
	}
	if v := binary.LittleEndian.Uint32(pre[len(Magic):]); v != Version {
		return &VersionError{Version: v}
	}
	body, torn2, err := r.readRecord(preludeSize, tagHeader, "header")
	if err != nil {
		return err
	}
	if torn2 {
		return torn
	}
	h, err := decodeHeader(body)
	if err != nil {
		return &CorruptError{Record: "header", Offset: preludeSize, Reason: err.Error()}
	}
	r.hdr = h
	r.data = preludeSize + recHeaderSize + int64(len(body))
	return nil
}

// readRecord reads a header or footer record at off. torn says the file
// ends inside it.
func (r *Reader) readRecord(off int64, tag [4]byte, name string) (body []byte, torn bool, err error) {
	if r.size-off < recHeaderSize {
		return nil, true, nil
	}
	h := make([]byte, recHeaderSize)
	if err := r.readAt(h, off); err != nil {
		return nil, false, err
	}
	le := binary.LittleEndian
	if [4]byte(h[:4]) != tag || le.Uint32(h[12:]) != crc(h[:12]) {
		return nil, false, &ChecksumError{Record: name, Offset: off}
	}
	n := int64(le.Uint32(h[4:]))
	if n > r.size-off-recHeaderSize {
		return nil, true, nil
	}
	body = make([]byte, n)
	if err := r.readAt(body, off+recHeaderSize); err != nil {
		return nil, false, err
	}
	if le.Uint32(h[8:]) != crc(body) {
		return nil, false, &ChecksumError{Record: name, Offset: off}
	}
	return body, false, nil
}

// readFooter uses the footer of a closed log, found through the trailer at
// the very end of the file, as the frame index. Without a valid trailer the
// reader scans frame headers instead; damage in a footer the trailer points
// at is kept to be reported once the events before it have been read.
func (r *Reader) readFooter() {
	if r.size-r.data < recHeaderSize+trailerSize {
		return
	}
	t := make([]byte, trailerSize)
	if err := r.readAt(t, r.size-trailerSize); err != nil {
		return
	}
	le := binary.LittleEndian
	if [4]byte(t[12:]) != trailerMagic || le.Uint32(t[8:]) != crc(t[:8]) {
		return
	}
	off := int64(le.Uint64(t))
	if off < r.data || off > r.size-trailerSize-recHeaderSize {
		return
	}
	frames, end, err := r.parseFooter(off)
	if err != nil {
		r.footerErr = err
		return
	}
	r.frames, r.end, r.indexed = frames, end, true
	r.footerOff, r.scanEnd, r.scanOff = off, errNoMoreFrames, off
}

// parseFooter reads the footer record at off and the trailer after it. A
// footer cut short returns a *TruncatedError.
func (r *Reader) parseFooter(off int64) ([]frameInfo, *EndRecord, error) {
	body, torn, err := r.readRecord(off, tagFooter, "footer")
	if err != nil {
		return nil, nil, err
	}
	if torn {
		return nil, nil, &TruncatedError{}
	}
	corrupt := func(why string) error { return &CorruptError{Record: "footer", Offset: off, Reason: why} }
	toff := off + recHeaderSize + int64(len(body))
	switch rest := r.size - toff; {
	case rest < trailerSize:
		return nil, nil, &TruncatedError{}
	case rest > trailerSize:
		return nil, nil, corrupt(fmt.Sprintf("%d bytes after the trailer", rest-trailerSize))
	}
	t := make([]byte, trailerSize)
	if err := r.readAt(t, toff); err != nil {
		return nil, nil, err
	}
	le := binary.LittleEndian
	if [4]byte(t[12:]) != trailerMagic || le.Uint32(t[8:]) != crc(t[:8]) || int64(le.Uint64(t)) != off {
		return nil, nil, &ChecksumError{Record: "trailer", Offset: toff}
	}

	d := &decoder{b: body}
	n := d.count(4)
	frames := make([]frameInfo, n)
	at, first := r.data, uint64(0)
	var pos position.Pos
	for i := range frames {
		size, events := d.uvarint(), d.uvarint()
		dexit, insn := d.uvarint(), d.uvarint()
		if dexit == 0 {
			insn += pos.Insn
		}
		next := position.Pos{Exit: pos.Exit + dexit, Insn: insn}
		if d.bad != "" {
			break
		}
		if size < frameHeaderSize || size > uint64(off-at) || events == 0 || events > uint64(MaxFrameBytes) || next.Less(pos) {
			return nil, nil, corrupt(fmt.Sprintf("bad index entry for frame %d", i))
		}
		pos = next
		frames[i] = frameInfo{off: at, size: int64(size), seq: uint64(i), first: first, pos: pos, events: uint32(events)}
		at += int64(size)
		first += events
	}
	end := decodeEnd(d)
	end.Pos.Exit, end.Pos.Insn = d.uvarint(), d.uvarint()
	switch {
	case d.bad != "":
		return nil, nil, corrupt(d.bad)
	case d.left() != 0:
		return nil, nil, corrupt(fmt.Sprintf("%d bytes after the end record", d.left()))
	case at != off:
		return nil, nil, corrupt(fmt.Sprintf("the index covers %d bytes of frames, the file %d", at-r.data, off-r.data))
	case n == 0:
		return nil, nil, corrupt("no frames (the end event is in one)")
	}
	return frames, end, nil
}

// Header is the log's header.
func (r *Reader) Header() *Header { return r.hdr }

// End is the log's end record: known at Open for a closed log with an
// intact footer, else once the end event has been read; nil before that
// and for a log that was never closed.
func (r *Reader) End() *EndRecord { return r.end }

// Index is the index of the event Next returns next.
func (r *Reader) Index() uint64 { return r.next }

// Stats counts the frames loaded so far.
func (r *Reader) Stats() Stats { return r.stats }

// Close closes the file Open opened; it does nothing for NewReader.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	return c.Close()
}

// frame returns frame i, scanning record headers as far as needed. Past the
// last frame it returns why there is none: errNoMoreFrames after a closed
// log's last frame, a *TruncatedError, or damage.
func (r *Reader) frame(i int) (*frameInfo, error) {
	for i >= len(r.frames) {
		if r.scanEnd != nil {
			return nil, r.scanEnd
		}
		r.scanEnd = r.scanOne()
	}
	return &r.frames[i], nil
}

// known is the number of events in the frames known so far.
func (r *Reader) known() uint64 {
	if len(r.frames) == 0 {
		return 0
	}
	f := &r.frames[len(r.frames)-1]
	return f.first + uint64(f.events)
}

// scanOne reads and verifies the record at scanOff. It returns nil after
// adding a frame, or why scanning stops there.
func (r *Reader) scanOne() error {
	off, seq := r.scanOff, uint64(len(r.frames))
	rest := r.size - off
	torn := &TruncatedError{Events: r.known()}
	if rest < 4 {
		return torn
	}
	h := make([]byte, min(rest, frameHeaderSize))
	if err := r.readAt(h, off); err != nil {
		return err
	}
	switch [4]byte(h[:4]) {
	case tagFooter:
		r.footerOff = off
		return errNoMoreFrames
	case tagFrame:
	default:
		if r.zeroedFrom(off, off+4) {
			return torn
		}
		return &ChecksumError{Frame: seq, Offset: off}
	}
	if rest < frameHeaderSize {
		return torn
	}
	f, sum, ok := parseFrameHeader(h, off)
	if !ok {
		if r.zeroedFrom(off, off+frameHeaderSize) {
			return torn
		}
		return &ChecksumError{Frame: seq, Offset: off}
	}
	if f.size > rest {
		return torn
	}
	if err := r.checkFrame(&f, seq); err != nil {
		return err
	}
	if err := r.readFrame(&f, sum); err != nil {
		if _, ok := err.(*ChecksumError); ok && r.zeroedFrom(off, off+f.size) {
			return torn
		}
		return err
	}
	r.frames = append(r.frames, f)
	r.scanOff = off + f.size
	return nil
}

// checkFrame checks a frame header against its place in the log.
func (r *Reader) checkFrame(f *frameInfo, seq uint64) error {
	why := ""
	switch {
	case f.seq != seq:
		why = fmt.Sprintf("sequence number %d where %d belongs", f.seq, seq)
	case f.first != r.known():
		why = fmt.Sprintf("first event %d where %d belongs", f.first, r.known())
	case f.events == 0:
		why = "no events"
	case f.rawLen > MaxFrameBytes:
		why = fmt.Sprintf("payload of %d bytes is over the %d limit", f.rawLen, MaxFrameBytes)
	case len(r.frames) > 0 && f.pos.Less(r.frames[len(r.frames)-1].pos):
		why = fmt.Sprintf("position %v is before the previous frame's", f.pos)
	}
	if why != "" {
		return &CorruptError{Frame: seq, Offset: f.off, Reason: why}
	}
	return nil
}

// readFrame reads frame f's record into r.rec and verifies its payload.
func (r *Reader) readFrame(f *frameInfo, sum uint32) error {
	if int64(cap(r.rec)) < f.size {
		r.rec = make([]byte, f.size)
	}
	r.rec = r.rec[:f.size]
	r.recFrame = -1
	if err := r.readAt(r.rec, f.off); err != nil {
		return err
	}
	if crc(r.rec[frameHeaderSize:]) != sum {
		return &ChecksumError{Frame: f.seq, Offset: f.off}
	}
	r.recFrame = int(f.seq)
	return nil
}

// zeroedFrom reports whether a record at off whose checksum failed was
// torn by a crash of the host rather than damaged: a file system can leave
// blocks past the last completed write zero-filled. It is, if the file
// ends in a run of at least 16 zero bytes (a log never does: it ends in a
// trailer or a compressed payload) and that run starts before end, the end
// of the damaged part of the record.
func (r *Reader) zeroedFrom(off, end int64) bool {
	if r.zeroTail < 0 {
		r.zeroTail = r.size
		buf := make([]byte, 64<<10)
	scan:
		for r.zeroTail > r.data {
			n := min(int64(len(buf)), r.zeroTail-r.data)
			b := buf[:n]
			if r.readAt(b, r.zeroTail-n) != nil {
				break
			}
			for i := len(b) - 1; i >= 0; i-- {
				if b[i] != 0 {
					break scan
				}
				r.zeroTail--
			}
		}
	}
	return r.size-r.zeroTail >= 16 && r.zeroTail < end && end > off
}

// load makes frame i the current frame, at its first event.
func (r *Reader) load(i int) error {
	f, err := r.frame(i)
	if err != nil {
		if err == errNoMoreFrames {
			return &CorruptError{Frame: uint64(i), Offset: r.footerOff, Reason: "the log has a footer but no end event"}
		}
		return err
	}
	if r.recFrame != i {
		// Known from the footer, or scanned and since replaced in r.rec:
		// read and verify it again, against the index entry.
		if f.size > r.size-f.off {
			return &CorruptError{Frame: f.seq, Offset: f.off, Reason: "frame extends past the end of the file"}
		}
		h := make([]byte, frameHeaderSize)
		if err := r.readAt(h, f.off); err != nil {
			return err
		}
		if [4]byte(h[:4]) != tagFrame {
			return &ChecksumError{Frame: f.seq, Offset: f.off}
		}
		g, sum, ok := parseFrameHeader(h, f.off)
		if !ok {
			return &ChecksumError{Frame: f.seq, Offset: f.off}
		}
		if g.seq != f.seq || g.first != f.first || g.events != f.events || g.pos != f.pos || g.size != f.size || g.rawLen > MaxFrameBytes {
			return &CorruptError{Frame: f.seq, Offset: f.off, Reason: "frame header does not match the footer index"}
		}
		f.rawLen, f.compLen = g.rawLen, g.compLen
		if err := r.readFrame(f, sum); err != nil {
			return err
		}
	}
	payload := r.rec[frameHeaderSize:]
	if n, err := snappy.DecodedLen(payload); err != nil || n != int(f.rawLen) {
		return &CorruptError{Frame: f.seq, Offset: f.off, Reason: "payload does not decompress to its stated length"}
	}
	if cap(r.raw) < int(f.rawLen) {
		r.raw = make([]byte, f.rawLen)
	}
	raw, err := snappy.Decode(r.raw[:cap(r.raw)], payload)
	if err != nil {
		return &CorruptError{Frame: f.seq, Offset: f.off, Reason: "payload: " + err.Error()}
	}
	r.cur = i
	r.dec = decoder{b: raw}
	r.left = f.events
	r.codec.reset(f.pos)
	r.stats.Frames++
	r.stats.CompressedBytes += uint64(f.compLen)
	r.stats.RawBytes += uint64(f.rawLen)
	return nil
}

// Next returns the next event. At the end of a closed log it returns
// io.EOF (after the KindEnd event); where a log was cut short, a
// *TruncatedError; for damage, a *ChecksumError, *CorruptError or
// *UnknownKindError. Errors repeat until a seek.
func (r *Reader) Next() (*Event, error) {
	if e := r.pending; e != nil {
		r.pending = nil
		r.next++
		return e, nil
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.ended {
		if err := r.checkTail(); err != nil {
			r.err = err
			return nil, err
		}
		return nil, io.EOF
	}
	for r.left == 0 {
		if err := r.load(r.cur + 1); err != nil {
			if t, ok := err.(*TruncatedError); ok {
				// The cut may sit after frames already known (from a
				// scan for a seek): count the events actually read.
				err = &TruncatedError{Events: min(t.Events, r.next)}
			}
			r.err = err
			return nil, err
		}
	}
	e, err := r.decodeOne()
	if err != nil {
		r.err = err
		return nil, err
	}
	r.next++
	return e, nil
}

// decodeOne decodes the next event of the current frame.
func (r *Reader) decodeOne() (*Event, error) {
	f := &r.frames[r.cur]
	e, err := r.codec.decodeEvent(&r.dec)
	if err != nil {
		if k, ok := err.(errUnknownKind); ok {
			return nil, &UnknownKindError{Kind: uint8(k), Frame: f.seq}
		}
		return nil, &CorruptError{Frame: f.seq, Offset: f.off, Reason: fmt.Sprintf("event %d: %v", r.next, err)}
	}
	r.left--
	if r.left == 0 && r.dec.left() != 0 {
		return nil, &CorruptError{Frame: f.seq, Offset: f.off, Reason: fmt.Sprintf("%d bytes after the last event", r.dec.left())}
	}
	if e.Kind == KindEnd {
		if r.left != 0 {
			return nil, &CorruptError{Frame: f.seq, Offset: f.off, Reason: "events after the end event"}
		}
		if e.End.Events != r.next {
			return nil, &CorruptError{Frame: f.seq, Offset: f.off,
				Reason: fmt.Sprintf("the end record counts %d events before it, the log has %d", e.End.Events, r.next)}
		}
		r.ended = true
		r.end = e.End
	}
	return e, nil
}

// checkTail checks, once, that the end event is the last event of the log
// and the footer after it is intact (or merely cut short by a kill during
// Close: every event is there, so that is no loss).
func (r *Reader) checkTail() error {
	if r.tailOK {
		return nil
	}
	if r.footerErr != nil {
		if _, torn := r.footerErr.(*TruncatedError); !torn {
			return r.footerErr
		}
	}
	switch _, err := r.frame(r.cur + 1); {
	case err == nil:
		f := &r.frames[r.cur+1]
		return &CorruptError{Frame: f.seq, Offset: f.off, Reason: "frame after the end event"}
	case err == errNoMoreFrames:
		if !r.indexed {
			if _, _, err := r.parseFooter(r.footerOff); err != nil {
				if _, torn := err.(*TruncatedError); !torn {
					return err
				}
			}
		}
	default:
		if _, torn := err.(*TruncatedError); !torn {
			return err
		}
	}
	r.tailOK = true
	return nil
}

func (r *Reader) resetCursor() {
	r.cur, r.left, r.pending, r.ended, r.err = -1, 0, nil, false, nil
}

// SeekEvent positions the reader so that Next returns event index. Seeking
// to the number of events readable is allowed: Next then reports the end.
// In a log without a footer the frames before the target are scanned
// (headers and checksums only, no decompression).
func (r *Reader) SeekEvent(index uint64) error {
	r.resetCursor()
	for index >= r.known() && r.scanEnd == nil {
		r.scanEnd = r.scanOne()
	}
	if index >= r.known() {
		return r.seekEnd(index)
	}
	i := sort.Search(len(r.frames), func(i int) bool {
		f := &r.frames[i]
		return f.first+uint64(f.events) > index
	})
	if err := r.load(i); err != nil {
		r.err = err
		return err
	}
	r.next = r.frames[i].first
	for r.next < index {
		if _, err := r.decodeOne(); err != nil {
			r.err = err
			return err
		}
		r.next++
	}
	return nil
}

// seekEnd positions the reader after the last readable event, which is
// allowed when index is exactly their number.
func (r *Reader) seekEnd(index uint64) error {
	_, torn := r.scanEnd.(*TruncatedError)
	if !torn && r.scanEnd != errNoMoreFrames {
		return r.scanEnd
	}
	total := r.known()
	switch {
	case total == 0 && torn:
		r.next, r.err = 0, r.scanEnd
	case total == 0:
		r.err = r.load(0) // a footer with no frame before it
		return r.err
	default:
		// Pass the last event, verifying its frame, so that Next reports
		// the end or the cut as reading through would.
		if err := r.SeekEvent(total - 1); err != nil {
			return err
		}
		if _, err := r.Next(); err != nil {
			return err
		}
	}
	if index > total {
		if !r.ended && torn {
			return fmt.Errorf("logfmt: seek to event %d: %w", index, r.scanEnd)
		}
		return fmt.Errorf("logfmt: seek to event %d: the log has %d events", index, total)
	}
	return nil
}

// SeekPosition positions the reader at the first event at or after p. The
// frame headers' first positions say which frame holds it; events before it
// in that frame are decoded and dropped. If no event is at or after p, the
// reader is left at the end (Next reports io.EOF or the truncation).
func (r *Reader) SeekPosition(p position.Pos) error {
	r.resetCursor()
	for (len(r.frames) == 0 || r.frames[len(r.frames)-1].pos.Less(p)) && r.scanEnd == nil {
		r.scanEnd = r.scanOne()
	}
	if len(r.frames) == 0 {
		return r.seekEnd(0)
	}
	j := sort.Search(len(r.frames), func(i int) bool { return !r.frames[i].pos.Less(p) })
	// Frame j starts at or after p, but the frame before it may hold
	// events at or after p too.
	start := max(j-1, 0)
	if err := r.load(start); err != nil {
		r.err = err
		return err
	}
	r.next = r.frames[start].first
	for {
		e, err := r.Next()
		if err != nil {
			if _, ok := err.(*TruncatedError); ok || err == io.EOF {
				return nil
			}
			return err
		}
		if !e.Pos.Less(p) {
			r.pending = e
			r.next--
			return nil
		}
	}
}
