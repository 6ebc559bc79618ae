// Package gdbtest helps test GDB remote protocol servers: a small client
// that speaks the packet framing (for packet-level tests), and a runner for
// the real gdb in batch mode (for end-to-end tests). It does not depend on
// gdbstub, so gdbstub's own tests and integration tests of the replayer can
// both use it.
package gdbtest

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Timeout bounds each Client operation and each gdb run, so a broken server
// fails a test instead of hanging it.
var Timeout = 60 * time.Second

// Frame wraps body as $body#checksum.
func Frame(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum += body[i]
	}
	return fmt.Sprintf("$%s#%02x", body, sum)
}

// Client is the gdb side of a remote protocol connection.
type Client struct {
	c net.Conn
	r *bufio.Reader
	// NoAck stops the client sending and expecting acks; set it after a
	// successful QStartNoAckMode.
	NoAck bool
}

// NewClient returns a Client on c.
func NewClient(c net.Conn) *Client {
	return &Client{c: c, r: bufio.NewReader(c)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

func (c *Client) deadline() { c.c.SetDeadline(time.Now().Add(Timeout)) }

// SendRaw writes s as it is: for malformed packets, acks and Ctrl-C.
func (c *Client) SendRaw(s string) error {
	c.deadline()
	_, err := c.c.Write([]byte(s))
	if err != nil {
		return fmt.Errorf("gdbtest: write: %w", err)
	}
	return nil
}

// Send frames body, writes it and, in ack mode, waits for the '+'.
func (c *Client) Send(body string) error {
	if err := c.SendRaw(Frame(body)); err != nil {
		return err
	}
	if c.NoAck {
		return nil
	}
	b, err := c.ReadAck()
	if err != nil {
		return err
	}
	if b != '+' {
		return fmt.Errorf("gdbtest: %q answered with %q", body, b)
	}
	return nil
}

// ReadAck reads the next byte, which should be '+' or '-'.
func (c *Client) ReadAck() (byte, error) {
	c.deadline()
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, fmt.Errorf("gdbtest: reading an ack: %w", err)
	}
	return b, nil
}

// Recv reads the next packet, checks its checksum, acks it in ack mode
// and returns its raw body. Acks before the packet are skipped.
func (c *Client) Recv() (string, error) {
	c.deadline()
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", fmt.Errorf("gdbtest: reading a packet: %w", err)
		}
		if b == '$' {
			break
		}
		if b != '+' {
			return "", fmt.Errorf("gdbtest: byte %q before a packet", b)
		}
	}
	body, err := c.r.ReadString('#')
	if err != nil {
		return "", fmt.Errorf("gdbtest: reading a packet body: %w", err)
	}
	body = body[:len(body)-1]
	var cs [2]byte
	if _, err := c.r.Read(cs[:1]); err != nil {
		return "", err
	}
	if _, err := c.r.Read(cs[1:]); err != nil {
		return "", err
	}
	if want := Frame(body); want[len(want)-2:] != string(cs[:]) {
		return "", fmt.Errorf("gdbtest: bad checksum %q on %q", cs[:], body)
	}
	if !c.NoAck {
		if err := c.SendRaw("+"); err != nil {
			return "", err
		}
	}
	return body, nil
}

// Call sends body and returns the reply, collecting console output sent as
// O packets before it.
func (c *Client) Call(body string) (reply, console string, err error) {
	if err := c.Send(body); err != nil {
		return "", "", err
	}
	return c.Reply()
}

// Reply reads packets up to one that is not console output (O followed by
// hex, and not the reply "OK"), and returns it with the console output.
func (c *Client) Reply() (reply, console string, err error) {
	var out strings.Builder
	for {
		p, err := c.Recv()
		if err != nil {
			return "", out.String(), err
		}
		if len(p) > 1 && p[0] == 'O' && p != "OK" {
			b, err := hex.DecodeString(p[1:])
			if err == nil {
				out.Write(b)
				continue
			}
		}
		return p, out.String(), nil
	}
}

// Monitor runs a "monitor" command (qRcmd) and returns its output; the
// final reply must be OK.
func (c *Client) Monitor(cmd string) (string, error) {
	reply, out, err := c.Call("qRcmd," + hex.EncodeToString([]byte(cmd)))
	if err != nil {
		return out, err
	}
	if reply != "OK" {
		return out, fmt.Errorf("gdbtest: monitor %q: reply %q", cmd, reply)
	}
	return out, nil
}

// GDB returns the path of the gdb binary, or "" if there is none.
func GDB() string {
	p, err := exec.LookPath("gdb")
	if err != nil {
		return ""
	}
	return p
}

// RunGDB runs gdb in batch mode against the server at addr, with the x86-64
// architecture set, and the commands given (each as one -ex). It returns
// gdb's combined output. It skips the test if gdb is not installed.
func RunGDB(t testing.TB, addr string, cmds ...string) string {
	t.Helper()
	return Batch{Addr: addr, Cmds: cmds}.Run(t)
}

// Batch is one run of gdb in batch mode against a server.
type Batch struct {
	Addr  string   // the server, host:port
	Image string   // the program gdb reads symbols from; "" for none (x86-64 is then set)
	Dir   string   // gdb's working directory, where relative source paths resolve; "" for the test's
	Cmds  []string // run after "target remote", each as one -ex
}

// Run runs gdb and returns its combined output. It skips the test if gdb
// is not installed, and fails it if gdb does not finish within Timeout.
func (b Batch) Run(t testing.TB) string {
	t.Helper()
	gdb := GDB()
	if gdb == "" {
		t.Skip("gdb is not installed")
	}
	args := []string{"-nx", "-batch"}
	if b.Image != "" {
		args = append(args, b.Image)
	} else {
		args = append(args, "-ex", "set architecture i386:x86-64")
	}
	args = append(args, "-ex", "set pagination off", "-ex", "target remote "+b.Addr)
	for _, c := range b.Cmds {
		args = append(args, "-ex", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gdb, args...)
	cmd.Dir = b.Dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("gdb did not finish in %v; output:\n%s", Timeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running gdb: %v", err)
	}
	return string(out)
}
