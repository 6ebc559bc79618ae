/*
 * paging.h: the guest's own 4-level page tables (ELF64 guests only).
 *
 * pg_init replaces vmrr's boot tables with tables in the guest's .bss: an
 * identity map of the first 1 GiB in 2 MiB pages, plus a 2 MiB window at
 * PG_WINDOW made of 512 4 KiB pages whose PTEs (pg_window_pte) the guest
 * rewrites at will. Window pages start unmapped.
 */
#ifndef VMRR_GUEST_PAGING_H
#define VMRR_GUEST_PAGING_H

#include "rt.h"

#define PG_WINDOW 0x40000000UL /* 1 GiB: just above the identity map */
#define PG_PRESENT 0x1UL
#define PG_WRITE 0x2UL
#define PG_HUGE 0x80UL

/* pg_window_pte[i] maps virtual PG_WINDOW + i*4096. */
extern volatile u64 pg_window_pte[512];

void pg_init(void);

/* pg_va is the virtual address of window page i. */
static inline volatile u64 *pg_va(int i) { return (volatile u64 *)(PG_WINDOW + (uptr)i * 4096); }

/* pg_map points window page i at physical page phys, without a TLB flush. */
static inline void pg_map(int i, uptr phys) { pg_window_pte[i] = phys | PG_PRESENT | PG_WRITE; }

static inline void invlpg(volatile void *va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

#endif
