//go:build !linux

package e2e

import "syscall"

func serverProcAttr() *syscall.SysProcAttr { return nil }
