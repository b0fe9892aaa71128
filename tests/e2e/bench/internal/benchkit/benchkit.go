// Package benchkit holds what the load and end-to-end benchmarks share: the
// request bodies and the check that two answers agree, building and running
// the three servers (dittofs-webhook, the controller-runtime peer and the
// floor), the flags and set-up of both commands, /proc figures and the report's
// statistics and tables.
package benchkit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
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

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/prometheus/procfs"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/dittofs/dittofs-webhook/certs"
	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Bodies are the benchmark request bodies, derived as benchReviews in
// webhook/bench_test.go derives them.
type Bodies struct {
	Create   []byte // the ~6 KB CREATE of webhook/testdata/bench-create.json: needs the full mutation (M1–M4)
	Validate []byte // what the apiserver sends the validating webhook after applying dittofs-webhook's patch
	Large    []byte // Create with ~1,100 env vars in the DittoFS container (~100 KB)
	Object   []byte // Create's request.object
}

// LoadBodies reads webhook/testdata/bench-create.json and derives the others.
func LoadBodies(repoRoot string) (*Bodies, error) {
	create, err := os.ReadFile(filepath.Join(repoRoot, "webhook", "testdata", "bench-create.json"))
	if err != nil {
		return nil, err
	}
	req, err := admission.DecodeReview(create)
	if err != nil {
		return nil, err
	}
	// The other bodies are edits of the review as a map, so that every
	// member of it is kept as it is.
	var rv map[string]any
	if err := json.Unmarshal(create, &rv); err != nil {
		return nil, err
	}
	r := rv["request"].(map[string]any)
	obj, err := json.Marshal(r["object"])
	if err != nil {
		return nil, err
	}
	mutated, err := admission.ApplyPatch(obj, (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate(req).Patch)
	if err != nil {
		return nil, err
	}
	var m any
	if err := json.Unmarshal(mutated, &m); err != nil {
		return nil, err
	}
	r["object"] = m
	validate, err := json.Marshal(rv)
	if err != nil {
		return nil, err
	}

	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	spec := m.(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	c := spec["containers"].([]any)[0].(map[string]any)
	env := c["env"].([]any)
	for i := 0; len(env) < 1100; i++ {
		env = append(env, map[string]any{"name": "DITTOFS_EXTRA_SETTING_XXXXXXXX" + string(rune('A'+i%26)),
			"value": strings.Repeat("v", 40)})
	}
	c["env"] = env
	r["object"] = m
	large, err := json.Marshal(rv)
	return &Bodies{Create: create, Validate: validate, Large: large, Object: obj}, err
}

// Post sends the review body to url and decodes the v1 AdmissionReview
// answer; it returns the raw answer too.
func Post(c *http.Client, url string, body []byte) (*admissionv1.AdmissionReview, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, nil, err
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rv); err != nil || resp.StatusCode != http.StatusOK ||
		rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" || rv.Response == nil {
		return nil, out, fmt.Errorf("%s: status %d, not a v1 AdmissionReview answer (%v): %.300s", url, resp.StatusCode, err, out)
	}
	return &rv, out, nil
}

// Agree checks that dittofs-webhook's and the peer's answers to the review
// body are the same as far as the apiserver is concerned: both for the
// request's uid, the same verdict (and code), and, when allowed, the same
// StatefulSet once each patch is applied, compared as typed apps/v1 objects
// without status, which the apiserver resets on CREATE (the peer's typed round
// trip writes an empty one). It describes the answers in a line.
func Agree(body []byte, ours, peer *admissionv1.AdmissionResponse) (string, error) {
	var req admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &req); err != nil {
		return "", err
	}
	if ours.UID != req.Request.UID || peer.UID != req.Request.UID {
		return "", fmt.Errorf("uids %q and %q, want %q", ours.UID, peer.UID, req.Request.UID)
	}
	if ours.Allowed != peer.Allowed || !ours.Allowed && code(ours) != code(peer) {
		return "", fmt.Errorf("dittofs-webhook allowed=%v (%v), the peer allowed=%v (%v)", ours.Allowed, ours.Result,
			peer.Allowed, peer.Result)
	}
	line := fmt.Sprintf("both allowed=%v, %d vs %d warnings", ours.Allowed, len(ours.Warnings), len(peer.Warnings))
	if !ours.Allowed {
		return line, nil
	}
	var sts [2]appsv1.StatefulSet
	for i, patch := range [][]byte{ours.Patch, peer.Patch} {
		doc, err := req.Request.Object.Raw, error(nil)
		if len(patch) > 0 {
			var p jsonpatchv4.Patch
			if p, err = jsonpatchv4.DecodePatch(patch); err == nil {
				doc, err = p.Apply(doc)
			}
		}
		if err == nil {
			err = json.Unmarshal(doc, &sts[i])
		}
		if err != nil {
			return "", fmt.Errorf("applying %s's patch: %w", []string{"dittofs-webhook", "the peer"}[i], err)
		}
		sts[i].Status = appsv1.StatefulSetStatus{}
	}
	if !equality.Semantic.DeepEqual(&sts[0], &sts[1]) {
		return "", fmt.Errorf("the patched objects differ (-dittofs-webhook +peer):\n%s", gocmp.Diff(sts[0], sts[1]))
	}
	return line + ", the patched objects equal", nil
}

func code(r *admissionv1.AdmissionResponse) int32 {
	if r.Result == nil {
		return 0
	}
	return r.Result.Code
}

// Kind names one of the servers under test.
type Kind string

// The servers under test.
const (
	Ditto Kind = "dittofs-webhook"
	Peer  Kind = "controller-runtime"
	Floor Kind = "floor"
)

// ServerSpec says how to start one server.
type ServerSpec struct {
	Kind     Kind
	Label    string // name in reports; Kind when empty
	LogLevel string // dittofs-webhook and the peer: info or warn
	CPU      string // taskset CPU list ("1"), run with GOMAXPROCS=1; empty: not pinned
	Args     []string
}

// Server is a running server process, its output in a log file in the
// working folder.
type Server struct {
	*framework.Process
	Label string
	Addr  string // host:port of the admission listener
}

// URL returns the https URL of path on the server.
func (s *Server) URL(path string) string { return "https://" + s.Addr + path }

// Pid is the server's process id (taskset execs the server in place).
func (s *Server) Pid() int { return s.Cmd.Process.Pid }

// LogTail returns the last n lines of the server's output.
func (s *Server) LogTail(n int) string {
	var b strings.Builder
	s.PrintLogTail(&b, n)
	return b.String()
}

// Stop sends SIGTERM and waits (at most 30 s, then SIGKILL).
func (s *Server) Stop() error { return s.Process.Stop(30 * time.Second) }

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start starts a server and waits until it answers TLS on its port (at most
// 20 s). It dies with the benchmark (Pdeathsig).
func (e *Setup) Start(spec ServerSpec) (*Server, error) {
	label := cmp.Or(spec.Label, string(spec.Kind))
	addr, err := freeAddr()
	metrics, err2 := freeAddr() // dittofs-webhook's default metrics port, :8080, may be taken
	if err := errors.Join(err, err2); err != nil {
		return nil, err
	}
	crt, key := filepath.Join(e.CertDir, certs.CertFile), filepath.Join(e.CertDir, certs.KeyFile)
	args := map[Kind][]string{
		Ditto: {"serve", "--listen", addr, "--metrics-listen", metrics, "--tls-cert-file", crt, "--tls-key-file", key,
			"--log-level", spec.LogLevel},
		Peer:  {"--listen", addr, "--cert-dir", e.CertDir, "--log-level", spec.LogLevel},
		Floor: {"--listen", addr, "--tls-cert-file", crt, "--tls-key-file", key},
	}[spec.Kind]
	cmd := exec.Command(filepath.Join(e.Work, "bin", string(spec.Kind)), append(args, spec.Args...)...)
	if spec.CPU != "" {
		cmd = exec.Command("taskset", append([]string{"-c", spec.CPU}, cmd.Args...)...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	}
	e.started++
	p, err := framework.StartProcess(filepath.Join(e.Work, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(label, " ", "_"),
		e.started)), cmd)
	if err != nil {
		return nil, err
	}
	s := &Server{Process: p, Label: label, Addr: addr}
	err = framework.Poll(20*time.Second, func() error {
		if s.Exited() {
			return fmt.Errorf("%s exited: %v", label, s.Err)
		}
		return nil
	}, func() (bool, string) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
	if err != nil {
		err = fmt.Errorf("%s did not start: %w\n%s", label, err, s.LogTail(20))
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// NewClient returns an HTTP/1.1 keep-alive client trusting the benchmark's
// CA, keeping up to conns idle connections.
func (e *Setup) NewClient(conns int) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: e.Pool},
		Protocols:           protocols,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}}
}

// Flags are the flags both benchmarks take.
type Flags struct {
	Rounds             int
	LogLevel, Markdown string
	Keep               bool
}

// Register defines the flags, with the command's default number of rounds.
func (f *Flags) Register(rounds int) {
	flag.IntVar(&f.Rounds, "rounds", rounds, "rounds, the servers or configurations interleaved within each (the report gives medians)")
	flag.StringVar(&f.LogLevel, "log-level", "info", "log level of dittofs-webhook and the peer (info is the default of both)")
	flag.StringVar(&f.Markdown, "markdown", "", "also write the report to this file")
	flag.BoolVar(&f.Keep, "keep", false, "keep the working folder (binaries, certificates, logs)")
}

// Setup is what both benchmarks start from: the repository, a working
// folder with the three servers built in bin/, a CA and serving certificate,
// the bodies.
type Setup struct {
	Repo, Work, CertDir string
	CAPEM               []byte
	Pool                *x509.CertPool
	Bodies              *Bodies
	started             int // servers started: numbers their log files
}

// Nice is the priority the benchmarks run at as root, so that other work on a
// shared machine disturbs them less.
const Nice = -19

const reexecEnv = "DITTOFS_BENCH_REEXEC"

// Main runs a benchmark command once its flags are parsed. As root it first
// re-executes it under nice, whose priority all it starts inherits; with cpu,
// under `taskset -c cpu` too (Go's threads inherit the affinity, and
// GOMAXPROCS follows it). Then it sets up and calls run until it returns, or
// SIGINT, SIGTERM or maxDuration ends ctx, and prints the report (and writes
// -markdown).
func Main(name string, f *Flags, cpu string, maxDuration time.Duration, run func(context.Context, *Setup) (string, error)) {
	if err := mainErr(f, cpu, maxDuration, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(f *Flags, cpu string, maxDuration time.Duration, run func(context.Context, *Setup) (string, error)) (err error) {
	if os.Getenv(reexecEnv) == "" && (cpu != "" || os.Geteuid() == 0) {
		return reexec(cpu)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, maxDuration)
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
	// With the flags of `make build`: static, trimmed, stripped.
	bench := filepath.Join(s.Repo, "tests", "e2e", "bench")
	for _, b := range []struct{ kind, dir, pkg string }{
		{string(Ditto), s.Repo, "./cmd/dittofs-webhook"}, {string(Peer), bench, "./peer"}, {string(Floor), bench, "./floor"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(s.Work, "bin", b.kind), b.pkg)
		cmd.Dir, cmd.Env = b.dir, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	s.CertDir = filepath.Join(s.Work, "certs")
	if err := certs.Write(certs.Options{Dir: s.CertDir}); err != nil {
		return err
	}
	if s.CAPEM, err = os.ReadFile(filepath.Join(s.CertDir, certs.CACertFile)); err != nil {
		return err
	}
	if s.Pool = x509.NewCertPool(); !s.Pool.AppendCertsFromPEM(s.CAPEM) {
		return errors.New("bad " + certs.CACertFile)
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

// reexec replaces the process with itself under nice and taskset.
func reexec(cpu string) error {
	exe, err := os.Executable()
	args := append([]string{exe}, os.Args[1:]...)
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	if os.Geteuid() == 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(Nice)}, args...)
	}
	path, err2 := exec.LookPath(args[0])
	if err := errors.Join(err, err2); err != nil {
		return err
	}
	return syscall.Exec(path, args, append(os.Environ(), reexecEnv+"=1"))
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

// Describe is the report's line on the date, the machine (CPUs, model, Go)
// and the revision (git describe, -dirty with changes).
func (e *Setup) Describe() string {
	model := "unknown CPU"
	info, _ := proc.CPUInfo()
	if len(info) > 0 {
		model = info[0].ModelName
	}
	rev, _ := exec.Command("git", "-C", e.Repo, "describe", "--always", "--dirty").Output()
	return fmt.Sprintf("date: %s; machine: %d CPUs, %s, %s; dittofs-webhook revision %s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), len(info), model, runtime.Version(), strings.TrimSpace(string(rev)))
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
