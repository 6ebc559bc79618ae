/* nondet: executes each non-deterministic instruction a few times (RDTSC,
 * RDTSCP, RDRAND and RDSEED with 64- and 32-bit destinations) and prints the
 * values, exits 0. The instructions run whatever CPUID says (vmrr's CPUID
 * may hide RDTSCP, which vmrr still emulates); one that raises #UD prints
 * "NAME: unsupported (#UD)" instead of a value. */
#include "rt/rt.h"

#define ROUNDS 3

static void show(const char *name, int ud, u64 v, u32 extra, const char *extra_name)
{
	puts(name);
	if (ud) {
		puts(": unsupported (#UD)\n");
		return;
	}
	puts(": ");
	put_hex(v);
	if (extra_name) {
		putc(' ');
		puts(extra_name);
		putc(' ');
		put_hex32(extra);
	}
	putc('\n');
}

NOINLINE void do_rdtsc(void)
{
	for (int i = 0; i < ROUNDS; i++)
		show("rdtsc", 0, rdtsc(), 0, 0);
}

NOINLINE void do_rdtscp(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u32 lo, hi, aux, n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\trdtscp\n1:"
				 : "=a"(lo), "=d"(hi), "=c"(aux), [r] "=m"(ud_resume));
		ud_resume = 0;
		show("rdtscp", ud_count != n, (u64)hi << 32 | lo, aux, "aux");
	}
}

NOINLINE void do_rdrand(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u64 v;
		u8 cf;
		u32 n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\trdrand %0\n1:\tsetc %1"
				 : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
		ud_resume = 0;
		show("rdrand64", ud_count != n, v, cf, "cf");
	}
	for (int i = 0; i < ROUNDS; i++) {
		u32 v;
		u8 cf;
		u32 n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\trdrand %0\n1:\tsetc %1"
				 : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
		ud_resume = 0;
		show("rdrand32", ud_count != n, v, cf, "cf");
	}
}

NOINLINE void do_rdseed(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u64 v;
		u8 cf;
		u32 n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\trdseed %0\n1:\tsetc %1"
				 : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
		ud_resume = 0;
		show("rdseed64", ud_count != n, v, cf, "cf");
	}
	for (int i = 0; i < ROUNDS; i++) {
		u32 v;
		u8 cf;
		u32 n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\trdseed %0\n1:\tsetc %1"
				 : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
		ud_resume = 0;
		show("rdseed32", ud_count != n, v, cf, "cf");
	}
}

int main(void)
{
	ud_probe_install();
	idt_load();
	do_rdtsc();
	do_rdtscp();
	do_rdrand();
	do_rdseed();
	return 0;
}
