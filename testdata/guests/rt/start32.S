/*
 * start32.S: Multiboot1 header and entry of the 32-bit guests. The boot
 * loader (vmrr or QEMU -kernel) enters in protected mode with flat segments
 * but no GDT we may rely on: an IRET reloads CS from the GDT, so load ours
 * (code 0x08, data 0x10) before anything can take an interrupt.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, give memory info */

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.code32
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	cli
	cld
	mov $stack_top, %esp
	mov %eax, mb_magic
	mov %ebx, mb_info
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %fs
	mov %ax, %gs
	mov %ax, %ss
	xor %ebp, %ebp
	call main
	movzbl %al, %eax
	push %eax
	call exit
	.size _start, . - _start

	.section .rodata
	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff /* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff /* 0x10: flat data */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.section .bss
	.balign 16
stack:
	.skip 16384
stack_top:
	.section .note.GNU-stack, "", @progbits
