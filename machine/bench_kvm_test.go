//go:build linux

package machine

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"vmrr/machine/cpu"
	"vmrr/machine/kvm"
)

// Exit-loop benchmarks. Each guest loops forever on one exiting
// instruction; nopHooks.stopAt ends a Run after an exact number of exits,
// so b.N counts exits and ns/op is the cost of one. Ratios are taken
// against a baseline measured in the same run, as absolute numbers on a
// shared, nested-KVM host say little on their own.

// runExits runs m for n more deterministic exits.
func runExits(b *testing.B, m *Machine, h *nopHooks, n int) {
	b.Helper()
	start := m.Exits()
	h.stopAt = start + uint64(n)
	res, err := m.Run()
	if err != nil {
		b.Fatal(err)
	}
	if res.Reason != ReasonStopped || m.Exits() != h.stopAt {
		b.Fatalf("run ended with %s after %d exits, want stopped after %d", res.Message, m.Exits()-start, n)
	}
}

// loopMachine is a machine running code, stopped by its hooks.
func loopMachine(b *testing.B, image []byte, boot BootProtocol) (*Machine, *nopHooks) {
	b.Helper()
	h := &nopHooks{}
	m := newTestMachine(b, Config{Image: image, Boot: boot, MemoryBytes: 16 << 20, Hooks: h})
	runExits(b, m, h, 100) // warm up: first entries fault in pages and caches
	return m, h
}

// bareVM is KVM driven by nothing but KVM_RUN: one vCPU in real mode at
// 0000:7c00 with no devices, the floor under the Go exit loop's cost.
type bareVM struct {
	sys  *kvm.System
	vm   *kvm.VM
	vcpu *kvm.VCPU
	mem  *Memory
}

func newBareVM(b *testing.B, code []byte) *bareVM {
	b.Helper()
	needKVM(b)
	v := &bareVM{}
	b.Cleanup(v.close)
	var err error
	if v.sys, err = kvm.Open(); err != nil {
		b.Fatal(err)
	}
	if v.vm, err = v.sys.CreateVM(); err != nil {
		b.Fatal(err)
	}
	if err := v.vm.SetTSSAddr(0xfffbd000); err != nil {
		b.Fatal(err)
	}
	if v.mem, err = newMemory(2 << 20); err != nil {
		b.Fatal(err)
	}
	if err := v.vm.SetMemoryRegion(0, 0, 0, v.mem.b); err != nil {
		b.Fatal(err)
	}
	if v.vcpu, err = v.vm.CreateVCPU(0); err != nil {
		b.Fatal(err)
	}
	v.mem.WritePhys(flatLoadAddr, code)
	s, err := v.vcpu.Sregs()
	if err != nil {
		b.Fatal(err)
	}
	for _, seg := range []*cpu.Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS} {
		seg.Base, seg.Selector = 0, 0
	}
	if err := v.vcpu.SetSregs(&s); err != nil {
		b.Fatal(err)
	}
	if err := v.vcpu.SetRegs(&cpu.Regs{RIP: flatLoadAddr, RSP: flatLoadAddr, RFLAGS: 2}); err != nil {
		b.Fatal(err)
	}
	v.run(b, 100)
	return v
}

// run enters the guest until n PIO exits to port 0x80 have happened. The
// next KVM_RUN completes each OUT, as it would in any VMM.
func (v *bareVM) run(b *testing.B, n int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := v.vcpu.State()
	for i := 0; i < n; {
		err := v.vcpu.Run()
		if errors.Is(err, kvm.ErrInterrupted) {
			continue // a Go runtime signal: enter again
		}
		if err != nil {
			b.Fatal(err)
		}
		if st.ExitReason != kvm.ExitIO {
			b.Fatalf("exit reason %d, want %d (I/O)", st.ExitReason, kvm.ExitIO)
		}
		if io, _ := v.vcpu.IO(); io.Port != PortPOST {
			b.Fatalf("I/O exit on port %#x, want %#x", io.Port, PortPOST)
		}
		i++
	}
}

func (v *bareVM) close() {
	if v.vcpu != nil {
		v.vcpu.Close()
	}
	if v.vm != nil {
		v.vm.Close()
	}
	if v.mem != nil {
		v.mem.free()
	}
	if v.sys != nil {
		v.sys.Close()
	}
}

// interleaved times two workloads over n operations, alternating chunks of
// each so that both see the same load on a shared host, and returns each
// one's nanoseconds per operation.
func interleaved(n int, a, b func(k int)) (aNs, bNs float64) {
	const chunk = 100
	var ta, tb time.Duration
	for done := 0; done < n; {
		k := min(chunk, n-done)
		start := time.Now()
		a(k)
		mid := time.Now()
		b(k)
		tb += time.Since(mid)
		ta += mid.Sub(start)
		done += k
	}
	return float64(ta.Nanoseconds()) / float64(n), float64(tb.Nanoseconds()) / float64(n)
}

// BenchmarkPIOExit is one `out 0x80, al` in real mode through machine.Run:
// hooks, interrupt check, KVM_RUN, dispatch to the device, and the
// immediate-exit KVM_RUN that completes the I/O. The same guest driven by
// bare KVM_RUN runs interleaved with it; ns/op is the exit loop's cost per
// exit, bare-ns/exit the bare one's, loop/bare their ratio.
func BenchmarkPIOExit(b *testing.B) {
	m, h := loopMachine(b, codePOSTLoop, BootFlat)
	bare := newBareVM(b, codePOSTLoop)
	b.ResetTimer()
	loopNs, bareNs := interleaved(b.N, func(k int) { runExits(b, m, h, k) }, func(k int) { bare.run(b, k) })
	b.StopTimer()
	b.ReportMetric(loopNs, "ns/op")
	b.ReportMetric(bareNs, "bare-ns/exit")
	b.ReportMetric(loopNs/bareNs, "loop/bare")
}

// BenchmarkPIOExitBareIoctl is the same guest driven by KVM_RUN alone.
func BenchmarkPIOExitBareIoctl(b *testing.B) {
	bare := newBareVM(b, codePOSTLoop)
	b.ResetTimer()
	bare.run(b, b.N)
}

// BenchmarkEmulatedInstruction is one POPCNT in 32-bit protected mode,
// which this host's KVM cannot emulate: KVM_EXIT_INTERNAL_ERROR, then
// vmrr's emulator decodes and runs it and writes the registers back. A PIO
// loop in the same mode runs interleaved with it; ns/op is the cost of one
// emulated instruction, pio-ns/exit that of one PIO exit, emulated/pio
// their ratio. On a host whose KVM runs POPCNT itself the guest never
// exits and the benchmark skips.
func BenchmarkEmulatedInstruction(b *testing.B) {
	m, h := loopMachine(b, multibootKludge(codePOPCNTLoop), "")
	if m.Emulated() == 0 {
		b.Skip("POPCNT did not exit to vmrr's emulator on this host (its KVM runs it natively)")
	}
	pio, ph := loopMachine(b, multibootKludge(codePOSTLoop), "")
	emulated := m.Emulated()
	b.ResetTimer()
	emuNs, pioNs := interleaved(b.N, func(k int) { runExits(b, m, h, k) }, func(k int) { runExits(b, pio, ph, k) })
	b.StopTimer()
	if n := m.Emulated() - emulated; n != uint64(b.N) {
		b.Fatalf("%d instructions emulated in %d exits", n, b.N)
	}
	b.ReportMetric(emuNs, "ns/op")
	b.ReportMetric(pioNs, "pio-ns/exit")
	b.ReportMetric(emuNs/pioNs, "emulated/pio")
}
