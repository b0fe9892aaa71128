package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
)

// figure is one figure of a sample: the loop it is measured in, how to read
// it, and how the report prints it (format of the value times scale).
type figure struct {
	phase  string
	get    func(loop) float64
	format string
	scale  float64
}

func durFigure(phase, format string, scale float64, f func(loop) time.Duration) figure {
	return figure{phase, func(l loop) float64 { return float64(f(l)) }, format, scale}
}

func cpuPerReq(phase string) figure {
	return durFigure(phase, "%.1f", 1e-3, func(l loop) time.Duration { return l.CPUPerReq })
}
func p50(phase string) figure {
	return durFigure(phase, "%.2f ms", 1e-6, func(l loop) time.Duration { return l.P50 })
}
func p99(phase string) figure {
	return durFigure(phase, "%.2f ms", 1e-6, func(l loop) time.Duration { return l.P99 })
}
func maxLatency(phase string) figure {
	return durFigure(phase, "%.2f ms", 1e-6, func(l loop) time.Duration { return l.Max })
}

var (
	rps    = figure{"closed", func(l loop) float64 { return l.RPS }, "%.0f", 1}
	genCPU = figure{"closed", func(l loop) float64 { return l.GenCPU }, "%.2f", 1}
	// VmHWM read after the open loop: the peak over the closed and open loops.
	peakRSS = figure{"open", func(l loop) float64 { return float64(l.PeakRSSKB) }, "%.1f", 1.0 / 1024}
)

type reporter struct {
	o            *options
	samples      []sample
	anyDisturbed bool
}

// median of f over the rounds of one server and body that other work left
// alone, or over all when there is none (disturbed); ok is false without any.
func (r *reporter) median(server, body string, f figure) (v float64, disturbed, ok bool) {
	var all, quiet []float64
	for _, s := range r.samples {
		l, found := s.Loops[f.phase]
		if s.Server != server || s.Body != body || !found {
			continue
		}
		all = append(all, f.get(l))
		if l.Foreign <= r.o.disturbed {
			quiet = append(quiet, f.get(l))
		}
	}
	if len(quiet) > 0 {
		return benchkit.Median(quiet), false, true
	}
	return benchkit.Median(all), true, len(all) > 0
}

func (r *reporter) get(server, body string, f figure) float64 {
	v, _, _ := r.median(server, body, f)
	return v
}

// cell prints the median of f, marked ‡ when every round of it was disturbed.
func (r *reporter) cell(server, body string, f figure) string {
	v, disturbed, _ := r.median(server, body, f)
	s := fmt.Sprintf(f.format, v*f.scale)
	if disturbed {
		r.anyDisturbed = true
		s += "‡"
	}
	return s
}

func (r *reporter) report(s *benchkit.Setup, bodies []body, servers []serverDef, equiv []string, took time.Duration) string {
	o := r.o
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	var foreign []float64
	maxForeign := 0.0
	for _, s := range r.samples {
		foreign = append(foreign, max(s.Loops["closed"].Foreign, s.Loops["open"].Foreign))
		maxForeign = max(maxForeign, foreign[len(foreign)-1])
	}
	load, _ := os.ReadFile("/proc/loadavg")
	p("\n## Load benchmark: dittofs-webhook vs controller-runtime vs floor\n\n")
	p("- date: %s; %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), s.Describe())
	p("- each server pinned to CPU %s with GOMAXPROCS=1, the load generator (vegeta v12.13.0 lib) to CPU %s; "+
		"HTTPS, HTTP/1.1 keep-alive, loopback\n", o.serverCPU, o.genCPU)
	p("- closed loop: %d connections, rate 0, %s per run after a %s warm-up; open loop: fixed rate for %s, "+
		"latency from the intended send time\n", o.workers, o.closed, o.warmup, o.open)
	p("- log level of dittofs-webhook and the peer: %s (one line per decision at info)\n", o.LogLevel)
	if len(o.dittoEnv) > 0 {
		p("- experiment: dittofs-webhook ran with %s\n", strings.Join(o.dittoEnv, " "))
	}
	p("- %d rounds, servers interleaved, medians shown; bodies: mutate-6K %d B, validate-6K %d B, mutate-100K %d B\n",
		o.Rounds, len(s.Bodies.Create), len(s.Bodies.Validate), len(s.Bodies.Large))
	p("- run took %s; load average at the end: %s; other work took at most %.0f%% of a measured core in any run "+
		"(median run %.0f%%)\n", took.Round(time.Second), strings.TrimSpace(string(load)),
		100*maxForeign, 100*benchkit.Median(foreign))
	p("\nEquivalence check (dittofs-webhook vs the peer, same bodies):\n")
	for _, l := range equiv {
		p("- %s\n", l)
	}

	genBound := false
	var rows, busyRows [][]string
	for _, bd := range bodies {
		for _, d := range servers {
			if _, _, ok := r.median(d.Label, bd.name, rps); !ok {
				continue
			}
			c := func(f figure) string { return r.cell(d.Label, bd.name, f) }
			rpsCell := c(rps)
			if r.get(d.Label, bd.name, genCPU) > 0.9 {
				rpsCell, genBound = rpsCell+"†", true
			}
			rows = append(rows, []string{bd.name, d.Label, rpsCell, c(cpuPerReq("closed")), c(cpuPerReq("open")),
				fmt.Sprintf("%d/s", o.rates[bd.name]), c(p50("open")), c(p99("open")), c(maxLatency("open")), c(peakRSS)})
			if o.busy > 0 {
				busyRows = append(busyRows, []string{bd.name, d.Label, fmt.Sprintf("%d/s", o.busyRates[bd.name]),
					c(p50("busy")), c(p99("busy")), c(maxLatency("busy")), c(cpuPerReq("busy"))})
			}
		}
	}
	benchkit.Table(&b, 2, []string{"body", "server", "max req/s (closed)", "CPU µs/req (closed)", "CPU µs/req (open)",
		"open rate", "p50", "p99", "max", "peak RSS MiB"}, rows)
	if o.busy > 0 {
		p("\nLatency at a busy fixed rate, %.0f%% of the slowest server's closed-loop rate (open loop, from the intended send time):\n", 100*o.busy)
		benchkit.Table(&b, 2, []string{"body", "server", "busy rate", "p50", "p99", "max", "CPU µs/req"}, busyRows)
	}
	if genBound {
		p("\n† the load generator's core was over 90%% busy: that server's closed-loop rate is a lower bound " +
			"(the generator, not the server, was the limit).\n")
	}
	for _, sm := range r.samples {
		for _, ph := range []string{"closed", "open", "busy"} {
			if l := sm.Loops[ph]; l.Errors > 0 {
				p("\nFailed requests: round %d, %s, %s, %s loop: %d errors (%s).\n", sm.Round, sm.Body, sm.Server, ph, l.Errors, l.FirstError)
			}
		}
	}
	if r.anyDisturbed {
		p("\n‡ every round of this figure was disturbed by other work on the machine (over %.0f%% of a measured core): "+
			"not a clean measurement.\n", 100*o.disturbed)
	}
	var maxLag, maxDiff time.Duration
	quiet := map[string]int{}
	for _, sm := range r.samples {
		for ph, l := range sm.Loops {
			if l.Foreign <= o.disturbed {
				quiet[ph]++
			}
		}
		if l := sm.Loops["open"]; l.Foreign <= o.disturbed {
			maxLag, maxDiff = max(maxLag, l.MaxSendLag), max(maxDiff, l.P99-l.VegetaP99)
		}
	}
	p("\nMedians are over the rounds that other work on the machine left alone (at most %.0f%% of the server's or the "+
		"generator's core): %d of %d closed-loop runs and %d of %d open-loop runs.\n",
		100*o.disturbed, quiet["closed"], len(r.samples), quiet["open"], len(r.samples))
	p("\nOpen-loop latency is counted from each request's intended send time. vegeta itself stamps a result when a worker "+
		"starts the request (not the intended time), but it never waits for a busy connection (it starts another worker), "+
		"so a slow server cannot delay the next send; only the generator being late could hide latency, and the harness "+
		"adds that lateness back. The harness paces with a timerfd: vegeta's own pacer sleeps with time.Sleep, which wakes "+
		"~1 ms late on this kernel, bunching sends and adding up to a millisecond to every figure. Largest send lag in an "+
		"undisturbed run: %s; largest p99 difference from vegeta's own figure: %s.\n", benchkit.Ms(maxLag), benchkit.Ms(maxDiff))

	const ditto, peer, floor = "dittofs-webhook", "controller-runtime", "floor"
	var targets [][]string
	target := func(name, value string, pass bool, detail string) {
		targets = append(targets, []string{name, value, benchkit.PassFail(pass), detail})
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, bd := range []string{"mutate-6K", "validate-6K"} {
		a, pr := r.get(ditto, bd, rps), r.get(peer, bd, rps)
		target(fmt.Sprintf("%s throughput ≥ 5× the peer's", strings.TrimSuffix(bd, "-6K")), fmt.Sprintf("%.1f×", ratio(a, pr)),
			ratio(a, pr) >= 5, fmt.Sprintf("%.0f vs %.0f req/s", a, pr))
	}
	closedCPU := func(server, body string) float64 { return r.get(server, body, cpuPerReq("closed")) / 1e3 }
	openCPU := func(server, body string) float64 { return r.get(server, body, cpuPerReq("open")) / 1e3 }
	rc, ro := ratio(closedCPU(ditto, "mutate-6K"), closedCPU(floor, "mutate-6K")), ratio(openCPU(ditto, "mutate-6K"), openCPU(floor, "mutate-6K"))
	target("server CPU per mutate request ≤ 4× the floor's", fmt.Sprintf("%.1f× (closed loop)", rc), rc <= 4,
		fmt.Sprintf("%.1f vs %.1f µs; at the fixed rate %.1f× (%.1f vs %.1f µs)", closedCPU(ditto, "mutate-6K"),
			closedCPU(floor, "mutate-6K"), ro, openCPU(ditto, "mutate-6K"), openCPU(floor, "mutate-6K")))
	ms := func(ns float64) string { return benchkit.Ms(time.Duration(ns)) }
	for _, bd := range bodies {
		// The floor's own p99 shows when the target is below what this
		// machine's network path can resolve.
		for _, ph := range []struct {
			name string
			rate int
		}{{"open", o.rates[bd.name]}, {"busy", o.busyRates[bd.name]}} {
			if ph.name == "busy" && o.busy <= 0 {
				continue
			}
			a, pr := r.get(ditto, bd.name, p99(ph.name)), r.get(peer, bd.name, p50(ph.name))
			target(fmt.Sprintf("%s: p99 at %d/s%s ≤ the peer's p50", bd.name, ph.rate, map[string]string{"busy": " (busy)"}[ph.name]),
				ms(a)+" vs "+ms(pr), a <= pr, "the floor's own p99: "+ms(r.get(floor, bd.name, p99(ph.name))))
		}
	}
	for _, bd := range bodies {
		a, pr := r.get(ditto, bd.name, peakRSS)/1024, r.get(peer, bd.name, peakRSS)/1024
		target(bd.name+": peak RSS ≤ the peer's", fmt.Sprintf("%.1f vs %.1f MiB", a, pr), a <= pr, "")
	}
	perByte := func(server, body string, size int) float64 {
		return r.get(server, body, cpuPerReq("closed")) / float64(size)
	}
	small, large := perByte(ditto, "mutate-6K", len(s.Bodies.Create)), perByte(ditto, "mutate-100K", len(s.Bodies.Large))
	target("100 KB body: CPU per byte ≤ 1.25× the 6 KB body's (no worse than linear)", fmt.Sprintf("%.2f×", ratio(large, small)),
		ratio(large, small) <= 1.25, fmt.Sprintf("%.2f vs %.2f ns/byte; %.1f× the CPU for %.1f× the bytes (the peer: %.2f vs %.2f ns/byte)",
			large, small, ratio(closedCPU(ditto, "mutate-100K"), closedCPU(ditto, "mutate-6K")),
			float64(len(s.Bodies.Large))/float64(len(s.Bodies.Create)),
			perByte(peer, "mutate-100K", len(s.Bodies.Large)), perByte(peer, "mutate-6K", len(s.Bodies.Create))))
	for _, d := range servers[3:] {
		if v, _, ok := r.median(d.Label, "mutate-6K", rps); ok {
			at := r.get(ditto, "mutate-6K", rps)
			p("\nLog level: %s did %.0f req/s on mutate-6K vs %.0f at %s (%+.0f%%).\n", d.Label, v, at, o.LogLevel, 100*(ratio(v, at)-1))
		}
	}
	benchkit.Table(&b, 4, []string{"target", "measured", "result", "detail"}, targets)
	return b.String()
}
