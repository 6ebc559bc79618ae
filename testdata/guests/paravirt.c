/* paravirt: the paravirtual ring (rt/ring.h). Checks the ring header, then
 * takes 5000 RDTSC and 5000 RDRAND values through the ring with no exit per
 * value (only a doorbell OUT each time the ring fills). Prints the xor and
 * sum of the values and the last one, exits 0; exits 2 when there is no
 * valid ring (e.g. under QEMU), 4 without RDRAND. The instructions that read
 * native values live only in ring_rdtsc and ring_rdrand, in section
 * .vmrr_ring. */
#include "rt/rt.h"
#include "rt/ring.h"

_Static_assert(RING_BASE == 0x90000 && RING_KIND_RDTSC == 1 && RING_KIND_RDRAND == 3 && RING_DOORBELL_PORT == 0xe1, "ring_put hard-codes these");

#define ROUNDS 5000

/* ring_rdtsc and ring_rdrand pass one native value through the ring.
 * Record (recmask ~0) keeps the native value and stores it; replay
 * (recmask 0) keeps the logged one. They are written in assembly so that
 * both run the same instructions and no register is left holding the native
 * value (which differs between record and replay): rax ends as the value
 * passed, rcx and rdx as values both agree on. Only the doorbell depends on
 * head. Returns the value in rax; clobbers rcx, rdx, rsi, rdi, r8. */
u64 ring_rdtsc(void);
u64 ring_rdrand(void);
__asm__(
	".pushsection .text.vmrr_ring,\"ax\",@progbits\n"
	".globl ring_rdtsc\n"
	"ring_rdtsc:\n"
	"	rdtsc\n"
	"	shl $32, %rdx\n"
	"	or %rdx, %rax\n"
	"	mov $" "1" ", %esi\n" /* RING_KIND_RDTSC */
	"	jmp ring_put\n"
	".globl ring_rdrand\n"
	"ring_rdrand:\n"
	"	rdrand %rax\n" /* no retry on CF=0: a retry would differ in replay */
	"	mov $" "3" ", %esi\n" /* RING_KIND_RDRAND */
	"ring_put:\n"
	"	mov $0x90000, %edi\n"      /* RING_BASE */
	"	mov 0x18(%rdi), %rcx\n"    /* recmask */
	"	mov 0x10(%rdi), %rdx\n"    /* head */
	"	shl $4, %rdx\n"
	"	lea 0x1000(%rdi,%rdx), %r8\n" /* the entry */
	"	and %rcx, %rax\n"          /* native & m */
	"	not %rcx\n"
	"	and (%r8), %rcx\n"         /* logged & ~m */
	"	or %rcx, %rax\n"
	"	mov %rax, (%r8)\n"
	"	mov %esi, 8(%r8)\n"
	"	movl $0, 12(%r8)\n"
	"	mov 0x10(%rdi), %rdx\n"
	"	inc %rdx\n"
	"	mov %rdx, 0x10(%rdi)\n"
	"	xor %ecx, %ecx\n"
	"	cmp 0x8(%rdi), %edx\n"     /* capacity */
	"	jne 1f\n"
	"	out %al, $0xe1\n"          /* RING_DOORBELL_PORT: the VMM resets head */
	"1:	ret\n"
	".popsection\n");

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
