/* race: the timer-interrupt race `vmrr demo` shows. PIT at ~2000 Hz; main
 * increments `counter` with a non-atomic load / add / store, at least 30000
 * times and until 20 ticks have come (however fast the CPU), while the IRQ0
 * handler adds 1000 to it: a tick that lands between the load and the store
 * is lost. Prints "counter: N ticks: T iterations: I" (N < I + 1000*T when
 * ticks were lost; varies from run to run), exits 0. Built as ELF64
 * (race.elf) and Multiboot (race-multiboot.elf). */
#include "rt/rt.h"

#define ITERS 30000
#define MIN_TICKS 20

volatile unsigned long counter;
volatile u32 ticks;

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	counter += 1000;
	ticks++;
	pic_eoi();
}

/* race_loop is the buggy increment: load, test, store. QEMU's TCG takes
 * interrupts only between translation blocks and in practice at the loop
 * head, so under QEMU it loses few or no ticks; KVM and vmrr deliver at any
 * instruction boundary. */
NOINLINE u32 race_loop(void)
{
	u32 i = 0;
	for (; i < ITERS || ticks < MIN_TICKS; i++) {
		unsigned long tmp;
		__asm__ volatile("mov %[c], %[t]\n\t"
				 "add $1, %[t]\n\t"
				 "test %[t], %[t]\n\t"
				 "jz 1f\n"
				 "1:\n\t"
				 "mov %[t], %[c]"
				 : [c] "+m"(counter), [t] "=&r"(tmp)
				 :
				 : "cc");
	}
	return i;
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(597);
	sti();
	u32 iterations = race_loop();
	cli();
	pic_mask(0xff, 0xff);
	puts("counter: ");
	put_dec(counter);
	puts(" ticks: ");
	put_dec(ticks);
	puts(" iterations: ");
	put_dec(iterations);
	putc('\n');
	return 0;
}
