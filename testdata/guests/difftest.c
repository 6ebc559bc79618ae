/*
 * difftest.c: differential test of a CPU's integer instructions. Runs the
 * random blocks of difftest32.S or difftest64.S (written by gen/difftest)
 * and prints one hash per block of the registers, the defined arithmetic
 * flags and the scratch buffer after it, so that two CPUs running the same
 * image (vmrr's soft CPU, QEMU, the host) can be compared line by line and
 * the first differing line names the block to look at.
 *
 * Built as a guest with rt/, or with -DDT_NATIVE as an ordinary Linux
 * program (64-bit only: the blocks then run natively on the host CPU); a
 * native run takes the feature names to use as arguments (default: all the
 * host has), so that its blocks match those of a guest on another CPUID.
 */
#ifdef DT_NATIVE
#include <stdio.h>
#include <string.h>
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr;
static void out(const char *s) { fputs(s, stdout); }
#else
#include "rt/rt.h"
static void out(const char *s) { puts(s); }
#endif

/* Shared with gen/difftest. */
#define DT_SCRATCH 4096
#define DT_MAXLOG 64
#ifdef __x86_64__
#define DT_NREGS 16
#define DT_BASE 15 /* R15 holds the scratch address: not hashed */
#else
#define DT_NREGS 8
#define DT_BASE 5 /* EBP */
#endif
#define DT_SP 4

extern uptr dt_regs[DT_NREGS + 1]; /* registers by number, then flags */
extern uptr dt_flaglog[DT_MAXLOG];
extern u32 dt_scratch[DT_SCRATCH / 4];
extern const u32 dt_nblocks;
extern void *const dt_blocks[];
extern const u8 dt_feature[];
extern const u8 dt_endmask[];
extern const u16 dt_logstart[];
extern const u8 dt_logmask[];
void dt_call(void *block);

enum { FEAT_NONE, FEAT_POPCNT, FEAT_LZCNT, FEAT_TZCNT, NFEAT };
static const char *const feat_name[NFEAT] = {"", "popcnt", "lzcnt", "tzcnt"};

static void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* features says which of the optional instructions CPUID lists. */
static unsigned features(void)
{
	u32 r[4];
	unsigned f = 1 << FEAT_NONE;
	cpuid(0, 0, r);
	u32 max = r[0];
	cpuid(1, 0, r);
	if (r[2] & (1u << 23))
		f |= 1 << FEAT_POPCNT;
	if (max >= 7) {
		cpuid(7, 0, r);
		if (r[1] & (1u << 3)) /* BMI1 */
			f |= 1 << FEAT_TZCNT;
	}
	cpuid(0x80000000, 0, r);
	if (r[0] >= 0x80000001) {
		cpuid(0x80000001, 0, r);
		if (r[2] & (1u << 5)) /* ABM */
			f |= 1 << FEAT_LZCNT;
	}
	return f;
}

/* Unmasked flag bits: CF PF AF ZF SF OF from the generator's packed byte. */
static uptr flag_mask(u8 m)
{
	static const u16 bit[6] = {0x001, 0x004, 0x010, 0x040, 0x080, 0x800};
	uptr r = 0;
	for (int i = 0; i < 6; i++)
		if (m & (1 << i))
			r |= bit[i];
	return r;
}

static u64 rng;

/* splitmix64: the per-block inputs come from the block number alone. */
static u64 next(void)
{
	u64 z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* value is a register value, often an edge case. */
static u64 value(void)
{
	u64 r = next();
	switch (r & 7) {
	case 0:
		return (r >> 8) & 3;
	case 1:
		return ~(u64)((u32)(r >> 8) % 3);
	case 2:
		return 1ULL << ((r >> 8) & 63);
	case 3:
		return (r >> 8) & 0x3f;
	case 4:
		return (u32)(r >> 8);
	case 5:
		return 0x80000000u | ((r >> 8) & 15);
	}
	return next();
}

static u64 mix(u64 h, u64 v)
{
	h ^= v;
	h *= 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static char *hex(char *p, u64 v, int digits)
{
	*p++ = '0';
	*p++ = 'x';
	for (int i = digits - 1; i >= 0; i--)
		*p++ = "0123456789abcdef"[(v >> (4 * i)) & 0xf];
	return p;
}

static char *dec(char *p, u32 v, int digits)
{
	char t[10];
	int n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n < digits)
		t[n++] = '0';
	while (n)
		*p++ = t[--n];
	return p;
}

static char *str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

/* xorshift32 for the scratch buffer: 32-bit builds pay for every u64 step. */
static u32 scratch_word(u32 *x)
{
	u32 r = *x;
	r ^= r << 13;
	r ^= r >> 17;
	r ^= r << 5;
	*x = r;
	switch (r & 7) {
	case 0:
		return (r >> 8) & 3;
	case 1:
		return ~((r >> 8) & 1);
	case 2:
		return 1u << ((r >> 8) & 31);
	}
	return r * 0x9e3779b1u;
}

/* run_block runs block b on inputs from its number and returns the hash. */
static u64 run_block(u32 b)
{
	rng = 0x6469666674657374ULL ^ ((u64)b << 32);
	for (int i = 0; i < DT_NREGS; i++)
		dt_regs[i] = (uptr)value();
	dt_regs[DT_NREGS] = 0x2 | ((uptr)next() & 0x8d5); /* the arithmetic flags */
	u32 x = (u32)next() | 1;
	for (int i = 0; i < DT_SCRATCH / 4; i++)
		dt_scratch[i] = scratch_word(&x);
	for (int i = 0; i < DT_MAXLOG; i++)
		dt_flaglog[i] = 0;
	dt_call(dt_blocks[b]);
	u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < DT_NREGS; i++)
		if (i != DT_SP && i != DT_BASE)
			h = mix(h, dt_regs[i]);
	h = mix(h, dt_regs[DT_NREGS] & flag_mask(dt_endmask[b]));
	for (u32 i = dt_logstart[b]; i < dt_logstart[b + 1]; i++)
		h = mix(h, dt_flaglog[i - dt_logstart[b]] & flag_mask(dt_logmask[i]));
	/* FNV-1a over words: each step is a bijection, so one differing
	 * word always changes the result. */
	u32 s = 0x811c9dc5u;
	for (int i = 0; i < DT_SCRATCH / 4; i++)
		s = (s ^ dt_scratch[i]) * 0x01000193u;
	return mix(h, s);
}

static u32 cur_block;

#ifndef DT_NATIVE
/* An exception in a block is a CPU bug (the generator avoids every fault):
 * say which block and where, rather than die in a triple fault. */
static NORETURN void fault(const char *name, uptr ip)
{
	char line[80], *p = str(line, "block ");
	p = dec(p, cur_block, 4);
	p = str(p, ": ");
	p = str(p, name);
	p = str(p, " at ");
	p = hex(p, ip, 2 * sizeof(uptr));
	p = str(p, "\n");
	*p = 0;
	out(line);
	exit(3);
}

static INTERRUPT void dt_de(struct interrupt_frame *f) { fault("#DE", f->ip); }
static INTERRUPT void dt_ud(struct interrupt_frame *f) { fault("#UD", f->ip); }
static INTERRUPT void dt_gp(struct interrupt_frame *f, uptr code)
{
	(void)code;
	fault("#GP", f->ip);
}
static INTERRUPT void dt_pf(struct interrupt_frame *f, uptr code)
{
	(void)code;
	fault("#PF", f->ip);
}
#endif

static int run(unsigned feat)
{
	char line[80], *p = line;
	p = str(p, sizeof(uptr) == 8 ? "difftest64 cpuid:" : "difftest32 cpuid:");
	for (int f = 1; f < NFEAT; f++)
		if (feat & (1 << f)) {
			p = str(p, " ");
			p = str(p, feat_name[f]);
		}
	p = str(p, "\n");
	*p = 0;
	out(line);
	u64 all = 0;
	u32 ran = 0;
	for (u32 b = 0; b < dt_nblocks; b++) {
		p = str(line, "block ");
		p = dec(p, b, 4);
		if (feat & (1 << dt_feature[b])) {
			cur_block = b;
			u64 h = run_block(b);
			all = mix(all, h);
			ran++;
			p = str(p, " ");
			p = hex(p, h, 16);
		} else {
			p = str(p, " skipped: no ");
			p = str(p, feat_name[dt_feature[b]]);
		}
		p = str(p, "\n");
		*p = 0;
		out(line);
	}
	p = str(line, "difftest: ");
	p = dec(p, ran, 1);
	p = str(p, " blocks, hash ");
	p = hex(p, all, 16);
	p = str(p, "\n");
	*p = 0;
	out(line);
	return 0;
}

#ifdef DT_NATIVE
int main(int argc, char **argv)
{
	unsigned feat = features();
	if (argc > 1) {
		unsigned want = 1 << FEAT_NONE;
		for (int i = 1; i < argc; i++)
			for (int f = 1; f < NFEAT; f++)
				if (strcmp(argv[i], feat_name[f]) == 0)
					want |= 1 << f;
		feat &= want;
	}
	return run(feat);
}
#else
int main(void)
{
	idt_set(0, dt_de);
	idt_set(6, dt_ud);
	idt_set(13, dt_gp);
	idt_set(14, dt_pf);
	idt_load();
	return run(features());
}
#endif
