// oracle runs single x86-64 instructions natively, so that x86emu's tests
// can compare the emulator with the host CPU (flags the SDM leaves undefined
// included). Each input line is the instruction in hex, then RAX..R15 (RSP
// ignored: the instruction runs on this program's stack) and RFLAGS, in hex.
// Each output line is the registers and RFLAGS after the instruction, or
// "SIG n" when it raised signal n (#DE is SIGFPE).
//
// Built by the test with: gcc -O1 -static -fno-pie -no-pie.
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct state {
	uint64_t r[16];
	uint64_t flags;
};

struct state S;
void *code_ptr;
static sigjmp_buf jb;

static void onsig(int sig) { siglongjmp(jb, sig); }

// run loads S into the registers, calls code_ptr (the instruction then a
// RET) and stores the registers back into S.
static void __attribute__((noinline)) run(void) {
	__asm__ volatile(
	    "push %%rbx\n push %%rbp\n push %%r12\n push %%r13\n push %%r14\n push %%r15\n"
	    "pushq S+128(%%rip)\n popfq\n"
	    "mov S+0(%%rip), %%rax\n mov S+8(%%rip), %%rcx\n mov S+16(%%rip), %%rdx\n"
	    "mov S+24(%%rip), %%rbx\n mov S+40(%%rip), %%rbp\n mov S+48(%%rip), %%rsi\n"
	    "mov S+56(%%rip), %%rdi\n mov S+64(%%rip), %%r8\n mov S+72(%%rip), %%r9\n"
	    "mov S+80(%%rip), %%r10\n mov S+88(%%rip), %%r11\n mov S+96(%%rip), %%r12\n"
	    "mov S+104(%%rip), %%r13\n mov S+112(%%rip), %%r14\n mov S+120(%%rip), %%r15\n"
	    "call *code_ptr(%%rip)\n"
	    "pushfq\n popq S+128(%%rip)\n cld\n"
	    "mov %%rax, S+0(%%rip)\n mov %%rcx, S+8(%%rip)\n mov %%rdx, S+16(%%rip)\n"
	    "mov %%rbx, S+24(%%rip)\n mov %%rbp, S+40(%%rip)\n mov %%rsi, S+48(%%rip)\n"
	    "mov %%rdi, S+56(%%rip)\n mov %%r8, S+64(%%rip)\n mov %%r9, S+72(%%rip)\n"
	    "mov %%r10, S+80(%%rip)\n mov %%r11, S+88(%%rip)\n mov %%r12, S+96(%%rip)\n"
	    "mov %%r13, S+104(%%rip)\n mov %%r14, S+112(%%rip)\n mov %%r15, S+120(%%rip)\n"
	    "pop %%r15\n pop %%r14\n pop %%r13\n pop %%r12\n pop %%rbp\n pop %%rbx\n" ::
	        : "memory", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "cc");
}

int main(void) {
	unsigned char *page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	// The handler runs on its own stack in case the instruction broke RSP.
	static char altstack[65536];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onsig;
	sa.sa_flags = SA_NODEFER | SA_ONSTACK;
	sigaction(SIGFPE, &sa, 0);
	sigaction(SIGILL, &sa, 0);
	sigaction(SIGSEGV, &sa, 0);
	sigaction(SIGBUS, &sa, 0);
	code_ptr = page;
	char hex[64];
	while (scanf("%63s", hex) == 1) {
		size_t n = strlen(hex) / 2;
		for (size_t i = 0; i < n && i < 15; i++) {
			unsigned v;
			sscanf(hex + 2 * i, "%2x", &v);
			page[i] = (unsigned char)v;
		}
		page[n] = 0xc3;
		for (int i = 0; i < 17; i++) {
			unsigned long long v;
			if (scanf("%llx", &v) != 1)
				return 2;
			if (i < 16)
				S.r[i] = v;
			else
				S.flags = v;
		}
		int sig = sigsetjmp(jb, 1);
		if (sig != 0) {
			printf("SIG %d\n", sig);
			continue;
		}
		run();
		for (int i = 0; i < 16; i++)
			printf("%llx ", (unsigned long long)S.r[i]);
		printf("%llx\n", (unsigned long long)S.flags);
		fflush(stdout);
	}
	return 0;
}
