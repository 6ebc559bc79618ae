/* ptchurn: page-table churn for the tlbsync cost benchmark. 2000 times:
 * rewrite one of 16 window PTEs to one of 8 physical pages, INVLPG, read a
 * word through the mapping and check it against the page read directly.
 * Prints the checksum of the words read, exits 0; 3 on a wrong read. */
#include "rt/rt.h"
#include "rt/paging.h"

#define REWRITES 2000
#define PAGES 8
#define SLOTS 16

static volatile u64 pages[PAGES][512] ALIGNED(4096);

int main(void)
{
	for (int p = 0; p < PAGES; p++)
		for (int w = 0; w < 512; w++)
			pages[p][w] = (u64)(p + 1) * 0x9e3779b97f4a7c15ULL ^ (u64)w;
	pg_init();
	u64 sum = 0;
	int bad = 0;
	for (int i = 0; i < REWRITES; i++) {
		int slot = i % SLOTS, p = (i * 5 + i / SLOTS) % PAGES, w = (i * 37) % 512;
		volatile u64 *va = pg_va(slot);
		pg_map(slot, (uptr)pages[p]);
		invlpg(va);
		u64 v = va[w];
		if (v != pages[p][w])
			bad++;
		sum = (sum << 7 | sum >> 57) ^ v;
	}
	puts("ptchurn: checksum ");
	put_hex(sum);
	putc('\n');
	if (bad) {
		puts("ptchurn: wrong reads ");
		put_dec((u64)bad);
		putc('\n');
		return 3;
	}
	return 0;
}
