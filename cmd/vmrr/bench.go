package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"vmrr/nondet"
)

func init() {
	register(&command{name: "bench", summary: "compare vmrr with other tools: bench qemu", run: benchCmd})
}

// benchGuests are the Multiboot guests both vmrr and qemu-system-x86_64
// -kernel boot unchanged, so the two tools run the very same images.
var benchGuests = []string{"hello-multiboot", "timer-multiboot", "race-multiboot", "emu32", "flaky"}

func benchCmd(args []string) int {
	if len(args) == 0 || args[0] != "qemu" {
		fmt.Fprintln(os.Stderr, "usage: vmrr bench qemu [flags] [GUEST...]")
		return exitUsage
	}
	return benchQEMU(args[1:])
}

// benchTool runs one tool's three steps on a guest. Each returns the
// process status and the guest's console.
type benchTool struct {
	name   string
	run    func(image string) (int, []byte, error)
	record func(image, log string) (int, []byte, error)
	// replay returns ok=false when the tool itself says the replay did
	// not reproduce the recording (vmrr replay --check); the console and
	// status are compared besides.
	replay func(image, log string) (status int, console []byte, ok bool, err error)
}

// benchRow is one guest under one tool, over all runs.
type benchRow struct {
	guest, tool         string
	run, record, replay []time.Duration
	logBytes            []int64
	statuses            []int
	identical           int
	note                string // why the row is incomplete, if it is
}

func benchQEMU(args []string) int {
	fs := flag.NewFlagSet("bench qemu", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmrr bench qemu [--runs N] [--guests DIR] [--qemu PATH] [--mode exact|fast] [GUEST...]\n"+
			"Runs each guest (default: %s) N times under vmrr (run, record, replay --check) and under QEMU TCG\n"+
			"(plain run, -icount rr=record, rr=replay) and prints a Markdown table of median times, log sizes and\n"+
			"whether each replay reproduced its recording. Exits 1 if a vmrr replay did not.\n",
			strings.Join(benchGuests, " "))
		fs.PrintDefaults()
	}
	runs := fs.Int("runs", 5, "runs of each guest under each tool (the table shows medians)")
	dir := fs.String("guests", "testdata/guests", "directory holding GUEST.elf")
	qemu := fs.String("qemu", "qemu-system-x86_64", "the QEMU binary")
	mode := fs.String("mode", string(nondet.ModeFast), "vmrr's trapping mode for the recordings: exact or fast")
	limit := fs.Duration("timeout", time.Minute, "give up on one process after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if *runs < 1 || *runs > 100 {
		return fail("bench qemu: --runs=%d: want 1 to 100", *runs)
	}
	if _, err := nondet.ParseMode(*mode); err != nil {
		return fail("bench qemu: %v", err)
	}
	guests := fs.Args()
	if len(guests) == 0 {
		guests = benchGuests
	}
	images := make([]string, len(guests))
	for i, g := range guests {
		images[i] = filepath.Join(*dir, strings.TrimSuffix(g, ".elf")+".elf")
		if _, err := readImage(images[i]); err != nil {
			return fail("bench qemu: %v", err)
		}
		guests[i] = strings.TrimSuffix(filepath.Base(images[i]), ".elf")
	}
	self, err := os.Executable()
	if err != nil {
		return fail("bench qemu: %v", err)
	}
	tmp, err := os.MkdirTemp("", "vmrr-bench-")
	if err != nil {
		return fail("bench qemu: %v", err)
	}
	defer os.RemoveAll(tmp)

	exe := func(name string, args ...string) (int, []byte, error) { return benchExec(*limit, name, args...) }
	tools := []benchTool{{
		name: "vmrr " + *mode,
		run:  func(img string) (int, []byte, error) { return exe(self, "run", img) },
		record: func(img, log string) (int, []byte, error) {
			return exe(self, "record", "--mode", *mode, "-o", log, img)
		},
		replay: func(img, log string) (int, []byte, bool, error) {
			st, out, err := exe(self, "replay", "--check", log)
			// --check returns 0 or its own verdict, not the guest's status;
			// the guest's is compared through the end record already.
			return -1, out, st == 0, err
		},
	}}
	qemuVersion, qerr := benchQEMUVersion(*qemu)
	if qerr == nil {
		// The same devices as vmrr's: COM1 on stdout, isa-debug-exit at
		// 0xf4; -cpu max so QEMU has the instructions vmrr passes through
		// (POPCNT, RDRAND, RDSEED, RDTSCP in emu32). No disk or network:
		// record/replay would need blkreplay and filter-replay for them.
		base := []string{"-cpu", "max", "-display", "none", "-no-reboot", "-net", "none", "-serial", "stdio",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}
		q := func(img string, extra ...string) (int, []byte, error) {
			return exe(*qemu, append(append(slices.Clone(base), extra...), "-kernel", img)...)
		}
		tools = append(tools, benchTool{
			name: "QEMU TCG",
			run:  func(img string) (int, []byte, error) { return q(img) },
			record: func(img, log string) (int, []byte, error) {
				return q(img, "-icount", "shift=auto,rr=record,rrfile="+log)
			},
			replay: func(img, log string) (int, []byte, bool, error) {
				st, out, err := q(img, "-icount", "shift=auto,rr=replay,rrfile="+log)
				return st, out, true, err
			},
		})
	}

	var rows []*benchRow
	vmrrDiffered := false
	for gi, g := range guests {
		for ti, tool := range tools {
			row := &benchRow{guest: g, tool: tool.name}
			rows = append(rows, row)
			for i := 0; i < *runs; i++ {
				log := filepath.Join(tmp, fmt.Sprintf("%s-%d-%d.log", g, ti, i))
				same, err := benchOnce(tool, images[gi], log, row)
				if err != nil {
					row.note = err.Error()
					break
				}
				if same {
					row.identical++
				} else if ti == 0 {
					vmrrDiffered = true
				}
				os.Remove(log)
			}
		}
	}
	printBenchTable(os.Stdout, rows, *runs, *mode, qemuVersion, qerr)
	if vmrrDiffered {
		return 1
	}
	return 0
}

// benchOnce runs, records and replays image once under tool, appending the
// measurements to row, and reports whether the replay was identical: same
// status and console as the recording (and the tool's own verdict).
func benchOnce(tool benchTool, image, log string, row *benchRow) (bool, error) {
	start := time.Now()
	if _, _, err := tool.run(image); err != nil {
		return false, fmt.Errorf("run: %w", err)
	}
	row.run = append(row.run, time.Since(start))
	start = time.Now()
	recStatus, recOut, err := tool.record(image, log)
	if err != nil {
		return false, fmt.Errorf("record: %w", err)
	}
	row.record = append(row.record, time.Since(start))
	row.statuses = append(row.statuses, recStatus)
	fi, err := os.Stat(log)
	if err != nil {
		return false, fmt.Errorf("record wrote no log (status %d)", recStatus)
	}
	row.logBytes = append(row.logBytes, fi.Size())
	start = time.Now()
	repStatus, repOut, ok, err := tool.replay(image, log)
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	row.replay = append(row.replay, time.Since(start))
	return ok && (repStatus < 0 || repStatus == recStatus) && bytes.Equal(recOut, repOut), nil
}

// benchExec runs a process with stdin empty and returns its status and
// stdout; it fails only if the process cannot start or outlives limit.
func benchExec(limit time.Duration, name string, args ...string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		return 0, nil, fmt.Errorf("%s: no exit after %v", filepath.Base(name), limit)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, nil, err
	}
	return cmd.ProcessState.ExitCode(), out.Bytes(), nil
}

// benchQEMUVersion returns QEMU's version line, or why it cannot be run.
func benchQEMUVersion(qemu string) (string, error) {
	path, err := exec.LookPath(qemu)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(path, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("%s -version: %w", qemu, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

func median[T cmp.Ordered](v []T) T {
	var zero T
	if len(v) == 0 {
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 0, 64) }

func printBenchTable(w io.Writer, rows []*benchRow, runs int, mode, qemuVersion string, qerr error) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "%s, %s; %d runs per guest and tool, median wall times including process start\n",
		time.Now().UTC().Format("2006-01-02"), benchHost(), runs)
	if qerr == nil {
		fmt.Fprintf(bw, "QEMU: %s (TCG, -icount shift=auto); vmrr: --mode %s\n\n", qemuVersion, mode)
	} else {
		fmt.Fprintf(bw, "QEMU rows skipped: %v\n\n", qerr)
	}
	fmt.Fprintln(bw, "| guest | tool | run ms | record ms | replay ms | record / run | log bytes | replay identical | guest status |")
	fmt.Fprintln(bw, "|---|---|---:|---:|---:|---:|---:|---|---|")
	for _, r := range rows {
		if len(r.replay) == 0 {
			fmt.Fprintf(bw, "| %s | %s | | | | | | failed: %s | |\n", r.guest, r.tool, r.note)
			continue
		}
		ratio := "-"
		if run := median(r.run); run > 0 {
			ratio = strconv.FormatFloat(float64(median(r.record))/float64(run), 'f', 2, 64)
		}
		statuses := slices.Compact(slices.Sorted(slices.Values(r.statuses)))
		st := make([]string, len(statuses))
		for i, s := range statuses {
			st[i] = strconv.Itoa(s)
		}
		id := fmt.Sprintf("%d/%d", r.identical, len(r.replay))
		if r.note != "" {
			id += " (then " + r.note + ")"
		}
		fmt.Fprintf(bw, "| %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", r.guest, r.tool, ms(median(r.run)), ms(median(r.record)),
			ms(median(r.replay)), ratio, median(r.logBytes), id, strings.Join(st, ", "))
	}
}

// benchHost describes the machine: kernel, CPU model, cores.
func benchHost() string {
	host := runtime.GOOS + "/" + runtime.GOARCH
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		host = "Linux " + strings.TrimSpace(string(b))
	}
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %s, %d CPUs", host, cpu, runtime.NumCPU())
}
