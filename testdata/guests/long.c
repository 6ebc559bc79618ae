/* long: a guest that runs long enough to measure reverse execution on.
 * spin() runs a 4-instruction loop CHUNKS x CHUNK_ITERS times (10 million
 * instructions), with an `out` to port 0x80 after each chunk, while the PIT
 * ticks at ~100 Hz (divisor 11932) and timer_handler counts `ticks`. Prints
 * "long: checksum 0x... ticks N" (the checksum is the same every run; the
 * tick count is not), exits 0. */
#include "rt/rt.h"

#define CHUNKS 10000
#define CHUNK_ITERS 250

volatile u32 ticks;

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	ticks++;
	pic_eoi();
}

/* spin is the loop, in assembly so that it is exactly 4 instructions an
 * iteration whatever the compiler does. The exit after each chunk (port
 * 0x80 is ignored) stands for the device I/O of a real kernel: a replay
 * aims at the next interrupt from the exit before it with a breakpoint at
 * the interrupted RIP, which in a loop this tight fires every iteration, so
 * without exits the whole run would go at breakpoint speed. The exits are
 * also where a debugger's replay takes its snapshots. */
NOINLINE u64 spin(void)
{
	u64 sum = 0x9e3779b97f4a7c15ull, mix = 0x2545f4914f6cdd1dull;
	for (u32 c = 0; c < CHUNKS; c++) {
		u32 n = CHUNK_ITERS;
		__asm__ volatile("1:\n\t"
				 "add %[mix], %[sum]\n\t"
				 "xor %[sum], %[mix]\n\t"
				 "dec %[n]\n\t"
				 "jnz 1b"
				 : [sum] "+r"(sum), [mix] "+r"(mix), [n] "+r"(n)
				 :
				 : "cc");
		outb(0x80, 0);
	}
	return sum;
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(11932);
	sti();
	u64 sum = spin();
	cli();
	pic_mask(0xff, 0xff);
	puts("long: checksum ");
	put_hex(sum);
	puts(" ticks ");
	put_dec(ticks);
	putc('\n');
	return 0;
}
