#!/bin/bash
# check-qemu.sh: boot every guest under qemu-system-x86_64 and check its
# console output and exit status. Run by `make check-qemu`, which first builds
# the ELF64 guests behind the long-mode front end in build/qemu/.
#
# QEMU is not vmrr: ptedit sees the stale mapping (TCG keeps its TLB until
# INVLPG), paravirt finds no ring, race loses few ticks (TCG takes
# interrupts between translation blocks), flaky fails in some runs.
set -u
cd "$(dirname "$0")"
qemu=${QEMU:-qemu-system-x86_64}
base=(-device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio -display none -no-reboot)
failed=0
out=
recorded=

# check IMAGE STATUS-REGEX LINE-REGEXES [QEMU ARGS...]: every regex (one per
# line of LINE-REGEXES) must match a whole output line. stdin comes from $input.
check() {
	local img=$1 want_status=$2 want_lines=$3
	shift 3
	local status ok=1 re
	printf '%b' "${input:-}" | timeout 60 "$qemu" "${base[@]}" -kernel "$img" "$@" >build/out 2>&1
	status=${PIPESTATUS[1]}
	out=$(tr -d '\r' <build/out)
	[[ $status =~ ^($want_status)$ ]] || ok=0
	while read -r re; do
		grep -Exq "$re" <<<"$out" || ok=0
	done <<<"$want_lines"
	# A replay must print exactly what its recording printed.
	if [[ " $* " == *rr=replay* && $out != "$recorded" ]]; then
		ok=0
	fi
	recorded=$out
	if [[ $ok == 0 ]]; then
		echo "FAIL $img $*: status $status, output:"
		sed 's/^/    /' <<<"$out"
		failed=1
	else
		echo "ok   $img $* (status $status): $(tr '\n' '|' <<<"$out" | cut -c1-100)"
	fi
}

q=build/qemu
check hello-multiboot.elf 1 'hello from vmrr \(multiboot\)'
check timer-multiboot.elf 1 'ticks: 20'
check race-multiboot.elf 1 'counter: [0-9]+ ticks: [0-9]+'
check race-multiboot.elf 1 'counter: [0-9]+ ticks: [0-9]+' -icount shift=auto,rr=record,rrfile=build/race.rr
check race-multiboot.elf 1 'counter: [0-9]+ ticks: [0-9]+' -icount shift=auto,rr=replay,rrfile=build/race.rr
check compute.elf 1 'compute: alu 0x8f5d1501 mem 0xb49872eb ticks [0-9]+'
check timer-multiboot.elf 1 'ticks: 20' -icount shift=auto,rr=record,rrfile=build/timer.rr
check timer-multiboot.elf 1 'ticks: 20' -icount shift=auto,rr=replay,rrfile=build/timer.rr
check emu32.elf 1 $'int80 ok\nticks: 5\npopcnt: unsupported \\(#UD\\)\nrdrand16: unsupported \\(#UD\\)\nemu32 done'
check emu32.elf 1 $'int80 ok\nticks: 5\npopcnt 0x12345678 = 13\nrdrand16: 0x0000[0-9a-f]{4} cf 1\nemu32 done' -cpu max
check difftest32.elf 1 'difftest: 240 blocks, hash 0xe66b40c4a0324d6a' -cpu max,-bmi1
check flaky.elf '1|3' '(PASS: 20 jobs, sum 2470|FAIL: job [0-9]+ lost its pointer)'
check $q/hello.elf 1 'hello from vmrr'
check $q/timer.elf 1 'ticks: 20'
check $q/spin.elf 1 'tick 5: [0-9]+ spins'
check $q/nondet.elf 1 $'rdtscp: 0x[0-9a-f]{16} aux 0x[0-9a-f]{8}\nrdrand32: 0x[0-9a-f]{16} cf 0x00000001\nrdseed32: 0x[0-9a-f]{16} cf 0x00000001' -cpu max
check $q/nondet.elf 1 'rdrand64: unsupported \(#UD\)'
check $q/crash.elf 0 'about to crash'
input='hello\nq' check $q/serial-echo.elf 1 $'ready\nhello\nbye'
check $q/race.elf 1 'counter: [0-9]+ ticks: [0-9]+'
check $q/paravirt.elf 5 'paravirt: no vmrr ring'
check $q/ptedit.elf '1|7' 'after exit: [AB]'
check $q/ptchurn.elf 1 'ptchurn: checksum 0x[0-9a-f]{16}'
check $q/flaky64.elf '1|3' '(PASS: 20 jobs, sum 2470|FAIL: job [0-9]+ lost its pointer)'
exit $failed
