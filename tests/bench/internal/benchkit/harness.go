package benchkit

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// Flags are the flags both benchmarks take.
type Flags struct {
	Rounds, Nice       int
	LogLevel, Markdown string
	Keep               bool
	MaxDuration        time.Duration
}

// Register defines the flags, with the command's defaults.
func (f *Flags) Register(rounds int, maxDuration time.Duration) {
	flag.IntVar(&f.Rounds, "rounds", rounds, "rounds, the servers or configurations interleaved within each (the report gives medians)")
	flag.StringVar(&f.LogLevel, "log-level", "info", "log level of dittofs-webhook and the peer (info is the default of both)")
	flag.IntVar(&f.Nice, "nice", -19, "nice value of the benchmark and all it starts (root only; 0 leaves it), so other work disturbs it less")
	flag.StringVar(&f.Markdown, "markdown", "", "also write the report to this file")
	flag.BoolVar(&f.Keep, "keep", false, "keep the working folder (binaries, certificates, logs)")
	flag.DurationVar(&f.MaxDuration, "max-duration", maxDuration, "give up after this long")
}

// Setup is what both benchmarks start from: the repository, a working
// folder, the three servers built, a CA and serving certificate, the bodies.
type Setup struct {
	Repo, Work, CertDir string
	CAPEM               []byte
	Pool                *x509.CertPool
	Bodies              *Bodies
	bins                map[Kind]string
}

const reexecEnv = "DITTOFS_BENCH_REEXEC"

// Main runs a benchmark command once its flags are parsed. As root it first
// re-executes it under nice, whose priority all it starts inherits; with cpu,
// under `taskset -c cpu` too (Go's threads inherit the affinity, and
// GOMAXPROCS follows it). Then it sets up and calls run until it returns, or
// SIGINT, SIGTERM or -max-duration ends ctx, and prints the report (and
// writes -markdown).
func Main(name string, f *Flags, cpu string, run func(context.Context, *Setup) (string, error)) {
	if err := mainErr(f, cpu, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(f *Flags, cpu string, run func(context.Context, *Setup) (string, error)) (err error) {
	if os.Geteuid() != 0 {
		f.Nice = 0
	}
	if os.Getenv(reexecEnv) == "" && (cpu != "" || f.Nice != 0) {
		return reexec(cpu, f.Nice)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.MaxDuration)
	defer cancel()
	s := &Setup{}
	if s.Repo, err = FindRepo(); err != nil {
		return err
	}
	if s.Work, err = os.MkdirTemp("", "dittofs-bench-"); err != nil {
		return err
	}
	if f.Keep {
		Logf("working folder %s (kept)", s.Work)
	} else {
		defer os.RemoveAll(s.Work)
	}
	Logf("building dittofs-webhook, the peer and the floor")
	s.CertDir = filepath.Join(s.Work, "certs")
	if s.bins, err = build(s.Repo, filepath.Join(s.Work, "bin")); err != nil {
		return err
	}
	if s.CAPEM, s.Pool, err = writeCerts(s.CertDir); err != nil {
		return err
	}
	if s.Bodies, err = LoadBodies(s.Repo); err != nil {
		return err
	}
	report, err := run(ctx, s)
	if err != nil {
		return err
	}
	fmt.Print(report)
	if f.Markdown != "" {
		return os.WriteFile(f.Markdown, []byte(report), 0o644)
	}
	return nil
}

func reexec(cpu string, nice int) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{exe}, os.Args[1:]...)
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	if nice != 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(nice)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), reexecEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt, syscall.SIGTERM) // the child handles them
	var ee *exec.ExitError
	if err := cmd.Run(); errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	} else if err != nil {
		return fmt.Errorf("re-running under taskset/nice: %w", err)
	}
	os.Exit(0)
	return nil
}

// FindRepo returns the dittofs-webhook repository root: the first folder at or
// above the working directory that holds cmd/dittofs-webhook.
func FindRepo() (string, error) {
	dir, err := os.Getwd()
	for ; err == nil; dir = filepath.Dir(dir) {
		if st, err := os.Stat(filepath.Join(dir, "cmd", "dittofs-webhook")); err == nil && st.IsDir() {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", errors.New("no cmd/dittofs-webhook at or above the working directory: run from the repository")
		}
	}
	return "", err
}

// Logf logs a timestamped line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Describe is the report's line on the date, the machine (CPUs, model,
// memory, kernel, Go) and the revision (git describe, -dirty with changes).
func (e *Setup) Describe() string {
	model, mem := "unknown CPU", 0.0
	info, _ := proc.CPUInfo()
	if len(info) > 0 {
		model = info[0].ModelName
	}
	if m, err := proc.Meminfo(); err == nil && m.MemTotal != nil {
		mem = float64(*m.MemTotal) / (1 << 20)
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	rev, _ := exec.Command("git", "-C", e.Repo, "describe", "--always", "--dirty").Output()
	return fmt.Sprintf("date: %s; machine: %d CPUs, %s, %.0f GiB, Linux %s, %s; dittofs-webhook revision %s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), len(info), model, mem, strings.TrimSpace(string(kernel)),
		runtime.Version(), strings.TrimSpace(string(rev)))
}

var proc, _ = procfs.NewDefaultFS()

// ProcCPU returns the user+system CPU time a process has used.
func ProcCPU(pid int) (time.Duration, error) {
	p, err := proc.Proc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	return time.Duration(st.CPUTime() * float64(time.Second)), err
}

// PeakRSSKB returns a process's peak resident set size (VmHWM) in KiB.
func PeakRSSKB(pid int) (int64, error) {
	p, err := proc.Proc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	return int64(st.VmHWM / 1024), err
}

// CPUBusy returns each CPU's busy time from /proc/stat: all but idle and
// iowait (guest time is already in user).
func CPUBusy() map[int64]time.Duration {
	st, _ := proc.Stat()
	busy := map[int64]time.Duration{}
	for n, c := range st.CPU {
		busy[n] = time.Duration((c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal) * float64(time.Second))
	}
	return busy
}

// QuietBudget bounds the time all waits for quiet may take in one run.
var QuietBudget = 2 * time.Minute

// WaitQuiet waits (at most max, and at most QuietBudget over a run) for half a
// second in which CPUs 0 and 1 together are busy less than 15% of one CPU:
// other work on a shared machine disturbs the measurements.
func WaitQuiet(ctx context.Context, max time.Duration) {
	start := time.Now()
	defer func() { QuietBudget -= time.Since(start) }()
	for deadline := start.Add(min(max, QuietBudget)); ctx.Err() == nil && max > 0 && QuietBudget > 0; {
		b0 := CPUBusy()
		WaitCtx(ctx, 500*time.Millisecond)
		if b1 := CPUBusy(); b1[0]-b0[0]+b1[1]-b0[1] < 75*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			Logf("the machine is busy with other work: measuring anyway (see the 'other work' figures)")
			return
		}
	}
}

// WaitCtx sleeps d or until ctx ends.
func WaitCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Quantile returns the q-quantile of d by nearest rank (q = 1: the maximum).
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	return s[min(max(int(math.Ceil(q*float64(len(s))))-1, 0), len(s)-1)]
}

// Median returns the median of v (the mean of the middle two for an even count).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// Table writes a markdown table, its first left columns left-aligned and the
// others right-aligned.
func Table(w io.Writer, left int, header []string, rows [][]string) {
	fmt.Fprintf(w, "\n| %s |\n|", strings.Join(header, " | "))
	for i := range header {
		fmt.Fprint(w, map[bool]string{true: "---|", false: "---:|"}[i < left])
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

// Ms formats d in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// PassFail is a target's result.
func PassFail(ok bool) string { return map[bool]string{true: "PASS", false: "FAIL"}[ok] }
