/*
 * rt.h: the tiny freestanding runtime shared by vmrr's test guests.
 *
 * The same sources build as ELF64 images (entered in long mode by vmrr) and
 * as 32-bit Multiboot images (entered in protected mode by vmrr or QEMU), so
 * everything here works for both widths. Guest code runs at CPL0, where this
 * host's KVM emulates every instruction: keep to plain integer code (the
 * build uses -mgeneral-regs-only) and reach the few instructions the
 * emulator lacks only on purpose.
 */
#ifndef VMRR_GUEST_RT_H
#define VMRR_GUEST_RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr;
typedef __SIZE_TYPE__ size_t;

#define NORETURN __attribute__((noreturn))
#define NOINLINE __attribute__((noinline))
#define USED __attribute__((used))
#define ALIGNED(n) __attribute__((aligned(n)))

/* Ports of the vmrr machine (machine/guestabi.go). */
#define PORT_COM1 0x3f8
#define PORT_PIC1 0x20
#define PORT_PIC2 0xa0
#define PORT_PIT 0x40
#define PORT_PIT_MODE 0x43
#define PORT_POST 0x80
#define PORT_DEBUG_EXIT 0xf4
#define PORT_RING_DOORBELL 0xe1

/* Vectors the runtime's PIC remap uses: IRQ n arrives at vector 0x20+n. */
#define IRQ_BASE 0x20
#define IRQ_TIMER 0
#define IRQ_COM1 4

/* PIT input clock; a divisor of 1193 gives ~1000 Hz, 597 ~2000 Hz. */
#define PIT_HZ 1193182

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
/* sti_hlt enables interrupts and halts in one step: the STI shadow keeps an
 * interrupt from landing between the two, so a wake-up is never missed. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* The frame an __attribute__((interrupt)) handler receives: the CPU's
 * pushes (64-bit mode also pushes sp and ss, not listed here). */
struct interrupt_frame {
	uptr ip;
	uptr cs;
	uptr flags;
};
#define INTERRUPT __attribute__((interrupt))

/* Serial console on COM1: polled output. */
void putc(char c);
void puts(const char *s);
void put_hex(u64 v);      /* 0x-prefixed, 16 digits */
void put_hex32(u32 v);    /* 0x-prefixed, 8 digits */
void put_dec(u64 v);

/* exit ends the run through isa-debug-exit: process status (code<<1)|1. */
NORETURN void exit(u8 code);

/* 8259 pair: remap to IRQ_BASE and set the masks (bit set = line masked). */
void pic_remap(u8 master_mask, u8 slave_mask);
void pic_mask(u8 master_mask, u8 slave_mask);
static inline void pic_eoi(void) { outb(PORT_PIC1, 0x20); }
/* pit_start programs channel 0 in mode 2 (rate generator) with divisor. */
void pit_start(u16 divisor);

/* IDT: 256 gates in the current width's format, selector = current CS. */
void idt_set(int vector, void *handler);
void idt_load(void);

/*
 * Probing an instruction CPUID may not list (vmrr's CPUID table hides what
 * the host's KVM does not report, yet vmrr emulates it): ud_probe_install
 * routes #UD to a handler that resumes at ud_resume. A probe stores the
 * address after the instruction there first:
 *
 *	u32 n = ud_count;
 *	__asm__ volatile(MOVP " $1f, %[r]\n\trdtscp\n1:" : ..., [r] "=m"(ud_resume));
 *	ud_resume = 0;
 *	if (ud_count != n) ... the instruction raised #UD ...
 *
 * A #UD with no probe armed prints its address and exits 4.
 */
extern volatile uptr ud_resume;
extern volatile u32 ud_count;
void ud_probe_install(void); /* sets the gate; call idt_load after */
#ifdef __x86_64__
#define MOVP "movq"
#else
#define MOVP "movl"
#endif

/* CPUID feature tests for the non-deterministic instructions. */
int cpu_has_rdrand(void);
int cpu_has_rdseed(void);
int cpu_has_rdtscp(void);
int cpu_has_popcnt(void);

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

/* Multiboot entry state, saved by the 32-bit start stub (zero in ELF64). */
extern u32 mb_magic;
extern u32 mb_info;
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002

int main(void);

#endif
