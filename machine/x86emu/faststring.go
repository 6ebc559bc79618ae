package x86emu

import "vmrr/machine/cpu"

// runString runs the MOVS or STOS in at rip, a block of its own. With REP
// it runs as many iterations as the budget allows and as stay within the
// page of each operand, each counted as an instruction and leaving RIP at
// the instruction while more remain, as Step runs them; the next run goes
// on with the next page, a kick seen in between.
func (f *Fast) runString(in *finst, rip, left uint64) (n, next uint64, res int) {
	aw := f.addrMask
	next = (rip + uint64(in.end)) & aw
	if !f.dsOK || !f.esOK {
		return 0, rip, rBail
	}
	rep := in.alu != 0
	cnt := f.r[1] & aw
	if rep && cnt == 0 {
		return 1, next, rNext
	}
	size := uint64(in.size)
	delta := size
	if f.fl&cpu.FlagDF != 0 {
		delta = -size
	}
	k := uint64(1)
	if rep {
		k = min(cnt, left)
	}
	di, si := f.r[7]&aw, f.r[6]&aw
	k = min(k, pageElems(di, size, delta))
	if in.op == fMovs {
		k = min(k, pageElems(si, size, delta))
	}
	if k == 0 {
		return 0, rip, rBail // an element crosses a page: Step's
	}
	// The destination bytes, all in di's page.
	lo, hi := di, di+k*size-1
	if delta != size {
		lo, hi = di-(k-1)*size, di+size-1
	}
	dg, ok := f.pageGPA(lo, f.wrNeed)
	if !ok || dg+(hi-lo) >= uint64(len(f.ram)) {
		return 0, rip, rBail
	}
	p := dg >> 12
	lines := (^uint64(0) >> (63 - hi>>6&63)) & (^uint64(0) << (lo >> 6 & 63))
	if f.code[p]&lines != 0 || f.watched != nil && f.watched[p] != 0 {
		return 0, rip, rBail
	}
	dg += di - lo // di's own address
	if in.op == fStos {
		v := f.r[0]
		for range k {
			f.st(dg, in.size, v)
			dg += delta
		}
	} else {
		slo := si
		if delta != size {
			slo = si - (k-1)*size
		}
		sg, ok := f.pageGPA(slo, f.rdNeed)
		if !ok || sg+(si-slo)+size > uint64(len(f.ram)) {
			return 0, rip, rBail
		}
		sg += si - slo
		// One element after another, as the processor defines an
		// overlapping copy.
		for range k {
			f.st(dg, in.size, f.ld(sg, in.size))
			dg += delta
			sg += delta
		}
		f.r[6] = (si + k*delta) & aw
	}
	if d := f.Dirty; d != nil {
		d.Mark(p)
	}
	f.r[7] = (di + k*delta) & aw
	if !rep {
		return 1, next, rNext
	}
	f.r[1] = (cnt - k) & aw
	if cnt == k {
		return k, next, rNext
	}
	return k, rip, rNext
}

// pageElems is how many elements of size bytes, the first at a and each
// delta from the last, lie wholly in a's page.
func pageElems(a, size, delta uint64) uint64 {
	off := a & 0xfff
	if off+size > 0x1000 {
		return 0
	}
	if delta == size {
		return (0x1000 - off) / size
	}
	return off/size + 1
}

// pageGPA is the guest physical address of lin when the TLB has its page
// with the permissions need.
func (f *Fast) pageGPA(lin uint64, need uint8) (uint64, bool) {
	if !f.paging {
		return lin, true
	}
	e := &f.tlb[lin>>12%TLBSize]
	if e.Tag != lin>>12+1 || e.Perms&need != need {
		return 0, false
	}
	return e.PPN<<12 | lin&0xfff, true
}
