// Package framework is what the end-to-end suites (tests/e2e, tests/e2e/node)
// are built on, in the manner of Kubernetes' test/e2e/framework: the control
// plane, kubectl, processes, Eventually, the TestMain lifecycle and watchdog,
// steady load, and a node (containerd, kubelet, kube-scheduler).
package framework

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// watchdog calls stop and exits 1 on SIGINT, SIGTERM or SIGHUP, or shortly
// before the test binary's -timeout (started at start) would panic, skipping
// TestMain's cleanup; then it dumps the goroutines first, so a hang is still
// diagnosable. It returns when ctx is done.
func watchdog(ctx context.Context, start time.Time, stop func()) {
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

// Load is steady traffic through the webhooks: workers make attempts back to
// back until Stop, the context's end, or maxAttempts in all.
type Load struct {
	what   string
	cancel context.CancelFunc
	done   chan struct{}

	mu             sync.Mutex
	attempts       int
	failures       []Failure
	started, ended time.Time
}

// StartLoad runs workers goroutines calling attempt(ctx, worker, i) for
// i = 0, 1, ...; an error is a failure, an attempt the context cut short is
// not counted. what names them in String; maxAttempts 0 means no bound.
func StartLoad(ctx context.Context, what string, workers, maxAttempts int, attempt func(ctx context.Context, worker, i int) error) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{what: what, cancel: cancel, done: make(chan struct{}), started: time.Now()}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := attempt(ctx, w, i)
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				l.attempts++
				if err != nil {
					l.failures = append(l.failures, Failure{time.Now(), err})
				}
				enough := maxAttempts > 0 && l.attempts >= maxAttempts
				l.mu.Unlock()
				if enough {
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		l.mu.Lock()
		l.ended = time.Now()
		l.mu.Unlock()
		close(l.done)
	}()
	return l
}

// Stop ends the load after the attempts in flight. Safe more than once.
func (l *Load) Stop() {
	l.cancel()
	<-l.done
}

// Count is the number of attempts made so far.
func (l *Load) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts
}

// Failure is one failed attempt and when it ended.
type Failure struct {
	At  time.Time
	Err error
}

// Failures are the failed attempts so far, each with its time.
func (l *Load) Failures() []string {
	var out []string
	for _, f := range l.failedAttempts() {
		out = append(out, f.At.Format("15:04:05.000 ")+f.Err.Error())
	}
	return out
}

// failedAttempts are the failed attempts so far.
func (l *Load) failedAttempts() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failures)
}

// FailedBetween counts the attempts that failed (ended) in [from, to).
func (l *Load) FailedBetween(from, to time.Time) int {
	n := 0
	for _, f := range l.failedAttempts() {
		if !f.At.Before(from) && f.At.Before(to) {
			n++
		}
	}
	return n
}

// RunFor waits until n attempts have been made and at least d has passed; it
// reports false if the load ended or timeout went by first.
func (l *Load) RunFor(n int, d, timeout time.Duration) bool {
	start, deadline := time.Now(), time.After(timeout)
	for l.Count() < n || time.Since(start) < d {
		select {
		case <-l.done:
			return false
		case <-deadline:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// Rate is the attempts per second so far.
func (l *Load) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.attempts) / l.span().Seconds()
}

// span is how long the load has run (until it ended); l.mu is held.
func (l *Load) span() time.Duration {
	if l.ended.IsZero() {
		return time.Since(l.started)
	}
	return l.ended.Sub(l.started)
}

func (l *Load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d %s in %s, %d failed", l.attempts, l.what, l.span().Round(time.Millisecond), len(l.failures))
}

// Suite is what a TestMain runs its tests between: SetUp, then Stop (safe on a
// partly set-up one); Artifacts is the folder kept when anything failed (else
// removed, unless E2E_KEEP_ARTIFACTS is set); Ready is printed once up.
type Suite struct {
	SetUp, Stop      func() error
	Artifacts, Ready func() string
	OnFailure        func()
}

// Main runs m between s.SetUp and s.Stop and returns the exit code; the
// watchdog stops the process groups that would outlive the test binary.
func Main(m *testing.M, s Suite) int {
	start := time.Now()
	var failed atomic.Bool
	teardown := sync.OnceFunc(func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: teardown: %v\n", err)
			failed.Store(true)
		}
		dir := s.Artifacts()
		if failed.Load() && dir != "" {
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", dir)
		} else if dir != "" && os.Getenv("E2E_KEEP_ARTIFACTS") == "" {
			_ = os.RemoveAll(dir)
		}
	})
	ctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go watchdog(ctx, start, func() { Stopping.Store(true); failed.Store(true); teardown() })

	if err := s.SetUp(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setting up: %v\n", err)
		failed.Store(true)
		teardown()
		return 1
	}
	fmt.Printf("e2e: environment ready in %s (%s)\n", time.Since(start).Round(time.Millisecond), s.Ready())
	code := m.Run()
	if code != 0 {
		failed.Store(true)
		s.OnFailure()
	}
	stopWatching()
	teardown()
	if failed.Load() && code == 0 {
		code = 1
	}
	fmt.Printf("e2e: total %s\n", time.Since(start).Round(time.Millisecond))
	return code
}
