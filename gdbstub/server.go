// Package gdbstub serves the GDB remote serial protocol over a replay
// Session, so gdb can inspect a recording and move through it forwards and
// backwards ("target remote :1234", then stepi, reverse-stepi, continue,
// reverse-continue, watch, monitor ...).
//
// Protocol reference (GDB manual, appendix "GDB Remote Serial Protocol"):
//   - overview, framing, escaping, run-length encoding:
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/Overview.html
//   - packets (g, p, m, X, Z, vCont, bc, bs ...):
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/Packets.html
//   - stop replies (T, swbreak, watch, replaylog):
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/Stop-Reply-Packets.html
//   - general queries (qSupported, qXfer, qRcmd, qAttached):
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/General-Query-Packets.html
//   - acks and no-ack mode:
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/Packet-Acknowledgment.html
//   - Ctrl-C: https://sourceware.org/gdb/current/onlinedocs/gdb.html/Interrupts.html
//   - target descriptions and the x86 features:
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/Target-Descriptions.html
//     https://sourceware.org/gdb/current/onlinedocs/gdb.html/i386-Features.html
//
// Design. A connection is served by one goroutine that reads a packet,
// answers it and repeats; every Session call except Interrupt is made from
// it. A second goroutine only pumps bytes from the socket into a channel.
// While the session moves (c, s, vCont, bc, bs) the serving goroutine is
// inside Session.Continue/Step/..., so a watcher goroutine takes over the
// channel for that time: a 0x03 byte calls Session.Interrupt, a lost
// connection interrupts too, and any other byte is kept for the packet
// reader. Going through one channel means the watcher never steals a byte
// from the next packet.
//
// A replay cannot change: G, P, M and X (other than gdb's zero-length probe)
// are refused with "E.message" replies, which gdb prints. Breakpoints (Z0,
// Z1) and watchpoints (Z2-Z4) are set on the Session, which implements them
// without writing guest memory, so m shows the guest's own bytes; m also
// passes through Session.OriginalBytes so instructions vmrr patched show as
// recorded. The two ends of the recording are stop replies with
// "replaylog:begin" / "replaylog:end", which gdb reports as "No more
// reverse-execution history". The guest exiting (debug-exit port) is the end
// of the log too: T05 replaylog:end, with the exit status printed through an
// O packet, so the user can reverse from there. A crash is T0b (SIGSEGV):
// gdb shows it as a signal, which is what a developer expects to see at a
// crash, and the reason (triple fault, ...) is printed through an O packet.
// A divergence is T06 (SIGABRT) with the message. Serial output the guest
// produced during forward motion is forwarded to gdb's console as O packets.
//
// Breakpoints a connection set are removed when it ends, however it ends,
// so the next gdb starts clean.
package gdbstub

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"vmrr/replayer"
)

// DefaultAddr is the address "vmrr gdb" listens on unless told otherwise:
// loopback only, since the protocol has no authentication, on gdb's
// customary port.
const DefaultAddr = "127.0.0.1:1234"

// Options configures a Server.
type Options struct {
	// Log receives a trace of the protocol (packets in and out, refusals,
	// connection errors) if non-nil.
	Log io.Writer
}

// Server serves gdb connections, one at a time, over one replay Session.
type Server struct {
	sess replayer.Session
	opts Options

	busy  sync.Mutex // held while a connection is served
	logMu sync.Mutex
}

// NewServer returns a Server for s.
func NewServer(s replayer.Session, opts Options) *Server {
	return &Server{sess: s, opts: opts}
}

// Serve accepts connections on l and serves them one after another until l
// is closed, which returns nil. A connection's failure is logged and the
// next connection accepted.
func (srv *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("gdbstub: accept: %w", err)
		}
		srv.logf("connection from %s", c.RemoteAddr())
		if err := srv.ServeConn(c); err != nil {
			srv.logf("connection from %s: %v", c.RemoteAddr(), err)
		} else {
			srv.logf("connection from %s closed", c.RemoteAddr())
		}
	}
}

// ServeConn serves one gdb session on c and closes c. It returns nil when
// gdb detaches, kills or closes the connection between packets, and an
// error if the connection breaks inside a packet or fails. Only one
// connection is served at a time: a second concurrent call fails at once.
func (srv *Server) ServeConn(c net.Conn) error {
	if !srv.busy.TryLock() {
		c.Close()
		return errors.New("gdbstub: another debugger is already connected")
	}
	defer srv.busy.Unlock()
	cn := &conn{
		srv:  srv,
		sess: srv.sess,
		c:    c,
		in:   newInput(c),
		bps:  map[bpKey]int{},
	}
	cn.consoleLen = len(cn.sess.Console())
	defer cn.close()
	for {
		pkt, perr, err := cn.readPacket()
		if err != nil {
			if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		reply, quit := "", false
		if perr != nil {
			reply = perr.reply()
		} else if reply, quit, err = cn.handle(pkt); err != nil {
			return err
		}
		if quit && reply == "" {
			return nil
		}
		if err := cn.send(reply); err != nil {
			return err
		}
		if cn.startNoAck {
			cn.noAck, cn.startNoAck = true, false
		}
		if quit {
			return nil
		}
	}
}

func (srv *Server) logf(format string, args ...any) {
	if srv.opts.Log == nil {
		return
	}
	srv.logMu.Lock()
	defer srv.logMu.Unlock()
	fmt.Fprintf(srv.opts.Log, "gdbstub: "+format+"\n", args...)
}

// bpKey is how gdb names a breakpoint: z removes what Z with the same type,
// address and kind inserted.
type bpKey struct {
	typ  replayer.BreakKind
	addr uint64
	kind uint64
}

// conn is the state of one gdb connection.
type conn struct {
	srv  *Server
	sess replayer.Session
	c    net.Conn
	in   *input
	raw  []byte // packet body buffer, reused

	noAck        bool
	startNoAck   bool          // no-ack mode starts once the current reply is acked
	bps          map[bpKey]int // breakpoints this connection set, by gdb's name
	consoleLen   int           // guest console bytes already shown
	consoleStale bool          // consoleLen is not known since a reverse motion or goto
	lastSig      int           // signal of the last stop, for '?'
}

func (cn *conn) logf(format string, args ...any) { cn.srv.logf(format, args...) }

// close removes the connection's breakpoints and releases the socket.
func (cn *conn) close() {
	for k, id := range cn.bps {
		if err := cn.sess.RemoveBreakpoint(id); err != nil {
			cn.logf("removing breakpoint %d at %#x: %v", id, k.addr, err)
		}
	}
	cn.in.stop()
	cn.c.Close()
}

// handle answers one packet. quit ends the connection after the reply (no
// reply is sent if it is empty); err is a failure of the connection itself.
func (cn *conn) handle(pkt []byte) (reply string, quit bool, err error) {
	if len(pkt) == 0 {
		return "", false, nil
	}
	p := string(pkt)
	switch p[0] {
	case '?':
		return cn.stopSignal(cn.lastSig), false, nil
	case 'q':
		return cn.query(p)
	case 'Q':
		if p == "QStartNoAckMode" {
			// The OK still travels in ack mode; gdb acks it and then
			// neither side acks again.
			cn.startNoAck = true
			return "OK", false, nil
		}
		return "", false, nil
	case 'v':
		return cn.vPacket(p)
	case 'H':
		return "OK", false, nil
	case 'T':
		if tid, ok := parseThread(p[1:]); ok && (tid == 1 || tid == -1) {
			return "OK", false, nil
		}
		return (&Error{Code: ENOENT}).reply(), false, nil
	case 'g':
		return cn.readRegisters(), false, nil
	case 'p':
		return cn.readRegister(p[1:]), false, nil
	case 'G', 'P':
		cn.logf("register write refused")
		return errReadOnlyRegs.reply(), false, nil
	case 'm':
		return cn.readMemory(p[1:]), false, nil
	case 'M', 'X':
		return cn.writeMemory(p), false, nil
	case 'Z', 'z':
		return cn.breakpoint(p), false, nil
	case 'c', 'C', 's', 'S':
		return cn.resumeLegacy(p)
	case 'b':
		switch p {
		case "bc":
			return cn.resume(motionReverse, cn.sess.ReverseContinue)
		case "bs":
			return cn.resume(motionReverse, func() (replayer.Stop, error) { return cn.sess.ReverseStep(1) })
		}
		return "", false, nil
	case 'D':
		return "OK", true, nil
	case 'k':
		return "", true, nil
	}
	return "", false, nil
}

// supported is the qSupported reply.
var supported = strings.Join([]string{
	"PacketSize=" + strconv.FormatInt(PacketSize, 16),
	"QStartNoAckMode+",
	"swbreak+",
	"hwbreak+",
	"vContSupported+",
	"qXfer:features:read+",
	"ReverseStep+",
	"ReverseContinue+",
}, ";")

func (cn *conn) query(p string) (string, bool, error) {
	name, args, _ := strings.Cut(p, ":")
	switch {
	case name == "qSupported":
		return supported, false, nil
	case name == "qAttached":
		// Attached: gdb detaches rather than kills when it leaves, and
		// the recording stays open for the next connection.
		return "1", false, nil
	case p == "qfThreadInfo":
		return "m1", false, nil
	case p == "qsThreadInfo":
		return "l", false, nil
	case p == "qC":
		return "QC1", false, nil
	case strings.HasPrefix(p, "qThreadExtraInfo,"):
		return hex.EncodeToString([]byte("vCPU 0 (replay)")), false, nil
	case name == "qXfer":
		return cn.xfer(args), false, nil
	case strings.HasPrefix(p, "qRcmd,"):
		cmd, err := hex.DecodeString(p[len("qRcmd,"):])
		if err != nil {
			return badArg("qRcmd: %v", err).reply(), false, nil
		}
		if err := cn.monitor(string(cmd)); err != nil {
			return "", false, err
		}
		return "OK", false, nil
	}
	return "", false, nil
}

// xfer serves qXfer:features:read:target.xml:OFFSET,LENGTH.
func (cn *conn) xfer(args string) string {
	parts := strings.SplitN(args, ":", 4)
	if len(parts) != 4 || parts[0] != "features" || parts[1] != "read" {
		return ""
	}
	if parts[2] != "target.xml" {
		return (&Error{Code: ENOENT}).reply()
	}
	off, n, err := parseAddrLen(parts[3])
	if err != nil {
		return err.reply()
	}
	doc := targetXML
	if off >= uint64(len(doc)) {
		return "l"
	}
	n = min(n, PacketSize/2, uint64(len(doc))-off)
	more := "m"
	if off+n == uint64(len(doc)) {
		more = "l"
	}
	return more + string(escapeBinary([]byte(doc[off:off+n])))
}

func (cn *conn) vPacket(p string) (string, bool, error) {
	switch {
	case p == "vCont?":
		return "vCont;c;C;s;S", false, nil
	case strings.HasPrefix(p, "vCont;"):
		action, perr := vContAction(p[len("vCont;"):])
		if perr != nil {
			return perr.reply(), false, nil
		}
		switch action {
		case 'c', 'C':
			return cn.resume(motionContinue, cn.sess.Continue)
		case 's', 'S':
			return cn.resume(motionStep, func() (replayer.Stop, error) { return cn.sess.Step(1) })
		}
		return badArg("vCont action %q not supported", action).reply(), false, nil
	case strings.HasPrefix(p, "vKill"):
		return "OK", true, nil
	}
	return "", false, nil
}

// vContAction picks the action of a vCont packet that applies to our one
// thread: the leftmost whose thread-id is absent, -1 or 1.
func vContAction(s string) (byte, *Error) {
	for _, a := range strings.Split(s, ";") {
		if a == "" {
			return 0, badArg("vCont: empty action")
		}
		act, tid, hasTid := strings.Cut(a, ":")
		if hasTid {
			t, ok := parseThread(tid)
			if !ok {
				return 0, badArg("vCont: bad thread-id %q", tid)
			}
			if t != 1 && t != -1 {
				continue
			}
		}
		switch act[0] {
		case 'c', 's':
			if len(act) != 1 {
				return 0, badArg("vCont: bad action %q", act)
			}
		case 'C', 'S':
			// The signal cannot be delivered in a replay; it is ignored.
			if _, err := strconv.ParseUint(act[1:], 16, 8); err != nil {
				return 0, badArg("vCont: bad signal in %q", act)
			}
		}
		return act[0], nil
	}
	return 0, badArg("vCont: no action for thread 1")
}

// parseThread parses a thread-id: hex, -1 (all), 0 (any), or p<pid>.<tid>.
func parseThread(s string) (int64, bool) {
	if strings.HasPrefix(s, "p") {
		_, t, ok := strings.Cut(s[1:], ".")
		if !ok {
			return 1, true // a whole process: ours
		}
		s = t
	}
	if s == "-1" {
		return -1, true
	}
	v, err := strconv.ParseUint(s, 16, 63)
	if err != nil {
		return 0, false
	}
	if v == 0 {
		return 1, true
	}
	return int64(v), true
}

// resumeLegacy serves c, C, s and S. An address argument would resume
// elsewhere than where the recording is, which a replay cannot do, unless
// it is where the replay stands.
func (cn *conn) resumeLegacy(p string) (string, bool, error) {
	arg := p[1:]
	if p[0] == 'C' || p[0] == 'S' {
		sig, rest, _ := strings.Cut(arg, ";")
		if _, err := strconv.ParseUint(sig, 16, 8); err != nil {
			return badArg("%c: bad signal %q", p[0], sig).reply(), false, nil
		}
		arg = rest
	}
	if arg != "" {
		addr, err := strconv.ParseUint(arg, 16, 64)
		if err != nil {
			return badArg("%c: bad address %q", p[0], arg).reply(), false, nil
		}
		r, rerr := cn.sess.Registers()
		if rerr != nil || r.RIP != addr {
			return (&Error{Code: EPERM, Msg: "replay cannot resume at another address"}).reply(), false, nil
		}
	}
	if p[0] == 'c' || p[0] == 'C' {
		return cn.resume(motionContinue, cn.sess.Continue)
	}
	return cn.resume(motionStep, func() (replayer.Stop, error) { return cn.sess.Step(1) })
}

// Kinds of motion, which differ in how the guest's console output is
// followed.
const (
	motionContinue = iota
	motionStep
	motionReverse
)

// resume runs a motion of the session with the interrupt watcher on, and
// returns its stop reply. Console output and messages go first as O packets.
//
// Guest output is forwarded after a continue only: Session.Console returns
// the whole output, too much to copy at every stepi. Output made by forward
// steps shows with the next continue; after a reverse motion or a goto the
// shown length is stale and is taken again before the next continue.
func (cn *conn) resume(kind int, motion func() (replayer.Stop, error)) (string, bool, error) {
	if kind == motionContinue && cn.consoleStale {
		cn.consoleLen, cn.consoleStale = len(cn.sess.Console()), false
	}
	st, err := cn.run(motion)
	if cn.in.err != nil {
		// gdb is gone; the motion was interrupted for that.
		return "", true, fmt.Errorf("gdbstub: connection lost while the replay ran: %w", cn.in.err)
	}
	if err != nil {
		cn.logf("motion failed: %v", err)
		if err := cn.console("vmrr: " + err.Error() + "\n"); err != nil {
			return "", false, err
		}
		// gdb takes an E stop reply as "stopped, state unknown" and warns.
		return (&Error{Code: EIO, Msg: err.Error()}).reply(), false, nil
	}
	switch kind {
	case motionContinue:
		if err := cn.forwardConsole(); err != nil {
			return "", false, err
		}
	case motionReverse:
		cn.consoleStale = true
	}
	if msg := stopMessage(st); msg != "" {
		if err := cn.console(msg); err != nil {
			return "", false, err
		}
	}
	return cn.stopReply(st), false, nil
}

// interruptRetry is how often the watcher repeats Session.Interrupt after a
// Ctrl-C until the motion returns, so an interrupt that arrives while the
// motion is still starting is not lost.
const interruptRetry = 50 * time.Millisecond

// run calls motion with the interrupt watcher on. A Ctrl-C already received
// (gdb may send it right behind the resume packet) stops the motion before
// it starts.
func (cn *conn) run(motion func() (replayer.Stop, error)) (replayer.Stop, error) {
	if cn.in.takeInterrupts() {
		cn.logf("interrupt before the motion started")
		return cn.here(replayer.StopInterrupted)
	}
	if cn.in.err != nil {
		return replayer.Stop{}, cn.in.err
	}
	stop := make(chan struct{})
	done := make(chan []byte)
	go cn.watch(stop, done)
	st, err := motion()
	close(stop)
	cn.in.buf = append(cn.in.buf, <-done...)
	return st, err
}

// watch is the interrupt watcher: it owns the input channel until stop is
// closed, then hands back the bytes it kept.
func (cn *conn) watch(stop <-chan struct{}, done chan<- []byte) {
	var kept []byte
	var ticker *time.Ticker
	var retry <-chan time.Time
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
		done <- kept
	}()
	interrupt := func() {
		cn.sess.Interrupt()
		if ticker == nil {
			ticker = time.NewTicker(interruptRetry)
			retry = ticker.C
		}
	}
	for {
		var ch <-chan chunk
		if cn.in.err == nil {
			ch = cn.in.ch
		}
		select {
		case <-stop:
			return
		case <-retry:
			cn.sess.Interrupt()
		case c := <-ch:
			cn.in.take(c)
			if c.err != nil {
				cn.logf("connection lost while running: interrupting")
				interrupt()
				continue
			}
			for _, b := range cn.in.buf {
				if b == interruptByte {
					cn.logf("<- interrupt")
					interrupt()
				} else {
					kept = append(kept, b)
				}
			}
			cn.in.buf = cn.in.buf[:0]
		}
	}
}

// here is a stop of the given kind at the current position.
func (cn *conn) here(kind replayer.StopKind) (replayer.Stop, error) {
	st := replayer.Stop{Kind: kind, Pos: cn.sess.Position()}
	r, err := cn.sess.Registers()
	if err != nil {
		return st, err
	}
	st.RIP = r.RIP
	return st, nil
}

// stopMessage is the line printed on gdb's console for stops gdb cannot
// explain by itself.
func stopMessage(st replayer.Stop) string {
	at := fmt.Sprintf(" at position %s, rip %#x", st.Pos, st.RIP)
	switch st.Kind {
	case replayer.StopEnd:
		return "vmrr: end of the recording" + at + "\n"
	case replayer.StopExited:
		return fmt.Sprintf("vmrr: the guest exited with status %d%s (end of the recording)\n", st.Status, at)
	case replayer.StopCrashed:
		return "vmrr: the guest crashed" + at + ": " + st.Message + "\n"
	case replayer.StopDiverged:
		return "vmrr: replay diverged from the recording" + at + ": " + st.Message + "\n"
	}
	if st.Message != "" {
		return "vmrr: " + st.Message + "\n"
	}
	return ""
}

// Signals in stop replies, numbered as gdb's (which match Linux for these).
const (
	sigINT  = 2
	sigTRAP = 5
	sigABRT = 6
	sigSEGV = 11
)

// stopReply renders a T stop reply with the reason gdb needs to tell a
// breakpoint from a watchpoint from the end of history.
func (cn *conn) stopReply(st replayer.Stop) string {
	sig, reason := sigTRAP, ""
	switch st.Kind {
	case replayer.StopBreakpoint:
		reason = "swbreak:;"
		if cn.hardwareOnlyAt(st.RIP) {
			reason = "hwbreak:;"
		}
	case replayer.StopWatchpoint:
		reason = fmt.Sprintf("%s:%x;", cn.watchKind(st.Addr), st.Addr)
	case replayer.StopBegin:
		reason = "replaylog:begin;"
	case replayer.StopEnd, replayer.StopExited:
		reason = "replaylog:end;"
	case replayer.StopInterrupted:
		sig = sigINT
	case replayer.StopCrashed:
		sig = sigSEGV
	case replayer.StopDiverged:
		sig = sigABRT
	}
	cn.lastSig = sig
	return cn.stopSignal(sig) + reason
}

// stopSignal is a T reply with the thread and the registers gdb needs
// first (rbp, rsp, rip), saving it a g packet at each stop.
func (cn *conn) stopSignal(sig int) string {
	if sig == 0 {
		sig = sigTRAP
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "T%02xthread:1;", sig)
	if r, err := cn.sess.Registers(); err == nil {
		for _, n := range []int{regRBP, regRSP, regRIP} {
			b, _ := registerN(&r, n)
			fmt.Fprintf(&sb, "%02x:%s;", n, hex.EncodeToString(b))
		}
	}
	return sb.String()
}

// hardwareOnlyAt says whether the breakpoints at addr are all hardware
// ones, so the stop is reported as hwbreak.
func (cn *conn) hardwareOnlyAt(addr uint64) bool {
	hw := false
	for _, b := range cn.sess.Breakpoints() {
		if b.Addr != addr {
			continue
		}
		switch b.Kind {
		case replayer.BreakSoftware:
			return false
		case replayer.BreakHardware:
			hw = true
		}
	}
	return hw
}

// watchKind names the stop reason for a watchpoint hit at addr after the
// kind of the watchpoint covering it.
func (cn *conn) watchKind(addr uint64) string {
	for _, b := range cn.sess.Breakpoints() {
		if addr < b.Addr || addr-b.Addr >= max(b.Len, 1) {
			continue
		}
		switch b.Kind {
		case replayer.WatchRead:
			return "rwatch"
		case replayer.WatchAccess:
			return "awatch"
		case replayer.WatchWrite:
			return "watch"
		}
	}
	return "watch"
}

// console prints text on gdb's console through O packets.
func (cn *conn) console(text string) error {
	const chunk = 1024
	for len(text) > 0 {
		n := min(len(text), chunk)
		if err := cn.send("O" + hex.EncodeToString([]byte(text[:n]))); err != nil {
			return err
		}
		text = text[n:]
	}
	return nil
}

// maxForward bounds the guest output forwarded after one motion; the rest
// is reachable with "monitor console".
const maxForward = 16 << 10

// forwardConsole prints what the guest wrote on its serial port since the
// last stop.
func (cn *conn) forwardConsole() error {
	out := cn.sess.Console()
	if len(out) <= cn.consoleLen {
		cn.consoleLen = len(out)
		return nil
	}
	text := out[cn.consoleLen:]
	cn.consoleLen = len(out)
	if len(text) > maxForward {
		text = append([]byte("[... guest output cut: see monitor console]\n"), text[len(text)-maxForward:]...)
	}
	return cn.console(string(text))
}

func (cn *conn) readRegisters() string {
	r, err := cn.sess.Registers()
	if err != nil {
		return (&Error{Code: EIO, Msg: "registers: " + err.Error()}).reply()
	}
	return hex.EncodeToString(registerBytes(&r))
}

func (cn *conn) readRegister(arg string) string {
	n, err := strconv.ParseUint(arg, 16, 16)
	if err != nil {
		return badArg("p: bad register number %q", arg).reply()
	}
	r, serr := cn.sess.Registers()
	if serr != nil {
		return (&Error{Code: EIO, Msg: "registers: " + serr.Error()}).reply()
	}
	b, ok := registerN(&r, int(n))
	if !ok {
		return (&Error{Code: EINVAL}).reply()
	}
	return hex.EncodeToString(b)
}

// readMemory serves m ADDR,LENGTH. A read cut short by an unmapped page
// returns what was readable, as the protocol allows; nothing readable is
// EFAULT.
func (cn *conn) readMemory(arg string) string {
	addr, n, perr := parseAddrLen(arg)
	if perr != nil {
		return perr.reply()
	}
	if n == 0 {
		return badArg("m: zero length").reply()
	}
	n = min(n, PacketSize/2)
	if addr+n < addr { // stop at the top of the address space
		n = -addr
	}
	b := make([]byte, n)
	got, err := cn.sess.ReadVirtual(addr, b)
	if got <= 0 {
		cn.logf("m %#x,%d: %v", addr, n, err)
		return errUnreadable.reply()
	}
	b = b[:got]
	cn.sess.OriginalBytes(addr, b)
	return hex.EncodeToString(b)
}

// writeMemory refuses M and X, except gdb's zero-length X probe, which
// writes nothing and only asks whether binary writes are understood.
func (cn *conn) writeMemory(p string) string {
	head, _, ok := strings.Cut(p[1:], ":")
	if !ok {
		return badArg("%c: no ':'", p[0]).reply()
	}
	addr, n, perr := parseAddrLen(head)
	if perr != nil {
		return perr.reply()
	}
	if n == 0 {
		return "OK"
	}
	cn.logf("memory write at %#x (%d bytes) refused", addr, n)
	return errReadOnlyMemory.reply()
}

// breakpoint serves Z and z. Both are idempotent, as the protocol asks:
// inserting an existing breakpoint or removing a missing one is OK.
func (cn *conn) breakpoint(p string) string {
	insert := p[0] == 'Z'
	body, _, _ := strings.Cut(p[1:], ";") // conditions and commands: evaluated by gdb
	parts := strings.Split(body, ",")
	if len(parts) != 3 {
		return badArg("%c: want TYPE,ADDR,KIND", p[0]).reply()
	}
	typ, err := strconv.ParseUint(parts[0], 10, 8)
	if err != nil || typ > uint64(replayer.WatchAccess) {
		return ""
	}
	addr, err1 := strconv.ParseUint(parts[1], 16, 64)
	kind, err2 := strconv.ParseUint(parts[2], 16, 64)
	if err1 != nil || err2 != nil {
		return badArg("%c: bad address or kind in %q", p[0], body).reply()
	}
	k := bpKey{typ: replayer.BreakKind(typ), addr: addr, kind: kind}
	id, have := cn.bps[k]
	if insert {
		if have {
			return "OK"
		}
		id, err := cn.sess.AddBreakpoint(k.typ, addr, kind)
		if err != nil {
			cn.logf("Z%d at %#x: %v", typ, addr, err)
			return (&Error{Code: EINVAL, Msg: err.Error()}).reply()
		}
		cn.bps[k] = id
		return "OK"
	}
	if !have {
		return "OK"
	}
	if err := cn.sess.RemoveBreakpoint(id); err != nil {
		cn.logf("z%d at %#x: %v", typ, addr, err)
		return (&Error{Code: ENOENT, Msg: err.Error()}).reply()
	}
	delete(cn.bps, k)
	return "OK"
}

// parseAddrLen parses "ADDR,LENGTH" in hex.
func parseAddrLen(s string) (uint64, uint64, *Error) {
	a, l, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, badArg("want ADDR,LENGTH, got %q", s)
	}
	addr, err := strconv.ParseUint(a, 16, 64)
	if err != nil {
		return 0, 0, badArg("bad address %q", a)
	}
	n, err := strconv.ParseUint(l, 16, 64)
	if err != nil {
		return 0, 0, badArg("bad length %q", l)
	}
	return addr, n, nil
}
