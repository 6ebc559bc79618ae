/* hello: the smallest guest. Prints a greeting and exits 0. The Multiboot
 * build also checks the boot loader's magic (exit 2 if wrong). */
#include "rt/rt.h"

int main(void)
{
#ifdef __x86_64__
	puts("hello from vmrr\n");
#else
	if (mb_magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		puts("bad multiboot magic\n");
		return 2;
	}
	puts("hello from vmrr (multiboot)\n");
#endif
	return 0;
}
