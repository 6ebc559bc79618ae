/* paging.c: see paging.h. */
#include "paging.h"

static u64 pml4[512] ALIGNED(4096);
static u64 pdpt[512] ALIGNED(4096);
static u64 pd_identity[512] ALIGNED(4096);
static u64 pd_window[512] ALIGNED(4096);
volatile u64 pg_window_pte[512] ALIGNED(4096);

void pg_init(void)
{
	/* The .bss is identity mapped, so its addresses are physical ones. */
	for (int i = 0; i < 512; i++)
		pd_identity[i] = ((uptr)i << 21) | PG_PRESENT | PG_WRITE | PG_HUGE;
	pd_window[0] = (uptr)pg_window_pte | PG_PRESENT | PG_WRITE;
	pdpt[0] = (uptr)pd_identity | PG_PRESENT | PG_WRITE;
	pdpt[PG_WINDOW >> 30] = (uptr)pd_window | PG_PRESENT | PG_WRITE;
	pml4[0] = (uptr)pdpt | PG_PRESENT | PG_WRITE;
	__asm__ volatile("mov %0, %%cr3" : : "r"((uptr)pml4) : "memory");
}
