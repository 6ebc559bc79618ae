/* paravirt: the paravirtual ring (rt/ring.h). Checks the ring header, then
 * takes 5000 RDTSC and 5000 RDRAND values through the ring with no exit per
 * value (only a doorbell OUT each time the ring fills). Prints the xor and
 * sum of the values and the last one, exits 0; exits 2 when there is no
 * valid ring (e.g. under QEMU), 4 without RDRAND. The instructions that read
 * native values live only in ring_rdtsc and ring_rdrand, in section
 * .vmrr_ring. */
#include "rt/rt.h"
#include "rt/ring.h"

#define ROUNDS 5000

/* ring_put passes one value through the ring. Record (recmask ~0) keeps the
 * native value and stores it; replay (recmask 0) keeps the logged one. Both
 * run the same instructions: only the doorbell depends on head. */
static inline u64 ring_put(u64 native, u32 kind)
{
	volatile struct ring_header *h = RING_HEADER;
	u64 m = h->recmask;
	u64 head = h->head;
	volatile struct ring_entry *e = RING_ENTRY(head);
	u64 v = (native & m) | (e->value & ~m);
	e->value = v;
	e->kind = kind;
	e->aux = 0;
	head++;
	h->head = head;
	if (head == h->capacity)
		outb(RING_DOORBELL_PORT, 0); /* the VMM sets head back to 0 */
	return v;
}

RING_TEXT u64 ring_rdtsc(void)
{
	return ring_put(rdtsc(), RING_KIND_RDTSC);
}

RING_TEXT u64 ring_rdrand(void)
{
	u64 native;
	/* No retry on CF=0: a retry loop would run differently in replay. */
	__asm__ volatile("rdrand %0" : "=r"(native) : : "cc");
	return ring_put(native, RING_KIND_RDRAND);
}

static int ring_ok(void)
{
	volatile struct ring_header *h = RING_HEADER;
	return h->magic == RING_MAGIC && h->version == RING_VERSION &&
	       h->entry_size == RING_ENTRY_SIZE && h->capacity != 0 &&
	       h->capacity <= RING_CAPACITY && h->head < h->capacity;
}

int main(void)
{
	if (!ring_ok()) {
		puts("paravirt: no vmrr ring\n");
		return 2;
	}
	if (!cpu_has_rdrand()) {
		puts("paravirt: no rdrand\n");
		return 4;
	}
	u64 x = 0, sum = 0, last = 0;
	for (int i = 0; i < ROUNDS; i++) {
		last = ring_rdtsc();
		x ^= last;
		sum += last;
		last = ring_rdrand();
		x ^= last;
		sum += last;
	}
	puts("paravirt: values ");
	put_dec(2 * ROUNDS);
	puts(" xor ");
	put_hex(x);
	puts(" sum ");
	put_hex(sum);
	puts(" last ");
	put_hex(last);
	putc('\n');
	return 0;
}
