package main

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sys/unix"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
)

// sample is one server's measurements on one body in one round.
type sample struct {
	Round  int             `json:"round"`
	Server string          `json:"server"`
	Body   string          `json:"body"`
	Loops  map[string]loop `json:"loops"` // closed, open and busy
}

// loop is what one closed-loop or open-loop run measured.
type loop struct {
	Rate      int           `json:"rate"` // 0: closed loop
	Requests  int           `json:"requests"`
	Errors    int           `json:"errors"`
	RPS       float64       `json:"rps"`
	CPUPerReq time.Duration `json:"cpu_per_req_ns"`
	ServerCPU float64       `json:"server_cpu_fraction"`
	GenCPU    float64       `json:"generator_cpu_fraction"`
	// Foreign is the larger share of the server's or the generator's core
	// that other work took (the core's busy time in /proc/stat minus the
	// process's own; it includes the loopback network's softirq time).
	Foreign    float64       `json:"foreign_cpu_fraction"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	VegetaP50  time.Duration `json:"vegeta_p50_ns"`
	VegetaP99  time.Duration `json:"vegeta_p99_ns"`
	MaxSendLag time.Duration `json:"max_send_lag_ns"`
	PeakRSSKB  int64         `json:"peak_rss_kb"` // VmHWM after the run
	FirstError string        `json:"first_error,omitempty"`
}

func (l loop) String() string {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	s := fmt.Sprintf("%7.0f req/s, %6.1f µs CPU/req, server CPU %3.0f%%, generator CPU %3.0f%%", l.RPS, us(l.CPUPerReq), 100*l.ServerCPU, 100*l.GenCPU)
	if l.Rate > 0 {
		s = fmt.Sprintf("%d/s: p50 %s p99 %s max %s (vegeta's own p50 %s p99 %s, max send lag %s), %6.1f µs CPU/req", l.Rate,
			benchkit.Ms(l.P50), benchkit.Ms(l.P99), benchkit.Ms(l.Max), benchkit.Ms(l.VegetaP50), benchkit.Ms(l.VegetaP99),
			benchkit.Ms(l.MaxSendLag), us(l.CPUPerReq))
	}
	return fmt.Sprintf("%s, peak RSS %.1f MiB, other work %3.0f%%, %d errors", s, float64(l.PeakRSSKB)/1024, 100*l.Foreign, l.Errors)
}

// attack runs vegeta against l's server: a closed loop when rate is 0
// (workers each waiting for its answer before sending again), else an open
// loop at rate requests per second. Failed requests are counted, not errors.
func (o *options) attack(l live, b body, rate int, dur time.Duration) (loop, error) {
	res := loop{Rate: rate}
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: l.srv.URL(b.path), Body: b.data,
		Header: http.Header{"Content-Type": []string{"application/json"}}})
	opts := []func(*vegeta.Attacker){vegeta.Client(l.client), vegeta.Workers(uint64(o.workers))}
	var pacer vegeta.Pacer = vegeta.Rate{Freq: 0, Per: time.Second}
	if rate == 0 {
		opts = append(opts, vegeta.MaxWorkers(uint64(o.workers)))
	} else {
		// Open loop: vegeta starts another worker whenever all are busy, so a
		// slow answer never delays the next send.
		pp, err := newPrecisePacer(rate)
		if err != nil {
			return res, err
		}
		defer pp.Close()
		pacer = pp
	}
	c0, err := o.cpuTimes(l.srv.Pid())
	if err != nil {
		return res, err
	}
	var lats, vlats []time.Duration
	var errKinds []string
	interval := time.Second / time.Duration(max(rate, 1))
	t0 := time.Now()
	for r := range vegeta.NewAttacker(opts...).Attack(tr, pacer, dur, b.name) {
		if r.Error != "" || r.Code != http.StatusOK {
			res.Errors++
			if e := fmt.Sprintf("%d %s %.200s", r.Code, r.Error, r.Body); len(errKinds) < 3 && !slices.Contains(errKinds, e) {
				errKinds = append(errKinds, e)
			}
			continue
		}
		res.Requests++
		if rate > 0 {
			// vegeta stamps each result when its worker starts the request,
			// which is late when the generator falls behind; count latency
			// from the intended send time instead: the pacer sends hit n at
			// (n+1)·interval after the attack began.
			intended := t0.Add(time.Duration(r.Seq+1) * interval)
			lats = append(lats, r.Timestamp.Add(r.Latency).Sub(intended))
			vlats = append(vlats, r.Latency)
			res.MaxSendLag = max(res.MaxSendLag, r.Timestamp.Sub(intended))
		}
	}
	elapsed := time.Since(t0)
	c1, err := o.cpuTimes(l.srv.Pid())
	if err != nil {
		return res, err
	}
	res.FirstError = strings.Join(errKinds, " | ")
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	if res.Requests > 0 {
		res.CPUPerReq = (c1.server - c0.server) / time.Duration(res.Requests)
	}
	res.ServerCPU = float64(c1.server-c0.server) / float64(elapsed)
	res.GenCPU = float64(c1.self-c0.self) / float64(elapsed)
	if o.serverCPU != "" && o.genCPU != "" {
		res.Foreign = max(float64((c1.serverCore-c0.serverCore)-(c1.server-c0.server)),
			float64((c1.genCore-c0.genCore)-(c1.self-c0.self))) / float64(elapsed)
	}
	res.P50, res.P99, res.Max = benchkit.Quantile(lats, 0.5), benchkit.Quantile(lats, 0.99), benchkit.Quantile(lats, 1)
	res.VegetaP50, res.VegetaP99 = benchkit.Quantile(vlats, 0.5), benchkit.Quantile(vlats, 0.99)
	return res, nil
}

// cpuTimes are the CPU times the interference figure compares: the server's
// and the generator's own, and the busy time of the cores they are pinned to.
type cpuTimes struct{ server, self, serverCore, genCore time.Duration }

func (o *options) cpuTimes(pid int) (cpuTimes, error) {
	var t cpuTimes
	var err error
	if t.server, err = benchkit.ProcCPU(pid); err != nil {
		return t, err
	}
	t.self, _ = benchkit.ProcCPU(os.Getpid())
	busy := benchkit.CPUBusy()
	s, _ := strconv.Atoi(o.serverCPU)
	g, _ := strconv.Atoi(o.genCPU)
	t.serverCore, t.genCore = busy[int64(s)], busy[int64(g)]
	return t, nil
}

// precisePacer sends hit n at (n+1)·interval after the attack began, like
// vegeta's ConstantPacer, but waits with a timerfd instead of letting the
// attacker time.Sleep: on Linux, Go's sleeps wake up to ~1 ms late (the
// runtime's netpoller waits with a millisecond timeout), so a sleeping pacer
// sends late and in bursts, and that lateness would count as server latency.
// A timerfd read parks the goroutine in the netpoller, which epoll wakes when
// the timer fires, within microseconds.
type precisePacer struct {
	interval time.Duration
	fd       int      // the timerfd (File.Fd would switch it to blocking mode)
	timer    *os.File // fd, read through the netpoller
}

func newPrecisePacer(rate int) (*precisePacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &precisePacer{interval: time.Second / time.Duration(rate), fd: fd, timer: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (p *precisePacer) Close() error { return p.timer.Close() }

// Pace implements vegeta.Pacer: it waits itself and returns no wait.
func (p *precisePacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	wait := time.Duration(hits+1)*p.interval - elapsed
	if wait <= 20*time.Microsecond {
		return 0, false // on time, or behind: send now
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(wait))}
	if err := unix.TimerfdSettime(p.fd, 0, &spec, nil); err != nil {
		return wait, false // fall back to the attacker's sleep
	}
	var buf [8]byte
	if _, err := p.timer.Read(buf[:]); err != nil {
		return 0, false
	}
	return 0, false
}

// Rate implements vegeta.Pacer.
func (p *precisePacer) Rate(time.Duration) float64 { return float64(time.Second) / float64(p.interval) }
