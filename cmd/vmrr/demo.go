package main

import (
	"bytes"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"vmrr/logfmt"
	"vmrr/nondet"
	"vmrr/recorder"
	"vmrr/replayer"
)

// demoGuest is testdata/guests/race.elf: a counter updated by a main loop
// and by a timer interrupt handler without locking, so updates are lost
// differently on every run. TestDemoGuestCurrent keeps the copy current.
//
//go:embed demo-race.elf
var demoGuest []byte

func init() {
	register(&command{name: "demo", summary: "record a racy built-in guest, replay it twice, report", run: demoCmd})
}

func demoCmd(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	mode := fs.String("mode", string(nondet.ModeFast), "trapping mode: exact or fast")
	keep := fs.String("o", "", "keep the log at this path (default: a temporary file)")
	accelFlag := addAccelFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr demo [--accel auto|kvm|soft] [--mode fast|exact] [-o LOG]")
		fs.PrintDefaults()
	}
	if st, ok := parseArgs(fs, args, 0); !ok {
		return st
	}
	m, err := nondet.ParseMode(*mode)
	if err != nil {
		return fail("%v", err)
	}
	accel, err := chooseRacingAccel(*accelFlag)
	if err != nil {
		return fail("%v", err)
	}
	dir, err := os.MkdirTemp("", "vmrr-demo-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)
	image := filepath.Join(dir, "race.elf")
	if err := os.WriteFile(image, demoGuest, 0o644); err != nil {
		return fail("%v", err)
	}
	logPath := *keep
	if logPath == "" {
		logPath = filepath.Join(dir, "race.vmrr")
	}
	fmt.Println("vmrr demo: a guest whose timer interrupt races with its main loop;")
	fmt.Println("its output differs from run to run. Recording it:")
	f, err := os.Create(logPath)
	if err != nil {
		return fail("%v", err)
	}
	var recOut bytes.Buffer
	start := time.Now()
	res, err := recorder.Record(f, recorder.Options{ImagePath: image, Image: demoGuest, EmbedImage: true, Mode: m,
		Console: &recOut, TLBSync: true, Timeout: time.Minute, Accel: accel})
	recTime := time.Since(start)
	if err != nil {
		return fail("record: %v", err)
	}
	fmt.Printf("  recorded: %s", recOut.String())
	identical := true
	var repTimes []time.Duration
	for i := 1; i <= 2; i++ {
		var out bytes.Buffer
		start := time.Now()
		o, err := replayer.Replay(replayer.Options{LogPath: logPath, Image: demoGuest, Console: &out})
		repTimes = append(repTimes, time.Since(start))
		if err != nil {
			return fail("replay: %v", err)
		}
		same := o.Identical() && out.String() == recOut.String()
		identical = identical && same
		fmt.Printf("  replay %d: %s", i, out.String())
		if !same {
			fmt.Printf("  replay %d: %s\n", i, o.Summary())
		}
	}
	counts, size, err := logCounts(logPath)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Println()
	fmt.Printf("guest status      %d (%s)\n", res.Status, res.Reason)
	fmt.Printf("events            %s\n", counts)
	fmt.Printf("CPU               %s\n", accel)
	fmt.Printf("log size          %d bytes (%s mode, image embedded: %d bytes)\n", size, m, len(demoGuest))
	fmt.Printf("record time       %v\n", recTime.Round(time.Millisecond))
	fmt.Printf("replay times      %v, %v\n", repTimes[0].Round(time.Millisecond), repTimes[1].Round(time.Millisecond))
	if identical {
		fmt.Println("replay identical: yes")
		if *keep != "" {
			fmt.Printf("\nexplore it: vmrr shell %s   or   vmrr gdb %s\n", logPath, logPath)
		}
		return 0
	}
	fmt.Println("replay identical: NO")
	return 1
}

// logCounts summarises a log's events by kind.
func logCounts(path string) (string, int64, error) {
	r, err := logfmt.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	n := map[string]int{}
	ring := 0
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		n[ev.Kind.String()]++
		ring += len(ev.Ring)
	}
	kinds := make([]string, 0, len(n))
	for k := range n {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b bytes.Buffer
	for i, k := range kinds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, n[k])
	}
	if ring > 0 {
		fmt.Fprintf(&b, " (%d values through the ring)", ring)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	return b.String(), st.Size(), nil
}
