package machine

import (
	"debug/elf"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestNewConfigErrors covers what New refuses before it touches KVM.
func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error
	}{
		{"no hooks", Config{Image: codeExit}, []string{"machine: no hooks"}},
		{"1 MiB of RAM", Config{Image: codeExit, MemoryBytes: 1 << 20, Hooks: &nopHooks{}},
			[]string{"machine: memory size 1048576", "between 2 MiB and 4 GiB"}},
		{"one page under 2 MiB", Config{Image: codeExit, MemoryBytes: 2<<20 - 4096, Hooks: &nopHooks{}},
			[]string{"memory size 2093056"}},
		{"not a page multiple", Config{Image: codeExit, MemoryBytes: 2<<20 + 2048, Hooks: &nopHooks{}},
			[]string{"memory size 2099200", "multiple of 4 KiB"}},
		{"one byte over", Config{Image: codeExit, MemoryBytes: 2<<20 + 1, Hooks: &nopHooks{}},
			[]string{"memory size 2097153"}},
		{"one page over 4 GiB", Config{Image: codeExit, MemoryBytes: 4<<30 + 4096, Hooks: &nopHooks{}},
			[]string{"memory size 4294971392"}},
		{"1 TiB", Config{Image: codeExit, MemoryBytes: 1 << 40, Hooks: &nopHooks{}},
			[]string{"memory size 1099511627776"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.cfg)
			if m != nil || err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			if errors.Is(err, ErrBadImage) {
				t.Errorf("error %q wraps ErrBadImage, but the image is fine", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestNewDetectErrors covers images New refuses at detection, before it
// opens /dev/kvm: each error wraps ErrBadImage and says what is wrong.
func TestNewDetectErrors(t *testing.T) {
	elf32 := elfImage(elfSpec{class: elf.ELFCLASS32, entry: 0x100000, segs: []segment{{paddr: 0x100000, data: codeExit}}})
	tests := []struct {
		name  string
		image []byte
		want  string
	}{
		{"nil image", nil, "empty image"},
		{"empty image", []byte{}, "empty image"},
		{"truncated ELF", []byte("\x7fELF\x02\x01\x01"), "truncated ELF header"},
		{"32-bit ELF without Multiboot", elf32, "32-bit ELF without a Multiboot header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newChecked(t, Config{Image: tt.image})
			if m != nil {
				t.Fatal("New succeeded")
			}
			wantBadImage(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestNewMemorySizes(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want uint64
	}{
		{"default", 0, DefaultMemory},
		{"smallest", 2 << 20, 2 << 20},
		{"odd number of pages", 2<<20 + 4096, 2<<20 + 4096},
		{"largest", 4 << 30, 4 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, Config{Image: codeExit, MemoryBytes: tt.size})
			if got := m.Memory().Size(); got != tt.want {
				t.Errorf("Memory().Size() = %d, want %d", got, tt.want)
			}
			res, err := m.Run()
			if err != nil || res.Reason != ReasonExited || res.Value != 5 {
				t.Errorf("Run = %+v, %v; want exit value 5", res, err)
			}
		})
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("needs /proc/self/fd: %v", err)
	}
	return len(d)
}

// TestNewLoadErrors covers images that fail to load after New has opened
// KVM: New must return the loader's error and release what it opened.
func TestNewLoadErrors(t *testing.T) {
	cases := badLoads()
	cases = append(cases, struct {
		name  string
		boot  BootProtocol
		image []byte
		want  string
	}{"unknown boot protocol", "coff", codeExit, "unknown boot protocol"})
	before := openFDs(t)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newChecked(t, Config{Image: tt.image, Boot: tt.boot, MemoryBytes: 16 << 20})
			if m != nil {
				t.Fatal("New succeeded")
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v does not say %q", err, tt.want)
			}
			if tt.boot != "coff" {
				wantBadImage(t, err)
			}
		})
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d file descriptors open after %d failed New calls, %d before: New leaks on error",
			after, len(cases), before)
	}
}

// TestNewCloses checks that a machine releases its descriptors on Close.
func TestNewCloses(t *testing.T) {
	forEachAccel(t, testNewCloses)
}

func testNewCloses(t *testing.T, accel Accel) {
	before := openFDs(t)
	for i := 0; i < 8; i++ {
		m, err := New(Config{Image: codeExit, MemoryBytes: 2 << 20, Hooks: &nopHooks{}, Accel: accel})
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		m.Close() // twice is harmless
	}
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors %d after 8 New+Close, %d before", after, before)
	}
}
