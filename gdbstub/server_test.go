package gdbstub

import (
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"vmrr/gdbstub/gdbtest"
	"vmrr/replayer"
)

// testLog sends the protocol trace to t.Log until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func newTestServer(t testing.TB, f *fakeSession) *Server {
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return NewServer(f, Options{Log: l})
}

// pipe serves one connection over net.Pipe and returns the client side and
// the channel ServeConn's result arrives on.
func pipe(t *testing.T, srv *Server) (*gdbtest.Client, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	errc := make(chan error, 1)
	finished := make(chan struct{})
	go func() { errc <- srv.ServeConn(a); close(finished) }()
	c := gdbtest.NewClient(b)
	t.Cleanup(func() { c.Close(); <-finished })
	return c, errc
}

func call(t *testing.T, c *gdbtest.Client, body string) string {
	t.Helper()
	reply, _, err := c.Call(body)
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return reply
}

func expect(t *testing.T, c *gdbtest.Client, body, want string) {
	t.Helper()
	if got := call(t, c, body); got != want {
		t.Fatalf("%s: got %q, want %q", body, got, want)
	}
}

func expectPrefix(t *testing.T, c *gdbtest.Client, body, want string) string {
	t.Helper()
	got := call(t, c, body)
	if !strings.HasPrefix(got, want) {
		t.Fatalf("%s: got %q, want prefix %q", body, got, want)
	}
	return got
}

func TestQueries(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	tests := []struct{ send, want string }{
		{"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386",
			"PacketSize=4000;QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+;qXfer:features:read+;ReverseStep+;ReverseContinue+"},
		{"qAttached", "1"},
		{"qAttached:1", "1"},
		{"qfThreadInfo", "m1"},
		{"qsThreadInfo", "l"},
		{"qC", "QC1"},
		{"Hg0", "OK"},
		{"Hc-1", "OK"},
		{"T1", "OK"},
		{"T2", "E02"},
		{"vCont?", "vCont;c;C;s;S"},
		{"vMustReplyEmpty", ""},
		{"qTStatus", ""},
		{"qNoSuchThing", ""},
		{"!", ""},
		{"?", "T05thread:1;06:0080000000000000;07:f07f000000000000;10:0010000000000000;"},
	}
	for _, tt := range tests {
		expect(t, c, tt.send, tt.want)
	}
}

func TestChecksumErrorIsNackedThenResent(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	for _, bad := range []string{"$qC#00", "$qC#zz", "$qC#4"} {
		if err := c.SendRaw(bad); err != nil {
			t.Fatal(err)
		}
		if bad == "$qC#4" {
			// A short checksum swallows the next byte: the '$' of the
			// next packet. Send one more byte to finish it.
			c.SendRaw("$")
		}
		if b, err := c.ReadAck(); err != nil || b != '-' {
			t.Fatalf("%q: got %q, %v; want '-'", bad, b, err)
		}
	}
	expect(t, c, "qC", "QC1")
}

func TestServerResendsOnNack(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	c.SendRaw(gdbtest.Frame("qC"))
	if b, _ := c.ReadAck(); b != '+' {
		t.Fatalf("no ack")
	}
	c.NoAck = true // read without acking, then nack by hand
	if p, err := c.Recv(); err != nil || p != "QC1" {
		t.Fatalf("first copy: %q, %v", p, err)
	}
	c.SendRaw("-")
	if p, err := c.Recv(); err != nil || p != "QC1" {
		t.Fatalf("second copy: %q, %v", p, err)
	}
	c.SendRaw("+")
	c.NoAck = false
	expect(t, c, "qAttached", "1")
}

func TestEscapedAndRunLengthPackets(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	// "m}\x11000,4" is "m1000,4" with its '1' escaped; "0* 4" is "00004".
	for _, raw := range []string{"m}\x11000,4", "m1000,0* 4"} {
		c.SendRaw(gdbtest.Frame(raw))
		if b, _ := c.ReadAck(); b != '+' {
			t.Fatalf("%q not acked", raw)
		}
		if p, err := c.Recv(); err != nil || p != "0f1f4000" {
			t.Fatalf("%q: got %q, %v", raw, p, err)
		}
	}
}

func TestNoAckMode(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	expect(t, c, "QStartNoAckMode", "OK")
	c.NoAck = true
	if err := c.Send("qC"); err != nil {
		t.Fatal(err)
	}
	// The very next bytes are the reply, with no ack before it.
	var got []byte
	for len(got) < len("$QC1#c5") {
		b, err := c.ReadAck()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b)
	}
	if string(got) != "$QC1#c5" {
		t.Fatalf("got %q, want the reply without an ack", got)
	}
	expect(t, c, "qAttached", "1")
}

func TestNoAckModeDropsBadChecksum(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	expect(t, c, "QStartNoAckMode", "OK")
	c.NoAck = true
	c.SendRaw("$qC#00")
	expect(t, c, "qAttached", "1")
}

func TestMalformedPackets(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	tests := []struct{ send, want string }{
		{"mzz,4", "E.bad address \"zz\""},
		{"m1000", "E.want ADDR,LENGTH, got \"1000\""},
		{"m1000,q", "E.bad length \"q\""},
		{"m1000,0", "E.m: zero length"},
		{"pzz", "E.p: bad register number \"zz\""},
		{"p999", "E22"},
		{"Z0,zz,1", "E.Z: bad address or kind in \"0,zz,1\""},
		{"Z0,1000", "E.Z: want TYPE,ADDR,KIND"},
		{"Z9,1000,1", ""},
		{"vCont;x", "E.vCont action 'x' not supported"},
		{"vCont;", "E.vCont: empty action"},
		{"vCont;c:zz", "E.vCont: bad thread-id \"zz\""},
		{"vCont;c:2", "E.vCont: no action for thread 1"},
		{"vCont;Czz", "E.vCont: bad signal in \"Czz\""},
		{"Czz", "E.C: bad signal \"zz\""},
		{"c10", "E.replay cannot resume at another address"},
		{"qRcmd,zz", "E.qRcmd: encoding/hex: invalid byte: U+007A 'z'"},
		{"qXfer:features:read:other.xml:0,10", "E02"},
		{"qXfer:features:read:target.xml:x", "E.want ADDR,LENGTH, got \"x\""},
		{"X1000,4", "E.X: no ':'"},
	}
	for _, tt := range tests {
		expect(t, c, tt.send, tt.want)
	}
	// Undecodable: a lone escape at the end.
	expect(t, c, "qC}", "E22")
	// '$' without '#': the partial packet is dropped and the next served.
	c.SendRaw("$qAtt")
	expect(t, c, "qC", "QC1")
	// Junk between packets is skipped.
	c.SendRaw("garbage")
	expect(t, c, "qC", "QC1")
}

func TestOversizedPacketRefused(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	big := "X1000,10:" + strings.Repeat("a", PacketSize+100)
	expect(t, c, big, "E07")
	expect(t, c, "qC", "QC1") // and the stream is still in step
}

func TestWritesRefused(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	tests := []struct{ send, want string }{
		{"G" + strings.Repeat("00", 600), errReadOnlyRegs.reply()},
		{"P0=0100000000000000", errReadOnlyRegs.reply()},
		{"M2000,1:ff", errReadOnlyMemory.reply()},
		{"X2000,1:\xff", errReadOnlyMemory.reply()},
		{"X2000,0:", "OK"}, // gdb's probe for binary writes
	}
	for _, tt := range tests {
		expect(t, c, tt.send, tt.want)
	}
	expect(t, c, "m2000,8", "0000000000000000")
}

func TestRegisters(t *testing.T) {
	f := newFake(100)
	f.pos = 13
	c, _ := pipe(t, newTestServer(t, f))
	g := call(t, c, "g")
	total := 0
	for _, d := range regs {
		total += d.bits / 8
	}
	if len(g) != 2*total {
		t.Fatalf("g: %d hex digits, want %d", len(g), 2*total)
	}
	b, _ := hex.DecodeString(g)
	off := 0
	for n, d := range regs {
		want := call(t, c, fmt.Sprintf("p%x", n))
		if got := hex.EncodeToString(b[off : off+d.bits/8]); got != want {
			t.Errorf("register %d (%s): g has %s, p has %s", n, d.name, got, want)
		}
		off += d.bits / 8
	}
	tests := []struct {
		reg  int
		want string
	}{
		{0, "0d00000000000000"},                  // rax = position
		{16, "0c10000000000000"},                 // rip
		{17, "02020000"},                         // eflags
		{18, "08000000"},                         // cs
		{32, "7f030000"},                         // fctrl
		{34, "ffff0000"},                         // ftag: all empty
		{41, "000102030405060708090a0b0c0d0e0f"}, // xmm1
		{56, "801f0000"},                         // mxcsr
		{57, "0050000000000000"},                 // fs_base
		{58, "0060000000000000"},                 // gs_base
		{59, "1100008000000000"},                 // cr0
		{61, "0030000000000000"},                 // cr3
		{64, "0005000000000000"},                 // efer
	}
	for _, tt := range tests {
		expect(t, c, fmt.Sprintf("p%x", tt.reg), tt.want)
	}
}

func TestFullTagWord(t *testing.T) {
	var one = [10]byte{7: 0x80, 8: 0xff, 9: 0x3f} // 1.0
	var zero [10]byte
	var nan = [10]byte{7: 0xc0, 8: 0xff, 9: 0x7f}
	var denormal = [10]byte{0: 1}
	tests := []struct {
		name string
		ftw  uint16
		fsw  uint16
		st   map[int][10]byte
		want uint16
	}{
		{name: "empty", ftw: 0, want: 0xffff},
		{name: "full form passes", ftw: 0xfff0, want: 0xfff0},
		{name: "valid st0 at top 7", ftw: 0x80, fsw: 7 << 11, st: map[int][10]byte{0: one}, want: 0x3fff},
		{name: "zero st0 at top 0", ftw: 0x01, st: map[int][10]byte{0: zero}, want: 0xfffd},
		{name: "nan st1 at top 6", ftw: 0x80, fsw: 6 << 11, st: map[int][10]byte{1: nan}, want: 0xbfff},
		{name: "denormal st0", ftw: 0x01, st: map[int][10]byte{0: denormal}, want: 0xfffe},
	}
	for _, tt := range tests {
		var r replayer.Registers
		r.FTW, r.FSW = tt.ftw, tt.fsw
		for i, v := range tt.st {
			r.ST[i] = v
		}
		if got := fullTagWord(&r); got != tt.want {
			t.Errorf("%s: got %#04x, want %#04x", tt.name, got, tt.want)
		}
	}
}

func TestMemory(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	tests := []struct{ send, want string }{
		// The patched instruction at 0x1010 reads as the original RDTSC.
		{"m100c,8", "0f1f40000f319090"},
		// A read running off the mapped code returns what was readable.
		{"m1024,8", "0f1f4000"},
		{"m9000,4", "E14"},
		{"mffffffffffffffff,10", "E14"},
	}
	for _, tt := range tests {
		expect(t, c, tt.send, tt.want)
	}
	// A read longer than a packet can carry is cut to fit.
	if got := call(t, c, "m7000,100000"); len(got) != 2*0x1000 {
		t.Fatalf("long read: %d hex digits", len(got))
	}
}

func TestTargetXML(t *testing.T) {
	c, _ := pipe(t, newTestServer(t, newFake(100)))
	var doc strings.Builder
	for off := 0; ; {
		reply := call(t, c, fmt.Sprintf("qXfer:features:read:target.xml:%x,%x", off, 0x300))
		body, err := decodePacket([]byte(reply[1:]), PacketSize)
		if err != nil {
			t.Fatal(err)
		}
		doc.Write(body)
		off += len(body)
		if reply[0] == 'l' {
			break
		}
		if reply[0] != 'm' {
			t.Fatalf("reply %q", reply)
		}
	}
	if doc.String() != targetXML {
		t.Fatalf("reassembled target.xml differs")
	}
	var parsed struct {
		Arch     string `xml:"architecture"`
		Features []struct {
			Name string `xml:"name,attr"`
			Regs []struct {
				Name   string `xml:"name,attr"`
				Bits   int    `xml:"bitsize,attr"`
				Regnum int    `xml:"regnum,attr"`
			} `xml:"reg"`
		} `xml:"feature"`
	}
	if err := xml.Unmarshal([]byte(targetXML), &parsed); err != nil {
		t.Fatalf("target.xml: %v", err)
	}
	if parsed.Arch != "i386:x86-64" {
		t.Errorf("architecture %q", parsed.Arch)
	}
	n := 0
	var names []string
	for _, f := range parsed.Features {
		for _, r := range f.Regs {
			if r.Regnum != n {
				t.Errorf("%s has regnum %d, want %d", r.Name, r.Regnum, n)
			}
			names = append(names, r.Name)
			n++
		}
	}
	for _, want := range []string{"rax", "rip", "eflags", "gs", "st7", "fop", "xmm15", "mxcsr", "fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("target.xml lacks %s", want)
		}
	}
	if names[40] != "xmm0" || names[56] != "mxcsr" {
		t.Errorf("sse registers are not at gdb's numbers 40-56: %v", names[40:57])
	}
	expect(t, c, fmt.Sprintf("qXfer:features:read:target.xml:%x,10", len(targetXML)+5), "l")
}

func TestMotion(t *testing.T) {
	f := newFake(100)
	c, _ := pipe(t, newTestServer(t, f))
	reg := func(reply string) string { // the expedited rip
		_, r, _ := strings.Cut(reply, "10:")
		v, _ := hex.DecodeString(r[:16])
		return fmt.Sprintf("%x", uint64(v[0])|uint64(v[1])<<8)
	}
	expect(t, c, "bs", "T05thread:1;06:0080000000000000;07:f07f000000000000;10:0010000000000000;replaylog:begin;")
	expectPrefix(t, c, "bc", "T05thread:1;")
	if r := call(t, c, "vCont;s:1"); reg(r) != "1004" || strings.Contains(r, "break") {
		t.Fatalf("step: %q", r)
	}
	if r := call(t, c, "s"); reg(r) != "1008" {
		t.Fatalf("s: %q", r)
	}
	if r := call(t, c, "bs"); reg(r) != "1004" {
		t.Fatalf("bs: %q", r)
	}
	expect(t, c, "Z0,1020,1", "OK")
	expect(t, c, "Z0,1020,1", "OK") // idempotent
	r := call(t, c, "vCont;c")
	if reg(r) != "1020" || !strings.HasSuffix(r, "swbreak:;") {
		t.Fatalf("continue to breakpoint: %q", r)
	}
	r = call(t, c, "c")
	if f.pos != 18 || !strings.HasSuffix(r, "swbreak:;") {
		t.Fatalf("continue to breakpoint again: pos %d, %q", f.pos, r)
	}
	r = call(t, c, "bc")
	if f.pos != 8 || !strings.HasSuffix(r, "swbreak:;") {
		t.Fatalf("reverse-continue to breakpoint: pos %d, %q", f.pos, r)
	}
	expect(t, c, "z0,1020,1", "OK")
	expect(t, c, "z0,1020,1", "OK") // idempotent
	expect(t, c, "Z1,1014,1", "OK")
	if r := call(t, c, "c"); f.pos != 15 || !strings.HasSuffix(r, "hwbreak:;") {
		t.Fatalf("continue to hw breakpoint: pos %d, %q", f.pos, r)
	}
	expect(t, c, "z1,1014,1", "OK")
	if len(f.Breakpoints()) != 0 {
		t.Fatalf("breakpoints left: %v", f.Breakpoints())
	}
}

func TestWatchpoints(t *testing.T) {
	tests := []struct {
		z      string
		pos    int
		reason string
	}{
		{"Z2,2000,8", 23, "watch:2000;"},
		{"Z3,2000,8", 24, "rwatch:2000;"},
		{"Z4,2000,4", 23, "awatch:2000;"},
	}
	for _, tt := range tests {
		t.Run(tt.z, func(t *testing.T) {
			f := newFake(100)
			f.pos = 15
			c, _ := pipe(t, newTestServer(t, f))
			expect(t, c, tt.z, "OK")
			r := call(t, c, "c")
			if f.pos != tt.pos || !strings.HasSuffix(r, tt.reason) {
				t.Fatalf("continue: pos %d, %q; want pos %d, %s", f.pos, r, tt.pos, tt.reason)
			}
		})
	}
	// Backwards, a write watchpoint stops before the writing instruction.
	f := newFake(100)
	f.pos = 30
	c, _ := pipe(t, newTestServer(t, f))
	expect(t, c, "Z2,2000,8", "OK")
	if r := call(t, c, "bc"); f.pos != 22 || !strings.HasSuffix(r, "watch:2000;") {
		t.Fatalf("reverse-continue: pos %d, %q", f.pos, r)
	}
}

func TestEndOfLogAndConsole(t *testing.T) {
	f := newFake(35)
	c, _ := pipe(t, newTestServer(t, f))
	c.Send("c")
	reply, out, err := c.Reply()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(reply, "replaylog:end;") || !strings.HasPrefix(reply, "T05") {
		t.Fatalf("reply %q", reply)
	}
	want := "loop 0\nloop 1\nloop 2\nvmrr: end of the recording at position 3:4, rip 0x1010\n"
	if out != want {
		t.Fatalf("console %q, want %q", out, want)
	}
	// Back and forth again: only new output is shown.
	call(t, c, "bs")
	c.Send("c")
	if _, out, _ = c.Reply(); out != "vmrr: end of the recording at position 3:4, rip 0x1010\n" {
		t.Fatalf("console after bs; c: %q", out)
	}
}

func TestStopReplies(t *testing.T) {
	f := newFake(100)
	f.pos = 7
	cn := &conn{sess: f}
	f.AddBreakpoint(replayer.BreakHardware, 0x101c, 1)
	f.AddBreakpoint(replayer.WatchRead, 0x2000, 8)
	const format = "T%02xthread:1;06:0080000000000000;07:f07f000000000000;10:1c10000000000000;%s"
	tests := []struct {
		kind   replayer.StopKind
		sig    int
		reason string
	}{
		{replayer.StopStep, 5, ""},
		{replayer.StopBreakpoint, 5, "hwbreak:;"},
		{replayer.StopWatchpoint, 5, "rwatch:2000;"},
		{replayer.StopBegin, 5, "replaylog:begin;"},
		{replayer.StopEnd, 5, "replaylog:end;"},
		{replayer.StopExited, 5, "replaylog:end;"},
		{replayer.StopInterrupted, 2, ""},
		{replayer.StopCrashed, 11, ""},
		{replayer.StopDiverged, 6, ""},
	}
	for _, tt := range tests {
		st := replayer.Stop{Kind: tt.kind, RIP: 0x101c, Addr: 0x2000}
		if got, want := cn.stopReply(st), fmt.Sprintf(format, tt.sig, tt.reason); got != want {
			t.Errorf("kind %d: got %q, want %q", tt.kind, got, want)
		}
	}
	msgs := []struct {
		st   replayer.Stop
		want string
	}{
		{replayer.Stop{Kind: replayer.StopExited, Status: 3, RIP: 0x10}, "vmrr: the guest exited with status 3 at position 0:0, rip 0x10 (end of the recording)\n"},
		{replayer.Stop{Kind: replayer.StopCrashed, Message: "triple fault", RIP: 0x10}, "vmrr: the guest crashed at position 0:0, rip 0x10: triple fault\n"},
		{replayer.Stop{Kind: replayer.StopDiverged, Message: "rip differs", RIP: 0x10}, "vmrr: replay diverged from the recording at position 0:0, rip 0x10: rip differs\n"},
		{replayer.Stop{Kind: replayer.StopStep}, ""},
	}
	for _, m := range msgs {
		if got := stopMessage(m.st); got != m.want {
			t.Errorf("stopMessage(%v) = %q, want %q", m.st.Kind, got, m.want)
		}
	}
}

func TestInterrupt(t *testing.T) {
	f := newFake(100)
	f.spin.Store(true)
	f.started = make(chan struct{})
	c, _ := pipe(t, newTestServer(t, f))
	if err := c.Send("vCont;c"); err != nil {
		t.Fatal(err)
	}
	<-f.started
	c.SendRaw("\x03")
	r, _, err := c.Reply()
	if err != nil || !strings.HasPrefix(r, "T02thread:1;") {
		t.Fatalf("after Ctrl-C: %q, %v", r, err)
	}
	expect(t, c, "?", "T02thread:1;06:0080000000000000;07:f07f000000000000;10:0010000000000000;")
	// A Ctrl-C right behind the resume packet stops it before it starts.
	f.spin.Store(false)
	calls := f.calls.Load()
	c.SendRaw(gdbtest.Frame("c") + "\x03")
	if b, _ := c.ReadAck(); b != '+' {
		t.Fatal("no ack")
	}
	if r, _, err := c.Reply(); err != nil || !strings.HasPrefix(r, "T02") {
		t.Fatalf("Ctrl-C behind c: %q, %v", r, err)
	}
	if f.calls.Load() != calls {
		t.Fatalf("the motion ran despite the Ctrl-C")
	}
	// A Ctrl-C while stopped is ignored.
	c.SendRaw("\x03")
	expect(t, c, "qC", "QC1")
}

func TestMonitor(t *testing.T) {
	f := newFake(100)
	f.pos = 23
	c, _ := pipe(t, newTestServer(t, f))
	tests := []struct {
		cmd  string
		want []string
	}{
		{"info position", []string{"position 2:3, rip 0x100c\nnext event 3 of 10\n"}},
		{"events near", []string{"10 events; next to apply: 3\n", "   #0 ", "=> #3      3:2         ", "   #7 "}},
		{"events from 8 5", []string{"   #8      8:2          rdtsc      value=0x1f40\n", "   #9 "}},
		{"events from 1 0", []string{"error: events: bad count \"0\""}},
		{"events", []string{"error: usage: events near | events from K [N]"}},
		{"snapshots", []string{"1 snapshots, 4096 bytes\n", "0:0"}},
		{"goto 5", []string{"now at 5:2, rip 0x1008\n", "maint flush register-cache"}},
		{"goto end", []string{"now at 9:9", "vmrr: end of the recording"}},
		{"goto start", []string{"now at 0:0, rip 0x1000"}},
		{"goto @4:1", []string{"now at 4:1, rip 0x1004"}},
		{"goto 4:1", []string{"now at 4:1, rip 0x1004"}},
		{"goto @4+1", []string{"now at 4:1, rip 0x1004"}}, // the form monitor goto used to take
		{"goto @4:x", []string{"error: goto: bad position \"4:x\""}},
		{"goto @99", []string{"error: goto @99: fake: position"}},
		{"goto 10", []string{"error: goto: event 10 out of range: the log has 10 events"}},
		{"goto x", []string{"error: goto: \"x\" is not an event number"}},
		{"console", []string{"loop 0\nloop 1\nloop 2\nloop 3\n"}},
		{"help", []string{"info position", "events from K [N]"}},
		{"", []string{"vmrr monitor commands"}},
		{"frobnicate", []string{"error: unknown command \"frobnicate\""}},
	}
	for _, tt := range tests {
		out, err := c.Monitor(tt.cmd)
		if err != nil {
			t.Fatalf("monitor %q: %v", tt.cmd, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("monitor %q: output %q lacks %q", tt.cmd, out, w)
			}
		}
	}
}

func TestDetachAndKill(t *testing.T) {
	for _, pkt := range []string{"D", "D;1", "vKill;1"} {
		c, errc := pipe(t, newTestServer(t, newFake(100)))
		expect(t, c, pkt, "OK")
		if err := <-errc; err != nil {
			t.Fatalf("%s: ServeConn: %v", pkt, err)
		}
		c.Close()
	}
	c, errc := pipe(t, newTestServer(t, newFake(100)))
	c.Send("k")
	if err := <-errc; err != nil {
		t.Fatalf("k: ServeConn: %v", err)
	}
}

func TestOneConnectionAtATime(t *testing.T) {
	srv := newTestServer(t, newFake(100))
	c, _ := pipe(t, srv)
	expect(t, c, "qC", "QC1") // the first connection is being served
	a, b := net.Pipe()
	defer b.Close()
	if err := srv.ServeConn(a); err == nil || !strings.Contains(err.Error(), "already connected") {
		t.Fatalf("second ServeConn: %v", err)
	}
}

// listen starts Serve on a loopback port.
func listen(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func dial(t *testing.T, addr string) *gdbtest.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gdbtest.NewClient(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAbruptDisconnects(t *testing.T) {
	f := newFake(100)
	srv := newTestServer(t, f)
	addr := listen(t, srv)

	// Gone in the middle of a packet.
	c := dial(t, addr)
	c.SendRaw("$qSupp")
	c.Close()

	// Gone after setting a breakpoint and while the replay runs.
	f.spin.Store(true)
	f.started = make(chan struct{})
	c = dial(t, addr)
	expect(t, c, "Z0,1010,1", "OK")
	c.Send("vCont;c")
	<-f.started
	c.Close()

	// Gone while waiting for an ack.
	c = dial(t, addr)
	c.SendRaw(gdbtest.Frame("qC"))
	c.ReadAck()
	c.Close()

	// The next connection is served, and starts without the old
	// breakpoints.
	c = dial(t, addr)
	expect(t, c, "qC", "QC1")
	if bps := f.Breakpoints(); len(bps) != 0 {
		t.Fatalf("breakpoints of a closed connection remain: %v", bps)
	}
	f.spin.Store(false)
	expectPrefix(t, c, "c", "T05")
}

func TestServeConnResults(t *testing.T) {
	srv := newTestServer(t, newFake(100))
	// Closed between packets: a normal end.
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeConn(a) }()
	b.Close()
	if err := <-errc; err != nil {
		t.Fatalf("close between packets: %v", err)
	}
	// Closed inside a packet: an error saying so.
	a, b = net.Pipe()
	go func() { errc <- srv.ServeConn(a) }()
	b.Write([]byte("$qC"))
	b.Close()
	if err := <-errc; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("close inside a packet: %v", err)
	}
}

func TestServeStopsWhenListenerCloses(t *testing.T) {
	srv := newTestServer(t, newFake(100))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	l.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestConsoleAfterSteps(t *testing.T) {
	f := newFake(100)
	f.pos = 8
	c, _ := pipe(t, newTestServer(t, f))
	call(t, c, "s")
	call(t, c, "s") // the instruction printing "loop 0" ran
	expect(t, c, "Z0,1004,1", "OK")
	c.Send("c")
	if _, out, err := c.Reply(); err != nil || out != "loop 0\n" {
		t.Fatalf("console after steps and continue: %q, %v", out, err)
	}
	call(t, c, "bc") // back to 0x1004 at position 1
	c.Send("c")
	if _, out, err := c.Reply(); err != nil || out != "loop 0\n" {
		t.Fatalf("console after reverse and continue: %q, %v", out, err)
	}
}
