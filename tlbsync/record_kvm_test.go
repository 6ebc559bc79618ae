//go:build linux

package tlbsync_test

import (
	"strings"
	"testing"
)

// checkIdentical fails unless the replay reproduced the recording.
func checkIdentical(t *testing.T, r run) {
	t.Helper()
	if !r.outcome.Identical() {
		t.Fatalf("replay not identical: %s", r.outcome.Summary())
	}
	if r.replayed != r.console {
		t.Fatalf("replay printed %q, the recording %q", r.replayed, r.console)
	}
}

// TestPTEditRecordReplay records and replays the ptedit guest three times
// with tlbsync on: every run sees the new mapping at once and after an
// exit, and every run and replay ends alike.
func TestPTEditRecordReplay(t *testing.T) {
	needKVM(t)
	img := guestImage(t, "ptedit.elf")
	var first run
	for i := 0; i < 3; i++ {
		r := recordReplay(t, img, true)
		checkIdentical(t, r)
		if r.status != 1 || !strings.Contains(r.console, "immediately: B\nafter exit: B\n") {
			t.Fatalf("run %d: status %d, console %q; want status 1 and B, B", i, r.status, r.console)
		}
		if i == 0 {
			first = r
			continue
		}
		if r.console != first.console || r.state != first.state {
			t.Fatalf("run %d differs from run 0: console %q state %#x, run 0 %q %#x", i, r.console, r.state, first.console, first.state)
		}
	}
}

// TestUserPTE records and replays the user-mode guest (see userPTE), which
// reads through a PTE it rewrote without INVLPG at CPL3, where this host
// runs guest code natively.
func TestUserPTE(t *testing.T) {
	needKVM(t)
	img := userPTE(true)
	t.Run("on", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			r := recordReplay(t, img, true)
			checkIdentical(t, r)
			// Value 3: both reads saw page B.
			if r.status != 3<<1|1 || r.console != "BB\n" {
				t.Fatalf("run %d: status %d, console %q; want 7 and \"BB\\n\"", i, r.status, r.console)
			}
		}
	})
	// tlbsync notices a CR3 load at the next exit: a guest that writes to
	// its new tables before any exit is not trapped there, and sees the
	// stale mapping until that exit. The same in record and replay.
	t.Run("on-no-exit-after-cr3", func(t *testing.T) {
		r := recordReplay(t, userPTE(false), true)
		checkIdentical(t, r)
		t.Logf("tlbsync on, no exit between loading CR3 and the PTE write: the guest saw %q (this host: \"AB\")", strings.TrimSpace(r.console))
		if len(r.console) != 3 || r.console[1] != 'B' {
			t.Fatalf("status %d, console %q; want B after the exit", r.status, r.console)
		}
	})
	// Without tlbsync the result is the host's business: on PVM the shadow
	// page tables keep the old translation (the guest sees A, A: the PTE
	// write is never noticed, not even across an exit); with hardware
	// nested paging the guest's own TLB decides. Whatever it is, the guest
	// must end normally with a console that matches its status.
	t.Run("off", func(t *testing.T) {
		r := recordReplay(t, img, false)
		t.Logf("tlbsync off: the guest saw %q (immediately, after an exit), status %d; replay: %s", strings.TrimSpace(r.console), r.status, r.outcome.Summary())
		if len(r.console) != 3 || r.status < 1 || r.status > 7 {
			t.Fatalf("status %d, console %q: want two letters and a debug exit", r.status, r.console)
		}
		v := 0
		if r.console[0] == 'B' {
			v |= 1
		}
		if r.console[1] == 'B' {
			v |= 2
		}
		if r.status != v<<1|1 {
			t.Fatalf("status %d does not match the letters %q", r.status, r.console)
		}
	})
}
