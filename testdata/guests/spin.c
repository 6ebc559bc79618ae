/* spin: the timer of timer.c, but main waits for each of 5 ticks by spinning
 * on tick_count with no exit in the loop (no HLT, no port I/O), so a VMM must
 * kick the vCPU to deliver the tick. Prints the loop iterations counted in
 * each tick (they vary from run to run), exits 0. */
#include "rt/rt.h"

#define TICKS 5

volatile u32 tick_count;
u32 spins[TICKS];

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	tick_count++;
	pic_eoi();
}

/* wait_tick spins until the handler has counted another tick and returns
 * the number of loop iterations it took. */
NOINLINE u32 wait_tick(void)
{
	u32 start = tick_count, n = 0;
	while (tick_count == start)
		n++;
	return n;
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(1193);
	sti();
	for (int i = 0; i < TICKS; i++)
		spins[i] = wait_tick();
	cli();
	pic_mask(0xff, 0xff);
	for (int i = 0; i < TICKS; i++) {
		puts("tick ");
		put_dec(i + 1);
		puts(": ");
		put_dec(spins[i]);
		puts(" spins\n");
	}
	return 0;
}
