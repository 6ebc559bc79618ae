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
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"vmrr/machine"
	"vmrr/machine/probe"
	"vmrr/nondet"
	"vmrr/recorder"
	"vmrr/replayer"
)

func init() {
	register(&command{name: "bench", summary: "measure vmrr: bench rr (record/replay cost), bench qemu (against QEMU)", run: benchCmd})
}

// benchGuests are the Multiboot guests both vmrr and qemu-system-x86_64
// -kernel boot unchanged, so the two tools run the very same images.
// compute (~200 M instructions) measures CPU speed rather than start-up.
var benchGuests = []string{"hello-multiboot", "timer-multiboot", "race-multiboot", "emu32", "flaky", "compute"}

// benchLongGuests are left out of KVM's rows unless named: a KVM that can
// record emulates CPL0 code (PVM), at a few million instructions a
// second, so compute would take minutes a step there.
var benchLongGuests = map[string]bool{"compute": true}

func benchCmd(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "qemu":
			return benchQEMU(args[1:])
		case "rr":
			return benchRR(args[1:])
		}
	}
	fmt.Fprintln(os.Stderr, "usage: vmrr bench rr|qemu [flags] [GUEST...]")
	return exitUsage
}

// benchTool runs one tool's three steps on a guest.
type benchTool struct {
	name   string
	vmrr   bool          // one of vmrr's own rows (a replay that differs fails the bench)
	accel  machine.Accel // vmrr's CPU
	run    func(image string) (benchProc, error)
	record func(image, log string) (benchProc, error)
	// replay's result has ok=false when the tool itself says the replay
	// did not reproduce the recording (vmrr replay --check); the console
	// and status are compared besides.
	replay func(image, log string) (benchProc, error)
}

// benchProc is what one step's process left: its status (-1: not the
// guest's, not compared), the guest's console (stdout), its stderr, and
// for a replay the tool's own verdict.
type benchProc struct {
	status  int
	console []byte
	stderr  []byte
	ok      bool
}

// lastLine is the last non-empty line of a process's output, for a
// one-line account of what went wrong.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// benchRow is one guest under one tool, over all runs.
type benchRow struct {
	guest, tool         string
	run, record, replay []time.Duration
	logBytes            []int64
	statuses            []int
	identical           int
	note                string // why the row is incomplete, if it is
	skipped             string // why the row was not run, if it was not
}

func benchQEMU(args []string) int {
	fs := flag.NewFlagSet("bench qemu", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmrr bench qemu [--runs N] [--guests DIR] [--qemu PATH] [--accel LIST] [--mode exact|fast] [GUEST...]\n"+
			"Runs each guest (default: %s) N times under vmrr on each CPU of --accel (run, record,\n"+
			"replay --check) and under QEMU TCG\n"+
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
	accelList := fs.String("accel", "auto", "vmrr's CPUs, comma-separated: soft, kvm, or auto (soft, and kvm where this host has /dev/kvm)")
	if st, ok := parseArgs(fs, args, -1); !ok {
		return st
	}
	if *runs < 1 || *runs > 100 {
		return fail("bench qemu: --runs=%d: want 1 to 100", *runs)
	}
	accels, err := benchAccels(*accelList)
	if err != nil {
		return fail("bench qemu: %v", err)
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

	exe := func(name string, args ...string) (benchProc, error) { return benchExec(*limit, name, args...) }
	var tools []benchTool
	for _, a := range accels {
		accel := string(a)
		tools = append(tools, benchTool{
			name:  "vmrr " + accel + " " + *mode,
			vmrr:  true,
			accel: a,
			run:   func(img string) (benchProc, error) { return exe(self, "run", "--accel", accel, img) },
			record: func(img, log string) (benchProc, error) {
				return exe(self, "record", "--accel", accel, "--mode", *mode, "-o", log, img)
			},
			replay: func(img, log string) (benchProc, error) {
				p, err := exe(self, "replay", "--check", log)
				// --check returns 0 or its own verdict, not the guest's status;
				// the guest's is compared through the end record already.
				p.ok, p.status = p.status == 0, -1
				return p, err
			},
		})
	}
	qemuVersion, qerr := benchQEMUVersion(*qemu)
	if qerr == nil {
		// The same devices as vmrr's: COM1 on stdout, isa-debug-exit at
		// 0xf4; -cpu max so QEMU has the instructions vmrr passes through
		// (POPCNT, RDRAND, RDSEED, RDTSCP in emu32). No disk or network:
		// record/replay would need blkreplay and filter-replay for them.
		base := []string{"-cpu", "max", "-display", "none", "-no-reboot", "-net", "none", "-serial", "stdio",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}
		q := func(img string, extra ...string) (benchProc, error) {
			return exe(*qemu, append(append(slices.Clone(base), extra...), "-kernel", img)...)
		}
		tools = append(tools, benchTool{
			name: "QEMU TCG",
			run:  func(img string) (benchProc, error) { return q(img) },
			record: func(img, log string) (benchProc, error) {
				return q(img, "-icount", "shift=auto,rr=record,rrfile="+log)
			},
			replay: func(img, log string) (benchProc, error) {
				p, err := q(img, "-icount", "shift=auto,rr=replay,rrfile="+log)
				p.ok = true
				return p, err
			},
		})
	}

	var rows []*benchRow
	vmrrDiffered := false
	for gi, g := range guests {
		for ti, tool := range tools {
			row := &benchRow{guest: g, tool: tool.name}
			rows = append(rows, row)
			if tool.accel == machine.AccelKVM && benchLongGuests[g] && len(fs.Args()) == 0 {
				row.skipped = "not run by default: KVM emulates CPL0 code on the hosts where it records (name the guest to run it)"
				continue
			}
			for i := 0; i < *runs; i++ {
				log := filepath.Join(tmp, fmt.Sprintf("%s-%d-%d.log", g, ti, i))
				why, err := benchOnce(tool, images[gi], log, row)
				if err != nil {
					row.note = err.Error()
					break
				}
				switch {
				case why == "":
					row.identical++
				case tool.vmrr:
					vmrrDiffered = true
					// The log is the evidence: keep it, and say in one
					// line what each side said.
					kept := filepath.Join(os.TempDir(), fmt.Sprintf("vmrr-bench-%s-%s-%d.vmrr", g, tool.accel, i+1))
					if err := os.Rename(log, kept); err != nil {
						kept = "not kept: " + err.Error()
					}
					fmt.Fprintf(os.Stderr, "vmrr bench: %s, %s, run %d: the replay did not reproduce the recording: %s (log %s)\n", g, tool.name, i+1, why, kept)
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

// benchAccels parses bench's --accel list; auto is the soft CPU, and KVM
// where this host has one that can record.
func benchAccels(list string) ([]machine.Accel, error) {
	if list == "auto" {
		accels := []machine.Accel{machine.AccelSoft}
		if _, _, err := probe.ChooseAccel(machine.AccelKVM); err == nil && probe.ExactCounter() == nil {
			accels = append(accels, machine.AccelKVM)
		}
		return accels, nil
	}
	var accels []machine.Accel
	for _, s := range strings.Split(list, ",") {
		a, err := machine.ParseAccel(strings.TrimSpace(s))
		if err != nil || a == machine.AccelAuto {
			return nil, fmt.Errorf("--accel %s: want soft, kvm, a list of them, or auto", list)
		}
		if a == machine.AccelKVM {
			if _, _, err := probe.ChooseAccel(a); err != nil {
				return nil, err
			}
		}
		accels = append(accels, a)
	}
	return accels, nil
}

// benchOnce runs, records and replays image once under tool, appending the
// measurements to row. It returns "" when the replay was identical (same
// status and console as the recording, and the tool's own verdict), else
// what differed.
func benchOnce(tool benchTool, image, log string, row *benchRow) (string, error) {
	start := time.Now()
	if _, err := tool.run(image); err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	row.run = append(row.run, time.Since(start))
	start = time.Now()
	rec, err := tool.record(image, log)
	if err != nil {
		return "", fmt.Errorf("record: %w", err)
	}
	row.record = append(row.record, time.Since(start))
	row.statuses = append(row.statuses, rec.status)
	fi, err := os.Stat(log)
	if err != nil {
		return "", fmt.Errorf("record wrote no log (status %d)", rec.status)
	}
	row.logBytes = append(row.logBytes, fi.Size())
	start = time.Now()
	rep, err := tool.replay(image, log)
	if err != nil {
		return "", fmt.Errorf("replay: %w", err)
	}
	row.replay = append(row.replay, time.Since(start))
	var diffs []string
	if !rep.ok {
		diffs = append(diffs, fmt.Sprintf("replay says %q", lastLine(rep.stderr)))
	}
	if rep.status >= 0 && rep.status != rec.status {
		diffs = append(diffs, fmt.Sprintf("status %d, recorded %d", rep.status, rec.status))
	}
	if !bytes.Equal(rec.console, rep.console) {
		diffs = append(diffs, fmt.Sprintf("console %q, recorded %q", lastLine(rep.console), lastLine(rec.console)))
	}
	if len(diffs) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%s; the recording (status %d) said %q", strings.Join(diffs, "; "), rec.status, lastLine(rec.stderr)), nil
}

// benchExec runs a process with stdin empty and returns its status and
// output; it fails only if the process cannot start or outlives limit.
func benchExec(limit time.Duration, name string, args ...string) (benchProc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		return benchProc{}, fmt.Errorf("%s: no exit after %v", filepath.Base(name), limit)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return benchProc{}, err
	}
	return benchProc{status: cmd.ProcessState.ExitCode(), console: out.Bytes(), stderr: errOut.Bytes()}, nil
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
		if r.skipped != "" {
			fmt.Fprintf(bw, "| %s | %s | | | | | | %s | |\n", r.guest, r.tool, r.skipped)
			continue
		}
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

// benchRRGuests are the guests bench rr measures by default: between them
// every kind of input vmrr records (timer ticks at HLT and inside busy
// loops, trapped and paravirtual RDTSC/RDRAND, the 32-bit emulator's
// instructions, serial input, trapped page-table writes).
var benchRRGuests = []string{"timer", "spin", "race", "nondet", "paravirt", "emu32", "race-multiboot", "serial-echo", "ptedit"}

// benchSerialGuests wait for COM1 input and get the --serial-in bytes; the
// others get none, as under a plain `vmrr run IMAGE`.
var benchSerialGuests = map[string]bool{"serial-echo": true}

// benchSerialDefault makes serial-echo echo three bytes and quit.
const benchSerialDefault = "ab q\n"

// benchRRModes are the modes bench rr records in; the first is the
// baseline of the exact / fast ratios.
var benchRRModes = [2]nondet.Mode{nondet.ModeFast, nondet.ModeExact}

// rrRound is one run of a guest: a plain run, then a recording and its
// replay in each mode.
type rrRound struct {
	run            time.Duration
	record, replay [2]time.Duration
	sync           [2]time.Duration // the recording's fsync, left out of record
	logBytes       [2]int64
	headerBytes    [2]int64
	status         [2]int
	identical      [2]bool
	why            [2]string // what differed, when a replay was not identical
}

// rrGuest is one guest over all its runs.
type rrGuest struct {
	accel  machine.Accel
	name   string
	path   string
	image  []byte
	serial []byte // COM1 input; nil for none
	rounds []rrRound
	note   string // why the runs stopped early, if they did
}

func benchRR(args []string) int {
	fs := flag.NewFlagSet("bench rr", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmrr bench rr [--runs N] [--guests DIR] [--serial-in FILE] [--timeout D] [GUEST...]\n"+
			"Runs each guest N times: a plain run, then a recording and a replay in fast and in exact mode,\n"+
			"all in this process; prints a Markdown table of median times, log sizes and rates, and the\n"+
			"ratios record / run, replay / record and exact / fast. Exits 1 if a replay was not identical\n"+
			"to its recording or could not be made.\nDefault guests: %s\n",
			strings.Join(benchRRGuests, " "))
		fs.PrintDefaults()
	}
	runs := fs.Int("runs", 5, "runs of each guest (the table shows medians)")
	dir := fs.String("guests", "testdata/guests", "directory holding GUEST.elf")
	serialIn := fs.String("serial-in", "", "file whose bytes are COM1 input for "+strings.Join(slices.Sorted(maps.Keys(benchSerialGuests)), ", ")+
		" (default: "+strconv.Quote(benchSerialDefault)+")")
	limit := fs.Duration("timeout", time.Minute, "end one run, recording or replay after this long")
	accelFlag := addAccelFlag(fs)
	if st, ok := parseArgs(fs, args, -1); !ok {
		return st
	}
	if *runs < 1 || *runs > 100 {
		return fail("bench rr: --runs=%d: want 1 to 100", *runs)
	}
	accel, err := chooseRacingAccel(*accelFlag)
	if err != nil {
		return fail("bench rr: %v", err)
	}
	if *limit <= 0 {
		return fail("bench rr: --timeout=%v: want a positive duration", *limit)
	}
	serial := []byte(benchSerialDefault)
	if *serialIn != "" {
		b, err := os.ReadFile(*serialIn)
		if err != nil {
			return fail("bench rr: serial input: %v", err)
		}
		serial = b
	}
	names := fs.Args()
	if len(names) == 0 {
		names = benchRRGuests
	}
	guests := make([]*rrGuest, len(names))
	for i, n := range names {
		path := filepath.Join(*dir, strings.TrimSuffix(n, ".elf")+".elf")
		image, err := readImage(path)
		if err != nil {
			return fail("bench rr: %v", err)
		}
		g := &rrGuest{accel: accel, name: strings.TrimSuffix(filepath.Base(path), ".elf"), path: path, image: image}
		if benchSerialGuests[g.name] {
			g.serial = serial
		}
		guests[i] = g
	}
	tmp, err := os.MkdirTemp("", "vmrr-bench-rr-")
	if err != nil {
		return fail("bench rr: %v", err)
	}
	defer os.RemoveAll(tmp)

	failed := false
	for _, g := range guests {
		for i := 0; i < *runs; i++ {
			r, err := g.round(tmp, i, *limit)
			if err != nil {
				g.note = err.Error()
				failed = true
				break
			}
			g.rounds = append(g.rounds, r)
			failed = failed || !r.identical[0] || !r.identical[1]
		}
	}
	printRRTable(os.Stdout, guests, *runs, *serialIn)
	if failed {
		return 1
	}
	return 0
}

// round measures one run of g. The two modes take turns going first, so
// neither always follows the other's VM teardown.
func (g *rrGuest) round(tmp string, i int, limit time.Duration) (rrRound, error) {
	var r rrRound
	var err error
	if r.run, err = g.measureRun(limit); err != nil {
		return r, fmt.Errorf("run: %w", err)
	}
	for k := range benchRRModes {
		mi := (k + i) % len(benchRRModes)
		mode := benchRRModes[mi]
		log := filepath.Join(tmp, fmt.Sprintf("%s-%s-%d.vmrr", g.name, mode, i))
		if err := g.measureRR(&r, mi, mode, log, limit); err != nil {
			return r, fmt.Errorf("%s: %w", mode, err)
		}
		os.Remove(log)
	}
	return r, nil
}

func (g *rrGuest) serialReader() io.Reader {
	if g.serial == nil {
		return nil
	}
	return bytes.NewReader(g.serial)
}

// measureRun times what `vmrr run` does: no log, no trapping mode,
// tlbsync on the soft CPU only.
func (g *rrGuest) measureRun(limit time.Duration) (time.Duration, error) {
	runtime.GC() // the previous step's garbage is not this step's cost
	start := time.Now()
	_, err := recorder.Record(nil, recorder.Options{ImagePath: g.path, Image: g.image, Console: io.Discard,
		Serial: g.serialReader(), Timeout: limit, Warnings: io.Discard, Accel: g.accel,
		TLBSync: g.accel == machine.AccelSoft})
	return time.Since(start), err
}

// measureRR records g to log in mode as `vmrr record` does (a file,
// fsynced at the end, tlbsync on), replays it, and fills in r's entries
// for mode index mi.
func (g *rrGuest) measureRR(r *rrRound, mi int, mode nondet.Mode, log string, limit time.Duration) error {
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	cw := &countingFile{f: f}
	var recConsole bytes.Buffer
	runtime.GC()
	start := time.Now()
	res, err := recorder.Record(cw, recorder.Options{ImagePath: g.path, Image: g.image, MemoryBytes: machine.DefaultMemory,
		Mode: mode, Console: &recConsole, Serial: g.serialReader(), Timeout: limit, Warnings: io.Discard, TLBSync: true, Accel: g.accel})
	r.record[mi] = time.Since(start) - cw.sync
	r.sync[mi] = cw.sync
	f.Close()
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	r.logBytes[mi], r.headerBytes[mi], r.status[mi] = cw.n, cw.first, res.Status

	var repConsole bytes.Buffer
	runtime.GC()
	start = time.Now()
	o, err := replayer.Replay(replayer.Options{LogPath: log, Image: g.image, Console: &repConsole, Warnings: io.Discard, StuckAfter: limit})
	r.replay[mi] = time.Since(start)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	switch {
	case !o.Identical():
		r.why[mi] = o.Summary()
	case o.Result.RIP != o.End.RIP:
		r.why[mi] = fmt.Sprintf("replay ended at RIP %#x, the recording at RIP %#x", o.Result.RIP, o.End.RIP)
	case !bytes.Equal(recConsole.Bytes(), repConsole.Bytes()):
		r.why[mi] = fmt.Sprintf("replay printed %d console bytes, the recording %d, and they differ", repConsole.Len(), recConsole.Len())
	default:
		r.identical[mi] = true
	}
	return nil
}

// countingFile is the log file as the recorder sees it: it counts the
// bytes written, the first write (logfmt writes the header at once) apart,
// and passes Sync on so the log is fsynced as `vmrr record`'s is.
type countingFile struct {
	f        *os.File
	n, first int64
	writes   int
	sync     time.Duration // spent in fsync
}

func (c *countingFile) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	if c.writes == 0 {
		c.first = int64(n)
	}
	c.writes++
	c.n += int64(n)
	return n, err
}

func (c *countingFile) Sync() error {
	start := time.Now()
	err := c.f.Sync()
	c.sync += time.Since(start)
	return err
}

// rrStat is the median over g's rounds of one figure of each round.
func rrStat(rounds []rrRound, f func(r *rrRound) float64) float64 {
	v := make([]float64, len(rounds))
	for i := range rounds {
		v[i] = f(&rounds[i])
	}
	return median(v)
}

// rrWhere is the rounds for which keep holds.
func rrWhere(rounds []rrRound, keep func(r *rrRound) bool) []rrRound {
	var out []rrRound
	for i := range rounds {
		if keep(&rounds[i]) {
			out = append(out, rounds[i])
		}
	}
	return out
}

// rrFig formats the median of f over rounds with prec decimals, or "-"
// when there are no rounds to take it over.
func rrFig(rounds []rrRound, f func(r *rrRound) float64, prec int) string {
	if len(rounds) == 0 {
		return "-"
	}
	return strconv.FormatFloat(rrStat(rounds, f), 'f', prec, 64)
}

func durRatio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func msf(d float64) string { return strconv.FormatFloat(d/1e6, 'f', 1, 64) }

func printRRTable(w io.Writer, guests []*rrGuest, runs int, serialIn string) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	cpu := machine.AccelKVM
	if len(guests) > 0 {
		cpu = guests[0].accel
	}
	fmt.Fprintf(bw, "%s, %s; the %s CPU; %d runs per guest and mode, medians\n\n", time.Now().UTC().Format("2006-01-02"), benchHost(), cpu, runs)
	fmt.Fprintln(bw, "| guest | mode | run ms | record ms | replay ms | record / run | replay / record | exact / fast record | exact / fast replay | log bytes | log B/s | replay identical | guest status |")
	fmt.Fprintln(bw, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	var headers []int64
	var syncs []float64
	var whys []string
	for _, g := range guests {
		if len(g.rounds) == 0 {
			fmt.Fprintf(bw, "| %s | | | | | | | | | | | failed: %s | |\n", g.name, g.note)
			continue
		}
		rs := g.rounds
		run := rrStat(rs, func(r *rrRound) float64 { return float64(r.run) })
		for mi, mode := range benchRRModes {
			rec := rrStat(rs, func(r *rrRound) float64 { return float64(r.record[mi]) })
			recRun := rrStat(rs, func(r *rrRound) float64 { return durRatio(r.record[mi], r.run) })
			// A replay that diverged stops early: its time says nothing
			// about the cost of replaying, so only identical ones count.
			same := rrWhere(rs, func(r *rrRound) bool { return r.identical[mi] })
			rep := rrFig(same, func(r *rrRound) float64 { return float64(r.replay[mi]) / 1e6 }, 1)
			repRec := rrFig(same, func(r *rrRound) float64 { return durRatio(r.replay[mi], r.record[mi]) }, 2)
			exRec, exRep := "", ""
			if mi > 0 {
				exRec = rrFig(rs, func(r *rrRound) float64 { return durRatio(r.record[mi], r.record[0]) }, 2)
				both := rrWhere(same, func(r *rrRound) bool { return r.identical[0] })
				exRep = rrFig(both, func(r *rrRound) float64 { return durRatio(r.replay[mi], r.replay[0]) }, 2)
			}
			bytesN := rrStat(rs, func(r *rrRound) float64 { return float64(r.logBytes[mi]) })
			rate := rrStat(rs, func(r *rrRound) float64 {
				return float64(r.logBytes[mi]-r.headerBytes[mi]) / r.record[mi].Seconds()
			})
			identical := 0
			var statuses []int
			for i := range rs {
				if rs[i].identical[mi] {
					identical++
				} else {
					whys = append(whys, fmt.Sprintf("%s %s run %d: %s", g.name, mode, i+1, rs[i].why[mi]))
				}
				statuses = append(statuses, rs[i].status[mi])
				headers = append(headers, rs[i].headerBytes[mi])
				syncs = append(syncs, float64(rs[i].sync[mi]))
			}
			id := fmt.Sprintf("%d/%d", identical, len(rs))
			if g.note != "" {
				id += " (then " + g.note + ")"
			}
			st := make([]string, 0, len(statuses))
			for _, s := range slices.Compact(slices.Sorted(slices.Values(statuses))) {
				st = append(st, strconv.Itoa(s))
			}
			fmt.Fprintf(bw, "| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %.0f | %.0f | %s | %s |\n",
				g.name, mode, msf(run), msf(rec), rep, recRun, repRec, exRec, exRep, bytesN, rate, id, strings.Join(st, ", "))
		}
	}
	syncNote := "none made"
	if len(syncs) > 0 {
		syncNote = fmt.Sprintf("median %s ms, %s to %s ms here", msf(median(syncs)), msf(slices.Min(syncs)), msf(slices.Max(syncs)))
	}
	serial := strconv.Quote(benchSerialDefault)
	if serialIn != "" {
		serial = "the bytes of " + serialIn
	}
	fmt.Fprintf(bw, "\n- Measured inside one vmrr process, through recorder.Record and replayer.Replay, one step after\n"+
		"  another: a run is `vmrr run` (no log, no trapping mode; tlbsync on the soft CPU only), a recording is `vmrr record`\n"+
		"  (tlbsync on, log written to a file in %s), a replay is `vmrr replay` of that log. Each time\n"+
		"  includes creating the VM and loading the image, and a recording's and a replay's the hash of the\n"+
		"  end state over all guest RAM (a run makes none). Left out: process start-up (a few ms), the\n"+
		"  terminal (the console goes to a memory buffer; the run's is discarded) and the fsync that ends\n"+
		"  a recording (%s: the disk's cost, not vmrr's).\n"+
		"- Ratios are medians of each run's own ratio (the steps of one run follow each other and see the\n"+
		"  same host load), so they need not equal the ratio of the medians shown. Replay times and their\n"+
		"  ratios count identical replays only (\"-\": there was none), as a diverged replay stops early.\n"+
		"- log B/s: log bytes after the header (%s bytes: magic, version and header, mostly the CPUID\n"+
		"  table) per second of the recording's wall time.\n"+
		"- Replay identical: same end position, status, final state hash and RIP as the recording (the\n"+
		"  check of `vmrr replay --check`), every checkpoint met, and the same console bytes.\n",
		os.TempDir(), syncNote, benchSpan(headers))
	for _, g := range guests {
		if g.serial != nil {
			fmt.Fprintf(bw, "- %s got %s on COM1; the other guests got no input.\n", g.name, serial)
		}
	}
	for _, why := range whys {
		fmt.Fprintf(bw, "- not identical: %s\n", why)
	}
}

// benchSpan prints the range of v as "N" or "N-M".
func benchSpan(v []int64) string {
	if len(v) == 0 {
		return "-"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return strconv.FormatInt(lo, 10)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}
