package benchkit

import (
	"context"
	"time"
)

// WaitQuiet waits (at most max, and at most QuietBudget over a run) for half a
// second in which CPUs 0 and 1 together are busy less than 15% of one CPU:
// other work on a shared machine disturbs the measurements. The servers under
// test are idle meanwhile.
func WaitQuiet(ctx context.Context, max time.Duration, logf func(string, ...any)) {
	if max <= 0 || QuietBudget <= 0 {
		return
	}
	start := time.Now()
	defer func() { QuietBudget -= time.Since(start) }()
	deadline := time.Now().Add(min(max, QuietBudget))
	for ctx.Err() == nil {
		a0, _ := CPUBusy(0)
		b0, _ := CPUBusy(1)
		WaitCtx(ctx, 500*time.Millisecond)
		a1, _ := CPUBusy(0)
		b1, _ := CPUBusy(1)
		if float64((a1-a0)+(b1-b0)) < 0.15*float64(500*time.Millisecond) {
			return
		}
		if time.Now().After(deadline) {
			logf("the machine is busy with other work: measuring anyway (see the 'other work' figures)")
			return
		}
	}
}

// QuietBudget bounds the time all waits for quiet may take in one run.
var QuietBudget = 2 * time.Minute
