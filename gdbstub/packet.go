package gdbstub

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// PacketSize is the largest packet body, in raw (escaped) characters, the
// stub accepts; it is announced in the qSupported reply so gdb never sends
// more. Bigger packets from other clients are read to their end and refused.
const PacketSize = 0x4000

// maxResend bounds how often one reply is sent again after a '-' from gdb:
// a peer that rejects everything is broken, not unlucky.
const maxResend = 8

// interruptByte is the out-of-band Ctrl-C gdb sends to stop a running target.
const interruptByte = 0x03

// chunk is what the connection reader goroutine hands over: bytes or the
// error that ended the connection.
type chunk struct {
	b   []byte
	err error
}

// input is the receiving side of a connection. One goroutine (pump) owns the
// net.Conn's Read and passes chunks on a channel, so the bytes can be
// consumed either by the packet reader or, while the session runs, by the
// interrupt watcher, without two readers racing for the socket.
type input struct {
	ch   chan chunk
	done chan struct{}
	buf  []byte // received, not yet consumed
	err  error  // sticky: the connection is gone
}

func newInput(c net.Conn) *input {
	in := &input{ch: make(chan chunk), done: make(chan struct{})}
	go in.pump(c)
	return in
}

func (in *input) pump(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			select {
			case in.ch <- chunk{b: append([]byte(nil), buf[:n]...)}:
			case <-in.done:
				return
			}
		}
		if err != nil {
			select {
			case in.ch <- chunk{err: err}:
			case <-in.done:
			}
			return
		}
	}
}

// stop ends the pump; the caller closes the connection so a blocked Read
// returns.
func (in *input) stop() { close(in.done) }

// take handles one chunk from the pump.
func (in *input) take(c chunk) {
	if c.err != nil {
		in.err = c.err
		return
	}
	in.buf = append(in.buf, c.b...)
}

func (in *input) readByte() (byte, error) {
	for len(in.buf) == 0 {
		if in.err != nil {
			return 0, in.err
		}
		in.take(<-in.ch)
	}
	b := in.buf[0]
	in.buf = in.buf[1:]
	return b, nil
}

// unreadByte puts back a byte just read.
func (in *input) unreadByte(b byte) {
	in.buf = append([]byte{b}, in.buf...)
}

// takeInterrupts removes every buffered Ctrl-C and says whether there was one.
func (in *input) takeInterrupts() bool {
	found := false
	kept := in.buf[:0]
	for _, b := range in.buf {
		if b == interruptByte {
			found = true
			continue
		}
		kept = append(kept, b)
	}
	in.buf = kept
	return found
}

// checksum is the modulo-256 sum of a packet's raw body.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// frame wraps a raw (already escaped where needed) body as $body#cs.
func frame(body []byte) []byte {
	out := make([]byte, 0, len(body)+4)
	out = append(out, '$')
	out = append(out, body...)
	return append(out, '#', hexDigits[checksum(body)>>4], hexDigits[checksum(body)&15])
}

const hexDigits = "0123456789abcdef"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// escapeBinary escapes the bytes that cannot appear literally in a packet
// carrying binary data: '#', '$', '}' and '*' (which gdb would take for a
// run-length marker) become '}' followed by the byte xor 0x20.
func escapeBinary(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case '#', '$', '}', '*':
			out = append(out, '}', c^0x20)
		default:
			out = append(out, c)
		}
	}
	return out
}

// errMalformed is what decodePacket returns for a body it cannot undo.
var errMalformed = errors.New("malformed escape or run-length encoding")

// decodePacket undoes '}' escaping and '*' run-length encoding in one pass,
// left to right, so an escaped '*' is never taken for a run marker. gdb only
// escapes binary packets and never run-length encodes, but both are legal
// in any packet. The result is refused if it would exceed limit bytes.
func decodePacket(raw []byte, limit int) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '}':
			i++
			if i == len(raw) {
				return nil, fmt.Errorf("%w: '}' at the end", errMalformed)
			}
			out = append(out, raw[i]^0x20)
		case '*':
			i++
			if i == len(raw) || len(out) == 0 {
				return nil, fmt.Errorf("%w: '*' without a byte before it and a count after it", errMalformed)
			}
			// The count character is printable; its value minus 29 is the
			// number of extra copies of the previous byte.
			n := int(raw[i]) - 29
			if raw[i] < ' ' || raw[i] > '~' {
				return nil, fmt.Errorf("%w: run length character %#x", errMalformed, raw[i])
			}
			if len(out)+n > limit {
				return nil, fmt.Errorf("%w: run expands past %d bytes", errMalformed, limit)
			}
			last := out[len(out)-1]
			for ; n > 0; n-- {
				out = append(out, last)
			}
		default:
			out = append(out, c)
		}
		if len(out) > limit {
			return nil, fmt.Errorf("%w: body longer than %d bytes", errMalformed, limit)
		}
	}
	return out, nil
}

// readPacket reads the next packet and acknowledges it (in ack mode). It
// skips acks, stray bytes and Ctrl-C (the target is stopped, there is
// nothing to interrupt); a packet with a bad checksum is answered with '-'
// and the next one is read. A packet too long or impossible to decode is
// returned as a protocol error for the caller to answer. A connection lost
// between packets returns io.EOF (or the conn's error); inside a packet the
// error wraps io.ErrUnexpectedEOF.
func (cn *conn) readPacket() ([]byte, *Error, error) {
	for {
		b, err := cn.in.readByte()
		if err != nil {
			return nil, nil, err
		}
		switch b {
		case '$':
		case '+', '-':
			continue
		case interruptByte:
			cn.logf("interrupt while stopped: ignored")
			continue
		default:
			cn.logf("stray byte %q outside a packet: ignored", b)
			continue
		}
		raw, sum, overflow, err := cn.readBody()
		if err != nil {
			return nil, nil, err
		}
		var cs [2]byte
		for i := range cs {
			if cs[i], err = cn.in.readByte(); err != nil {
				return nil, nil, fmt.Errorf("gdbstub: connection lost in a checksum: %w (%w)", io.ErrUnexpectedEOF, err)
			}
		}
		hi, ok1 := unhex(cs[0])
		lo, ok2 := unhex(cs[1])
		if !ok1 || !ok2 || hi<<4|lo != sum {
			cn.logf("<- bad checksum %q for %s (want %02x)", cs[:], quote(raw), sum)
			if !cn.noAck {
				if err := cn.write([]byte{'-'}); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if !cn.noAck {
			if err := cn.write([]byte{'+'}); err != nil {
				return nil, nil, err
			}
		}
		if overflow {
			cn.logf("<- packet longer than %d bytes: refused", PacketSize)
			return nil, errTooLong, nil
		}
		pkt, err := decodePacket(raw, PacketSize)
		if err != nil {
			cn.logf("<- %s: %v", quote(raw), err)
			return nil, errMalformedPacket, nil
		}
		if cn.tracing() {
			cn.logf("<- %s", quote(pkt))
		}
		return pkt, nil, nil
	}
}

// readBody reads a packet body up to '#'. A '$' inside a body means the
// sender gave up on the packet and started another: the partial one is
// dropped. Bytes past PacketSize are summed but not kept.
func (cn *conn) readBody() (raw []byte, sum byte, overflow bool, err error) {
	raw = cn.raw[:0]
	defer func() { cn.raw = raw[:0] }()
	for {
		b, err := cn.in.readByte()
		if err != nil {
			return nil, 0, false, fmt.Errorf("gdbstub: connection lost inside a packet: %w (%w)", io.ErrUnexpectedEOF, err)
		}
		switch {
		case b == '#':
			return raw, sum, overflow, nil
		case b == '$':
			cn.logf("<- packet %s restarted before its end: dropped", quote(raw))
			raw, sum, overflow = raw[:0], 0, false
		case len(raw) >= PacketSize:
			overflow = true
			sum += b
		default:
			raw = append(raw, b)
			sum += b
		}
	}
}

// send sends one packet with a raw body and, in ack mode, waits for gdb's
// '+', sending again on '-'.
func (cn *conn) send(body string) error {
	f := frame([]byte(body))
	trace := ""
	if cn.tracing() {
		trace = quote([]byte(body))
		if len(body) > 1 && body[0] == 'O' && body != "OK" {
			if text, err := hex.DecodeString(body[1:]); err == nil {
				trace = "O " + quote(text)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		cn.logf("-> %s", trace)
		if err := cn.write(f); err != nil {
			return err
		}
		if cn.noAck {
			return nil
		}
		acked, err := cn.waitAck()
		if err != nil {
			return fmt.Errorf("gdbstub: connection lost waiting for an ack: %w", err)
		}
		if acked {
			return nil
		}
		if attempt+1 >= maxResend {
			return fmt.Errorf("gdbstub: gdb rejected a packet %d times", maxResend)
		}
	}
}

// waitAck reads gdb's answer to a packet just sent: true for '+', false for
// '-'. A '$' means gdb went on to its next packet without acknowledging
// (possible after it switched to no-ack mode): it is put back and counts as
// an ack.
func (cn *conn) waitAck() (bool, error) {
	for {
		b, err := cn.in.readByte()
		if err != nil {
			return false, err
		}
		switch b {
		case '+':
			return true, nil
		case '-':
			cn.logf("<- '-': sending again")
			return false, nil
		case '$':
			cn.in.unreadByte(b)
			return true, nil
		default:
			cn.logf("stray byte %q while waiting for an ack: ignored", b)
		}
	}
}

// tracing says whether the protocol trace is on, to skip rendering
// packets for it when it is not.
func (cn *conn) tracing() bool { return cn.srv.opts.Log != nil }

func (cn *conn) write(b []byte) error {
	if _, err := cn.c.Write(b); err != nil {
		return fmt.Errorf("gdbstub: write: %w", err)
	}
	return nil
}

// quote renders a packet for the trace log, cut short if long.
func quote(b []byte) string {
	const max = 256
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}
