/* crash: prints "about to crash\n", then do_crash loads an empty IDT and
 * executes UD2: the #UD cannot be delivered, nor the #GP, nor the double
 * fault, so the CPU triple-faults (a shutdown). Exits 5 if it survives. */
#include "rt/rt.h"

NOINLINE void do_crash(void)
{
	struct __attribute__((packed)) {
		u16 limit;
		uptr base;
	} empty = {0, 0};
	__asm__ volatile("lidt %0\n\tud2" : : "m"(empty));
}

int main(void)
{
	puts("about to crash\n");
	do_crash();
	puts("still alive\n");
	return 5;
}
