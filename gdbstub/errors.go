package gdbstub

import (
	"fmt"
	"strings"
)

// Error is a protocol error reply. Code is a Linux errno value sent as two
// decimal digits ("E14" for EFAULT), the convention gdbserver follows; when
// Msg is set the reply uses gdb's textual form "E.message" instead, which gdb
// shows to the user (for example "Could not write register "rax"; remote
// failure reply 'E.replay is read-only ...'").
type Error struct {
	Code int
	Msg  string
}

// Errno values the stub answers with.
const (
	EPERM  = 1  // refused: the replay cannot be changed
	ENOENT = 2  // no such annex, thread or breakpoint
	EIO    = 5  // the session failed
	E2BIG  = 7  // packet longer than PacketSize
	EFAULT = 14 // guest memory not readable at that address
	EINVAL = 22 // malformed or out-of-range argument
)

var (
	errMalformedPacket = &Error{Code: EINVAL}
	errTooLong         = &Error{Code: E2BIG}
	errUnreadable      = &Error{Code: EFAULT}
	errReadOnlyMemory  = &Error{Code: EPERM, Msg: "replay is read-only: guest memory cannot be written"}
	errReadOnlyRegs    = &Error{Code: EPERM, Msg: "replay is read-only: registers cannot be written"}
)

// Error implements error.
func (e *Error) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("gdbstub: E%02d: %s", e.Code, e.Msg)
	}
	return fmt.Sprintf("gdbstub: E%02d", e.Code)
}

// reply is the packet body sent for e.
func (e *Error) reply() string {
	if e.Msg != "" {
		return "E." + textSafe(e.Msg)
	}
	return fmt.Sprintf("E%02d", e.Code%100)
}

// badArg is a malformed-argument error naming what was wrong, for the trace.
func badArg(format string, args ...any) *Error {
	return &Error{Code: EINVAL, Msg: fmt.Sprintf(format, args...)}
}

// textSafe makes s sendable in a non-binary packet: gdb frames on '$' and
// '#', and reads '*' as a run-length marker, so those cannot appear; nor
// can control characters.
func textSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '$' || r == '#' || r == '*' || r == '}':
			return '_'
		case r < ' ' || r > '~':
			return ' '
		}
		return r
	}, s)
}
