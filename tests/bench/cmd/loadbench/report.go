package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
)

// metric is one figure of a sample, measured in the closed loop, the open
// loop or across both.
type metric struct {
	f     func(*sample) float64
	phase string // "closed", "open", "busy" or "both"
}

func (m metric) foreign(s *sample) float64 {
	switch m.phase {
	case "closed":
		return s.ForeignClosed
	case "open":
		return s.ForeignOpen
	case "busy":
		return s.ForeignBusy
	}
	return max(s.ForeignClosed, s.ForeignOpen)
}

// disturbedAbove is the share of a core other work may take before a run is
// left out of the medians (when an undisturbed run of the same kind exists).
var disturbedAbove = 0.25

// median of m over the rounds of one server and body: over the undisturbed
// rounds when there is one, else over all (and disturbed is true).
func median(samples []sample, server, scenario string, m metric) (v float64, ok bool) {
	v, _, ok = medianD(samples, server, scenario, m)
	return v, ok
}

func medianD(samples []sample, server, scenario string, m metric) (float64, bool, bool) {
	var all, quiet []float64
	for i := range samples {
		s := &samples[i]
		if s.Server != server || s.Scenario != scenario {
			continue
		}
		all = append(all, m.f(s))
		if m.foreign(s) <= disturbedAbove {
			quiet = append(quiet, m.f(s))
		}
	}
	if len(all) == 0 {
		return 0, false, false
	}
	v, disturbed := quiet, false
	if len(quiet) == 0 {
		v, disturbed = all, true
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], disturbed, true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, disturbed, true
}

func dur(f func(*sample) time.Duration) func(*sample) float64 {
	return func(s *sample) float64 { return float64(f(s)) }
}

var (
	fClosedRPS = metric{func(s *sample) float64 { return s.ClosedRPS }, "closed"}
	fClosedCPU = metric{dur(func(s *sample) time.Duration { return s.ClosedCPUPerReq }), "closed"}
	fOpenCPU   = metric{dur(func(s *sample) time.Duration { return s.OpenCPUPerReq }), "open"}
	fP50       = metric{dur(func(s *sample) time.Duration { return s.P50 }), "open"}
	fP99       = metric{dur(func(s *sample) time.Duration { return s.P99 }), "open"}
	fMax       = metric{dur(func(s *sample) time.Duration { return s.Max }), "open"}
	fRSS       = metric{func(s *sample) float64 { return float64(s.PeakRSSKB) }, "both"}
	fGenCPU    = metric{func(s *sample) float64 { return s.GeneratorCPU }, "closed"}
	fLag       = metric{dur(func(s *sample) time.Duration { return s.MaxSendLag }), "open"}
	fVP99      = metric{dur(func(s *sample) time.Duration { return s.VegetaP99 }), "open"}
	fBusyCPU   = metric{dur(func(s *sample) time.Duration { return s.BusyCPUPerReq }), "busy"}
	fBusyP50   = metric{dur(func(s *sample) time.Duration { return s.BusyP50 }), "busy"}
	fBusyP99   = metric{dur(func(s *sample) time.Duration { return s.BusyP99 }), "busy"}
	fBusyMax   = metric{dur(func(s *sample) time.Duration { return s.BusyMax }), "busy"}
)

func report(c config, bodies *benchkit.Bodies, scenarios []scenario, servers []serverDef, samples []sample, equiv []string, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	load, _ := os.ReadFile("/proc/loadavg")

	p("\n## Load benchmark: dittofs-webhook vs controller-runtime vs floor\n\n")
	p("- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: %s\n", benchkit.Machine())
	p("- dittofs-webhook revision: %s\n", c.revision)
	p("- each server pinned to CPU %s with GOMAXPROCS=1, the load generator (vegeta %s lib) to CPU %s; HTTPS, HTTP/1.1 keep-alive, loopback\n",
		c.serverCPU, "v12.13.0", c.genCPU)
	p("- closed loop: %d connections, rate 0, %s per run after a %s warm-up; open loop: fixed rate for %s, latency from the intended send time\n",
		c.workers, c.closedDur, c.warmup, c.openDur)
	p("- log level of dittofs-webhook and the peer: %s (one line per decision at info)\n", c.logLevel)
	if len(c.dittoEnv) > 0 {
		p("- experiment: dittofs-webhook ran with %s\n", strings.Join(c.dittoEnv, " "))
	}
	p("- %d rounds, servers interleaved, medians shown; bodies: mutate-6K %d B, validate-6K %d B, mutate-100K %d B\n",
		c.rounds, len(bodies.Create), len(bodies.Validate), len(bodies.Large))
	p("- run took %s; load average at the end: %s; other work took at most %.0f%% of a measured core in any run (median run %.0f%%)\n",
		took.Round(time.Second), strings.TrimSpace(string(load)), 100*maxForeign(samples), 100*medianForeign(samples))
	p("\nEquivalence check (dittofs-webhook vs the peer, same bodies):\n")
	for _, l := range equiv {
		p("- %s\n", l)
	}

	p("\n| body | server | max req/s (closed) | CPU µs/req (closed) | CPU µs/req (open) | open rate | p50 | p99 | max | peak RSS MiB |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	genBound, anyDisturbed := false, false
	// cellOf formats the median of a figure, marked when every round of it
	// was disturbed.
	cellOf := func(server, scenario string, m metric, format func(float64) string) string {
		v, disturbed, _ := medianD(samples, server, scenario, m)
		if disturbed {
			anyDisturbed = true
			return format(v) + "‡"
		}
		return format(v)
	}
	for _, sc := range scenarios {
		for _, d := range servers {
			if d.only != "" && d.only != sc.name {
				continue
			}
			rps, ok := median(samples, d.label, sc.name, fClosedRPS)
			if !ok {
				continue
			}
			cell := func(m metric, format func(float64) string) string { return cellOf(d.label, sc.name, m, format) }
			usf := func(v float64) string { return fmt.Sprintf("%.1f", v/1e3) }
			mib := func(v float64) string { return fmt.Sprintf("%.1f", v/1024) }
			gen, _ := median(samples, d.label, sc.name, fGenCPU)
			rpsCell := cell(fClosedRPS, func(v float64) string { return fmt.Sprintf("%.0f", v) })
			if gen > 0.9 {
				rpsCell, genBound = rpsCell+"†", true
			}
			_ = rps
			p("| %s | %s | %s | %s | %s | %d/s | %s | %s | %s | %s |\n", sc.name, d.label, rpsCell,
				cell(fClosedCPU, usf), cell(fOpenCPU, usf), c.rates[sc.name], cell(fP50, msf), cell(fP99, msf), cell(fMax, msf), cell(fRSS, mib))
		}
	}
	if c.busy > 0 {
		p("\nLatency at a busy fixed rate, %.0f%% of the slowest server's closed-loop rate (open loop, from the intended send time):\n\n", 100*c.busy)
		p("| body | server | busy rate | p50 | p99 | max | CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, sc := range scenarios {
			for _, d := range servers {
				if d.only != "" && d.only != sc.name {
					continue
				}
				if _, ok := median(samples, d.label, sc.name, fBusyP50); !ok {
					continue
				}
				cell := func(m metric, format func(float64) string) string { return cellOf(d.label, sc.name, m, format) }
				p("| %s | %s | %d/s | %s | %s | %s | %s |\n", sc.name, d.label, c.busyRates[sc.name], cell(fBusyP50, msf), cell(fBusyP99, msf), cell(fBusyMax, msf),
					cell(fBusyCPU, func(v float64) string { return fmt.Sprintf("%.1f", v/1e3) }))
			}
		}
	}
	if genBound {
		p("\n† the load generator's core was over 90%% busy: that server's closed-loop rate is a lower bound (the generator, not the server, was the limit).\n")
	}
	for _, sm := range samples {
		if sm.ClosedErrors+sm.OpenErrors+sm.BusyErrors > 0 {
			p("\nFailed requests: round %d, %s, %s: %d closed-loop, %d open-loop and %d busy open-loop errors (%s).\n",
				sm.Round, sm.Scenario, sm.Server, sm.ClosedErrors, sm.OpenErrors, sm.BusyErrors, sm.FirstError)
		}
	}
	if anyDisturbed {
		p("\n‡ every round of this figure was disturbed by other work on the machine (over %.0f%% of a measured core): not a clean measurement.\n", 100*disturbedAbove)
	}
	var maxLag, maxDiff float64
	quietOpen, quietClosed := 0, 0
	for i := range samples {
		s := &samples[i]
		if s.ForeignClosed <= disturbedAbove {
			quietClosed++
		}
		if s.ForeignOpen > disturbedAbove {
			continue
		}
		quietOpen++
		maxLag = max(maxLag, fLag.f(s))
		maxDiff = max(maxDiff, fP99.f(s)-fVP99.f(s))
	}
	p("\nMedians are over the rounds that other work on the machine left alone (at most %.0f%% of the server's or the generator's core): "+
		"%d of %d closed-loop runs and %d of %d open-loop runs.\n", 100*disturbedAbove, quietClosed, len(samples), quietOpen, len(samples))
	p("\nOpen-loop latency is counted from each request's intended send time. vegeta itself stamps a result when a worker starts the request "+
		"(not the intended time), but it never waits for a busy connection (it starts another worker), so a slow server cannot delay the next send; "+
		"only the generator being late could hide latency, and the harness adds that lateness back. The harness paces with a timerfd: "+
		"vegeta's own pacer sleeps with time.Sleep, which wakes ~1 ms late on this kernel, bunching sends and adding up to a millisecond to every figure. "+
		"Largest send lag in an undisturbed run: %s; largest p99 difference from vegeta's own figure: %s.\n", msf(maxLag), msf(maxDiff))

	// Targets.
	const ditto, peer, floor = "dittofs-webhook", "controller-runtime", "floor"
	type target struct {
		name   string
		value  string
		pass   bool
		detail string
	}
	var ts []target
	get := func(server, sc string, f metric) float64 {
		v, _ := median(samples, server, sc, f)
		return v
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, sc := range []string{"mutate-6K", "validate-6K"} {
		r := ratio(get(ditto, sc, fClosedRPS), get(peer, sc, fClosedRPS))
		ts = append(ts, target{fmt.Sprintf("%s throughput ≥ 5× the peer's", strings.TrimSuffix(sc, "-6K")), fmt.Sprintf("%.1f×", r), r >= 5,
			fmt.Sprintf("%.0f vs %.0f req/s", get(ditto, sc, fClosedRPS), get(peer, sc, fClosedRPS))})
	}
	{
		r := ratio(get(ditto, "mutate-6K", fClosedCPU), get(floor, "mutate-6K", fClosedCPU))
		ro := ratio(get(ditto, "mutate-6K", fOpenCPU), get(floor, "mutate-6K", fOpenCPU))
		ts = append(ts, target{"server CPU per mutate request ≤ 4× the floor's", fmt.Sprintf("%.1f× (closed loop)", r), r <= 4,
			fmt.Sprintf("%.1f vs %.1f µs; at the fixed rate %.1f× (%.1f vs %.1f µs)", get(ditto, "mutate-6K", fClosedCPU)/1e3, get(floor, "mutate-6K", fClosedCPU)/1e3,
				ro, get(ditto, "mutate-6K", fOpenCPU)/1e3, get(floor, "mutate-6K", fOpenCPU)/1e3)})
	}
	for _, sc := range scenarios {
		// The floor's own p99 against the same figure shows when the target
		// is below what this machine's network path can resolve.
		a, bp, fl := get(ditto, sc.name, fP99), get(peer, sc.name, fP50), get(floor, sc.name, fP99)
		ts = append(ts, target{fmt.Sprintf("%s: p99 at %d/s ≤ the peer's p50", sc.name, c.rates[sc.name]), fmt.Sprintf("%s vs %s", msf(a), msf(bp)), a <= bp,
			fmt.Sprintf("the floor's own p99: %s", msf(fl))})
		if c.busy > 0 {
			a, bp, fl := get(ditto, sc.name, fBusyP99), get(peer, sc.name, fBusyP50), get(floor, sc.name, fBusyP99)
			ts = append(ts, target{fmt.Sprintf("%s: p99 at %d/s (busy) ≤ the peer's p50", sc.name, c.busyRates[sc.name]), fmt.Sprintf("%s vs %s", msf(a), msf(bp)), a <= bp,
				fmt.Sprintf("the floor's own p99: %s", msf(fl))})
		}
	}
	for _, sc := range scenarios {
		a, bp := get(ditto, sc.name, fRSS), get(peer, sc.name, fRSS)
		ts = append(ts, target{fmt.Sprintf("%s: peak RSS ≤ the peer's", sc.name), fmt.Sprintf("%.1f vs %.1f MiB", a/1024, bp/1024), a <= bp, ""})
	}
	{
		small := get(ditto, "mutate-6K", fClosedCPU) / float64(len(bodies.Create))
		large := get(ditto, "mutate-100K", fClosedCPU) / float64(len(bodies.Large))
		ps := get(peer, "mutate-6K", fClosedCPU) / float64(len(bodies.Create))
		pl := get(peer, "mutate-100K", fClosedCPU) / float64(len(bodies.Large))
		r := ratio(large, small)
		ts = append(ts, target{"100 KB body: CPU per byte ≤ 1.25× the 6 KB body's (no worse than linear)", fmt.Sprintf("%.2f×", r), r <= 1.25,
			fmt.Sprintf("%.2f vs %.2f ns/byte; %.1f× the CPU for %.1f× the bytes (the peer: %.2f vs %.2f ns/byte)",
				large, small, get(ditto, "mutate-100K", fClosedCPU)/get(ditto, "mutate-6K", fClosedCPU),
				float64(len(bodies.Large))/float64(len(bodies.Create)), pl, ps)})
	}
	if v, ok := median(samples, "dittofs-webhook (log warn)", "mutate-6K", fClosedRPS); ok {
		p("\nLog level: dittofs-webhook at --log-level warn (no per-decision line) did %.0f req/s on mutate-6K vs %.0f at info (%+.0f%%).\n",
			v, get(ditto, "mutate-6K", fClosedRPS), 100*(v/get(ditto, "mutate-6K", fClosedRPS)-1))
	}
	if v, ok := median(samples, "dittofs-webhook (log info)", "mutate-6K", fClosedRPS); ok {
		p("\nLog level: dittofs-webhook at --log-level info (one line per decision) did %.0f req/s on mutate-6K vs %.0f at warn (%+.0f%%).\n",
			v, get(ditto, "mutate-6K", fClosedRPS), 100*(v/get(ditto, "mutate-6K", fClosedRPS)-1))
	}

	p("\n| target | measured | result | detail |\n|---|---|---|---|\n")
	for _, t := range ts {
		res := "PASS"
		if !t.pass {
			res = "FAIL"
		}
		p("| %s | %s | %s | %s |\n", t.name, t.value, res, t.detail)
	}
	return b.String()
}

func maxForeign(samples []sample) float64 {
	m := 0.0
	for _, s := range samples {
		m = max(m, s.Foreign)
	}
	return m
}

func medianForeign(samples []sample) float64 {
	var v []float64
	for _, s := range samples {
		v = append(v, s.Foreign)
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func msf(ns float64) string { return fmt.Sprintf("%.2f ms", ns/1e6) }
