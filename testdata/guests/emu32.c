/* emu32: 32-bit protected mode (Multiboot, no paging) exercising what this
 * host's KVM cannot emulate at CPL0 and vmrr must: IRET from an `int $0x80`
 * handler ("int80 ok") and from an IRQ0 handler (HLT-idles 5 ticks at
 * ~1000 Hz), POPCNT (checked against a software count), RDTSCP, RDSEED and
 * RDRAND with 32-bit destinations and RDRAND with a 16-bit one. Exits 0;
 * 2 if int $0x80 misbehaved, 3 on a wrong POPCNT, 4 on an unexpected #UD.
 * The instructions run whatever CPUID says; one that raises #UD (QEMU's
 * default CPU lacks them all; use -cpu max) prints "NAME: unsupported (#UD)",
 * which also exercises an exception handler's IRET. */
#include "rt/rt.h"

#define TICKS 5

volatile u32 tick_count;
volatile u32 int80_count;

INTERRUPT void int80_handler(struct interrupt_frame *frame)
{
	(void)frame;
	int80_count++;
}

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	tick_count++;
	if (tick_count == TICKS)
		outb(PORT_PIC1 + 1, 0xff);
	pic_eoi();
}

static u32 soft_popcount(u32 v)
{
	u32 n = 0;
	for (; v; v &= v - 1)
		n++;
	return n;
}

/* check_popcnt returns 1 if POPCNT counts right, 0 if wrong, -1 on #UD. */
NOINLINE int check_popcnt(void)
{
	static const u32 inputs[] = {0, 1, 0x80000001, 0x12345678, 0xffffffff};
	for (unsigned i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		u32 v = 0, n = ud_count;
		__asm__ volatile(MOVP " $1f, %[r]\n\tpopcnt %2, %0\n1:"
				 : "=r"(v), [r] "=m"(ud_resume) : "rm"(inputs[i]) : "cc");
		ud_resume = 0;
		if (ud_count != n) {
			puts("popcnt: unsupported (#UD)\n");
			return -1;
		}
		puts("popcnt ");
		put_hex32(inputs[i]);
		puts(" = ");
		put_dec(v);
		putc('\n');
		if (v != soft_popcount(inputs[i]))
			return 0;
	}
	return 1;
}

static void show(const char *name, int ud, u32 v, int cf)
{
	puts(name);
	if (ud) {
		puts(": unsupported (#UD)\n");
		return;
	}
	puts(": ");
	put_hex32(v);
	puts(" cf ");
	put_dec((u32)cf);
	putc('\n');
}

NOINLINE void do_nondet(void)
{
	u32 lo, hi, aux, v, n = ud_count;
	u16 w;
	u8 cf;
	__asm__ volatile(MOVP " $1f, %[r]\n\trdtscp\n1:" : "=a"(lo), "=d"(hi), "=c"(aux), [r] "=m"(ud_resume));
	ud_resume = 0;
	if (ud_count != n) {
		puts("rdtscp: unsupported (#UD)\n");
	} else {
		puts("rdtscp: ");
		put_hex((u64)hi << 32 | lo);
		puts(" aux ");
		put_hex32(aux);
		putc('\n');
	}
	n = ud_count;
	__asm__ volatile(MOVP " $1f, %[r]\n\trdseed %0\n1:\tsetc %1" : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
	ud_resume = 0;
	show("rdseed32", ud_count != n, v, cf);
	n = ud_count;
	__asm__ volatile(MOVP " $1f, %[r]\n\trdrand %0\n1:\tsetc %1" : "=r"(v), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
	ud_resume = 0;
	show("rdrand32", ud_count != n, v, cf);
	n = ud_count;
	__asm__ volatile(MOVP " $1f, %[r]\n\trdrand %0\n1:\tsetc %1" : "=r"(w), "=qm"(cf), [r] "=m"(ud_resume) : : "cc");
	ud_resume = 0;
	show("rdrand16", ud_count != n, w, cf);
}

int main(void)
{
	ud_probe_install();
	idt_set(0x80, int80_handler);
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();

	__asm__ volatile("int $0x80" ::: "memory");
	if (int80_count != 1) {
		puts("int80 FAILED\n");
		return 2;
	}
	puts("int80 ok\n");

	pic_remap(0xfe, 0xff);
	pit_start(1193);
	while (tick_count < TICKS) {
		sti_hlt();
		cli();
	}
	pic_mask(0xff, 0xff);
	puts("ticks: ");
	put_dec(tick_count);
	putc('\n');

	if (check_popcnt() == 0) {
		puts("popcnt WRONG\n");
		return 3;
	}
	do_nondet();
	puts("emu32 done\n");
	return 0;
}
