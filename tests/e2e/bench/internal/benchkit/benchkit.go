// Package benchkit holds what the load and end-to-end benchmarks share: the bodies and the check that two answers
// agree, the three servers (dittofs-webhook, the controller-runtime peer, the floor), set-up, figures and tables.
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/dittofs/dittofs-webhook/certs"
	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Bodies are the benchmark request bodies, derived as benchReviews in webhook/http_test.go derives them.
type Bodies struct {
	Create   []byte              // the ~6 KB CREATE of webhook/testdata/bench-create.json: needs the full mutation (M1–M4)
	Validate []byte              // what the apiserver sends the validating webhook after applying dittofs-webhook's patch
	Object   *appsv1.StatefulSet // Create's object
}

// LoadBodies reads webhook/testdata/bench-create.json and derives the others from it with JSON patches.
func LoadBodies(repoRoot string) (*Bodies, error) {
	create, err := os.ReadFile(filepath.Join(repoRoot, "webhook", "testdata", "bench-create.json"))
	if err != nil {
		return nil, err
	}
	var rv struct {
		Request struct{ Object *appsv1.StatefulSet }
	}
	req, err := admission.DecodeReview(create)
	if err == nil {
		err = json.Unmarshal(create, &rv)
	}
	if err != nil {
		return nil, err
	}
	ops := (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate(req).Patch
	for i := range ops {
		ops[i].Path = "/request/object" + ops[i].Path
	}
	validate, err := admission.ApplyPatch(create, ops)
	return &Bodies{Create: create, Validate: validate, Object: rv.Request.Object}, err
}

// Post sends the review body to url and decodes the v1 AdmissionReview answer.
func Post(c *http.Client, url string, body []byte) (*admissionv1.AdmissionResponse, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	var rv admissionv1.AdmissionReview
	if err == nil {
		err = json.Unmarshal(out, &rv)
	}
	if err != nil || resp.StatusCode != http.StatusOK || rv.APIVersion != "admission.k8s.io/v1" ||
		rv.Kind != "AdmissionReview" || rv.Response == nil {
		return nil, fmt.Errorf("%s: status %d, not a v1 AdmissionReview answer (%v): %.300s", url, resp.StatusCode, err, out)
	}
	return rv.Response, nil
}

// Agree checks that dittofs-webhook's and the peer's answers to the review body are the same as far as the
// apiserver is concerned: for the request's uid, the same verdict (and code), and, when allowed, the same
// StatefulSet once each patch is applied, compared as typed objects without status, which the apiserver resets
// on CREATE (the peer's typed round trip writes an empty one). It describes the answers in a line.
func Agree(body []byte, ours, peer *admissionv1.AdmissionResponse) (string, error) {
	var req admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &req); err != nil {
		return "", err
	}
	if ours.UID != req.Request.UID || peer.UID != req.Request.UID {
		return "", fmt.Errorf("uids %q and %q, want %q", ours.UID, peer.UID, req.Request.UID)
	}
	code := func(r *admissionv1.AdmissionResponse) int32 { return ptr.Deref(r.Result, metav1.Status{}).Code }
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
		p, err := jsonpatchv4.DecodePatch([]byte(cmp.Or(string(patch), "[]")))
		doc := req.Request.Object.Raw
		if err == nil {
			doc, err = p.Apply(doc)
		}
		if err == nil {
			err = json.Unmarshal(doc, &sts[i])
		}
		if err != nil {
			return "", fmt.Errorf("applying %s's patch: %w", []string{"dittofs-webhook", "the peer"}[i], err)
		}
		sts[i].Status = appsv1.StatefulSetStatus{}
	}
	if diff := gocmp.Diff(sts[0], sts[1]); diff != "" {
		return "", fmt.Errorf("the patched objects differ (-dittofs-webhook +peer):\n%s", diff)
	}
	return line + ", the patched objects equal", nil
}

// Kind names one of the servers under test; its binary is bin/KIND.
type Kind string

// The servers under test.
const Ditto, Peer, Floor Kind = "dittofs-webhook", "controller-runtime", "floor"

// Server is a running server process, its output in a log file in the working folder.
type Server struct {
	*framework.Process
	Kind Kind
	Addr string // host:port of the admission listener
}

// URL returns the https URL of path on the server.
func (s *Server) URL(path string) string { return "https://" + s.Addr + path }

// LogTail returns the last n lines of the server's output.
func (s *Server) LogTail(n int) string {
	var b strings.Builder
	s.PrintLogTail(&b, n)
	return b.String()
}

// StopAll stops the servers (SIGTERM, at most 30 s each, then SIGKILL), joining their errors.
func StopAll(servers ...*Server) (err error) {
	for _, s := range servers {
		err = errors.Join(err, s.Stop(30*time.Second))
	}
	return err
}

// Start starts a server (logging at its default level, info), pinned to the CPU list cpu with GOMAXPROCS=1 unless
// cpu is empty (taskset execs it in place: the pid is the server's), and waits until it answers TLS (at most 20 s).
// It dies with the benchmark.
func (e *Setup) Start(kind Kind, cpu string) (*Server, error) {
	port, err := framework.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	crt, key := filepath.Join(e.CertDir, certs.CertFile), filepath.Join(e.CertDir, certs.KeyFile)
	args := map[Kind][]string{
		Ditto: {"serve", "--listen", addr, "--metrics-listen", "127.0.0.1:0", "--tls-cert-file", crt, "--tls-key-file", key},
		Peer:  {"--port", strconv.Itoa(port), "--cert-dir", e.CertDir},
		Floor: {"--listen", addr, "--tls-cert-file", crt, "--tls-key-file", key},
	}[kind]
	cmd := exec.Command(filepath.Join(e.Work, "bin", string(kind)), args...)
	if cpu != "" {
		cmd = exec.Command("taskset", append([]string{"-c", cpu}, cmd.Args...)...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	}
	p, err := framework.StartProcess(filepath.Join(e.Work, fmt.Sprintf("%s-%d.log", kind, port)), cmd)
	if err != nil {
		return nil, err
	}
	s := &Server{Process: p, Kind: kind, Addr: addr}
	err = framework.Poll(20*time.Second, s.Alive, func() (bool, string) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s did not start: %w\n%s", kind, err, s.LogTail(20)), StopAll(s))
	}
	return s, nil
}

// NewClient returns an HTTP/1.1 keep-alive client trusting the benchmark's CA, keeping up to conns idle.
func (e *Setup) NewClient(conns int) *http.Client {
	protocols, pool := new(http.Protocols), x509.NewCertPool()
	protocols.SetHTTP1(true)
	pool.AppendCertsFromPEM(e.CAPEM) // certs.Write wrote it
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
		Protocols: protocols, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 60 * time.Second,
		DisableCompression: true, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
}

// Rounds is the flag both benchmarks take.
var Rounds = flag.Int("rounds", 3, "rounds, the servers or configurations interleaved within each (the report gives medians)")

// Setup is what both benchmarks start from: the repository, a working folder (bin/: the servers), a CA, the bodies.
type Setup struct {
	Repo, Work, CertDir string
	CAPEM               []byte
	Bodies              *Bodies
}

// Nice is the priority the benchmarks run at as root, so that other work on a shared machine disturbs them less.
const Nice = -19

const reexecEnv = "DITTOFS_BENCH_REEXEC"

// Main runs a benchmark command once its flags are parsed, from tests/e2e. As root it first re-executes it under
// nice, whose priority all it starts inherits; with cpu, under `taskset -c cpu` too (Go's threads inherit the
// affinity, and GOMAXPROCS follows it). Then it sets up and calls run until it returns, or SIGINT, SIGTERM or
// maxDuration ends ctx, and prints the report (markdown, on stdout; the log goes to stderr). It exits 1 when
// anything but a target fails (the report says which targets FAIL), keeping the working folder (logs, binaries).
func Main(name, cpu string, maxDuration time.Duration, run func(context.Context, *Setup) (string, error)) {
	if err := mainErr(cpu, maxDuration, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(cpu string, maxDuration time.Duration, run func(context.Context, *Setup) (string, error)) (err error) {
	if os.Getenv(reexecEnv) == "" && (cpu != "" || os.Geteuid() == 0) {
		return reexec(cpu)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, maxDuration)
	defer cancel()
	s := &Setup{}
	if s.Repo, err = filepath.Abs(filepath.Join("..", "..")); err == nil {
		_, err = os.Stat(filepath.Join(s.Repo, "cmd", "dittofs-webhook"))
	}
	if err != nil {
		return fmt.Errorf("not run from tests/e2e: %w", err)
	}
	if s.Work, err = os.MkdirTemp("", "dittofs-bench-"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			Logf("working folder kept: %s", s.Work)
		} else {
			err = os.RemoveAll(s.Work)
		}
	}()
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
	if s.Bodies, err = LoadBodies(s.Repo); err != nil {
		return err
	}
	report, err := run(ctx, s)
	fmt.Print(report)
	return err
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

// Logf logs a timestamped line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

var proc, _ = procfs.NewDefaultFS()

// Describe is the report's line on the date, the machine and the revision (git describe, -dirty with changes).
func (e *Setup) Describe() string {
	model, info := "unknown CPU", []procfs.CPUInfo(nil)
	if info, _ = proc.CPUInfo(); len(info) > 0 {
		model = info[0].ModelName
	}
	rev, _ := exec.Command("git", "-C", e.Repo, "describe", "--always", "--dirty").Output()
	return fmt.Sprintf("date: %s; machine: %d CPUs, %s, %s; dittofs-webhook revision %s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), len(info), model, runtime.Version(), strings.TrimSpace(string(rev)))
}

// ProcStats returns the user+system CPU time a process has used and its peak resident set size (VmHWM) in KiB.
func ProcStats(pid int) (time.Duration, int64, error) {
	p, err := proc.Proc(pid)
	if err != nil {
		return 0, 0, err
	}
	st, err := p.Stat()
	status, err2 := p.NewStatus()
	return time.Duration(st.CPUTime() * float64(time.Second)), int64(status.VmHWM / 1024), errors.Join(err, err2)
}

// Quantile returns the q-quantile of v by nearest rank (0.5: the median, the lower of an even count; 1: the maximum).
func Quantile[T cmp.Ordered](v []T, q float64) T {
	if len(v) == 0 {
		var zero T
		return zero
	}
	s := slices.Sorted(slices.Values(v))
	return s[min(max(int(math.Ceil(q*float64(len(s))))-1, 0), len(s)-1)]
}

// Table writes a markdown table, its first left columns left-aligned and the others right-aligned.
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

// Targets are the rows of the report's table of targets.
type Targets [][]string

// Add records a target: what it asks, what was measured, PASS or FAIL, a detail.
func (t *Targets) Add(name, measured string, pass bool, detail string) {
	*t = append(*t, []string{name, measured, map[bool]string{true: "PASS", false: "FAIL"}[pass], detail})
}

// Write writes the table of targets.
func (t Targets) Write(w io.Writer) {
	Table(w, 4, []string{"target", "measured", "result", "detail"}, t)
}

// Ms formats d in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
