//go:build linux

package tlbsync_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/machine/probe"
	"vmrr/nondet"
	"vmrr/recorder"
	"vmrr/replayer"
	"vmrr/tlbsync"
)

// needKVM skips tb when this host cannot run a VM.
func needKVM(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		tb.Skipf("needs /dev/kvm: %v", err)
	}
	f.Close()
}

// attach is tlbsync.Attach for these tests of tlbsync on KVM. Where this
// host's KVM cannot run a guest on page tables in read-only memory slots
// (probe.ReadOnlyPageTables: AMD nested paging), Attach must refuse in one
// line that points at --accel soft, and the test skips naming what the
// host lacks.
func attach(tb testing.TB, m *machine.Machine) (*tlbsync.Sync, error) {
	tb.Helper()
	if m.Accel() != machine.AccelKVM {
		return tlbsync.Attach(m)
	}
	lack := probe.ReadOnlyPageTables()
	s, err := tlbsync.Attach(m)
	switch {
	case lack == nil:
		return s, err
	case err == nil:
		tb.Fatalf("tlbsync.Attach accepted a host whose KVM lacks %s (%v)", probe.MechROPageTables, lack)
	case strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--accel soft"):
		tb.Fatalf("tlbsync.Attach refused with %q, want one line pointing at --accel soft", err)
	}
	tb.Skipf("needs %s, which this host's KVM lacks: %v", probe.MechROPageTables, lack)
	return nil, err
}

// needRecord skips a test that records with tlbsync on where this host's
// KVM cannot keep the guest's page tables read-only (see attach).
func needRecord(t *testing.T, tlb bool) {
	t.Helper()
	needKVM(t)
	if err := probe.ReadOnlyPageTables(); tlb && err != nil {
		t.Skipf("needs %s, which this host's KVM lacks: %v", probe.MechROPageTables, err)
	}
}

// run is one recording and its replay.
type run struct {
	console  string
	status   int
	state    uint64
	replayed string // the replay's console
	outcome  *replayer.Outcome
}

// recordReplay records image with tlbsync on or off and replays the log.
// Where this host's KVM has no exact instruction counter the recording
// places its events at the guest's exits, as vmrr record does there (these
// guests have no timer: nothing changes for them).
func recordReplay(t *testing.T, image []byte, tlb bool) run {
	t.Helper()
	needRecord(t, tlb)
	log := filepath.Join(t.TempDir(), "guest.vmrr")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	var con bytes.Buffer
	res, err := recorder.Record(f, recorder.Options{Image: image, EmbedImage: true, Mode: nondet.ModeFast,
		Console: &con, Timeout: 60 * time.Second, TLBSync: tlb, ExitsOnly: probe.ExactCounter() != nil})
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	var r run
	r.console, r.status = con.String(), res.Status
	var rcon bytes.Buffer
	o, err := replayer.Replay(replayer.Options{LogPath: log, Console: &rcon})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	r.outcome, r.replayed, r.state = o, rcon.String(), o.StateHash
	return r
}
