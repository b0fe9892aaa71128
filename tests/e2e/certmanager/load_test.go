package certmanager

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// loadWorkers kubectl processes run back to back: steady admission traffic
// without starving the 2-core machine the control plane shares.
const loadWorkers = 2

// load is steady admission traffic through kubectl: each attempt is a
// server-side dry-run create of a labelled StatefulSet, which the apiserver
// sends to both webhooks (sideEffects: None allows dry runs), and which must
// come back mutated.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	attempts int
	failures []string
	started  time.Time
	ended    time.Time
}

func startLoad(ns string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() { l.work(ctx, ns, statefulSet(fmt.Sprintf("load-%d", w), true)) })
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

func (l *load) work(ctx context.Context, ns, manifest string) {
	for ctx.Err() == nil {
		r := runKubectl(manifest, "-n", ns, "create", "--dry-run=server", "-f", "-",
			"-o", "jsonpath={.spec.volumeClaimTemplates[*].metadata.name}")
		var failure string
		switch {
		case !r.ok():
			failure = fmt.Sprintf("%v: %s", r.err, strings.TrimSpace(r.stderr))
		case r.stdout != "metadata content cache":
			failure = fmt.Sprintf("not mutated: volumeClaimTemplates %q", r.stdout)
		}
		l.mu.Lock()
		l.attempts++
		if failure != "" {
			l.failures = append(l.failures, time.Now().Format("15:04:05.000 ")+failure)
		}
		l.mu.Unlock()
	}
}

// stop ends the load after the attempts in flight. Safe more than once.
func (l *load) stop() {
	l.cancel()
	<-l.done
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts
}

func (l *load) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

// runFor waits until n attempts have been made and at least d has passed;
// false if that takes over a minute.
func (l *load) runFor(n int, d time.Duration) bool {
	start := time.Now()
	for deadline := start.Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l.count() >= n && time.Since(start) >= d {
			return true
		}
	}
	return false
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := l.ended
	if end.IsZero() {
		end = time.Now()
	}
	return fmt.Sprintf("%d admissions attempted (kubectl create --dry-run=server, each through both webhooks) in %s, %d failed",
		l.attempts, end.Sub(l.started).Round(time.Millisecond), len(l.failures))
}
