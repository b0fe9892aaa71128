package main

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
)

type reporter struct {
	o            *options
	samples      []sample
	anyDisturbed bool
}

// summary holds the median of each figure of one server's loops of one kind
// (closed, open, busy) on one body over the rounds: over those other work
// left alone, or over all when there is none (then disturbed).
type summary struct {
	loop
	n         int
	disturbed bool
}

func (r *reporter) med(server, body, phase string) summary {
	var all, quiet []loop
	for _, s := range r.samples {
		if l, ok := s.Loops[phase]; ok && s.Server == server && s.Body == body {
			all = append(all, l)
			if l.Foreign <= r.o.disturbed {
				quiet = append(quiet, l)
			}
		}
	}
	m := summary{n: len(all), disturbed: len(quiet) == 0}
	if m.disturbed {
		quiet = all
	}
	out := reflect.ValueOf(&m.loop).Elem()
	for i := range out.NumField() {
		var v []float64
		for _, l := range quiet {
			if f := reflect.ValueOf(l).Field(i); f.CanFloat() {
				v = append(v, f.Float())
			} else if f.CanInt() {
				v = append(v, float64(f.Int()))
			}
		}
		if f := out.Field(i); f.CanFloat() {
			f.SetFloat(benchkit.Median(v))
		} else if f.CanInt() {
			f.SetInt(int64(benchkit.Median(v)))
		}
	}
	return m
}

// cell prints a median, marked ‡ when every round of it was disturbed.
func (r *reporter) cell(m summary, format string, v any) string {
	if m.disturbed {
		r.anyDisturbed = true
		return fmt.Sprintf(format, v) + "‡"
	}
	return fmt.Sprintf(format, v)
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
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
	p("\n## Load benchmark: dittofs-webhook vs controller-runtime vs floor\n\n- %s\n", s.Describe())
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
			c, op, bu := r.med(d.Label, bd.name, "closed"), r.med(d.Label, bd.name, "open"), r.med(d.Label, bd.name, "busy")
			if c.n == 0 {
				continue
			}
			rps := r.cell(c, "%.0f", c.RPS)
			if c.GenCPU > 0.9 {
				rps, genBound = rps+"†", true
			}
			rows = append(rows, []string{bd.name, d.Label, rps, r.cell(c, "%.1f", us(c.CPUPerReq)), r.cell(op, "%.1f", us(op.CPUPerReq)),
				fmt.Sprintf("%d/s", op.Rate), r.cell(op, "%s", benchkit.Ms(op.P50)), r.cell(op, "%s", benchkit.Ms(op.P99)),
				r.cell(op, "%s", benchkit.Ms(op.Max)), r.cell(op, "%.1f", float64(op.PeakRSSKB)/1024)})
			busyRows = append(busyRows, []string{bd.name, d.Label, fmt.Sprintf("%d/s", bu.Rate), r.cell(bu, "%s", benchkit.Ms(bu.P50)),
				r.cell(bu, "%s", benchkit.Ms(bu.P99)), r.cell(bu, "%s", benchkit.Ms(bu.Max)), r.cell(bu, "%.1f", us(bu.CPUPerReq))})
		}
	}
	benchkit.Table(&b, 2, []string{"body", "server", "max req/s (closed)", "CPU µs/req (closed)", "CPU µs/req (open)",
		"open rate", "p50", "p99", "max", "peak RSS MiB"}, rows)
	if o.busy > 0 {
		p("\nLatency at a busy fixed rate, %.0f%% of the slowest server's closed-loop rate (open loop, from the intended "+
			"send time):\n", 100*o.busy)
		benchkit.Table(&b, 2, []string{"body", "server", "busy rate", "p50", "p99", "max", "CPU µs/req"}, busyRows)
	}
	if genBound {
		p("\n† the load generator's core was over 90%% busy: that server's closed-loop rate is a lower bound " +
			"(the generator, not the server, was the limit).\n")
	}
	var maxLag, maxDiff time.Duration
	quiet := map[string]int{}
	for _, sm := range r.samples {
		for ph, l := range sm.Loops {
			if l.Errors > 0 {
				p("\nFailed requests: round %d, %s, %s, %s loop: %d errors (%s).\n", sm.Round, sm.Body, sm.Server, ph, l.Errors, l.FirstError)
			}
			if l.Foreign <= o.disturbed {
				quiet[ph]++
			}
		}
		if l := sm.Loops["open"]; l.Foreign <= o.disturbed {
			maxLag, maxDiff = max(maxLag, l.MaxSendLag), max(maxDiff, l.P99-l.VegetaP99)
		}
	}
	if r.anyDisturbed {
		p("\n‡ every round of this figure was disturbed by other work on the machine (over %.0f%% of a measured core): "+
			"not a clean measurement.\n", 100*o.disturbed)
	}
	p("\nMedians are over the rounds that other work on the machine left alone (at most %.0f%% of the server's or the "+
		"generator's core): %d of %d closed-loop runs and %d of %d open-loop runs.\n",
		100*o.disturbed, quiet["closed"], len(r.samples), quiet["open"], len(r.samples))
	p("\nOpen-loop latency is counted from each request's intended send time, which vegeta does not do (it stamps a "+
		"result when a worker starts the request), and sends are paced with a timerfd (vegeta's pacer sleeps, ~1 ms late): "+
		"see docs/performance.md. Largest send lag in an undisturbed run: %s; largest p99 difference from vegeta's own "+
		"figure: %s.\n", benchkit.Ms(maxLag), benchkit.Ms(maxDiff))

	const ditto, peer, floor = "dittofs-webhook", "controller-runtime", "floor"
	var targets [][]string
	target := func(name, value string, pass bool, detail string) {
		targets = append(targets, []string{name, value, benchkit.PassFail(pass), detail})
	}
	for _, bd := range []string{"mutate-6K", "validate-6K"} {
		a, pr := r.med(ditto, bd, "closed").RPS, r.med(peer, bd, "closed").RPS
		target(strings.TrimSuffix(bd, "-6K")+" throughput ≥ 5× the peer's", fmt.Sprintf("%.1f×", ratio(a, pr)), ratio(a, pr) >= 5,
			fmt.Sprintf("%.0f vs %.0f req/s", a, pr))
	}
	cpu := func(server, body, phase string) float64 { return us(r.med(server, body, phase).CPUPerReq) }
	rc := ratio(cpu(ditto, "mutate-6K", "closed"), cpu(floor, "mutate-6K", "closed"))
	target("server CPU per mutate request ≤ 4× the floor's", fmt.Sprintf("%.1f× (closed loop)", rc), rc <= 4,
		fmt.Sprintf("%.1f vs %.1f µs; at the fixed rate %.1f× (%.1f vs %.1f µs)", cpu(ditto, "mutate-6K", "closed"),
			cpu(floor, "mutate-6K", "closed"), ratio(cpu(ditto, "mutate-6K", "open"), cpu(floor, "mutate-6K", "open")),
			cpu(ditto, "mutate-6K", "open"), cpu(floor, "mutate-6K", "open")))
	for _, bd := range bodies {
		// The floor's own p99 shows when the target is below what this
		// machine's network path can resolve.
		for _, ph := range []string{"open", "busy"} {
			if a, pr := r.med(ditto, bd.name, ph), r.med(peer, bd.name, ph); a.n > 0 {
				target(fmt.Sprintf("%s: p99 at %d/s%s ≤ the peer's p50", bd.name, a.Rate, map[string]string{"busy": " (busy)"}[ph]),
					benchkit.Ms(a.P99)+" vs "+benchkit.Ms(pr.P50), a.P99 <= pr.P50, "the floor's own p99: "+benchkit.Ms(r.med(floor, bd.name, ph).P99))
			}
		}
	}
	for _, bd := range bodies {
		a, pr := float64(r.med(ditto, bd.name, "open").PeakRSSKB)/1024, float64(r.med(peer, bd.name, "open").PeakRSSKB)/1024
		target(bd.name+": peak RSS ≤ the peer's", fmt.Sprintf("%.1f vs %.1f MiB", a, pr), a <= pr, "")
	}
	small, large := float64(len(s.Bodies.Create)), float64(len(s.Bodies.Large))
	perByte := func(server, body string, size float64) float64 { return 1e3 * cpu(server, body, "closed") / size }
	rb := ratio(perByte(ditto, "mutate-100K", large), perByte(ditto, "mutate-6K", small))
	target("100 KB body: CPU per byte ≤ 1.25× the 6 KB body's (no worse than linear)", fmt.Sprintf("%.2f×", rb), rb <= 1.25,
		fmt.Sprintf("%.2f vs %.2f ns/byte; %.1f× the CPU for %.1f× the bytes (the peer: %.2f vs %.2f ns/byte)",
			perByte(ditto, "mutate-100K", large), perByte(ditto, "mutate-6K", small),
			ratio(cpu(ditto, "mutate-100K", "closed"), cpu(ditto, "mutate-6K", "closed")), large/small,
			perByte(peer, "mutate-100K", large), perByte(peer, "mutate-6K", small)))
	for _, d := range servers[3:] {
		if v, at := r.med(d.Label, "mutate-6K", "closed"), r.med(ditto, "mutate-6K", "closed").RPS; v.n > 0 {
			p("\nLog level: %s did %.0f req/s on mutate-6K vs %.0f at %s (%+.0f%%).\n", d.Label, v.RPS, at, o.LogLevel, 100*(ratio(v.RPS, at)-1))
		}
	}
	benchkit.Table(&b, 4, []string{"target", "measured", "result", "detail"}, targets)
	return b.String()
}
