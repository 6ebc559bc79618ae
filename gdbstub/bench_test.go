package gdbstub

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"vmrr/gdbstub/gdbtest"
)

// BenchmarkStepRoundTrip measures what one gdb stepi costs in the stub:
// vCont;s:1 with its stop reply, then a g packet, in no-ack mode over
// net.Pipe against the fake session. The baseline, measured in the same
// run with the same client, gets the same replies from a server that
// answers each packet with a canned one and does no protocol work; the
// ratio is the stub's overhead.
func BenchmarkStepRoundTrip(b *testing.B) {
	f := newFake(1 << 30)
	c := benchConn(b, f)
	stepReply, _, _ := c.Call("vCont;s:1")
	gReply, _, _ := c.Call("g")

	x, y := net.Pipe()
	defer x.Close()
	go cannedServer(y, []string{gdbtest.Frame(stepReply), gdbtest.Frame(gReply)})
	canned := gdbtest.NewClient(x)
	canned.NoAck = true

	roundTrip := func(c *gdbtest.Client) {
		if _, _, err := c.Call("vCont;s:1"); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Call("g"); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.StopTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		roundTrip(canned)
	}
	base := float64(time.Since(t0).Nanoseconds()) / float64(b.N)
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		roundTrip(c)
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(base, "baseline-ns/op")
	b.ReportMetric(per/base, "x-baseline")
}

// cannedServer answers the packets it reads with replies, in turn.
func cannedServer(c net.Conn, replies []string) {
	r := bufio.NewReader(c)
	for i := 0; ; i++ {
		if _, err := r.ReadString('#'); err != nil {
			return
		}
		if _, err := r.Discard(2); err != nil {
			return
		}
		if _, err := io.WriteString(c, replies[i%len(replies)]); err != nil {
			return
		}
	}
}

func benchConn(b *testing.B, f *fakeSession) *gdbtest.Client {
	srv := NewServer(f, Options{})
	x, y := net.Pipe()
	done := make(chan struct{})
	go func() { srv.ServeConn(x); close(done) }()
	c := gdbtest.NewClient(y)
	b.Cleanup(func() { c.Close(); <-done })
	if _, _, err := c.Call("QStartNoAckMode"); err != nil {
		b.Fatal(err)
	}
	c.NoAck = true
	return c
}
