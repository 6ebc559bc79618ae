package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"vmrr/logfmt"
	"vmrr/machine"
	"vmrr/machine/cpu"
	"vmrr/position"
)

func init() {
	register(&command{name: "dump", summary: "print a log's header and events", run: dumpCmd})
}

// exitDamaged is vmrr dump's status for a log it could read only part of:
// cut short or damaged. What could be read has been printed.
const exitDamaged = 1

func dumpCmd(args []string) int {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmrr dump [--json] [--stats] [--from N|EXIT:INSN] [--count K] LOG")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print one JSON object per line, the header first")
	stats := fs.Bool("stats", false, "print counts per kind, sizes and compression instead of the events")
	from := fs.String("from", "", "start at event `N`, or at the first event at or after position EXIT:INSN")
	count := fs.Int64("count", -1, "print at most `K` events (-1: all)")

	// Flags may come after the log name too: parse around it.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) != 1 {
		fs.Usage()
		return exitUsage
	}
	path := paths[0]

	r, err := logfmt.Open(path)
	if err != nil {
		return dumpError(path, err)
	}
	defer r.Close()

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	p := &dumpPrinter{w: out, json: *asJSON}
	p.header(path, r.Header(), r.End())

	if *from != "" {
		var err error
		if strings.ContainsAny(*from, ":+") {
			var p position.Pos
			if p, err = position.Parse(*from); err != nil {
				return fail("dump: --from: %v", err)
			}
			err = r.SeekPosition(p)
		} else {
			var n uint64
			if n, err = strconv.ParseUint(*from, 10, 64); err != nil {
				return fail("dump: --from %q: want an event number N or a position EXIT:INSN", *from)
			}
			err = r.SeekEvent(n)
		}
		if err != nil {
			out.Flush()
			var te *logfmt.TruncatedError
			if errors.As(err, &te) || isDamage(err) {
				return dumpError(path, err)
			}
			return fail("dump: %s: --from %s: %v", path, *from, err)
		}
	}
	st := newDumpStats()
	var end error
	for n := int64(0); *count < 0 || n < *count; n++ {
		i := r.Index()
		e, err := r.Next()
		if err != nil {
			end = err
			break
		}
		if *stats {
			st.add(e)
		} else {
			p.event(i, e)
		}
	}
	if *stats {
		var size int64
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		p.stats(st, r.Stats(), size)
	}
	if end != nil && end != io.EOF {
		out.Flush()
		return dumpError(path, end)
	}
	if err := out.Flush(); err != nil {
		return fail("dump: %v", err)
	}
	return 0
}

// isDamage reports whether err says the log's bytes are bad.
func isDamage(err error) bool {
	var ce *logfmt.ChecksumError
	var co *logfmt.CorruptError
	var uk *logfmt.UnknownKindError
	return errors.As(err, &ce) || errors.As(err, &co) || errors.As(err, &uk)
}

// dumpError prints why a log could not be read (completely) and picks the
// status: 1 for a log cut short or damaged, 2 for anything that is not a
// readable log at all.
func dumpError(path string, err error) int {
	var te *logfmt.TruncatedError
	switch {
	case errors.As(err, &te):
		fmt.Fprintf(os.Stderr, "vmrr: %v\n", te)
		return exitDamaged
	case isDamage(err):
		fmt.Fprintf(os.Stderr, "vmrr: %s: %v\n", path, strings.TrimPrefix(err.Error(), "logfmt: "))
		return exitDamaged
	}
	return fail("dump: %s: %s", path, strings.TrimPrefix(err.Error(), "logfmt: "))
}

type dumpPrinter struct {
	w    *bufio.Writer
	json bool
}

func hex64(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

func (p *dumpPrinter) emit(v any) {
	b, _ := json.Marshal(v) // plain structs of strings and numbers: cannot fail
	p.w.Write(b)
	p.w.WriteByte('\n')
}

type jsonCPUID struct {
	Function uint32 `json:"function"`
	Index    uint32 `json:"index"`
	Flags    uint32 `json:"flags"`
	EAX      string `json:"eax"`
	EBX      string `json:"ebx"`
	ECX      string `json:"ecx"`
	EDX      string `json:"edx"`
}

type jsonPatch struct {
	Addr     string `json:"addr"`
	Len      uint8  `json:"len"`
	Instr    string `json:"instr"`
	Original string `json:"original"`
}

type jsonEnd struct {
	Reason    string `json:"reason"`
	Status    int    `json:"status"`
	RIP       string `json:"rip"`
	StateHash string `json:"state_hash"`
	Events    uint64 `json:"events"`
	Exit      uint64 `json:"exit"`
	Insn      uint64 `json:"insn"`
}

func endJSON(e *logfmt.EndRecord) *jsonEnd {
	if e == nil {
		return nil
	}
	return &jsonEnd{Reason: e.Reason, Status: e.Status, RIP: hex64(e.RIP), StateHash: hex64(e.StateHash),
		Events: e.Events, Exit: e.Pos.Exit, Insn: e.Pos.Insn}
}

func (p *dumpPrinter) header(path string, h *logfmt.Header, end *logfmt.EndRecord) {
	if p.json {
		v := struct {
			Type          string      `json:"type"`
			Log           string      `json:"log"`
			Format        uint32      `json:"format"`
			VMRR          string      `json:"vmrr"`
			Image         string      `json:"image"`
			ImageSHA256   string      `json:"image_sha256"`
			ImageSize     uint64      `json:"image_size"`
			ImageEmbedded bool        `json:"image_embedded"`
			Memory        uint64      `json:"memory"`
			Boot          string      `json:"boot"`
			Mode          string      `json:"mode"`
			TLBSync       bool        `json:"tlbsync"`
			ExitsOnly     bool        `json:"exits_only"`
			Args          string      `json:"args"`
			Start         string      `json:"start,omitempty"`
			Host          string      `json:"host"`
			CPUID         []jsonCPUID `json:"cpuid"`
			Patches       []jsonPatch `json:"patches"`
			End           *jsonEnd    `json:"end,omitempty"`
		}{Type: "header", Log: path, Format: h.FormatVersion, VMRR: h.VMRRVersion, Image: h.ImagePath,
			ImageSHA256: hex.EncodeToString(h.ImageSHA256[:]), ImageSize: h.ImageSize, ImageEmbedded: len(h.Image) > 0,
			Memory: h.MemoryBytes, Boot: h.Boot, Mode: h.Mode, TLBSync: h.TLBSync, ExitsOnly: h.ExitsOnly, Args: h.Args, Host: h.Host,
			CPUID: []jsonCPUID{}, Patches: []jsonPatch{}, End: endJSON(end)}
		if !h.StartTime.IsZero() {
			v.Start = h.StartTime.Format(time.RFC3339Nano)
		}
		for _, c := range h.CPUID {
			v.CPUID = append(v.CPUID, jsonCPUID{c.Function, c.Index, c.Flags,
				hex64(uint64(c.EAX)), hex64(uint64(c.EBX)), hex64(uint64(c.ECX)), hex64(uint64(c.EDX))})
		}
		for _, pt := range h.Patches {
			v.Patches = append(v.Patches, jsonPatch{hex64(pt.Addr), pt.Len, pt.Instr.String(), hex.EncodeToString(pt.Original)})
		}
		p.emit(v)
		return
	}
	w := p.w
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%-9s "+format+"\n", append([]any{k}, a...)...) }
	line("log", "%s", path)
	line("format", "%d", h.FormatVersion)
	line("vmrr", "%s", h.VMRRVersion)
	embedded := ""
	if len(h.Image) > 0 {
		embedded = ", embedded"
	}
	line("image", "%s (%d bytes, sha256 %x%s)", h.ImagePath, h.ImageSize, h.ImageSHA256, embedded)
	line("memory", "%d MiB (%d bytes)", h.MemoryBytes>>20, h.MemoryBytes)
	line("boot", "%s", h.Boot)
	line("mode", "%s", h.Mode)
	line("tlbsync", "%t", h.TLBSync)
	if h.ExitsOnly {
		line("events", "at the guest's exits only (positions count exits)")
	}
	line("args", "%s", h.Args)
	if h.StartTime.IsZero() {
		line("start", "-")
	} else {
		line("start", "%s", h.StartTime.Format(time.RFC3339Nano))
	}
	line("host", "%s", h.Host)
	line("cpuid", "%d entries", len(h.CPUID))
	for _, c := range h.CPUID {
		fmt.Fprintf(w, "  0x%08x.%d flags=%d eax=0x%08x ebx=0x%08x ecx=0x%08x edx=0x%08x\n",
			c.Function, c.Index, c.Flags, c.EAX, c.EBX, c.ECX, c.EDX)
	}
	line("patches", "%d", len(h.Patches))
	for _, pt := range h.Patches {
		fmt.Fprintf(w, "  %#x %d bytes %s original %x\n", pt.Addr, pt.Len, pt.Instr.String(), pt.Original)
	}
	if end != nil {
		line("end", "%s", endText(end))
	} else {
		line("end", "not in the index (the recording was interrupted, or the footer is missing)")
	}
}

func endText(e *logfmt.EndRecord) string {
	return fmt.Sprintf("reason=%s status=%d rip=%#x statehash=%#x events=%d", strconv.Quote(e.Reason), e.Status, e.RIP, e.StateHash, e.Events)
}

type jsonRing struct {
	Kind  string `json:"kind"`
	Aux   uint32 `json:"aux,omitempty"`
	Value string `json:"value"`
}

type jsonEvent struct {
	Type    string     `json:"type"`
	Index   uint64     `json:"index"`
	Kind    string     `json:"kind"`
	Exit    uint64     `json:"exit"`
	Insn    uint64     `json:"insn"`
	Instr   string     `json:"instr,omitempty"`
	Values  []string   `json:"values,omitempty"` // nondet results; checkpoint registers (see regs)
	Regs    []string   `json:"regs,omitempty"`   // names of a checkpoint's values
	Port    *uint16    `json:"port,omitempty"`
	Addr    string     `json:"addr,omitempty"`
	Size    *uint8     `json:"size,omitempty"`
	Value   string     `json:"value,omitempty"`
	Vector  *uint8     `json:"vector,omitempty"`
	RIP     string     `json:"rip,omitempty"`
	RegHash string     `json:"reg_hash,omitempty"`
	MemHash string     `json:"mem_hash,omitempty"`
	Pages   []string   `json:"pages,omitempty"`
	Data    string     `json:"data,omitempty"` // hex
	Text    string     `json:"text,omitempty"` // the data, when it is UTF-8
	Ring    []jsonRing `json:"ring,omitempty"`
	End     *jsonEnd   `json:"end,omitempty"`
}

func (p *dumpPrinter) event(i uint64, e *logfmt.Event) {
	if p.json {
		p.emit(eventJSON(i, e))
		return
	}
	w := p.w
	fmt.Fprintf(w, "#%d %s %s", i, e.Pos, e.Kind)
	switch e.Kind {
	case logfmt.KindNonDet:
		fmt.Fprintf(w, " %s", e.Instr.String())
		for _, v := range e.Values {
			fmt.Fprintf(w, " %#x", v)
		}
	case logfmt.KindPortIn:
		fmt.Fprintf(w, " port=%#x size=%d value=%#x", e.Port, e.Size, e.Values[0])
	case logfmt.KindMMIORead:
		fmt.Fprintf(w, " addr=%#x size=%d value=%#x", e.Addr, e.Size, e.Values[0])
	case logfmt.KindInterrupt, logfmt.KindInject:
		fmt.Fprintf(w, " vector=%#x", e.Vector)
		landingText(w, &e.Landing)
	case logfmt.KindSerialRX:
		fmt.Fprintf(w, " %q", e.Data)
		landingText(w, &e.Landing)
	case logfmt.KindCheckpoint:
		fmt.Fprintf(w, " rip=%#x reghash=%#x memhash=%#x", e.RIP, e.RegHash, e.MemHash)
		for j, v := range e.Values {
			fmt.Fprintf(w, " %s=%#x", checkpointRegName(j), v)
		}
		// Each page is frame<<32 | CRC-32C of its contents.
		w.WriteString(" pages=")
		for j, pg := range e.Landing.Pages {
			if j > 0 {
				w.WriteByte(',')
			}
			fmt.Fprintf(w, "%#x:%08x", pg>>32, uint32(pg))
		}
		if len(e.Landing.Pages) == 0 {
			w.WriteString("-")
		}
	case logfmt.KindRingFlush:
		fmt.Fprintf(w, " n=%d", len(e.Ring))
		for _, r := range e.Ring {
			fmt.Fprintf(w, " %s:%#x", ringKindName(r.Kind), r.Value)
			if r.Aux != 0 {
				fmt.Fprintf(w, ",aux=%#x", r.Aux)
			}
		}
	case logfmt.KindEnd:
		fmt.Fprintf(w, " %s", endText(e.End))
	}
	w.WriteByte('\n')
}

// landingText prints where an asynchronous event landed.
func landingText(w *bufio.Writer, l *logfmt.Landing) {
	fmt.Fprintf(w, " rip=%#x reghash=%#x memhash=%#x pages=", l.RIP, l.RegHash, l.MemHash)
	for j, pg := range l.Pages {
		if j > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(w, "%#x", pg)
	}
	if len(l.Pages) == 0 {
		w.WriteString("-")
	}
}

// checkpointRegName names a checkpoint's value i; values past the known
// registers print by number.
func checkpointRegName(i int) string {
	if i < len(machine.RegNames) {
		return machine.RegNames[i]
	}
	return fmt.Sprintf("v%d", i)
}

// ringKindName names a ring entry's (32-bit) kind.
func ringKindName(k uint32) string {
	if k > 0xff {
		return fmt.Sprintf("instr(%d)", k)
	}
	return cpu.NonDet(k).String()
}

func eventJSON(i uint64, e *logfmt.Event) *jsonEvent {
	j := &jsonEvent{Type: "event", Index: i, Kind: e.Kind.String(), Exit: e.Pos.Exit, Insn: e.Pos.Insn}
	switch e.Kind {
	case logfmt.KindNonDet:
		j.Instr = e.Instr.String()
		for _, v := range e.Values {
			j.Values = append(j.Values, hex64(v))
		}
	case logfmt.KindPortIn:
		j.Port, j.Size, j.Value = &e.Port, &e.Size, hex64(e.Values[0])
	case logfmt.KindMMIORead:
		j.Addr, j.Size, j.Value = hex64(e.Addr), &e.Size, hex64(e.Values[0])
	case logfmt.KindInterrupt, logfmt.KindInject:
		j.Vector = &e.Vector
		j.landing(&e.Landing)
	case logfmt.KindSerialRX:
		j.Data = hex.EncodeToString(e.Data)
		if utf8.Valid(e.Data) {
			j.Text = string(e.Data)
		}
		j.landing(&e.Landing)
	case logfmt.KindCheckpoint:
		j.RIP, j.RegHash, j.MemHash = hex64(e.RIP), hex64(e.RegHash), hex64(e.MemHash)
		for i, v := range e.Values {
			j.Values = append(j.Values, hex64(v))
			j.Regs = append(j.Regs, checkpointRegName(i))
		}
		for _, pg := range e.Landing.Pages {
			j.Pages = append(j.Pages, hex64(pg)) // frame<<32 | CRC-32C
		}
	case logfmt.KindRingFlush:
		j.Ring = []jsonRing{}
		for _, r := range e.Ring {
			j.Ring = append(j.Ring, jsonRing{ringKindName(r.Kind), r.Aux, hex64(r.Value)})
		}
	case logfmt.KindEnd:
		j.End = endJSON(e.End)
	}
	return j
}

func (j *jsonEvent) landing(l *logfmt.Landing) {
	j.RIP, j.RegHash, j.MemHash = hex64(l.RIP), hex64(l.RegHash), hex64(l.MemHash)
	for _, pg := range l.Pages {
		j.Pages = append(j.Pages, hex64(pg))
	}
}

// dumpStats counts what --stats prints.
type dumpStats struct {
	events uint64
	kinds  map[logfmt.Kind]uint64
	instrs map[uint32]uint64 // nondet events and ring entries by instruction
	ring   uint64            // ring entries
	pages  uint64            // checkpoint pages (written since the previous checkpoint)
	fixed  uint64            // the events' size in fixed-width fields
}

func newDumpStats() *dumpStats {
	return &dumpStats{kinds: map[logfmt.Kind]uint64{}, instrs: map[uint32]uint64{}}
}

func (s *dumpStats) add(e *logfmt.Event) {
	s.events++
	s.kinds[e.Kind]++
	s.fixed += uint64(logfmt.FixedSize(e))
	switch e.Kind {
	case logfmt.KindNonDet:
		s.instrs[uint32(e.Instr)]++
	case logfmt.KindCheckpoint:
		s.pages += uint64(len(e.Landing.Pages))
	case logfmt.KindRingFlush:
		s.ring += uint64(len(e.Ring))
		for _, r := range e.Ring {
			s.instrs[r.Kind]++
		}
	}
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (p *dumpPrinter) stats(s *dumpStats, fs logfmt.Stats, fileBytes int64) {
	kinds := slices.Sorted(maps.Keys(s.kinds))
	file := uint64(fileBytes)
	if p.json {
		v := struct {
			Type             string            `json:"type"`
			Events           uint64            `json:"events"`
			Kinds            map[string]uint64 `json:"kinds"`
			Instructions     map[string]uint64 `json:"instructions"`
			RingEntries      uint64            `json:"ring_entries"`
			CheckpointPages  uint64            `json:"checkpoint_pages"`
			Frames           uint64            `json:"frames"`
			FileBytes        uint64            `json:"file_bytes"`
			BytesPerEvent    float64           `json:"bytes_per_event"`
			CompressedBytes  uint64            `json:"compressed_bytes"`
			RawBytes         uint64            `json:"uncompressed_bytes"`
			CompressionRatio float64           `json:"compression_ratio"`
			FixedBytes       uint64            `json:"fixed_width_bytes"`
			FixedRatio       float64           `json:"fixed_width_ratio"`
		}{Type: "stats", Events: s.events, Kinds: map[string]uint64{}, Instructions: map[string]uint64{}, RingEntries: s.ring, CheckpointPages: s.pages,
			Frames: fs.Frames, FileBytes: file, BytesPerEvent: ratio(file, s.events),
			CompressedBytes: fs.CompressedBytes, RawBytes: fs.RawBytes, CompressionRatio: ratio(fs.RawBytes, fs.CompressedBytes),
			FixedBytes: s.fixed, FixedRatio: ratio(s.fixed, file)}
		for _, k := range kinds {
			v.Kinds[k.String()] = s.kinds[k]
		}
		for i, n := range s.instrs {
			v.Instructions[ringKindName(i)] = n
		}
		p.emit(v)
		return
	}
	w := p.w
	fmt.Fprintf(w, "events       %d\n", s.events)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-11s %d", k, s.kinds[k])
		if k == logfmt.KindRingFlush {
			fmt.Fprintf(w, " (%d entries)", s.ring)
		}
		if k == logfmt.KindCheckpoint {
			fmt.Fprintf(w, " (%d pages)", s.pages)
		}
		w.WriteByte('\n')
	}
	if len(s.instrs) > 0 {
		fmt.Fprintf(w, "instructions")
		for _, i := range slices.Sorted(maps.Keys(s.instrs)) {
			fmt.Fprintf(w, " %s=%d", ringKindName(i), s.instrs[i])
		}
		w.WriteByte('\n')
	}
	fmt.Fprintf(w, "frames       %d\n", fs.Frames)
	fmt.Fprintf(w, "file         %d bytes, %.2f bytes/event\n", file, ratio(file, s.events))
	fmt.Fprintf(w, "payload      %d bytes compressed, %d uncompressed (compression ratio %.2f)\n",
		fs.CompressedBytes, fs.RawBytes, ratio(fs.RawBytes, fs.CompressedBytes))
	fmt.Fprintf(w, "fixed-width  %d bytes (%.2f times the file)\n", s.fixed, ratio(s.fixed, file))
}
