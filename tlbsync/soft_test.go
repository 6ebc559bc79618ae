package tlbsync_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmrr/machine"
	"vmrr/nondet"
	"vmrr/recorder"
	"vmrr/replayer"
	"vmrr/tlbsync"
)

// TestSoft: on the soft CPU tlbsync is the MMU's T bit. Guests that
// rewrite a PTE without INVLPG (ptedit at CPL0, the user-mode guest at
// CPL3) see the new mapping at once, in the recording and in each replay,
// and Stats counts the marked pages and the writes that dropped
// translations. Attach refuses a soft machine built without the T bit.
func TestSoft(t *testing.T) {
	tests := []struct {
		name    string
		image   []byte
		status  int
		console string
	}{
		{"ptedit", guestImage(t, "ptedit.elf"), 1, "before: A\nimmediately: B\nafter exit: B\n"},
		{"user PTE", userPTE(true), 3<<1 | 1, "BB\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "guest.vmrr")
			f, err := os.Create(log)
			if err != nil {
				t.Fatal(err)
			}
			var con bytes.Buffer
			res, err := recorder.Record(f, recorder.Options{Image: tc.image, EmbedImage: true, Mode: nondet.ModeFast,
				Console: &con, Timeout: time.Minute, TLBSync: true, Accel: machine.AccelSoft, Warnings: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || !strings.HasSuffix(con.String(), tc.console) {
				t.Fatalf("status %d, console %q; want %d and %q", res.Status, con.String(), tc.status, tc.console)
			}
			for i := 0; i < 2; i++ {
				var rcon bytes.Buffer
				o, err := replayer.Replay(replayer.Options{LogPath: log, Console: &rcon, Warnings: io.Discard})
				if err != nil {
					t.Fatal(err)
				}
				if !o.Identical() || rcon.String() != con.String() {
					t.Fatalf("replay %d: %s; console %q", i, o.Summary(), rcon.String())
				}
			}
		})
	}

	m, err := machine.New(machine.Config{Image: guestImage(t, "ptedit.elf"), Hooks: &hooks{}, Accel: machine.AccelSoft})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := tlbsync.Attach(m); err == nil || !strings.Contains(err.Error(), "T bit") {
		t.Errorf("Attach on a soft machine without the T bit: %v", err)
	}
	m2, err := machine.New(machine.Config{Image: guestImage(t, "ptedit.elf"), Hooks: &hooks{}, Accel: machine.AccelSoft, TLBSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	s, err := tlbsync.Attach(m2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Run(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Marked == 0 || st.Writes == 0 || st.Walks == 0 {
		t.Errorf("stats %+v: want page-table pages marked, a write that dropped translations, walks", st)
	}
}
