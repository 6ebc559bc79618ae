/* timer: PIT channel 0 at ~1000 Hz on IRQ0; HLT-idles until 20 ticks, prints
 * "ticks: 20", exits 0. Built as ELF64 (timer.elf) and Multiboot
 * (timer-multiboot.elf). */
#include "rt/rt.h"

#define TICKS 20

volatile u32 tick_count;

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	tick_count++;
	/* Mask IRQ0 at the last tick so no 21st tick can slip in before main
	 * reads the count. */
	if (tick_count == TICKS)
		outb(PORT_PIC1 + 1, 0xff);
	pic_eoi();
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
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
	return 0;
}
