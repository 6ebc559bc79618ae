package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/position"
)

// dumpTestLog writes a closed log of n events of every kind, in frames of
// about frameBytes, and returns its bytes.
func dumpTestLog(t *testing.T, n, frameBytes int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.vmrr")
	img := []byte("image")
	h := &logfmt.Header{VMRRVersion: "test", ImagePath: "guest.elf", ImageSHA256: logfmt.HashImage(img), ImageSize: 5,
		MemoryBytes: 32 << 20, Boot: "elf64", Mode: "fast", CPUID: []logfmt.CPUIDEntry{{Function: 1, EAX: 0x306a9}},
		Patches:   []logfmt.Patch{{Addr: 0x1000, Len: 2, Original: []byte{0x0f, 0x31}, Instr: cpu.RDTSC}},
		StartTime: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), Host: "test host"}
	w, err := logfmt.Create(path, h, logfmt.WriterOptions{FrameBytes: frameBytes})
	if err != nil {
		t.Fatal(err)
	}
	tsc := uint64(1_000_000)
	for i := 0; i < n; i++ {
		p := position.Pos{Exit: uint64(i + 1)}
		var e *logfmt.Event
		switch i % 8 {
		case 0, 1, 2:
			tsc += 15000
			e = &logfmt.Event{Kind: logfmt.KindNonDet, Pos: p, Instr: cpu.RDTSC, Values: []uint64{tsc}}
		case 3:
			e = &logfmt.Event{Kind: logfmt.KindPortIn, Pos: p, Port: 0x3fd, Size: 1, Values: []uint64{0x61}}
		case 4:
			e = &logfmt.Event{Kind: logfmt.KindInterrupt, Pos: p, Vector: 0x20,
				Landing: logfmt.Landing{RIP: 0x1234, RegHash: 1, MemHash: 2, Pages: []uint64{0x100, 0x101}}}
			if i%16 == 12 {
				e.Kind, e.Vector = logfmt.KindInject, 0x21
			}
		case 5:
			e = &logfmt.Event{Kind: logfmt.KindSerialRX, Pos: p, Data: []byte("hi\n"),
				Landing: logfmt.Landing{RIP: 0x1300, RegHash: 5, MemHash: 6}}
		case 6:
			e = &logfmt.Event{Kind: logfmt.KindRingFlush, Pos: p, Ring: []logfmt.RingEntry{{Kind: 1, Value: tsc + 10}, {Kind: 2, Aux: 1, Value: tsc + 20}}}
		case 7:
			regs := make([]uint64, len(machine.RegNames))
			for j := range regs {
				regs[j] = uint64(j + 1)
			}
			e = &logfmt.Event{Kind: logfmt.KindCheckpoint, Pos: p, RIP: 0x2000, RegHash: 3, MemHash: 4, Values: regs,
				Landing: logfmt.Landing{Pages: []uint64{0x100<<32 | 0xabcd, 0x101<<32 | 1}}}
		}
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(&logfmt.EndRecord{Reason: "guest exited", Status: 7}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDump builds vmrr once and runs vmrr dump on good, cut and damaged
// logs.
func TestDump(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vmrr")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(t *testing.T, args ...string) (stdout, stderr string, status int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"dump"}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), status
	}
	eventLines := func(out string) []string {
		var ev []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "#") {
				ev = append(ev, l)
			}
		}
		return ev
	}

	good := dumpTestLog(t, 40, 64)
	goodPath := write("good.vmrr", good)

	t.Run("text", func(t *testing.T) {
		out, errOut, st := run(t, goodPath)
		if st != 0 || errOut != "" {
			t.Fatalf("status %d, stderr %q", st, errOut)
		}
		for _, want := range []string{
			"format    1\n", "image     guest.elf (5 bytes, sha256 ", "memory    32 MiB", "boot      elf64\n",
			"start     2026-11-26T12:00:00Z\n", "  0x1000 2 bytes rdtsc original 0f31\n",
			"end       reason=\"guest exited\" status=7",
			"#0 1:0 nondet rdtsc 0xf7cd8\n",
			"#3 4:0 port-in port=0x3fd size=1 value=0x61\n",
			"#4 5:0 irq vector=0x20 rip=0x1234 reghash=0x1 memhash=0x2 pages=0x100,0x101\n",
			"#5 6:0 serial-rx \"hi\\n\" rip=0x1300 reghash=0x5 memhash=0x6 pages=-\n",
			"#6 7:0 ring-flush n=2 rdtsc:0xff212 rdtscp:0xff21c,aux=0x1\n",
			"#7 8:0 checkpoint rip=0x2000 reghash=0x3 memhash=0x4 rax=0x1 rbx=0x2 rcx=0x3 rdx=0x4 rsi=0x5 rdi=0x6 " +
				"rsp=0x7 rbp=0x8 r8=0x9 r9=0xa r10=0xb r11=0xc r12=0xd r13=0xe r14=0xf r15=0x10 rip=0x11 rflags=0x12 " +
				"pages=0x100:0000abcd,0x101:00000001\n",
			"#12 13:0 inject vector=0x21 rip=0x1234 reghash=0x1 memhash=0x2 pages=0x100,0x101\n",
			"#40 40:0 end reason=\"guest exited\" status=7 rip=0x0 statehash=0x0 events=40\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if n := len(eventLines(out)); n != 41 {
			t.Errorf("%d event lines, want 41", n)
		}
	})

	t.Run("json", func(t *testing.T) {
		out, _, st := run(t, goodPath, "--json") // flags after the log name too
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if st != 0 || len(lines) != 42 {
			t.Fatalf("status %d, %d lines", st, len(lines))
		}
		for i, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %d: %v: %s", i, err, l)
			}
			want := "event"
			if i == 0 {
				want = "header"
			}
			if m["type"] != want {
				t.Fatalf("line %d has type %v", i, m["type"])
			}
		}
		if !strings.Contains(lines[1], `"kind":"nondet","exit":1,"insn":0,"instr":"rdtsc","values":["0xf7cd8"]`) {
			t.Errorf("first event: %s", lines[1])
		}
		for _, want := range []string{
			`"kind":"inject","exit":13,"insn":0,"vector":33,"rip":"0x1234","reg_hash":"0x1","mem_hash":"0x2","pages":["0x100","0x101"]`,
			`"kind":"serial-rx","exit":6,"insn":0,"rip":"0x1300","reg_hash":"0x5","mem_hash":"0x6","data":"68690a","text":"hi\n"`,
			`"kind":"checkpoint","exit":8,"insn":0,"values":["0x1","0x2",`,
			`"rflags"],"rip":"0x2000","reg_hash":"0x3","mem_hash":"0x4","pages":["0x1000000abcd","0x10100000001"]`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("json lacks %s", want)
			}
		}
		if !strings.Contains(lines[0], `"image_sha256":"`) || !strings.Contains(lines[0], `"end":{"reason":"guest exited"`) {
			t.Errorf("header: %s", lines[0])
		}
	})

	t.Run("from and count", func(t *testing.T) {
		out, _, st := run(t, "--from", "10", "--count", "3", goodPath)
		ev := eventLines(out)
		if st != 0 || len(ev) != 3 || !strings.HasPrefix(ev[0], "#10 11:0 ") || !strings.HasPrefix(ev[2], "#12 ") {
			t.Fatalf("status %d, events %q", st, ev)
		}
		// A position, as every other command prints it, starts at the
		// first event at or after it.
		for _, p := range []string{"11:0", "10:1"} {
			out, _, st = run(t, "--from", p, "--count", "1", goodPath)
			if ev := eventLines(out); st != 0 || len(ev) != 1 || !strings.HasPrefix(ev[0], "#10 11:0 ") {
				t.Errorf("--from %s: status %d, events %q", p, st, ev)
			}
		}
		if _, errOut, st := run(t, "--from", "11:x", goodPath); st != 2 || !strings.Contains(errOut, `bad position "11:x"`) {
			t.Errorf("--from 11:x: status %d, %q", st, errOut)
		}
		out, _, st = run(t, "--from", "41", goodPath)
		if st != 0 || len(eventLines(out)) != 0 {
			t.Fatalf("--from at the end: status %d, %q", st, out)
		}
		_, errOut, st := run(t, "--from", "42", goodPath)
		if st != 2 || !strings.Contains(errOut, "the log has 41 events") {
			t.Fatalf("--from past the end: status %d, %q", st, errOut)
		}
	})

	t.Run("stats", func(t *testing.T) {
		out, _, st := run(t, "--stats", goodPath)
		if st != 0 || len(eventLines(out)) != 0 {
			t.Fatalf("status %d:\n%s", st, out)
		}
		for _, want := range []string{"events       41\n", "  nondet      15\n", "  ring-flush  5 (10 entries)\n",
			"  checkpoint  5 (10 pages)\n", "  irq         3\n", "  inject      2\n",
			"instructions rdtsc=20 rdtscp=5\n", "bytes/event", "compression ratio", "fixed-width"} {
			if !strings.Contains(out, want) {
				t.Errorf("stats lack %q:\n%s", want, out)
			}
		}
		out, _, _ = run(t, "--stats", "--json", goodPath)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var s struct {
			Type            string
			Events          int
			Kinds           map[string]int
			CheckpointPages int `json:"checkpoint_pages"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.Type != "stats" || s.Events != 41 ||
			s.Kinds["irq"] != 3 || s.Kinds["inject"] != 2 || s.CheckpointPages != 10 {
			t.Fatalf("json stats %+v, %v", s, err)
		}
	})

	t.Run("truncated", func(t *testing.T) {
		r, err := logfmt.Open(goodPath)
		if err != nil {
			t.Fatal(err)
		}
		// Cut the log in the middle of its sixth frame: the first five
		// are printed.
		var cutAfter uint64
		for i := 0; ; i++ {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			if st := r.Stats(); st.Frames == 6 {
				cutAfter = uint64(i)
				break
			}
		}
		r.Close()
		off := frameOffset(t, good, 5)
		p := write("cut.vmrr", good[:off+30])
		out, errOut, st := run(t, p)
		if st != 1 || len(eventLines(out)) != int(cutAfter) {
			t.Fatalf("status %d, %d events (want %d)", st, len(eventLines(out)), cutAfter)
		}
		want := "vmrr: log ends early after event " + itoa(cutAfter) + " (recording was interrupted)\n"
		if errOut != want {
			t.Fatalf("stderr %q, want %q", errOut, want)
		}
		// Cut inside the header: nothing but the message.
		p = write("cut-header.vmrr", good[:20])
		out, errOut, st = run(t, p)
		if st != 1 || out != "" || errOut != "vmrr: log ends early after event 0 (recording was interrupted)\n" {
			t.Fatalf("cut in the header: status %d, stdout %q, stderr %q", st, out, errOut)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		c := append([]byte(nil), good...)
		off := frameOffset(t, good, 2)
		c[off+60] ^= 0x10
		p := write("corrupt.vmrr", c)
		out, errOut, st := run(t, p)
		want := "vmrr: " + p + ": frame 2 at offset " + itoa(uint64(off)) + ": checksum mismatch\n"
		if st != 1 || errOut != want || len(eventLines(out)) == 0 {
			t.Fatalf("status %d, stderr %q (want %q)", st, errOut, want)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		v2 := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(v2[8:], 2)
		tests := []struct {
			name string
			args []string
			want string
		}{
			{"not a log", []string{write("x.elf", []byte("\x7fELF\x02\x01\x01 not a log at all"))}, "not a vmrr log"},
			{"missing", []string{filepath.Join(dir, "missing.vmrr")}, "no such file"},
			{"version", []string{write("v2.vmrr", v2)}, "log format version 2 is not supported by this vmrr (supports 1)"},
			{"no log", nil, "usage: vmrr dump"},
			{"two logs", []string{goodPath, goodPath}, "usage: vmrr dump"},
			{"bad flag", []string{"--frm", "3", goodPath}, "flag provided but not defined"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, errOut, st := run(t, tt.args...)
				if st != 2 || out != "" || !strings.Contains(errOut, tt.want) {
					t.Fatalf("status %d, stdout %q, stderr %q", st, out, errOut)
				}
				if !strings.HasPrefix(tt.want, "usage") && !strings.HasPrefix(tt.name, "bad") && strings.Count(errOut, "\n") != 1 {
					t.Fatalf("more than one line: %q", errOut)
				}
			})
		}
	})
}

// frameOffset finds frame i of a log by walking the frame headers.
func frameOffset(t *testing.T, b []byte, i int) int {
	t.Helper()
	off := 12 + 16 + int(binary.LittleEndian.Uint32(b[16:]))
	for ; i > 0; i-- {
		if string(b[off:off+4]) != "FRAM" {
			t.Fatalf("no frame at %d", off)
		}
		off += 56 + int(binary.LittleEndian.Uint32(b[off+4:]))
	}
	return off
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
