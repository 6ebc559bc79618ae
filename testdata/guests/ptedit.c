/* ptedit: is a PTE rewritten without INVLPG seen? Maps window page V to
 * physical page A and reads through it, points the PTE at page B without
 * INVLPG, and reads through V again (a) at once and (b) after an
 * `out 0x80, al` exit. Prints what each read saw ("A" or "B"); exits 0 if
 * both saw B (vmrr's tlbsync promises that), 3 otherwise. */
#include "rt/rt.h"
#include "rt/paging.h"

static volatile u64 page_a[512] ALIGNED(4096);
static volatile u64 page_b[512] ALIGNED(4096);

static char seen(u64 v) { return v == 'A' || v == 'B' ? (char)v : '?'; }

int main(void)
{
	page_a[0] = 'A';
	page_b[0] = 'B';
	pg_init();
	volatile u64 *v = pg_va(0);
	pg_map(0, (uptr)page_a);
	invlpg(v);
	u64 warm = 0;
	for (int i = 0; i < 4; i++) /* load the translation into the TLB */
		warm += *v;
	puts("before: ");
	putc(seen(*v));
	putc('\n');

	pg_map(0, (uptr)page_b); /* no INVLPG */
	u64 now = *v;
	outb(PORT_POST, 0);
	u64 after = *v;

	puts("immediately: ");
	putc(seen(now));
	puts("\nafter exit: ");
	putc(seen(after));
	putc('\n');
	return warm == 4 * 'A' && now == 'B' && after == 'B' ? 0 : 3;
}
