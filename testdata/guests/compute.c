/* compute: a guest for measuring CPU speed, ~200 million instructions.
 * alu() runs an integer mixing loop (add, xor, rotate, multiply, shift) in
 * registers; memory() walks a 1 MiB buffer in 4 KiB pages, loading,
 * mixing and storing every 8th byte pair, so loads and stores cross a new
 * page every 512 iterations. The PIT ticks at ~1 kHz (divisor 1193) and
 * timer_handler counts `ticks`. Prints "compute: alu 0x... mem 0x... ticks
 * N" (the two checksums are the same every run; the tick count is not)
 * and exits 0. Multiboot, so qemu-system-x86_64 -kernel runs it too. */
#include "rt/rt.h"

#define ALU_ITERS 12000000u
#define MEM_BYTES (1u << 20)
#define MEM_PASSES 400

volatile u32 ticks;
static u32 buf[MEM_BYTES / 4];

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	ticks++;
	pic_eoi();
}

/* alu is 8 instructions an iteration. */
NOINLINE u32 alu(void)
{
	u32 a = 0x9e3779b9u, b = 0x85ebca6bu, n = ALU_ITERS;
	__asm__ volatile("1:\n\t"
			 "add %[b], %[a]\n\t"
			 "xor %[a], %[b]\n\t"
			 "rol $7, %[a]\n\t"
			 "imul $0x27d4eb2d, %[b], %[b]\n\t"
			 "shr $3, %[b]\n\t"
			 "add %[n], %[b]\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [a] "+r"(a), [b] "+r"(b), [n] "+r"(n)
			 :
			 : "cc");
	return a ^ b;
}

/* memory is 8 instructions an iteration, two of them memory accesses. */
NOINLINE u32 memory(void)
{
	u32 sum = 0x12345678u;
	for (u32 pass = 0; pass < MEM_PASSES; pass++) {
		u32 *p = buf, *end = buf + MEM_BYTES / 4;
		__asm__ volatile("1:\n\t"
				 "mov (%[p]), %%eax\n\t"
				 "add %[sum], %%eax\n\t"
				 "rol $5, %%eax\n\t"
				 "mov %%eax, (%[p])\n\t"
				 "add %%eax, %[sum]\n\t"
				 "add $32, %[p]\n\t"
				 "cmp %[end], %[p]\n\t"
				 "jb 1b"
				 : [sum] "+r"(sum), [p] "+r"(p)
				 : [end] "r"(end)
				 : "eax", "cc", "memory");
	}
	return sum;
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(1193);
	sti();
	u32 a = alu();
	u32 m = memory();
	cli();
	pic_mask(0xff, 0xff);
	puts("compute: alu ");
	put_hex32(a);
	puts(" mem ");
	put_hex32(m);
	puts(" ticks ");
	put_dec(ticks);
	putc('\n');
	return 0;
}
