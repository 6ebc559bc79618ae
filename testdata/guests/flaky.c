/* flaky: a "CI test" with an interrupt-timing bug that fails in a minority
 * of runs. For each of JOBS jobs, main publishes the job in `cur`, opens a
 * short window (WINDOW_PERMILLE of a timer period, measured with RDTSC),
 * then dereferences `cur`. The IRQ0 handler wrongly retires the current job
 * (cur = 0) when a tick lands inside the window; main then reads the job
 * through a null pointer, prints "FAIL ..." and exits 1 (status 3). A random
 * wait before each job ("I/O latency", from the TSC) spreads the windows
 * over the timer phase, so each job fails with probability ~WINDOW_PERMILLE
 * / 1000. Otherwise prints "PASS ..." and exits 0. Built as Multiboot
 * (flaky.elf) and ELF64 (flaky64.elf). */
#include "rt/rt.h"

#ifndef JOBS
#define JOBS 20
#endif
#ifndef WINDOW_PERMILLE
#define WINDOW_PERMILLE 6
#endif
#define JOB_MAGIC 0x600df00du

struct job {
	u32 magic;
	u32 value;
};

struct job jobs[JOBS];
struct job *volatile cur; /* the job main is working on */
volatile u32 in_window;
volatile u32 tick_count;
u32 tsc_per_tick;

INTERRUPT void timer_handler(struct interrupt_frame *frame)
{
	(void)frame;
	tick_count++;
	if (in_window)
		cur = 0; /* the bug */
	pic_eoi();
}

static void delay_tsc(u32 cycles)
{
	u64 start = rdtsc();
	while (rdtsc() - start < cycles)
		;
}

static void wait_tick(void)
{
	u32 t = tick_count;
	while (tick_count == t)
		;
}

/* calibrate measures the TSC cycles in one timer period over 4 ticks. */
NOINLINE void calibrate(void)
{
	wait_tick();
	u64 t0 = rdtsc();
	for (int i = 0; i < 4; i++)
		wait_tick();
	tsc_per_tick = (u32)((rdtsc() - t0) >> 2);
}

/* run_job publishes j, works on it for `window` TSC cycles, and returns the
 * job it then finds in cur: j, or a null pointer if a tick hit the window.
 * The window is kept to a few instructions beyond its TSC length because
 * under vmrr (emulated CPL0 code, ~1 us an instruction) they dominate it. */
NOINLINE struct job *run_job(struct job *j, u32 window)
{
	u64 start = rdtsc();
	cur = j;
	in_window = 1;
	while (rdtsc() - start < window)
		;
	in_window = 0;
	return cur;
}

int main(void)
{
	for (u32 i = 0; i < JOBS; i++) {
		jobs[i].magic = JOB_MAGIC;
		jobs[i].value = i * i;
	}
	idt_set(IRQ_BASE + IRQ_TIMER, timer_handler);
	idt_load();
	pic_remap(0xfe, 0xff);
	pit_start(1193);
	sti();
	calibrate();
	u32 window = tsc_per_tick / 1000 * WINDOW_PERMILLE;
	u32 sum = 0;
	for (u32 i = 0; i < JOBS; i++) {
		delay_tsc((u32)rdtsc() % tsc_per_tick);
		struct job *j = run_job(&jobs[i], window);
		if (j->magic != JOB_MAGIC) {
			cli();
			puts("FAIL: job ");
			put_dec(i);
			puts(" lost its pointer\n");
			exit(1);
		}
		sum += j->value;
	}
	cli();
	pic_mask(0xff, 0xff);
	puts("PASS: ");
	put_dec(JOBS);
	puts(" jobs, sum ");
	put_dec(sum);
	putc('\n');
	return 0;
}
