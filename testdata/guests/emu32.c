/* emu32: 32-bit protected mode (Multiboot, no paging) exercising what this
 * host's KVM cannot emulate at CPL0 and vmrr must: IRET from an `int $0x80`
 * handler ("int80 ok") and from an IRQ0 handler (HLT-idles 5 ticks at
 * ~1000 Hz), POPCNT (checked against a software count), RDTSCP, RDSEED and
 * RDRAND with 32-bit destinations and RDRAND with a 16-bit one. Exits 0;
 * 2 if int $0x80 misbehaved, 3 on a wrong POPCNT, 4 on a #UD. Instructions
 * CPUID does not list print "unsupported" (QEMU's default CPU lacks them;
 * use -cpu max). */
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

INTERRUPT void ud_handler(struct interrupt_frame *frame)
{
	puts("#UD at ");
	put_hex32(frame->ip);
	putc('\n');
	exit(4);
}

static u32 soft_popcount(u32 v)
{
	u32 n = 0;
	for (; v; v &= v - 1)
		n++;
	return n;
}

NOINLINE int check_popcnt(void)
{
	static const u32 inputs[] = {0, 1, 0x80000001, 0x12345678, 0xffffffff};
	for (unsigned i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		u32 n;
		__asm__ volatile("popcnt %1, %0" : "=r"(n) : "rm"(inputs[i]) : "cc");
		puts("popcnt ");
		put_hex32(inputs[i]);
		puts(" = ");
		put_dec(n);
		putc('\n');
		if (n != soft_popcount(inputs[i]))
			return 0;
	}
	return 1;
}

static void show(const char *name, u32 v, int cf)
{
	puts(name);
	puts(": ");
	put_hex32(v);
	puts(" cf ");
	put_dec((u32)cf);
	putc('\n');
}

NOINLINE void do_nondet(void)
{
	if (cpu_has_rdtscp()) {
		u32 lo, hi, aux;
		__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
		puts("rdtscp: ");
		put_hex((u64)hi << 32 | lo);
		puts(" aux ");
		put_hex32(aux);
		putc('\n');
	} else {
		puts("rdtscp: unsupported\n");
	}
	if (cpu_has_rdseed()) {
		u32 v;
		u8 cf;
		__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdseed32", v, cf);
	} else {
		puts("rdseed: unsupported\n");
	}
	if (cpu_has_rdrand()) {
		u32 v;
		u16 w;
		u8 cf;
		__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(cf) : : "cc");
		show("rdrand32", v, cf);
		__asm__ volatile("rdrand %0; setc %1" : "=r"(w), "=qm"(cf) : : "cc");
		show("rdrand16", w, cf);
	} else {
		puts("rdrand: unsupported\n");
	}
}

int main(void)
{
	idt_set(6, ud_handler);
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

	if (cpu_has_popcnt()) {
		if (!check_popcnt()) {
			puts("popcnt WRONG\n");
			return 3;
		}
	} else {
		puts("popcnt: unsupported\n");
	}
	do_nondet();
	puts("emu32 done\n");
	return 0;
}
