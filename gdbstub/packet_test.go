package gdbstub

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodePacket(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{name: "plain", raw: "m1000,4", want: "m1000,4"},
		{name: "empty", raw: "", want: ""},
		{name: "escape", raw: "X1,3:}\x03}\x04}\x0a", want: "X1,3:#$*"},
		{name: "escaped brace", raw: "}]", want: "}"},
		{name: "run of 3", raw: "0* ", want: "0000"},
		{name: "run then text", raw: "ab*!c", want: "abbbbbc"},
		{name: "escaped star is not a run", raw: "a}\x0a!", want: "a*!"},
		{name: "run of escaped byte", raw: "}\x03* ", want: "####"},
		{name: "escape at end", raw: "abc}", wantErr: true},
		{name: "run at start", raw: "* ", wantErr: true},
		{name: "run without count", raw: "a*", wantErr: true},
		{name: "run count below space", raw: "a*\x10", wantErr: true},
		{name: "run count above tilde", raw: "a*\x80", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodePacket([]byte(tt.raw), PacketSize)
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("decodePacket(%q) = %q, %v; want errMalformed", tt.raw, got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("decodePacket(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestDecodePacketLimit(t *testing.T) {
	// 100 runs of 97 bytes each: far more than the limit allows.
	raw := strings.Repeat("a*~", 100)
	if _, err := decodePacket([]byte(raw), 1000); !errors.Is(err, errMalformed) {
		t.Fatalf("want errMalformed for an expansion past the limit, got %v", err)
	}
	if _, err := decodePacket(bytes.Repeat([]byte{'a'}, 11), 10); !errors.Is(err, errMalformed) {
		t.Fatalf("want errMalformed for a body past the limit, got %v", err)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	esc := escapeBinary(all)
	for _, c := range []byte("#$*") {
		if bytes.IndexByte(esc, c) >= 0 {
			t.Errorf("escaped data still holds %q", c)
		}
	}
	got, err := decodePacket(esc, PacketSize)
	if err != nil || !bytes.Equal(got, all) {
		t.Fatalf("round trip: %v, %x", err, got)
	}
}

func TestFrame(t *testing.T) {
	tests := []struct{ body, want string }{
		{"", "$#00"},
		{"OK", "$OK#9a"},
		{"qSupported", "$qSupported#37"},
	}
	for _, tt := range tests {
		if got := string(frame([]byte(tt.body))); got != tt.want {
			t.Errorf("frame(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestTextSafe(t *testing.T) {
	if got := textSafe("a$b#c*d}e\nf"); got != "a_b_c_d_e f" {
		t.Fatalf("textSafe = %q", got)
	}
}

func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{"m1000,4", "X1,3:}\x03}\x04}\x0a", "0* ", "a*~", "}", "*"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := decodePacket(raw, 4096)
		if err == nil && len(out) > 4096 {
			t.Fatalf("decoded %d bytes past the limit", len(out))
		}
		// Whatever escapeBinary makes decodes back to itself.
		if len(raw) <= 1024 {
			back, err := decodePacket(escapeBinary(raw), 4096)
			if err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("escape round trip of %q: %q, %v", raw, back, err)
			}
		}
	})
}
