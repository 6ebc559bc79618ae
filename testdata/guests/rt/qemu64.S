/*
 * qemu64.S: a Multiboot front end that gives an ELF64 guest what vmrr's
 * loader gives it (long mode, CPL0, flat segments, identity map of the first
 * 4 GiB in 2 MiB pages, IF=0), so `make check-qemu` can run the 64-bit
 * guests under qemu-system-x86_64 -kernel. Not part of the committed images.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.code32
	.section .text.qemu64, "ax"
	.globl qemu64_entry
qemu64_entry:
	cli
	cld
	mov $wrap_stack_top, %esp
	/* PML4[0] -> PDPT; PDPT[0..3] -> 4 page directories of 2 MiB pages. */
	mov $wrap_pdpt + 3, %eax
	mov %eax, wrap_pml4
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $12, %eax
	add $wrap_pd + 3, %eax
	mov %eax, wrap_pdpt(, %ecx, 8)
	inc %ecx
	cmp $4, %ecx
	jne 1b
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $21, %eax
	or $0x83, %eax
	mov %eax, wrap_pd(, %ecx, 8)
	mov %ecx, %eax
	shr $11, %eax
	mov %eax, wrap_pd + 4(, %ecx, 8)
	inc %ecx
	cmp $2048, %ecx
	jne 2b
	mov %cr4, %eax
	or $0x20, %eax /* PAE */
	mov %eax, %cr4
	mov $wrap_pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax
	mov %eax, %cr0
	lgdt wrap_gdt_desc
	ljmp $0x08, $3f
	.code64
3:	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %fs
	mov %ax, %gs
	mov %ax, %ss
	jmp _start

	.section .rodata
	.balign 8
wrap_gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff /* 0x10: data */
wrap_gdt_desc:
	.word wrap_gdt_desc - wrap_gdt - 1
	.long wrap_gdt

	.section .bss
	.balign 4096
wrap_pml4:
	.skip 4096
wrap_pdpt:
	.skip 4096
wrap_pd:
	.skip 4 * 4096
	.balign 16
	.skip 4096
wrap_stack_top:
	.section .note.GNU-stack, "", @progbits
