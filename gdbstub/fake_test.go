package gdbstub

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"vmrr/position"
	"vmrr/replayer"
)

// fakeSession is a tiny deterministic "recording": states 0..n-1 of a loop
// of ten 4-byte instructions at codeBase. The instruction at codeBase+8
// increments the 8-byte counter at dataAddr, the one at codeBase+12 reads
// it, and the one at codeBase+36 prints "loop K\n" on the console. State i
// has RAX = i and RIP = codeBase + 4*(i%10). The instruction at
// codeBase+16 is "patched": memory holds an OUT, OriginalBytes shows RDTSC.
// Each counter write is an event of the log.
type fakeSession struct {
	n   int
	pos int

	mu     sync.Mutex // guards bps, which the stub reads while Continue runs
	bps    map[int]replayer.Breakpoint
	nextID int

	interrupted atomic.Bool
	intr        chan struct{}
	// spin makes Continue run until interrupted, like a guest in a loop
	// with no breakpoint ahead.
	spin atomic.Bool
	// started is closed when a spinning Continue has begun.
	started chan struct{}
	calls   atomic.Int32 // motions made
	// end, if set, is how the recording ends instead of StopEnd (a crash,
	// the guest exiting).
	end *replayer.Stop
}

const (
	codeBase = 0x1000
	dataAddr = 0x2000
	stackTop = 0x8000
)

var (
	nop4      = []byte{0x0f, 0x1f, 0x40, 0x00}
	patched   = []byte{0xe6, 0xf5, 0x90, 0x90} // out 0xf5, al; nop; nop
	original  = []byte{0x0f, 0x31, 0x90, 0x90} // rdtsc; nop; nop
	errFakeVA = errors.New("fake: unmapped address")
)

func newFake(n int) *fakeSession {
	return &fakeSession{n: n, bps: map[int]replayer.Breakpoint{}, nextID: 1, intr: make(chan struct{}, 1)}
}

func rip(i int) uint64 { return codeBase + 4*uint64(i%10) }

// counter is the value at dataAddr in state i: the writes made before it.
func counter(i int) uint64 { return uint64((i + 7) / 10) }

func writes(i int) bool { return i%10 == 2 }
func reads(i int) bool  { return i%10 == 3 }

func (f *fakeSession) posOf(i int) position.Pos {
	return position.Pos{Exit: uint64(i / 10), Insn: uint64(i % 10)}
}

func (f *fakeSession) stop(k replayer.StopKind) replayer.Stop {
	return replayer.Stop{Kind: k, Pos: f.posOf(f.pos), RIP: rip(f.pos)}
}

func (f *fakeSession) Position() position.Pos { return f.posOf(f.pos) }

func (f *fakeSession) Registers() (replayer.Registers, error) {
	var r replayer.Registers
	i := f.pos
	r.RAX = uint64(i)
	r.RBX = dataAddr
	r.RCX = counter(i)
	r.RSP = stackTop - 0x10
	r.RBP = stackTop
	r.R15 = 0xf0f0f0f0f0f0f0f0
	r.RIP = rip(i)
	r.RFLAGS = 0x202
	r.Sregs.CS.Selector = 0x08
	r.Sregs.SS.Selector = 0x10
	r.Sregs.DS.Selector = 0x10
	r.Sregs.FS.Base = 0x5000
	r.Sregs.GS.Base = 0x6000
	r.Sregs.CR0 = 0x80000011
	r.Sregs.CR3 = 0x3000
	r.Sregs.CR4 = 0x20
	r.Sregs.EFER = 0x500
	r.FCW = 0x37f
	r.MXCSR = 0x1f80
	for j := range r.XMM[1] {
		r.XMM[1][j] = byte(j)
	}
	return r, nil
}

func (f *fakeSession) byteAt(addr uint64) (byte, bool) {
	switch {
	case addr >= codeBase && addr < codeBase+40:
		off := addr - codeBase
		if off/4 == 4 {
			return patched[off%4], true
		}
		return nop4[off%4], true
	case addr >= dataAddr && addr < dataAddr+8:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], counter(f.pos))
		return b[addr-dataAddr], true
	case addr >= stackTop-0x1000 && addr < stackTop:
		return byte(addr), true
	}
	return 0, false
}

func (f *fakeSession) ReadVirtual(addr uint64, b []byte) (int, error) {
	for i := range b {
		c, ok := f.byteAt(addr + uint64(i))
		if !ok {
			return i, fmt.Errorf("%w %#x", errFakeVA, addr+uint64(i))
		}
		b[i] = c
	}
	return len(b), nil
}

func (f *fakeSession) ReadPhysical(addr uint64, b []byte) (int, error) { return f.ReadVirtual(addr, b) }
func (f *fakeSession) Translate(addr uint64) (uint64, error)           { return addr, nil }

func (f *fakeSession) OriginalBytes(addr uint64, b []byte) {
	for i := range b {
		a := addr + uint64(i)
		if a >= codeBase+16 && a < codeBase+20 {
			b[i] = original[a-codeBase-16]
		}
	}
}

// watchHit says whether executing state i touches a watchpoint, and which.
func (f *fakeSession) watchHit(i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bps {
		if dataAddr < b.Addr || dataAddr >= b.Addr+b.Len {
			continue
		}
		switch b.Kind {
		case replayer.WatchWrite:
			if writes(i) {
				return true
			}
		case replayer.WatchRead:
			if reads(i) {
				return true
			}
		case replayer.WatchAccess:
			if writes(i) || reads(i) {
				return true
			}
		}
	}
	return false
}

func (f *fakeSession) breakAt(i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bps {
		if (b.Kind == replayer.BreakSoftware || b.Kind == replayer.BreakHardware) && b.Addr == rip(i) {
			return true
		}
	}
	return false
}

// begin starts a motion: an Interrupt from before it is forgotten.
func (f *fakeSession) begin() {
	f.calls.Add(1)
	f.interrupted.Store(false)
	select {
	case <-f.intr:
	default:
	}
}

// forward executes the instruction of the current state.
func (f *fakeSession) forward() (replayer.Stop, bool) {
	if f.pos == f.n-1 {
		return f.endStop(), true
	}
	i := f.pos
	f.pos++
	if f.watchHit(i) {
		st := f.stop(replayer.StopWatchpoint)
		st.Addr = dataAddr
		return st, true
	}
	return replayer.Stop{}, false
}

func (f *fakeSession) Step(n int) (replayer.Stop, error) {
	f.begin()
	for ; n > 0; n-- {
		if st, ok := f.forward(); ok {
			return st, nil
		}
	}
	return f.stop(replayer.StopStep), nil
}

func (f *fakeSession) ReverseStep(n int) (replayer.Stop, error) {
	f.begin()
	for ; n > 0; n-- {
		if f.pos == 0 {
			return f.stop(replayer.StopBegin), nil
		}
		f.pos--
	}
	return f.stop(replayer.StopStep), nil
}

func (f *fakeSession) Continue() (replayer.Stop, error) {
	f.begin()
	if f.spin.Load() {
		if f.started != nil {
			close(f.started)
		}
		<-f.intr
		return f.stop(replayer.StopInterrupted), nil
	}
	for {
		if f.interrupted.Load() {
			return f.stop(replayer.StopInterrupted), nil
		}
		if st, ok := f.forward(); ok {
			return st, nil
		}
		if f.breakAt(f.pos) {
			return f.stop(replayer.StopBreakpoint), nil
		}
	}
}

// ReverseContinue stops at a breakpoint, or before the instruction that
// triggered a watchpoint (where it is about to write).
func (f *fakeSession) ReverseContinue() (replayer.Stop, error) {
	f.begin()
	for f.pos > 0 {
		if f.interrupted.Load() {
			return f.stop(replayer.StopInterrupted), nil
		}
		f.pos--
		if f.watchHit(f.pos) {
			st := f.stop(replayer.StopWatchpoint)
			st.Addr = dataAddr
			return st, nil
		}
		if f.breakAt(f.pos) {
			return f.stop(replayer.StopBreakpoint), nil
		}
	}
	return f.stop(replayer.StopBegin), nil
}

func (f *fakeSession) Goto(p position.Pos) (replayer.Stop, error) {
	i := int(p.Exit*10 + p.Insn)
	if p.Insn >= 10 || i >= f.n {
		return replayer.Stop{}, fmt.Errorf("fake: position %v out of range", p)
	}
	f.pos = i
	return f.stop(replayer.StopStep), nil
}

func (f *fakeSession) GotoEvent(k int) (replayer.Stop, error) {
	if k < 0 || k >= f.EventCount() {
		return replayer.Stop{}, fmt.Errorf("fake: no event %d", k)
	}
	f.pos = 10*k + 2
	return f.stop(replayer.StopStep), nil
}

func (f *fakeSession) GotoStart() (replayer.Stop, error) {
	f.pos = 0
	return f.stop(replayer.StopBegin), nil
}

func (f *fakeSession) GotoEnd() (replayer.Stop, error) {
	f.pos = f.n - 1
	return f.endStop(), nil
}

func (f *fakeSession) endStop() replayer.Stop {
	st := f.stop(replayer.StopEnd)
	if f.end != nil {
		st.Kind, st.Message, st.Status = f.end.Kind, f.end.Message, f.end.Status
	}
	return st
}

func (f *fakeSession) Interrupt() {
	f.interrupted.Store(true)
	select {
	case f.intr <- struct{}{}:
	default:
	}
}

func (f *fakeSession) AddBreakpoint(kind replayer.BreakKind, addr, length uint64) (int, error) {
	if kind > replayer.WatchAccess {
		return 0, fmt.Errorf("fake: bad kind %d", kind)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	f.bps[id] = replayer.Breakpoint{ID: id, Kind: kind, Addr: addr, Len: length}
	return id, nil
}

func (f *fakeSession) RemoveBreakpoint(id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bps[id]; !ok {
		return fmt.Errorf("fake: no breakpoint %d", id)
	}
	delete(f.bps, id)
	return nil
}

func (f *fakeSession) Breakpoints() []replayer.Breakpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []replayer.Breakpoint
	for _, b := range f.bps {
		out = append(out, b)
	}
	return out
}

func (f *fakeSession) EventCount() int { return (f.n + 7) / 10 }
func (f *fakeSession) NextEvent() int  { return int(counter(f.pos)) }

func (f *fakeSession) Events(from, count int) ([]replayer.EventInfo, error) {
	if from < 0 || from > f.EventCount() {
		return nil, fmt.Errorf("fake: event %d out of range", from)
	}
	var out []replayer.EventInfo
	for k := from; k < f.EventCount() && len(out) < count; k++ {
		out = append(out, replayer.EventInfo{Index: k, Pos: f.posOf(10*k + 2), Kind: "rdtsc", Text: fmt.Sprintf("value=%#x", 1000*k)})
	}
	return out, nil
}

func (f *fakeSession) Console() []byte {
	var out []byte
	for k := 0; k < f.pos/10; k++ {
		out = fmt.Appendf(out, "loop %d\n", k)
	}
	return out
}

func (f *fakeSession) Snapshots() []replayer.SnapshotInfo {
	var out []replayer.SnapshotInfo
	for i := 0; i <= f.pos; i += 25 {
		out = append(out, replayer.SnapshotInfo{Pos: f.posOf(i), Event: int(counter(i)), Bytes: 4096})
	}
	return out
}

func (f *fakeSession) ImagePath() string { return "" }

var _ replayer.Session = (*fakeSession)(nil)
