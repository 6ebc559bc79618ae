package position

import "testing"

func TestStringParse(t *testing.T) {
	for _, p := range []Pos{{}, {97, 615}, {1<<64 - 1, 1<<64 - 1}} {
		q, err := Parse(p.String())
		if err != nil || q != p {
			t.Errorf("Parse(%q) = %v, %v; want %v", p.String(), q, err, p)
		}
	}
	if s := (Pos{97, 615}).String(); s != "97:615" {
		t.Errorf("String = %q, want 97:615", s)
	}
	for in, want := range map[string]Pos{"12": {12, 0}, "12+3": {12, 3}, "0:0": {}} {
		if p, err := Parse(in); err != nil || p != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, p, err, want)
		}
	}
	for _, in := range []string{"", ":", "1:", ":2", "x", "1:2:3", "-1", "1 : 2", "exit 1"} {
		if p, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, p)
		}
	}
}

func TestLess(t *testing.T) {
	ordered := []Pos{{0, 0}, {0, 5}, {1, 0}, {1, 2}, {2, 1}}
	for i, p := range ordered {
		for j, q := range ordered {
			if p.Less(q) != (i < j) {
				t.Errorf("%v.Less(%v) = %v", p, q, p.Less(q))
			}
		}
	}
}
