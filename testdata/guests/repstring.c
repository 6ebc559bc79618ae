/* repstring: long REP STOSB/MOVSB string instructions while a 2 kHz timer
 * runs, so ticks land in the middle of them (a REP instruction is
 * interruptible after every iteration). Prints the ticks seen during the
 * copies and a checksum of the buffers, exits 0. */
#include "rt/rt.h"

#define LEN (64 * 1024)
#define ROUNDS 8

volatile u32 tick_count;
static u8 src[LEN], dst[LEN];

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	tick_count++;
	src[tick_count % LEN] ^= (u8)tick_count; /* the copy sees where it landed */
	pic_eoi();
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(597);
	__asm__ volatile("sti");
	for (int r = 0; r < ROUNDS; r++) {
		void *d = src;
		u64 n = LEN;
		__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(r) : "memory");
		void *s = src;
		d = dst;
		n = LEN;
		__asm__ volatile("rep movsb" : "+S"(s), "+D"(d), "+c"(n) : : "memory");
	}
	__asm__ volatile("cli");
	pic_mask(0xff, 0xff);
	u64 sum = 0;
	for (int i = 0; i < LEN; i++)
		sum = sum * 31 + dst[i];
	puts("ticks: ");
	put_dec(tick_count);
	puts(" sum ");
	put_hex(sum);
	putc('\n');
	return 0;
}
