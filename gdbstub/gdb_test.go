package gdbstub

import (
	"strings"
	"testing"

	"vmrr/gdbstub/gdbtest"
	"vmrr/replayer"
)

// TestGDB drives the real gdb against the fake recording. Each case runs
// one gdb in batch mode and checks that its output holds the wanted pieces
// in order.
func TestGDB(t *testing.T) {
	if gdbtest.GDB() == "" {
		t.Skip("gdb is not installed")
	}
	tests := []struct {
		name  string
		start int // position of the fake when gdb connects
		end   *replayer.Stop
		cmds  []string
		want  []string
	}{
		{
			name:  "registers and memory",
			start: 5,
			cmds: []string{"info registers rip rax eflags cs fs_base gs_base cr0 cr3 cr4 efer",
				"p/x $xmm1.uint128", "p $mxcsr", "x/4gx 0x7f00", "x/2i 0x100c", "x/4bx 0x9000"},
			want: []string{
				"0x0000000000001014 in ?? ()",
				"rip            0x1014", "rax            0x5", "eflags         0x202               [ IF ]",
				"cs             0x8", "fs_base        0x5000", "gs_base        0x6000",
				"cr0            0x80000011          [ PE ET PG ]", "cr3            0x3000",
				"cr4            0x20                [ PAE ]", "efer           0x500               [ LME LMA ]",
				"= 0xf0e0d0c0b0a09080706050403020100", "[ IM DM ZM OM UM PM ]",
				"0x7f00:\t0x0706050403020100\t0x0f0e0d0c0b0a0908",
				"0x7f10:\t0x1716151413121110\t0x1f1e1d1c1b1a1918",
				"0x100c:\tnopl   0x0(%rax)", "0x1010:\trdtsc", // the original bytes, not the patch
				"Cannot access memory at address 0x9000",
			},
		},
		{
			name:  "stepi and reverse-stepi",
			start: 5,
			cmds:  []string{"stepi", "p $rax", "reverse-stepi", "reverse-stepi", "p $pc", "p $rax"},
			want: []string{"0x0000000000001018 in ?? ()", "$1 = 6",
				"0x0000000000001014 in ?? ()", "0x0000000000001010 in ?? ()",
				"$2 = (void (*)()) 0x1010", "$3 = 4"},
		},
		{
			name:  "reverse-stepi at the start",
			start: 0,
			cmds:  []string{"reverse-stepi", "p $pc"},
			want:  []string{"No more reverse-execution history.", "$1 = (void (*)()) 0x1000"},
		},
		{
			name:  "breakpoints both ways",
			start: 5,
			cmds: []string{"break *0x1020", "continue", "p $rax", "continue", "p $rax",
				"reverse-continue", "p $rax", "reverse-continue", "p $rax"},
			want: []string{"Breakpoint 1 at 0x1020",
				"Breakpoint 1, 0x0000000000001020 in ?? ()", "$1 = 8",
				"loop 0", // guest output while running
				"Breakpoint 1, 0x0000000000001020 in ?? ()", "$2 = 18",
				"Breakpoint 1, 0x0000000000001020 in ?? ()", "$3 = 8",
				"No more reverse-execution history.", "0x0000000000001000 in ?? ()", "$4 = 0"},
		},
		{
			name:  "hardware breakpoint",
			start: 5,
			cmds:  []string{"hbreak *0x1008", "continue", "p $rax"},
			want:  []string{"Hardware assisted breakpoint 1 at 0x1008", "Breakpoint 1, 0x0000000000001008 in ?? ()", "$1 = 12"},
		},
		{
			name:  "write watchpoint both ways",
			start: 5,
			cmds: []string{"watch *(long*)0x2000", "continue", "p $rax", "continue", "p $rax",
				"reverse-continue", "p $rax"},
			want: []string{"Hardware watchpoint 1: *(long*)0x2000",
				"Old value = 1", "New value = 2", "$1 = 13",
				"Old value = 2", "New value = 3", "$2 = 23",
				// Backwards it stops at the writing instruction, before it writes.
				"Old value = 3", "New value = 2", "0x0000000000001008 in ?? ()", "$3 = 22"},
		},
		{
			name:  "read and access watchpoints",
			start: 5,
			cmds:  []string{"rwatch *(long*)0x2000", "continue", "p $rax", "delete", "awatch *(long*)0x2000", "continue", "p $rax"},
			want: []string{"Hardware read watchpoint 1: *(long*)0x2000", "Value = 2", "$1 = 14",
				"Hardware access (read/write) watchpoint 2: *(long*)0x2000", "Old value = 2", "New value = 3", "$2 = 23"},
		},
		{
			name:  "end of the recording",
			start: 95,
			cmds:  []string{"continue", "p $rax", "reverse-stepi", "p $rax"},
			want: []string{"vmrr: end of the recording at position 9:9, rip 0x1024",
				"No more reverse-execution history.", "$1 = 99", "$2 = 98"},
		},
		{
			name:  "guest exit",
			start: 95,
			end:   &replayer.Stop{Kind: replayer.StopExited, Status: 3},
			cmds:  []string{"continue", "reverse-stepi", "p $rax"},
			want: []string{"vmrr: the guest exited with status 3 at position 9:9, rip 0x1024 (end of the recording)",
				"No more reverse-execution history.", "$1 = 98"},
		},
		{
			name:  "guest crash",
			start: 95,
			end:   &replayer.Stop{Kind: replayer.StopCrashed, Message: "triple fault"},
			cmds:  []string{"continue", "reverse-stepi", "p $rax"},
			want: []string{"vmrr: the guest crashed at position 9:9, rip 0x1024: triple fault",
				"Program received signal SIGSEGV", "$1 = 98"},
		},
		{
			name:  "monitor",
			start: 23,
			cmds: []string{"monitor info position", "monitor goto 5", "maint flush register-cache", "p $rax",
				"monitor events near", "monitor snapshots", "monitor goto start", "maint flush register-cache", "p $rax",
				"monitor nonsense"},
			want: []string{"position 2:3, rip 0x100c", "next event 3 of 10",
				"now at 5:2, rip 0x1008", "$1 = 52",
				"=> #5      5:2         ", "3 snapshots, 12288 bytes",
				"now at 0:0", "$2 = 0",
				"error: unknown command \"nonsense\""},
		},
		{
			name:  "writes refused",
			start: 5,
			cmds:  []string{"set var *(long*)0x2000 = 5", "set $rax = 7", "p $rax", "x/gx 0x2000"},
			want: []string{"Cannot access memory at address 0x2000",
				`Could not write register "rax"; remote failure reply 'E.replay is read-only: registers cannot be written'`,
				"$1 = 5", "0x2000:\t0x0000000000000001"},
		},
		{
			name:  "threads",
			start: 5,
			cmds:  []string{"info threads"},
			want:  []string{"* 1    Thread 1 (vCPU 0 (replay)) 0x0000000000001014 in ?? ()"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(100)
			f.pos = tt.start
			f.end = tt.end
			addr := listen(t, newTestServer(t, f))
			out := gdbtest.RunGDB(t, addr, tt.cmds...)
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("gdb output lacks %q (in order); output:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(out, "Remote connection closed") || strings.Contains(out, "Protocol error") {
				t.Fatalf("protocol trouble:\n%s", out)
			}
			if len(f.Breakpoints()) != 0 {
				t.Fatalf("breakpoints left after gdb detached: %v", f.Breakpoints())
			}
		})
	}
}
