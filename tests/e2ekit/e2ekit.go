// Package e2ekit holds what the end-to-end suites (tests/e2e and
// tests/e2e/certmanager, each its own module) share: the watchdog that tears
// a control plane down before `go test -timeout` can kill the test binary,
// and the kubelet's way of writing a Secret volume. It depends on the
// standard library only.
package e2ekit

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

// Watchdog calls stop and exits 1 on SIGINT, SIGTERM or SIGHUP, or shortly
// before the test binary's -timeout would kill it with a panic (which would
// skip TestMain's cleanup and leave etcd, kube-apiserver, the server — and a
// network namespace — behind), after dumping the goroutines so a hang is still
// diagnosable. It returns when ctx is done. start is when the test binary
// started.
func Watchdog(ctx context.Context, start time.Time, stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var deadline <-chan time.Time
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			t := time.NewTimer(time.Until(start.Add(d - min(d/10, time.Minute))))
			defer t.Stop()
			deadline = t.C
		}
	}
	select {
	case <-ctx.Done():
		return
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "\ne2e: %v: tearing down\n", s)
	case <-deadline:
		fmt.Fprintf(os.Stderr, "\ne2e: the test binary's -timeout is about to run out; goroutines:\n")
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		fmt.Fprintf(os.Stderr, "e2e: tearing down\n")
	}
	stop()
	os.Exit(1)
}

// WriteSecretVolume updates dir the way the kubelet's AtomicWriter updates a
// Secret volume: the files go into a new directory "..<timestamp>", a
// "..data_tmp" symlink to it is renamed over "..data" (one atomic step), the
// previous directory is removed, and each key is a symlink "KEY -> ..data/KEY".
func WriteSecretVolume(dir string, data map[string][]byte) error {
	oldTarget, _ := os.Readlink(filepath.Join(dir, "..data"))
	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if err := os.WriteFile(filepath.Join(tsDir, key), data[key], 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for key := range data {
		link := filepath.Join(dir, key)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", key) {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", key), link); err != nil {
			return err
		}
	}
	if oldTarget != "" && oldTarget != filepath.Base(tsDir) {
		return os.RemoveAll(filepath.Join(dir, oldTarget))
	}
	return nil
}
