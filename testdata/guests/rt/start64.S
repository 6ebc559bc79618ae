/*
 * start64.S: entry of the ELF64 guests. vmrr enters e_entry in long mode at
 * CPL0 with IF=0; the guest switches to its own stack in .bss so its memory
 * layout does not depend on the RAM size, then runs main and exits with its
 * return value.
 */
	.code64
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	cli
	cld
	mov $stack_top, %rsp
	xor %ebp, %ebp
	call main
	movzbl %al, %edi
	call exit
	.size _start, . - _start

	.section .bss
	.balign 16
stack:
	.skip 16384
stack_top:
	.section .note.GNU-stack, "", @progbits
