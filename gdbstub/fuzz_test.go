package gdbstub

import (
	"io"
	"net"
	"testing"

	"vmrr/gdbstub/gdbtest"
)

// FuzzServeConn feeds arbitrary bytes to a connection: whatever arrives,
// ServeConn must return once the peer is gone, without panicking.
func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		gdbtest.Frame("qSupported") + "+" + gdbtest.Frame("g"),
		gdbtest.Frame("QStartNoAckMode") + "+" + gdbtest.Frame("m1000,8") + gdbtest.Frame("vCont;c"),
		gdbtest.Frame("Z2,2000,8") + "+" + gdbtest.Frame("c") + "+" + gdbtest.Frame("bc") + "\x03",
		gdbtest.Frame("qRcmd,696e666f20706f736974696f6e") + "+++",
		"$m}\x11000,4#00-$qC*",
		gdbtest.Frame("qXfer:features:read:target.xml:0,fff"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := NewServer(newFake(50), Options{})
		a, b := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(a) }()
		go io.Copy(io.Discard, b)
		b.Write(in)
		b.Close()
		<-done
	})
}
