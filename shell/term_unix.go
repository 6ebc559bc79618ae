//go:build unix

package shell

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether r is a terminal device.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}
