package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// boot runs the nested VM with its console on console and returns when
// QEMU exits, or kills it after o.timeout.
func boot(ctx context.Context, o *options, k *kernel, initrd string, console io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(o, k, initrd, "")...)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("the nested VM did not finish in %v (-timeout): killed", o.timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: the nested VM was stopped")
	case err != nil:
		return fmt.Errorf("qemu-system-x86_64: %v", err)
	}
	return nil
}

// bootShell boots the VM with vmrr.shell on the kernel's command line: /init
// prepares everything as for the tests, then starts a shell on the console,
// which is this terminal (Ctrl-A X quits QEMU).
func bootShell(ctx context.Context, o *options, k *kernel, initrd string) error {
	args := qemuArgs(o, k, initrd, " vmrr.shell")
	shown := []string{"qemu-system-x86_64"}
	for _, a := range args {
		if strings.ContainsAny(a, " '") {
			a = shellQuote(a)
		}
		shown = append(shown, a)
	}
	fmt.Fprintf(os.Stderr, "nested-kvm: %s\n", strings.Join(shown, " "))
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// qemuArgs is the nested VM: TCG with every CPU feature it emulates (AMD
// SVM with nested paging among them), one CPU, the console on ttyS0.
func qemuArgs(o *options, k *kernel, initrd, appendMore string) []string {
	return []string{
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(o.mem), "-smp", "1",
		"-kernel", k.vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1" + appendMore,
		"-nographic", "-no-reboot",
	}
}
