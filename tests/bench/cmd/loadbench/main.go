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
// issue's targets (PASS/FAIL). Before measuring, it checks that the peer and
// dittofs-webhook give equivalent answers on every benchmark body.
//
// Run it from anywhere in the repository: go run ./cmd/loadbench (in tests/bench).
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sys/unix"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/webhook"
)

type config struct {
	rounds      int
	closedDur   time.Duration
	openDur     time.Duration
	warmup      time.Duration
	workers     int
	rates       map[string]int
	busy        float64
	busyRates   map[string]int
	logLevel    string
	logCompare  bool
	only        string
	serverCPU   string
	nice        int
	genCPU      string
	jsonOut     string
	mdOut       string
	keep        bool
	maxDuration time.Duration
	quietWait   time.Duration
	disturbed   float64
	dittoEnv    []string
	revision    string
}

type scenario struct {
	name string
	path string
	body []byte
}

func main() {
	var c config
	var rates string
	flag.IntVar(&c.rounds, "rounds", 3, "rounds (the report gives the median of each figure)")
	flag.DurationVar(&c.closedDur, "closed", 5*time.Second, "closed-loop duration per server, body and round")
	flag.DurationVar(&c.openDur, "open", 5*time.Second, "open-loop (fixed rate) duration per server, body and round")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "closed-loop warm-up before each measurement (not counted)")
	flag.IntVar(&c.workers, "workers", 8, "closed-loop concurrency: vegeta workers, each with its own keep-alive connection")
	flag.StringVar(&rates, "rates", "", "fixed open-loop rates, e.g. mutate-6K=500,validate-6K=500,mutate-100K=100 (default: half the slowest server's closed-loop rate in round 1, rounded down)")
	flag.StringVar(&c.logLevel, "log-level", "info", "log level of dittofs-webhook and the peer (info is the default of both)")
	flag.BoolVar(&c.logCompare, "log-compare", true, "also run dittofs-webhook at --log-level warn on the 6 KB mutate body, to show what the per-decision log line costs")
	flag.StringVar(&c.serverCPU, "server-cpu", "1", "CPU the servers are pinned to (taskset -c); empty: not pinned")
	flag.StringVar(&c.genCPU, "generator-cpu", "0", "CPU the load generator is pinned to; empty: not pinned")
	flag.IntVar(&c.nice, "nice", -19, "nice value of the servers and the generator (root only; 0 leaves it), so other work on the machine disturbs the measurement less")
	flag.StringVar(&c.jsonOut, "json", "", "also write every measurement as JSON to this file")
	flag.StringVar(&c.mdOut, "markdown", "", "also write the report to this file")
	flag.BoolVar(&c.keep, "keep", false, "keep the working folder (binaries, certificates, server logs)")
	flag.DurationVar(&c.maxDuration, "max-duration", 15*time.Minute, "give up after this long")
	flag.DurationVar(&c.quietWait, "quiet-wait", 30*time.Second, "before each measurement, wait up to this long for other work on the machine to leave both cores mostly idle (2 min in all per run)")
	flag.Float64Var(&c.disturbed, "disturbed", 0.25, "redo a run (once) when other work took more than this share of the server's or the generator's core, and leave such runs out of the medians")
	flag.Float64Var(&c.busy, "busy", 0.75, "also measure latency at this fraction of the slowest server's closed-loop rate (0: skip)")
	only := flag.String("bodies", "", "measure only these bodies, comma-separated (e.g. validate-6K), for experiments; default all")
	dittoEnv := flag.String("ditto-env", "", "extra environment of dittofs-webhook, comma-separated (e.g. GOGC=400), for experiments")
	flag.Parse()
	if *dittoEnv != "" {
		c.dittoEnv = strings.Split(*dittoEnv, ",")
	}
	c.only = *only
	c.rates = map[string]int{}
	c.busyRates = map[string]int{}
	if rates != "" {
		for kv := range strings.SplitSeq(rates, ",") {
			k, v, ok := strings.Cut(kv, "=")
			var n int
			if _, err := fmt.Sscan(v, &n); !ok || err != nil || n <= 0 {
				fatalf("bad -rates entry %q", kv)
			}
			c.rates[k] = n
		}
	}
	if os.Geteuid() != 0 {
		c.nice = 0
	}
	disturbedAbove = c.disturbed
	if os.Getenv("LOADBENCH_PINNED") == "" && runtime.NumCPU() < 2 && (c.serverCPU != "" || c.genCPU != "") {
		fmt.Fprintln(os.Stderr, "loadbench: fewer than 2 CPUs: the servers and the generator share the CPU (figures are not comparable with pinned runs)")
		c.serverCPU, c.genCPU = "", ""
	}
	genCPU = c.genCPU
	if err := pinSelf(c.genCPU, c.nice); err != nil {
		fatalf("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.maxDuration)
	defer cancel()
	if err := run(ctx, c); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// pinSelf re-executes the program under `taskset -c cpu` unless it already
// runs on that CPU alone: Go's scheduler threads all inherit the affinity, and
// GOMAXPROCS follows it.
func pinSelf(cpu string, nice int) error {
	if cpu == "" && nice == 0 {
		return nil
	}
	if os.Getenv("LOADBENCH_PINNED") != "" {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return err
		}
		if cpu != "" && set.Count() != 1 {
			return fmt.Errorf("could not pin to CPU %s", cpu)
		}
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{exe}, os.Args[1:]...)
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	if nice != 0 {
		args = append([]string{"nice", "-n", fmt.Sprint(nice)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "LOADBENCH_PINNED=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt, syscall.SIGTERM) // the child handles them
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return fmt.Errorf("re-running under taskset/nice: %w", err)
	}
	os.Exit(0)
	return nil
}

// sample is one measurement of one server on one body in one round.
type sample struct {
	Round    int    `json:"round"`
	Server   string `json:"server"`
	Scenario string `json:"scenario"`

	ClosedRPS       float64       `json:"closed_rps"`
	ClosedCPUPerReq time.Duration `json:"closed_cpu_per_req_ns"`
	ClosedRequests  int           `json:"closed_requests"`
	ClosedErrors    int           `json:"closed_errors"`
	GeneratorCPU    float64       `json:"generator_cpu_fraction"`
	ServerCPU       float64       `json:"server_cpu_fraction"`
	// Foreign is the largest share of the server's or the generator's core
	// that other work took during the run (busy time in /proc/stat minus the
	// process's own; it includes the loopback network's softirq time).
	Foreign       float64 `json:"foreign_cpu_fraction"`
	ForeignClosed float64 `json:"foreign_cpu_fraction_closed"`
	ForeignOpen   float64 `json:"foreign_cpu_fraction_open"`

	Rate          int           `json:"open_rate"`
	OpenRequests  int           `json:"open_requests"`
	OpenErrors    int           `json:"open_errors"`
	OpenCPUPerReq time.Duration `json:"open_cpu_per_req_ns"`
	P50           time.Duration `json:"p50_ns"`
	P99           time.Duration `json:"p99_ns"`
	Max           time.Duration `json:"max_ns"`
	VegetaP50     time.Duration `json:"vegeta_p50_ns"`
	VegetaP99     time.Duration `json:"vegeta_p99_ns"`
	MaxSendLag    time.Duration `json:"max_send_lag_ns"`
	PeakRSSKB     int64         `json:"peak_rss_kb"`

	// The busy open loop: the same, at a rate nearer the slowest server's
	// capacity (-busy), where a server's own service time shows.
	BusyRate      int           `json:"busy_rate"`
	BusyErrors    int           `json:"busy_errors"`
	BusyCPUPerReq time.Duration `json:"busy_cpu_per_req_ns"`
	BusyP50       time.Duration `json:"busy_p50_ns"`
	BusyP99       time.Duration `json:"busy_p99_ns"`
	BusyMax       time.Duration `json:"busy_max_ns"`
	ForeignBusy   float64       `json:"foreign_cpu_fraction_busy"`
	FirstError    string        `json:"first_error,omitempty"`
}

type serverDef struct {
	label    string
	kind     benchkit.Kind
	logLevel string
	only     string // run only on this scenario
}

func run(ctx context.Context, c config) error {
	started := time.Now()
	repo, err := benchkit.FindRepo()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return err
	}
	if c.keep {
		logf("working folder %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}

	c.revision = benchkit.Revision(repo)
	logf("building dittofs-webhook, the peer and the floor")
	bins, err := benchkit.Build(repo, filepath.Join(work, "bin"))
	if err != nil {
		return err
	}
	certDir := filepath.Join(work, "certs")
	pool, _, err := benchkit.Certs(certDir)
	if err != nil {
		return err
	}
	bodies, note, err := benchkit.LoadBodies(repo)
	if err != nil {
		return err
	}
	if note != "" {
		logf("note: %s", note)
	}
	scenarios := []scenario{
		{"mutate-6K", webhook.MutatePath, bodies.Create},
		{"validate-6K", webhook.ValidatePath, bodies.Validate},
		{"mutate-100K", webhook.MutatePath, bodies.Large},
	}
	if c.only != "" {
		var keep []scenario
		for _, sc := range scenarios {
			if slices.Contains(strings.Split(c.only, ","), sc.name) {
				keep = append(keep, sc)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("-bodies %q names none of the bodies", c.only)
		}
		scenarios = keep
	}
	servers := []serverDef{
		{label: "dittofs-webhook", kind: benchkit.Ditto, logLevel: c.logLevel},
		{label: "controller-runtime", kind: benchkit.Peer, logLevel: c.logLevel},
		{label: "floor", kind: benchkit.Floor},
	}
	other := map[string]string{"info": "warn", "warn": "info"}[c.logLevel]
	if c.logCompare && other != "" {
		servers = append(servers, serverDef{label: "dittofs-webhook (log " + other + ")", kind: benchkit.Ditto, logLevel: other, only: "mutate-6K"})
	}
	spec := func(d serverDef) benchkit.ServerSpec {
		sp := benchkit.ServerSpec{Kind: d.kind, Label: d.label, Bins: bins, CertDir: certDir, LogLevel: d.logLevel, CPU: c.serverCPU, Nice: c.nice, LogDir: work}
		if d.kind == benchkit.Ditto {
			sp.Env = c.dittoEnv
		}
		return sp
	}

	logf("checking that the peer and dittofs-webhook answer alike")
	equiv, err := checkEquivalence(spec, pool, bodies, scenarios)
	if err != nil {
		return fmt.Errorf("equivalence check: %w", err)
	}
	for _, l := range equiv {
		logf("  %s", l)
	}

	var samples []sample
	for round := 1; round <= c.rounds; round++ {
		for _, sc := range scenarios {
			if err := ctx.Err(); err != nil {
				return err
			}
			var defs []serverDef
			for _, d := range servers {
				if d.only == "" || d.only == sc.name {
					defs = append(defs, d)
				}
			}
			got, err := measure(ctx, c, spec, pool, round, sc, defs)
			if err != nil {
				return err
			}
			samples = append(samples, got...)
		}
	}

	rep := report(c, bodies, scenarios, servers, samples, equiv, time.Since(started))
	fmt.Print(rep)
	if c.mdOut != "" {
		if err := os.WriteFile(c.mdOut, []byte(rep), 0o644); err != nil {
			return err
		}
	}
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(samples, "", "  ")
		if err := os.WriteFile(c.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
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

// measure runs one round of one body on every server: all are started (pinned
// to the server CPU), then each in turn gets a warm-up and the closed loop,
// then each in turn the open loop; then their peak RSS is read and they stop.
func measure(ctx context.Context, c config, spec func(serverDef) benchkit.ServerSpec, pool *x509.CertPool, round int, sc scenario, defs []serverDef) ([]sample, error) {
	type live struct {
		srv    *benchkit.Server
		client *http.Client
		s      *sample
	}
	var lives []live
	defer func() {
		for _, l := range lives {
			l.client.CloseIdleConnections()
			_ = l.srv.Stop()
		}
	}()
	for _, d := range defs {
		srv, err := benchkit.Start(spec(d))
		if err != nil {
			return nil, err
		}
		lives = append(lives, live{srv: srv, client: benchkit.NewClient(pool, c.workers*2), s: &sample{Round: round, Server: d.label, Scenario: sc.name}})
	}
	// run measures one closed-loop (rate 0) or open-loop run, on fresh
	// keep-alive connections (a short unmeasured closed loop opens them: a
	// server may have been idle for a while). A run with failed requests is
	// tried once more; if it fails again, its errors are kept in the sample
	// (and shown in the report) unless the server has died.
	run := func(client *http.Client, srv *benchkit.Server, rate int, dur time.Duration, s *sample) error {
		for try := 0; ; try++ {
			client.CloseIdleConnections()
			if _, err := attack(client, srv, sc, 0, c.workers, 300*time.Millisecond, nil); err != nil && !srv.Alive() {
				return fmt.Errorf("%w; the server exited, log tail:\n%s", err, srv.LogTail(20))
			}
			_, err := attack(client, srv, sc, rate, c.workers, dur, s)
			if err == nil {
				return nil
			}
			if !srv.Alive() {
				return fmt.Errorf("%w; the server exited, log tail:\n%s", err, srv.LogTail(20))
			}
			logf("round %d %-11s %-34s %v; server log tail:\n%s", round, sc.name, srv.Label, err, srv.LogTail(10))
			if try == 1 {
				return nil // kept: the report shows the errors
			}
		}
	}
	// runQuiet waits for a quiet machine, then runs; a run that other work
	// disturbed is redone once (within the redo budget).
	runQuiet := func(l live, rate int, dur time.Duration, s *sample, what string) error {
		for try := 0; ; try++ {
			benchkit.WaitQuiet(ctx, c.quietWait, logf)
			s.Foreign = 0
			if err := run(l.client, l.srv, rate, dur, s); err != nil {
				return fmt.Errorf("%s %s: %w", l.srv.Label, what, err)
			}
			if s.Foreign <= c.disturbed || try == 1 || redoBudget <= 0 {
				return nil
			}
			redoBudget -= dur
			logf("round %d %-11s %-34s %s disturbed (other work %.0f%% of a core): again", round, sc.name, l.srv.Label, what, 100*s.Foreign)
		}
	}
	// slowestShare is a round rate at share of the slowest server's
	// closed-loop rate.
	slowestShare := func(share float64) int {
		slowest := math.Inf(1)
		for _, l := range lives {
			slowest = min(slowest, l.s.ClosedRPS)
		}
		return niceRate(slowest * share)
	}
	for _, l := range lives {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := attack(l.client, l.srv, sc, 0, c.workers, c.warmup, nil); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", l.srv.Label, err)
		}
		if err := runQuiet(l, 0, c.closedDur, l.s, "closed loop"); err != nil {
			return nil, err
		}
		closedForeign := l.s.Foreign
		logf("round %d %-11s %-34s closed: %7.0f req/s, %6.1f µs CPU/req, server CPU %3.0f%%, generator CPU %3.0f%%, other work %3.0f%%, %d errors",
			round, sc.name, l.srv.Label, l.s.ClosedRPS, us(l.s.ClosedCPUPerReq), 100*l.s.ServerCPU, 100*l.s.GeneratorCPU, 100*closedForeign, l.s.ClosedErrors)
		l.s.ForeignClosed = closedForeign
	}
	rate := c.rates[sc.name]
	if rate == 0 {
		rate = slowestShare(0.5)
		c.rates[sc.name] = rate
	}
	for _, l := range lives {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := runQuiet(l, rate, c.openDur, l.s, "open loop"); err != nil {
			return nil, err
		}
		l.s.ForeignOpen = l.s.Foreign
		l.s.Foreign = max(l.s.ForeignOpen, l.s.ForeignClosed)
		hwm, err := benchkit.ProcStatusKB(l.srv.Pid(), "VmHWM")
		if err != nil {
			return nil, err
		}
		l.s.PeakRSSKB = hwm
		logf("round %d %-11s %-34s open %d/s: p50 %s p99 %s max %s (vegeta's own p50 %s p99 %s, max send lag %s), %6.1f µs CPU/req, peak RSS %.1f MiB, other work %3.0f%%, %d errors",
			round, sc.name, l.srv.Label, rate, ms(l.s.P50), ms(l.s.P99), ms(l.s.Max), ms(l.s.VegetaP50), ms(l.s.VegetaP99), ms(l.s.MaxSendLag),
			us(l.s.OpenCPUPerReq), float64(hwm)/1024, 100*l.s.ForeignOpen, l.s.OpenErrors)
	}
	if c.busy > 0 {
		busy := c.busyRates[sc.name]
		if busy == 0 {
			busy = slowestShare(c.busy)
			c.busyRates[sc.name] = busy
		}
		for _, l := range lives {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// Measured into a scratch sample: the open-loop fields of l.s stay.
			var b sample
			if err := runQuiet(l, busy, c.openDur, &b, "busy open loop"); err != nil {
				return nil, err
			}
			l.s.BusyRate, l.s.BusyErrors, l.s.BusyCPUPerReq = busy, b.OpenErrors, b.OpenCPUPerReq
			l.s.BusyP50, l.s.BusyP99, l.s.BusyMax, l.s.ForeignBusy = b.P50, b.P99, b.Max, b.Foreign
			if l.s.FirstError == "" {
				l.s.FirstError = b.FirstError
			}
			logf("round %d %-11s %-34s busy %d/s: p50 %s p99 %s max %s, %6.1f µs CPU/req, other work %3.0f%%, %d errors",
				round, sc.name, l.srv.Label, busy, ms(b.P50), ms(b.P99), ms(b.Max), us(b.OpenCPUPerReq), 100*b.Foreign, b.OpenErrors)
		}
	}
	out := make([]sample, len(lives))
	for i, l := range lives {
		out[i] = *l.s
	}
	return out, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) string  { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// attack runs vegeta against the server: closed loop when rate is 0 (workers
// workers, each waiting for its answer before sending again), else open loop
// at rate requests per second. It fills s (when not nil) with what it measured.
func attack(client *http.Client, srv *benchkit.Server, sc scenario, rate, workers int, dur time.Duration, s *sample) (int, error) {
	hdr := http.Header{"Content-Type": []string{"application/json"}}
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: srv.URL(sc.path), Body: sc.body, Header: hdr})
	opts := []func(*vegeta.Attacker){vegeta.Client(client), vegeta.Workers(uint64(workers))}
	var pacer vegeta.Pacer = vegeta.Rate{Freq: 0, Per: time.Second}
	if rate == 0 {
		opts = append(opts, vegeta.MaxWorkers(uint64(workers)))
	} else {
		// Open loop: vegeta starts another worker whenever all are busy, so a
		// slow answer never delays the next send.
		pp, err := newPrecisePacer(rate)
		if err != nil {
			return 0, err
		}
		defer pp.Close()
		pacer = pp
	}
	atk := vegeta.NewAttacker(opts...)

	pid := srv.Pid()
	cpu0, err := benchkit.ProcCPU(pid)
	if err != nil {
		return 0, err
	}
	self0, _ := benchkit.ProcCPU(os.Getpid())
	sb0, _ := benchkit.CPUBusy(cpuNum(srv.Spec.CPU))
	gb0, _ := benchkit.CPUBusy(cpuNum(genCPU))
	var lats, vlats []time.Duration
	var maxLag time.Duration
	ok, errs, firstErr := 0, 0, ""
	var errKinds []string
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	t0 := time.Now()
	for res := range atk.Attack(tr, pacer, dur, sc.name) {
		if res.Error != "" || res.Code != http.StatusOK {
			errs++
			if e := fmt.Sprintf("%d %s %.200s", res.Code, res.Error, res.Body); len(errKinds) < 3 && !slices.Contains(errKinds, e) {
				errKinds = append(errKinds, e)
			}
			firstErr = strings.Join(errKinds, " | ")
			continue
		}
		ok++
		if rate > 0 {
			// vegeta stamps each result when its worker starts the request,
			// which is late when the generator falls behind; count latency
			// from the intended send time instead: the pacer sends hit n at
			// (n+1)·interval after the attack began.
			intended := t0.Add(time.Duration(res.Seq+1) * interval)
			lats = append(lats, res.Timestamp.Add(res.Latency).Sub(intended))
			vlats = append(vlats, res.Latency)
			maxLag = max(maxLag, res.Timestamp.Sub(intended))
		}
	}
	elapsed := time.Since(t0)
	cpu1, err := benchkit.ProcCPU(pid)
	if err != nil {
		return 0, err
	}
	self1, _ := benchkit.ProcCPU(os.Getpid())
	sb1, _ := benchkit.CPUBusy(cpuNum(srv.Spec.CPU))
	gb1, _ := benchkit.CPUBusy(cpuNum(genCPU))
	if s == nil {
		if errs > 0 {
			return ok, fmt.Errorf("%d errors, first: %s", errs, firstErr)
		}
		return ok, nil
	}
	if firstErr != "" && s.FirstError == "" {
		s.FirstError = firstErr
	}
	perReq := time.Duration(0)
	if ok > 0 {
		perReq = (cpu1 - cpu0) / time.Duration(ok)
	}
	if srv.Spec.CPU != "" && genCPU != "" {
		foreign := max(float64((sb1-sb0)-(cpu1-cpu0)), float64((gb1-gb0)-(self1-self0))) / float64(elapsed)
		s.Foreign = max(s.Foreign, foreign)
	}
	if rate == 0 {
		s.ClosedRPS = float64(ok) / elapsed.Seconds()
		s.ClosedRequests, s.ClosedErrors = ok, errs
		s.ClosedCPUPerReq = perReq
		s.ServerCPU = float64(cpu1-cpu0) / float64(elapsed)
		s.GeneratorCPU = float64(self1-self0) / float64(elapsed)
	} else {
		s.Rate = rate
		s.OpenRequests, s.OpenErrors = ok, errs
		s.OpenCPUPerReq = perReq
		s.P50, s.P99, s.Max = quantile(lats, 0.50), quantile(lats, 0.99), quantile(lats, 1)
		s.VegetaP50, s.VegetaP99 = quantile(vlats, 0.50), quantile(vlats, 0.99)
		s.MaxSendLag = maxLag
	}
	if errs > 0 {
		return ok, fmt.Errorf("%d errors, first: %s", errs, firstErr)
	}
	return ok, nil
}

// redoBudget bounds the time spent redoing disturbed runs.
var redoBudget = 2 * time.Minute

// genCPU is the generator's CPU (-generator-cpu), for the interference figure.
var genCPU string

func cpuNum(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}
