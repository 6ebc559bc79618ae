package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The demo embeds a copy of testdata/guests/race.elf; rebuilding the guests
// must refresh it (cp testdata/guests/race.elf cmd/vmrr/demo-race.elf).
func TestDemoGuestCurrent(t *testing.T) {
	want, err := os.ReadFile("../../testdata/guests/race.elf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(demoGuest, want) {
		t.Fatal("cmd/vmrr/demo-race.elf differs from testdata/guests/race.elf: copy it over")
	}
}

func TestDemo(t *testing.T) {
	r := runVMRR(t, "demo")
	if r.status != 0 {
		t.Fatalf("vmrr demo: status %d\n%s", r.status, r)
	}
	for _, want := range []string{"recorded: counter:", "replay 1: counter:", "replay 2: counter:", "replay identical: yes", "events", "log size"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}
