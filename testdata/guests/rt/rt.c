/* rt.c: console, exit, PIC, PIT, IDT and CPUID helpers for test guests. */
#include "rt.h"

u32 mb_magic;
u32 mb_info;

void putc(char c)
{
	/* Wait for THR empty (LSR bit 5) so real 16550s and QEMU keep every byte. */
	while (!(inb(PORT_COM1 + 5) & 0x20))
		;
	outb(PORT_COM1, (u8)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static void put_hexn(u64 v, int digits)
{
	putc('0');
	putc('x');
	for (int i = digits - 1; i >= 0; i--)
		putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

void put_hex(u64 v) { put_hexn(v, 16); }
void put_hex32(u32 v) { put_hexn(v, 8); }

void put_dec(u64 v)
{
	char buf[21];
	int i = sizeof(buf);
	buf[--i] = 0;
	do {
		u64 q;
#ifdef __x86_64__
		q = v / 10;
#else
		if (v >> 32) {
			/* Long division: 32-bit builds link no libgcc for a u64 '/'. */
			u64 r = 0;
			q = 0;
			for (int b = 63; b >= 0; b--) {
				r = (r << 1) | ((v >> b) & 1);
				if (r >= 10) {
					r -= 10;
					q |= 1ULL << b;
				}
			}
		} else {
			q = (u32)v / 10u;
		}
#endif
		buf[--i] = (char)('0' + (v - q * 10));
		v = q;
	} while (v);
	puts(&buf[i]);
}

void exit(u8 code)
{
	outb(PORT_DEBUG_EXIT, code);
	/* Without an isa-debug-exit device, stop here rather than run on. */
	for (;;)
		__asm__ volatile("cli; hlt");
}

void pic_remap(u8 master_mask, u8 slave_mask)
{
	outb(PORT_PIC1, 0x11); /* ICW1: edge, cascade, ICW4 follows */
	outb(PORT_PIC2, 0x11);
	outb(PORT_PIC1 + 1, IRQ_BASE);     /* ICW2: vector base */
	outb(PORT_PIC2 + 1, IRQ_BASE + 8);
	outb(PORT_PIC1 + 1, 0x04); /* ICW3: slave on IRQ2 */
	outb(PORT_PIC2 + 1, 0x02);
	outb(PORT_PIC1 + 1, 0x01); /* ICW4: 8086 mode */
	outb(PORT_PIC2 + 1, 0x01);
	pic_mask(master_mask, slave_mask);
}

void pic_mask(u8 master_mask, u8 slave_mask)
{
	outb(PORT_PIC1 + 1, master_mask);
	outb(PORT_PIC2 + 1, slave_mask);
}

void pit_start(u16 divisor)
{
	outb(PORT_PIT_MODE, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
	outb(PORT_PIT, (u8)divisor);
	outb(PORT_PIT, (u8)(divisor >> 8));
}

#ifdef __x86_64__
struct gate {
	u16 off0, sel;
	u8 ist, type;
	u16 off1;
	u32 off2, zero;
};
#else
struct gate {
	u16 off0, sel;
	u8 zero, type;
	u16 off1;
};
#endif

static struct gate idt[256] ALIGNED(16);

void idt_set(int vector, void *handler)
{
	uptr h = (uptr)handler;
	u16 cs;
	/* Use whatever code segment we run in: vmrr's GDT or our own. */
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	struct gate *g = &idt[vector];
	g->off0 = (u16)h;
	g->sel = cs;
	g->type = 0x8e; /* present, DPL0, interrupt gate (clears IF) */
	g->off1 = (u16)(h >> 16);
#ifdef __x86_64__
	g->ist = 0;
	g->off2 = (u32)(h >> 32);
	g->zero = 0;
#else
	g->zero = 0;
#endif
}

void idt_load(void)
{
	struct __attribute__((packed)) {
		u16 limit;
		uptr base;
	} d = {sizeof(idt) - 1, (uptr)idt};
	__asm__ volatile("lidt %0" : : "m"(d));
}

volatile uptr ud_resume;
volatile u32 ud_count;

INTERRUPT void ud_handler(struct interrupt_frame *frame)
{
	if (!ud_resume) {
		puts("#UD at ");
		put_hex(frame->ip);
		putc('\n');
		exit(4);
	}
	frame->ip = ud_resume;
	ud_resume = 0;
	ud_count++;
}

void ud_probe_install(void) { idt_set(6, ud_handler); }

static void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static int cpuid_max(u32 base)
{
	u32 r[4];
	cpuid(base, 0, r);
	return (int)(r[0] - base);
}

int cpu_has_rdrand(void)
{
	u32 r[4];
	cpuid(1, 0, r);
	return (r[2] >> 30) & 1;
}

int cpu_has_popcnt(void)
{
	u32 r[4];
	cpuid(1, 0, r);
	return (r[2] >> 23) & 1;
}

int cpu_has_rdseed(void)
{
	u32 r[4];
	if (cpuid_max(0) < 7)
		return 0;
	cpuid(7, 0, r);
	return (r[1] >> 18) & 1;
}

int cpu_has_rdtscp(void)
{
	u32 r[4];
	if (cpuid_max(0x80000000) < 1)
		return 0;
	cpuid(0x80000001, 0, r);
	return (r[3] >> 27) & 1;
}

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}
