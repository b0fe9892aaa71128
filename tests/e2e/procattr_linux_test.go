//go:build linux

package e2e

import "syscall"

// serverProcAttr makes the kernel kill the server if the test binary dies
// without running its cleanup (kill -9, a crash), so no server is left behind.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
