// Command loadbench is the side-by-side load comparison of `make bench`:
// dittofs-webhook (the real binary), the same policy written the usual
// controller-runtime way (tests/bench/peer) and a floor that decodes nothing
// (tests/bench/floor), each pinned to one core with GOMAXPROCS=1 while the
// load generator (vegeta's library, this process) runs on the other core.
//
// For each round, each body and each server (interleaved: A, B, C, A, B, C, …)
// it measures, over HTTPS keep-alive HTTP/1.1:
//   - closed loop: the most requests per second W connections get (vegeta with
//     rate 0 and W workers), and the server's CPU per request;
//   - open loop: latency at a fixed rate below every server's capacity, from
//     each request's intended send time (so a late send counts against the
//     server, not hidden: no coordinated omission), and CPU per request;
//   - the server's peak RSS (VmHWM).
//
// It prints the medians of the rounds as a markdown table and checks the
// targets (PASS/FAIL). Before measuring, it checks that the peer and
// dittofs-webhook give equivalent answers on every benchmark body.
//
// Run it from anywhere in the repository: go run ./cmd/loadbench (in tests/bench).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/webhook"
)

type options struct {
	benchkit.Flags
	closed, open, warmup time.Duration
	workers              int
	rates, busyRates     map[string]int // open-loop and busy rates by body: from -rates, or set in round 1
	busy                 float64
	logCompare           bool
	bodies               string
	serverCPU, genCPU    string
	jsonOut              string
	quietWait            time.Duration
	disturbed            float64
	dittoEnv             []string
}

type body struct {
	name, path string
	data       []byte
}

// serverDef is a server under test, measured on every body or only one.
type serverDef struct {
	benchkit.ServerSpec
	only string
}

func main() {
	o := options{rates: map[string]int{}, busyRates: map[string]int{}}
	o.Register(3, 15*time.Minute)
	flag.DurationVar(&o.closed, "closed", 5*time.Second, "closed-loop duration per server, body and round")
	flag.DurationVar(&o.open, "open", 5*time.Second, "open-loop (fixed rate) duration per server, body and round")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up before each measurement (not counted)")
	flag.IntVar(&o.workers, "workers", 8, "closed-loop concurrency: vegeta workers, each with its own keep-alive connection")
	flag.Func("rates", "fixed open-loop rates, e.g. mutate-6K=500,validate-6K=500,mutate-100K=100 "+
		"(default: half the slowest server's closed-loop rate in round 1, rounded down)", func(s string) error {
		for kv := range strings.SplitSeq(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				o.rates[k] = n
			} else {
				return fmt.Errorf("bad entry %q", kv)
			}
		}
		return nil
	})
	flag.BoolVar(&o.logCompare, "log-compare", true, "also run dittofs-webhook at the other log level (info, warn) on "+
		"the 6 KB mutate body, to show what the per-decision log line costs")
	flag.StringVar(&o.serverCPU, "server-cpu", "1", "CPU the servers are pinned to (taskset -c); empty: not pinned")
	flag.StringVar(&o.genCPU, "generator-cpu", "0", "CPU the load generator is pinned to; empty: not pinned")
	flag.StringVar(&o.jsonOut, "json", "", "also write every measurement as JSON to this file")
	flag.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "before each measurement, wait up to this long for "+
		"other work on the machine to leave both cores mostly idle (2 min in all per run)")
	flag.Float64Var(&o.disturbed, "disturbed", 0.25, "redo a run (once) when other work took more than this share of "+
		"the server's or the generator's core, and leave such runs out of the medians")
	flag.Float64Var(&o.busy, "busy", 0.75, "also measure latency at this fraction of the slowest server's closed-loop rate (0: skip)")
	flag.StringVar(&o.bodies, "bodies", "", "measure only these bodies, comma-separated (e.g. validate-6K), for experiments; default all")
	flag.Func("ditto-env", "extra environment of dittofs-webhook, comma-separated (e.g. GOGC=400), for experiments",
		func(s string) error { o.dittoEnv = strings.Split(s, ","); return nil })
	flag.Parse()
	if len(benchkit.CPUBusy()) < 2 && (o.serverCPU != "" || o.genCPU != "") {
		fmt.Fprintln(os.Stderr, "loadbench: fewer than 2 CPUs: the servers and the generator share the CPU "+
			"(figures are not comparable with pinned runs)")
		o.serverCPU, o.genCPU = "", ""
	}
	benchkit.Main("loadbench", &o.Flags, o.genCPU, func(ctx context.Context, s *benchkit.Setup) (string, error) {
		return o.run(ctx, s)
	})
}

func (o *options) run(ctx context.Context, s *benchkit.Setup) (string, error) {
	started := time.Now()
	bodies := []body{
		{"mutate-6K", webhook.MutatePath, s.Bodies.Create},
		{"validate-6K", webhook.ValidatePath, s.Bodies.Validate},
		{"mutate-100K", webhook.MutatePath, s.Bodies.Large},
	}
	if o.bodies != "" {
		bodies = slices.DeleteFunc(bodies, func(b body) bool { return !slices.Contains(strings.Split(o.bodies, ","), b.name) })
		if len(bodies) == 0 {
			return "", fmt.Errorf("-bodies %q names none of the bodies", o.bodies)
		}
	}
	servers := []serverDef{
		{ServerSpec: benchkit.ServerSpec{Kind: benchkit.Ditto, LogLevel: o.LogLevel}},
		{ServerSpec: benchkit.ServerSpec{Kind: benchkit.Peer, LogLevel: o.LogLevel}},
		{ServerSpec: benchkit.ServerSpec{Kind: benchkit.Floor}},
	}
	if other := map[string]string{"info": "warn", "warn": "info"}[o.LogLevel]; o.logCompare && other != "" {
		servers = append(servers, serverDef{ServerSpec: benchkit.ServerSpec{Kind: benchkit.Ditto,
			Label: "dittofs-webhook (log " + other + ")", LogLevel: other}, only: "mutate-6K"})
	}
	for i := range servers {
		servers[i].CPU = o.serverCPU
		if servers[i].Kind == benchkit.Ditto {
			servers[i].Env = o.dittoEnv
		}
		if servers[i].Label == "" {
			servers[i].Label = string(servers[i].Kind)
		}
	}

	benchkit.Logf("checking that the peer and dittofs-webhook answer alike")
	equiv, err := checkEquivalence(s, servers[:3], bodies)
	if err != nil {
		return "", fmt.Errorf("equivalence check: %w", err)
	}
	var samples []sample
	for round := 1; round <= o.Rounds; round++ {
		for _, b := range bodies {
			defs := slices.DeleteFunc(slices.Clone(servers), func(d serverDef) bool { return d.only != "" && d.only != b.name })
			got, err := o.measure(ctx, s, round, b, defs)
			if err != nil {
				return "", err
			}
			samples = append(samples, got...)
		}
	}
	if o.jsonOut != "" {
		j, _ := json.MarshalIndent(samples, "", "  ")
		if err := os.WriteFile(o.jsonOut, j, 0o644); err != nil {
			return "", err
		}
	}
	r := &reporter{o: o, samples: samples}
	return r.report(s, bodies, servers, equiv, time.Since(started)), nil
}

// checkEquivalence sends every body to dittofs-webhook, the peer and the
// floor (unpinned) and requires the peer and dittofs-webhook to agree
// (benchkit.Agree) and the floor to allow.
func checkEquivalence(s *benchkit.Setup, defs []serverDef, bodies []body) ([]string, error) {
	var srvs []*benchkit.Server
	defer func() {
		for _, srv := range srvs {
			_ = srv.Stop()
		}
	}()
	for _, d := range defs {
		d.CPU, d.LogLevel = "", "warn"
		srv, err := s.Start(d.ServerSpec)
		if err != nil {
			return nil, err
		}
		srvs = append(srvs, srv)
	}
	client := s.NewClient(2)
	defer client.CloseIdleConnections()
	var lines []string
	for _, b := range bodies {
		var answers []*admissionv1.AdmissionResponse
		for _, srv := range srvs {
			rv, _, err := benchkit.Post(client, srv.URL(b.path), b.data)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", srv.Label, b.name, err)
			}
			answers = append(answers, rv.Response)
		}
		line, err := benchkit.Agree(b.data, answers[0], answers[1])
		if err == nil && !answers[2].Allowed {
			err = errors.New("the floor did not allow")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		lines = append(lines, b.name+": "+line)
		benchkit.Logf("  %s", lines[len(lines)-1])
	}
	return lines, nil
}

// live is a server being measured.
type live struct {
	srv    *benchkit.Server
	client *http.Client
	s      *sample
}

// measure runs one round of one body on every server: all are started
// (pinned to the server CPU); each in turn gets a warm-up and the closed
// loop, then each in turn the open loop, then the busy open loop; then they
// stop. The first round sets the open-loop rates not given by -rates.
func (o *options) measure(ctx context.Context, s *benchkit.Setup, round int, b body, defs []serverDef) ([]sample, error) {
	var lives []live
	defer func() {
		for _, l := range lives {
			l.client.CloseIdleConnections()
			_ = l.srv.Stop()
		}
	}()
	for _, d := range defs {
		srv, err := s.Start(d.ServerSpec)
		if err != nil {
			return nil, err
		}
		lives = append(lives, live{srv, s.NewClient(o.workers * 2), &sample{Round: round, Server: d.Label, Body: b.name, Loops: map[string]loop{}}})
	}
	for _, ph := range []struct {
		name  string
		share float64 // of the slowest server's closed-loop rate; 0: closed loop
		rates map[string]int
		dur   time.Duration
	}{{"closed", 0, nil, o.closed}, {"open", 0.5, o.rates, o.open}, {"busy", o.busy, o.busyRates, o.open}} {
		rate := 0
		if ph.rates != nil {
			if ph.share <= 0 {
				continue
			}
			if rate = ph.rates[b.name]; rate == 0 {
				slowest := math.Inf(1)
				for _, l := range lives {
					slowest = min(slowest, l.s.Loops["closed"].RPS)
				}
				rate = niceRate(slowest * ph.share)
				ph.rates[b.name] = rate
			}
		}
		for _, l := range lives {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if rate == 0 {
				if w, err := o.attack(l, b, 0, o.warmup); err != nil || w.Errors > 0 {
					return nil, fmt.Errorf("%s warm-up: %v %s", l.srv.Label, err, w.FirstError)
				}
			}
			got, err := o.loop(ctx, l, b, rate, ph.dur, ph.name)
			if err != nil {
				return nil, err
			}
			l.s.Loops[ph.name] = got
			benchkit.Logf("round %d %-11s %-34s %s: %s", round, b.name, l.srv.Label, ph.name, got)
		}
	}
	out := make([]sample, len(lives))
	for i, l := range lives {
		out[i] = *l.s
	}
	return out, nil
}

// redoBudget bounds the time spent redoing disturbed runs.
var redoBudget = 2 * time.Minute

// loop measures one closed-loop (rate 0) or open-loop run once the machine is
// quiet, on fresh keep-alive connections (a short unmeasured closed loop opens
// them: the server may have been idle for a while). A run with failed
// requests, or one other work disturbed (within the redo budget), is done once
// more; failures left are kept for the report, unless the server died.
func (o *options) loop(ctx context.Context, l live, b body, rate int, dur time.Duration, what string) (loop, error) {
	for try := 0; ; try++ {
		benchkit.WaitQuiet(ctx, o.quietWait)
		l.client.CloseIdleConnections()
		res, err := o.attack(l, b, 0, 300*time.Millisecond)
		if err == nil {
			res, err = o.attack(l, b, rate, dur)
		}
		if err == nil {
			res.PeakRSSKB, err = benchkit.PeakRSSKB(l.srv.Pid())
		}
		if err == nil && !l.srv.Alive() {
			err = errors.New("the server exited")
		}
		if err != nil {
			return res, fmt.Errorf("%s %s: %w; server log tail:\n%s", l.srv.Label, what, err, l.srv.LogTail(20))
		}
		disturbed := res.Foreign > o.disturbed && redoBudget > 0
		if try == 1 || res.Errors == 0 && !disturbed {
			return res, nil
		}
		if disturbed {
			redoBudget -= dur
		}
		benchkit.Logf("%s %s %s: %d errors (%s), other work %.0f%% of a core: again; server log tail:\n%s",
			b.name, l.srv.Label, what, res.Errors, res.FirstError, 100*res.Foreign, l.srv.LogTail(10))
	}
}

// niceRate rounds r down to a round figure: to a multiple of 5 below 100, of
// half a power of ten above (617 → 600, 1850 → 1500).
func niceRate(r float64) int {
	if r < 10 {
		return max(1, int(r))
	}
	step := 5.0
	if r >= 100 {
		step = math.Pow(10, math.Floor(math.Log10(r))) / 2
	}
	return int(math.Floor(r/step) * step)
}
