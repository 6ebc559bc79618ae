/* serial-echo: COM1 receive interrupts on IRQ4. Prints "ready\n", HLT-idles;
 * the IRQ4 handler echoes every received byte until a 'q', on which it prints
 * "bye\n" (the 'q' itself is not echoed) and exits 0. */
#include "rt/rt.h"

volatile u32 rx_count;

INTERRUPT void serial_handler(struct interrupt_frame *frame)
{
	(void)frame;
	while (inb(PORT_COM1 + 5) & 1) { /* LSR: data ready */
		char c = (char)inb(PORT_COM1);
		rx_count++;
		if (c == 'q') {
			puts("bye\n");
			exit(0);
		}
		putc(c);
	}
	pic_eoi();
}

int main(void)
{
	idt_set(IRQ_BASE + IRQ_COM1, serial_handler);
	idt_load();
	pic_remap(0xff & ~(1 << IRQ_COM1), 0xff);
	outb(PORT_COM1 + 4, 0x0b); /* MCR: DTR, RTS, OUT2 (gates the IRQ on a real 16550) */
	outb(PORT_COM1 + 1, 0x01); /* IER: received data available */
	puts("ready\n");
	for (;;) {
		sti_hlt();
		cli();
	}
}
