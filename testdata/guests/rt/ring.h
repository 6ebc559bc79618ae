/*
 * ring.h: vmrr's paravirtual non-determinism ring, for guests (copy freely).
 * Mirrors the constants in machine/guestabi.go; version 1.
 *
 * vmrr reserves guest physical memory RING_BASE..RING_BASE+RING_SIZE (the
 * Multiboot memory map and mem_lower leave it out of usable RAM). The first
 * page is a header; entries follow at RING_BASE + RING_ENTRIES.
 *
 * A cooperating guest executes RDTSC / RDRAND / ... natively and passes every
 * value through the ring, so record and replay need no exit per value:
 *
 *	m = hdr->recmask;                      // all ones recording, 0 replaying
 *	e = &entries[hdr->head];
 *	v = (native & m) | (e->value & ~m);    // record: native; replay: logged
 *	e->value = v; e->kind = KIND; e->aux = aux & m | e->aux & ~m;
 *	if (++hdr->head == hdr->capacity)
 *		outb(RING_DOORBELL_PORT, 0);   // VMM flushes (record) or refills
 *	                                       // (replay) and sets head to 0
 *
 * Write it branch-free (no test of recmask, no retry on RDRAND's CF) so that
 * record and replay run exactly the same instructions. Check magic, version
 * and entry_size before use: without vmrr there is no ring.
 *
 * Put the functions that execute the native instructions in RING_TEXT (an
 * executable ELF section named .vmrr_ring): they must run unpatched, while
 * vmrr's fast mode patches non-deterministic instructions elsewhere to trap.
 */
#ifndef VMRR_RING_H
#define VMRR_RING_H

#define RING_BASE 0x90000UL
#define RING_SIZE 0x10000UL
#define RING_MAGIC 0x474e5256U /* "VRNG" */
#define RING_VERSION 1U
#define RING_ENTRY_SIZE 16U
#define RING_ENTRIES 0x1000UL /* offset of entry 0 from RING_BASE */
#define RING_CAPACITY ((RING_SIZE - RING_ENTRIES) / RING_ENTRY_SIZE)
#define RING_DOORBELL_PORT 0xe1

/* Entry kinds: the instruction that produced the value. */
#define RING_KIND_RDTSC 1
#define RING_KIND_RDTSCP 2 /* aux = IA32_TSC_AUX */
#define RING_KIND_RDRAND 3
#define RING_KIND_RDSEED 4
#define RING_KIND_RDPID 5

/* struct ring_header is the first bytes of the ring page (offsets fixed). */
struct ring_header {
	unsigned int magic;             /* 0x00: RING_MAGIC */
	unsigned int version;           /* 0x04: RING_VERSION */
	unsigned int capacity;          /* 0x08: entries in the ring */
	unsigned int entry_size;        /* 0x0c: RING_ENTRY_SIZE */
	unsigned long long head;        /* 0x10: next entry to fill / read */
	unsigned long long recmask;     /* 0x18: ~0 recording, 0 replaying */
};

/* struct ring_entry is one value. */
struct ring_entry {
	unsigned long long value;
	unsigned int kind;
	unsigned int aux;
};

/* RING_TEXT marks a function whose non-deterministic instructions feed the
 * ring (rt/link.ld keeps .text.vmrr_ring as the output section .vmrr_ring). */
#define RING_TEXT __attribute__((section(".text.vmrr_ring"), noinline))

#define RING_HEADER ((volatile struct ring_header *)RING_BASE)
#define RING_ENTRY(i) ((volatile struct ring_entry *)(RING_BASE + RING_ENTRIES) + (i))

#endif
