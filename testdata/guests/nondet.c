/* nondet: executes each non-deterministic instruction a few times (RDTSC,
 * RDTSCP, RDRAND and RDSEED with 64- and 32-bit destinations) and prints the
 * values, exits 0. An instruction CPUID does not list is reported as
 * "unsupported" and skipped; a #UD anyway exits 4. */
#include "rt/rt.h"

#define ROUNDS 3

INTERRUPT void ud_handler(struct interrupt_frame *frame)
{
	puts("#UD at ");
	put_hex(frame->ip);
	putc('\n');
	exit(4);
}

static void show(const char *name, u64 v, u32 extra, const char *extra_name)
{
	puts(name);
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
		show("rdtsc", rdtsc(), 0, 0);
}

NOINLINE void do_rdtscp(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u32 lo, hi, aux;
		__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
		show("rdtscp", (u64)hi << 32 | lo, aux, "aux");
	}
}

NOINLINE void do_rdrand(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u64 v;
		u8 cf;
		__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdrand64", v, cf, "cf");
	}
	for (int i = 0; i < ROUNDS; i++) {
		u32 v;
		u8 cf;
		__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdrand32", v, cf, "cf");
	}
}

NOINLINE void do_rdseed(void)
{
	for (int i = 0; i < ROUNDS; i++) {
		u64 v;
		u8 cf;
		__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdseed64", v, cf, "cf");
	}
	for (int i = 0; i < ROUNDS; i++) {
		u32 v;
		u8 cf;
		__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdseed32", v, cf, "cf");
	}
}

int main(void)
{
	idt_set(6, ud_handler);
	idt_load();
	do_rdtsc();
	if (cpu_has_rdtscp())
		do_rdtscp();
	else
		puts("rdtscp: unsupported\n");
	if (cpu_has_rdrand())
		do_rdrand();
	else
		puts("rdrand: unsupported\n");
	if (cpu_has_rdseed())
		do_rdseed();
	else
		puts("rdseed: unsupported\n");
	return 0;
}
