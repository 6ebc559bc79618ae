package recorder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/nondet"
	"vmrr/position"
	"vmrr/tlbsync"
)

// Version is vmrr's version as recorded in log headers.
const Version = "0.1.0"

// CheckpointEvery is how many deterministic exits pass between two state
// checkpoints in the log. Replay compares them to find a divergence close to
// where it started.
const CheckpointEvery = 2048

// Options configure a recording.
type Options struct {
	ImagePath   string
	Image       []byte
	EmbedImage  bool
	MemoryBytes uint64
	Mode        nondet.Mode
	Console     io.Writer
	Serial      io.Reader     // COM1 input; nil for none
	Timeout     time.Duration // 0: no limit
	Warnings    io.Writer
	TLBSync     bool // keep the TLB in step with page-table writes (tlbsync)
	// Accel is the CPU: machine.AccelKVM or machine.AccelSoft ("" is
	// KVM); the caller resolves auto (probe.ChooseAccel).
	Accel machine.Accel
	// Clock, if set, runs the guest's time on the instruction count, Clock
	// per instruction (the PIT, the RTC and the TSC follow it; idle time is
	// skipped), instead of the host clock: the soft CPU, or exact mode on
	// KVM, which counts every instruction too.
	Clock time.Duration
	// Stats, if set, gets one line of counters at the end of the run:
	// the CPU, instructions and exits, and what tlbsync did.
	Stats io.Writer
	// ExitsOnly places timer ticks and serial input at the guest's own
	// exits only (machine.SetExitsOnly): what a recording on KVM without
	// an exact instruction counter (probe.ExactCounter) must do, since
	// nothing else replays there; elsewhere it makes a log that replays
	// on such a host too.
	ExitsOnly bool
}

// Recorder is a live run whose every outside-world input is logged. It
// implements machine.Hooks.
type Recorder struct {
	*Live
	m      *machine.Machine
	w      *logfmt.Writer
	trap   *nondet.Trapper
	ring   *nondet.Ring
	tlb    *tlbsync.Sync
	err    error // first logging error: ends the run
	lastCP uint64
	pages  []uint32 // page hashes at the last checkpoint
}

// Record runs the image and writes its log to w (which it closes). With a
// nil w it is a plain live run that logs nothing (`vmrr run`).
func Record(w io.Writer, opt Options) (machine.Result, error) {
	r := &Recorder{Live: NewLive(opt.Serial, opt.Timeout)}
	defer r.Live.Stop()
	r.Live.OnTick = r.logTick
	r.Live.OnSerial = r.logSerial
	trap, err := nondet.NewTrapper(opt.Mode, opt.Image, r, nil)
	if err != nil {
		return machine.Result{}, err
	}
	r.trap = trap
	m, err := machine.New(machine.Config{MemoryBytes: opt.MemoryBytes, Image: opt.Image, Console: opt.Console, Hooks: r,
		Accel: opt.Accel, TLBSync: opt.TLBSync})
	if err != nil {
		return machine.Result{}, err
	}
	defer m.Close()
	m.Warnings = opt.Warnings
	if os.Getenv("VMRR_TRACE") != "" {
		m.Trace = os.Stderr
	}
	r.m = m
	r.ring = nondet.NewRing(m.Memory(), true)
	if err := trap.Install(m); err != nil {
		return machine.Result{}, err
	}
	if w != nil && opt.ExitsOnly {
		if opt.Mode == nondet.ModeExact && m.Accel() == machine.AccelKVM {
			return machine.Result{}, errors.New("recorder: exact mode on KVM runs the guest's clock on instruction counts, which a recording that places its events at exits only does not keep; record with --mode fast, or on the soft CPU (--accel soft)")
		}
		m.SetExitsOnly()
	}
	switch {
	case opt.Clock != 0 && m.Accel() != machine.AccelSoft && opt.Mode != nondet.ModeExact:
		return machine.Result{}, errors.New("recorder: the instruction clock (--clock) needs the soft CPU, or --mode exact on KVM")
	case opt.Clock != 0:
		r.Live.UseInstructionClock(m, opt.Clock)
	case opt.Mode == nondet.ModeExact && m.Accel() == machine.AccelKVM:
		r.Live.UseInstructionClock(m, time.Microsecond)
	}
	if opt.Mode == nondet.ModeFast && m.Accel() == machine.AccelKVM && w != nil && opt.Warnings != nil && m.Boot() == machine.BootFlat {
		fmt.Fprintln(opt.Warnings, "vmrr: warning: fast mode finds the instructions to patch in ELF sections; a flat image gets none, so any RDTSC/RDRAND it runs natively will not replay (use --mode exact)")
	}
	if opt.TLBSync {
		if r.tlb, err = tlbsync.Attach(m); err != nil {
			return machine.Result{}, err
		}
	}
	if w != nil {
		if r.w, err = logfmt.NewWriter(w, header(m, trap, opt), logfmt.WriterOptions{}); err != nil {
			return machine.Result{}, err
		}
	}
	res, err := m.Run()
	if err == nil {
		err = r.err
	}
	if opt.Stats != nil {
		r.printStats(opt.Stats)
	}
	if r.w == nil {
		return res, err
	}
	if err != nil {
		r.w.Close(&logfmt.EndRecord{Reason: "recording failed: " + err.Error(), Status: machine.StatusInternal, Pos: m.Position()})
		return res, err
	}
	r.flushRing()
	state, err := m.StateHash()
	if err != nil {
		return res, err
	}
	end := &logfmt.EndRecord{Reason: res.Reason.String() + ": " + res.Message, Status: res.Status, RIP: res.RIP, StateHash: state, Pos: res.Pos}
	if m.ExitsOnly() && !m.AtDeterministicExit() {
		// Cut between two exits (a time limit, an interrupt): positions
		// that count exits alone cannot say where, so the replay stops
		// at the last exit, whose state this run did not keep.
		end.SetBetweenExits()
		end.Reason += " (between two exits: the replay stops at the last one)"
	}
	if err := r.w.Close(end); err != nil {
		return res, fmt.Errorf("recorder: close log: %w", err)
	}
	return res, r.err
}

// header describes the recording.
func header(m *machine.Machine, trap *nondet.Trapper, opt Options) *logfmt.Header {
	h := &logfmt.Header{
		VMRRVersion: Version,
		ImagePath:   opt.ImagePath,
		ImageSHA256: logfmt.HashImage(opt.Image),
		ImageSize:   uint64(len(opt.Image)),
		MemoryBytes: m.Memory().Size(),
		Boot:        string(m.Boot()),
		Mode:        string(opt.Mode),
		StartTime:   time.Now().UTC(),
		Host:        hostDescription(),
		TLBSync:     opt.TLBSync,
		Accel:       string(m.Accel()),
		ExitsOnly:   m.ExitsOnly(),
	}
	if opt.EmbedImage {
		h.Image = opt.Image
	}
	for _, e := range m.CPUID() {
		h.CPUID = append(h.CPUID, logfmt.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.Eax, EBX: e.Ebx, ECX: e.Ecx, EDX: e.Edx})
	}
	for _, p := range trap.Patches {
		h.Patches = append(h.Patches, logfmt.Patch{Addr: p.Addr, Len: uint8(len(p.Original)), Original: p.Original, Instr: p.Inst.Kind})
	}
	return h
}

// hostDescription names the kernel, CPU and KVM flavour.
func hostDescription() string {
	var parts []string
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "linux "+strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.Index(l, ":"); i >= 0 {
					parts = append(parts, strings.TrimSpace(l[i+1:]))
				}
				break
			}
		}
	}
	parts = append(parts, runtime.GOARCH)
	return strings.Join(parts, ", ")
}

// append logs an event at the current position; the first error sticks
// and stops the run.
func (r *Recorder) append(e *logfmt.Event) {
	if r.err != nil || r.w == nil {
		return
	}
	if err := r.w.Append(e); err != nil {
		r.err = fmt.Errorf("recorder: write log: %w", err)
	}
}

// landing describes where the guest stands, for an asynchronous event.
func (r *Recorder) landing(m *machine.Machine) (position.Pos, logfmt.Landing) {
	regs, _ := m.Regs()
	return m.Position(), logfmt.Landing{RIP: regs.RIP, RegHash: machine.RegHash(&regs)}
}

func (r *Recorder) logTick(m *machine.Machine) {
	p, l := r.landing(m)
	r.append(&logfmt.Event{Kind: logfmt.KindInterrupt, Pos: p, Vector: machine.IRQTimer, Landing: l})
}

func (r *Recorder) logSerial(m *machine.Machine, b []byte) {
	p, l := r.landing(m)
	r.append(&logfmt.Event{Kind: logfmt.KindSerialRX, Pos: p, Data: append([]byte(nil), b...), Landing: l})
}

// checkpoint logs the state every CheckpointEvery exits.
func (r *Recorder) checkpoint(m *machine.Machine) {
	// Not right after an injection, where no debugger stops (see
	// Live.BeforeRun): the next stop takes it.
	if m.Exits()-r.lastCP < CheckpointEvery || m.Injecting() {
		return
	}
	r.lastCP = m.Exits()
	regs, _ := m.Regs()
	pages := m.PageHashes(nil)
	// The pages that changed since the last checkpoint, with their hashes,
	// let a diverging replay name the first page that differs.
	var changed []uint64
	for p, c := range pages {
		if r.pages == nil || r.pages[p] != c {
			changed = append(changed, uint64(p)<<32|uint64(c))
		}
	}
	r.pages = pages
	r.append(&logfmt.Event{Kind: logfmt.KindCheckpoint, Pos: m.Position(), RIP: regs.RIP, RegHash: machine.RegHash(&regs),
		MemHash: machine.HashPages(pages), Values: checkpointValues(m, &regs), Landing: logfmt.Landing{Pages: changed}})
}

// checkpointValues are the registers (machine.RegNames order), then the
// console's length and CRC-32C.
func checkpointValues(m *machine.Machine, regs *cpu.Regs) []uint64 {
	n, crc := m.ConsoleHash()
	return append(machine.RegList(regs), n, uint64(crc))
}

// BeforeRun checkpoints, delivers due events (logging them) and, in exact
// mode, traps the instruction at RIP.
func (r *Recorder) BeforeRun(m *machine.Machine) error {
	if r.err != nil {
		return r.err
	}
	r.checkpoint(m)
	if r.tlb != nil {
		if err := r.tlb.BeforeRun(m); err != nil {
			return err
		}
	}
	if err := r.Live.BeforeRun(m); err != nil {
		return err
	}
	if err := r.trap.BeforeRun(m); err != nil {
		return err
	}
	// The guest could take a pending interrupt here, at a stop replay
	// would not make by itself (a kick, a late window exit): log the place.
	// Placing events at exits only, it waits for the next one instead.
	if vec, ok := m.CanInject(); ok && !m.MayInject() && !m.ExitsOnly() {
		p, l := r.landing(m)
		r.append(&logfmt.Event{Kind: logfmt.KindInject, Pos: p, Vector: vec, Landing: l})
		m.Delivered()
	}
	return nil
}

// Input reads the outside world and logs the value.
func (r *Recorder) Input(m *machine.Machine, in machine.Input, live func() uint64) (uint64, error) {
	v := live()
	r.append(&logfmt.Event{Kind: logfmt.KindPortIn, Pos: m.Position(), Port: in.Port, Size: in.Size, Values: []uint64{v}})
	return v, r.err
}

// NonDet serves the emulator's and MSR exits' non-deterministic values.
func (r *Recorder) NonDet(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	return r.trap.NonDet(m, kind)
}

// Port handles the trap and doorbell ports.
func (r *Recorder) Port(m *machine.Machine, port uint16, out bool, data []byte) (bool, error) {
	return r.trap.Port(m, port, out, data)
}

// Debug exits come from exact mode's single-stepping; BeforeRun does the work.
func (r *Recorder) Debug(m *machine.Machine, d cpu.DebugExit) error { return nil }

// Value executes a trapped instruction on the host and puts its value in
// the ring, logging the ring when it fills (nondet.Values).
func (r *Recorder) Value(m *machine.Machine, kind cpu.NonDet) (uint64, error) {
	v, err := r.Live.value(kind)
	if err != nil {
		return 0, err
	}
	var aux uint32
	if kind == cpu.RDTSCP {
		aux = uint32(m.TSCAux())
	}
	if r.ring.Put(nondet.Entry{Kind: uint32(kind), Aux: aux, Value: v}) {
		r.flushRing()
	}
	return v, r.err
}

// Doorbell logs the ring the guest filled.
func (r *Recorder) Doorbell(m *machine.Machine) error {
	r.flushRing()
	return r.err
}

// flushRing logs the ring's entries and empties it.
func (r *Recorder) flushRing() {
	entries := r.ring.Drain()
	if len(entries) == 0 {
		return
	}
	ev := &logfmt.Event{Kind: logfmt.KindRingFlush, Pos: r.m.Position(), Ring: make([]logfmt.RingEntry, len(entries))}
	for i, e := range entries {
		ev.Ring[i] = logfmt.RingEntry{Kind: e.Kind, Aux: e.Aux, Value: e.Value}
	}
	r.append(ev)
}

// printStats writes the run's counters in one line.
func (r *Recorder) printStats(w io.Writer) {
	p := r.m.Position()
	fmt.Fprintf(w, "vmrr: stats: cpu %s, %d instructions, %d exits", r.m.Accel(), p.Insn, p.Exit)
	if r.tlb != nil {
		st := r.tlb.Stats()
		fmt.Fprintf(w, ", tlbsync: %d page-table pages marked, %d writes to them dropped translations, %d walks", st.Marked, st.Writes, st.Walks)
	}
	fmt.Fprintln(w)
}
