package main

// Reliability tests that drive the real binary the way a cluster does: signals,
// certificate rotation by Secret-volume symlink swap, hostile connections, and
// (behind `make soak`) a long run at a fixed rate. All traffic is on loopback
// and every loop is bounded in count and time.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/certs"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// removeBinary removes what binary built (TestMain, after every test).
func removeBinary() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// binary builds dittofs-webhook once per test run, into a temporary folder
// TestMain removes.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dittofs-webhook-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dittofs-webhook")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// server is a dittofs-webhook serve process with Secret-volume-style certs.
type server struct {
	cmd                *exec.Cmd
	admission, metrics string
	ca                 *certs.CA
	dir                string
	logs               *bytes.Buffer
	logw               *syncWriter
	exited             chan error
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// launch starts the binary on a Secret-style certificate directory — with a
// first pair in it when withPair — and kills it when the test ends.
func launch(t *testing.T, withPair bool, args ...string) *server {
	t.Helper()
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ca: ca, dir: t.TempDir(), logs: &bytes.Buffer{}, exited: make(chan error, 1)}
	if withPair {
		s.rotate(t, nil)
	}
	// The links the Secret volume shows, dangling until ..data exists.
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(s.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	s.admission, s.metrics = freePort(t), freePort(t)
	args = append([]string{"serve", "--listen", s.admission, "--metrics-listen", s.metrics,
		"--tls-cert-file", filepath.Join(s.dir, "tls.crt"), "--tls-key-file", filepath.Join(s.dir, "tls.key")}, args...)
	s.cmd = exec.Command(binary(t), args...)
	s.logw = &syncWriter{w: s.logs}
	s.cmd.Stdout, s.cmd.Stderr = s.logw, s.logw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logText())
		}
	})
	return s
}

// startBinary launches the binary with a certificate and waits until it is ready.
func startBinary(t *testing.T, extra ...string) *server {
	t.Helper()
	s := launch(t, true, append([]string{"--log-level", "warn"}, extra...)...)
	deadline := time.Now().Add(10 * time.Second)
	for readyz(s.metrics) != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("server not ready; logs:\n%s", s.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *server) logText() string { return s.logw.read() }

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// rotate swaps in a new pair as the kubelet does for a Secret volume.
func (s *server) rotate(t *testing.T, pair [][]byte) {
	t.Helper()
	if pair == nil {
		crt, key, err := s.ca.Issue([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair = [][]byte{crt, key}
	}
	stamp := fmt.Sprintf("..%d", time.Now().UnixNano())
	must(t, os.Mkdir(filepath.Join(s.dir, stamp), 0o755))
	must(t, os.WriteFile(filepath.Join(s.dir, stamp, "tls.crt"), pair[0], 0o600))
	must(t, os.WriteFile(filepath.Join(s.dir, stamp, "tls.key"), pair[1], 0o600))
	must(t, os.Symlink(stamp, filepath.Join(s.dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(s.dir, "..data_tmp"), filepath.Join(s.dir, "..data")))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (s *server) client(keepAlive bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4,
	}}
}

func (s *server) serial(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", s.admission, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric scrapes one sample ("name" or `name{labels}` exactly as exposed).
func (s *server) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// reviewBody is a managed StatefulSet CREATE that needs the full mutation.
func reviewBody(uid string) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `",` +
		`"kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"resource":{"group":"apps","version":"v1","resource":"statefulsets"},` +
		`"name":"fs","namespace":"default","operation":"CREATE","object":{"apiVersion":"apps/v1","kind":"StatefulSet",` +
		`"metadata":{"name":"fs","namespace":"default","labels":{"dittofs.com/server":"fs"}},"spec":{"serviceName":"fs",` +
		`"template":{"spec":{"containers":[{"name":"dittofs","image":"d"}],"volumes":[{"name":"cache","emptyDir":{}}]}},` +
		`"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},` +
		`{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}}]}}}}`)
}

// post sends one review and checks the answer echoes the uid with a patch.
func post(c *http.Client, addr, uid string) error {
	resp, err := c.Post("https://"+addr+"/mutate-apps-v1-statefulset", "application/json", bytes.NewReader(reviewBody(uid)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return &statusError{resp.StatusCode, string(body)}
	}
	if !bytes.Contains(body, []byte(`"uid":"`+uid+`"`)) || !bytes.Contains(body, []byte(`"patchType":"JSONPatch"`)) {
		return fmt.Errorf("unexpected answer: %s", body)
	}
	return nil
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// load runs clients (half keep-alive, half a new connection per request, so
// handshakes keep happening) until stop is closed or limit requests are sent.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(s *server, clients int, limit int64, interval time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	var sent atomic.Int64
	for i := 0; i < clients; i++ {
		c := s.client(i%2 == 0)
		l.wg.Go(func() {
			var tick <-chan time.Time
			if interval > 0 { // a fixed rate: one request per tick
				t := time.NewTicker(interval)
				defer t.Stop()
				tick = t.C
			}
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if sent.Add(1) > limit {
					return
				}
				if err := post(c, s.admission, fmt.Sprintf("c%d-%d", i, n)); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				if tick != nil {
					select {
					case <-tick:
					case <-l.stop:
						return
					}
				}
			}
		})
	}
	return l
}

func (l *load) finish() { close(l.stop); l.wg.Wait() }

// TestRotationUnderLoad: 4 clients send continuously while the certificate is
// rotated twice by symlink swap: no request fails, the new certificate is
// served within 10 s each time, and the expiry gauge follows.
func TestRotationUnderLoad(t *testing.T) {
	s := startBinary(t)
	l := startLoad(s, 4, 1_000_000, 0)
	defer func() {
		if t.Failed() {
			l.finish()
		}
	}()
	for round := 1; round <= 2; round++ {
		time.Sleep(1100 * time.Millisecond)
		before, expiry := s.serial(t), s.metric(t, "dittofs_webhook_tls_certificate_expiry_timestamp_seconds")
		s.rotate(t, nil)
		start := time.Now()
		for s.serial(t) == before {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("round %d: new certificate not served within 10 s", round)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("round %d: new certificate served after %s", round, time.Since(start).Round(time.Millisecond))
		if got := s.metric(t, "dittofs_webhook_tls_certificate_expiry_timestamp_seconds"); got <= expiry {
			t.Errorf("round %d: expiry gauge %v not moved past %v", round, got, expiry)
		}
	}
	// A corrupt pair under load: counted, the old one keeps serving.
	served := s.serial(t)
	s.rotate(t, [][]byte{[]byte("garbage"), []byte("garbage")})
	deadline := time.Now().Add(10 * time.Second)
	for s.metric(t, `dittofs_webhook_tls_certificate_reloads_total{result="failure"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("bad pair not counted within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	l.finish()
	if got := s.serial(t); got != served {
		t.Errorf("serving %s after a bad pair, want %s", got, served)
	}
	t.Logf("%d requests answered, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 || l.ok.Load() < 100 {
		t.Fatalf("%d failed of %d (first errors: %v)", l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
	if got := s.metric(t, `dittofs_webhook_tls_certificate_reloads_total{result="success"}`); got != 2 {
		t.Errorf("reloads{success} = %v, want 2", got)
	}
}

// TestSIGTERMWithRequestsInFlight: SIGTERM while a request is in flight and
// clients keep sending. /readyz fails first; through the drain the server
// keeps answering (every answer closes its connection, the clients dial
// again) and nothing fails; the in-flight request and every request the
// server accepted are answered 200, and the process exits 0 within the drain
// period plus --shutdown-timeout. Requests arriving after the listener closed
// fail to connect (the Deployment's preStop sleep keeps them away in a
// cluster).
func TestSIGTERMWithRequestsInFlight(t *testing.T) {
	const drain, timeout = 3 * time.Second, 8 * time.Second
	s := startBinary(t, "--shutdown-drain-period", drain.String(), "--shutdown-timeout", timeout.String())
	l := startLoad(s, 4, 1_000_000, 0)
	time.Sleep(300 * time.Millisecond)

	// A request whose body is still arriving when SIGTERM comes.
	body := reviewBody("in-flight")
	pr, pw := io.Pipe()
	inflight := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.admission+"/mutate-apps-v1-statefulset", pr)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		resp, err := s.client(false).Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"uid":"in-flight"`)) {
				err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
			}
		}
		inflight <- err
	}()
	_, _ = pw.Write(body[:20])
	time.Sleep(300 * time.Millisecond)

	sent := time.Now()
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	deadline := time.Now().Add(5 * time.Second)
	for readyz(s.metrics) == 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-s.exited:
		t.Fatalf("exited (%v) with a request in flight", err)
	default:
	}
	// A second into the drain: still answering, nothing failed.
	okBefore, failedBefore := l.ok.Load(), l.failed.Load()
	time.Sleep(time.Second)
	ok, failed := l.ok.Load()-okBefore, l.failed.Load()-failedBefore
	if ok == 0 || failed != 0 {
		t.Errorf("in the first second of the drain: %d answered, %d failed; want some answered and none failed (first errors: %v)", ok, failed, l.errs)
	}
	t.Logf("in the first second of the drain: %d answered, %d failed", ok, failed)
	_, _ = pw.Write(body[20:])
	_ = pw.Close()
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	var exitErr error
	select {
	case exitErr = <-s.exited:
	case <-time.After(drain + timeout + 2*time.Second):
		t.Fatal("no exit within the drain period and the shutdown timeout")
	}
	s.exited <- exitErr // for the cleanup
	took := time.Since(sent)
	l.finish()
	if exitErr != nil {
		t.Fatalf("exit: %v", exitErr)
	}
	if took > drain+timeout {
		t.Errorf("exit took %s, over --shutdown-drain-period %s + --shutdown-timeout %s", took, drain, timeout)
	}
	for _, err := range l.errs {
		// Only connection-level failures after the listener closed; never an
		// answer other than 200.
		var se *statusError
		if errors.As(err, &se) {
			t.Errorf("a request was answered %v", err)
		}
	}
	t.Logf("exit 0 after %s; %d load requests answered, %d refused after the listener closed", took.Round(time.Millisecond), l.ok.Load(), l.failed.Load())
}

// TestSlowClientsAreCutOff: a connection that sends nothing, and one that
// trickles its headers, are closed by the header timeout (5 s); 300 idle
// connections do not stop a well-behaved client.
func TestSlowClientsAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the 5 s header timeout")
	}
	s := startBinary(t)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", s.admission)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	start := time.Now()
	if err := post(s.client(false), s.admission, "while-flooded"); err != nil {
		t.Fatalf("well-behaved client with 300 idle connections open: %v", err)
	}
	t.Logf("answered in %s with 300 idle connections", time.Since(start).Round(time.Microsecond))

	// Slowloris: TLS done, then one header byte every 500 ms.
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	conn, err := tls.Dial("tcp", s.admission, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start = time.Now()
	header := "POST /mutate-apps-v1-statefulset HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	cut := false
	for i := 0; i < len(header) && time.Since(start) < 15*time.Second; i++ {
		if _, err := conn.Write([]byte{header[i]}); err != nil {
			cut = true
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !cut {
		// The server may have closed without the write failing yet: a read tells.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		cut = err != nil && !isTimeout(err)
	}
	if !cut {
		t.Fatalf("slowloris connection still open after %s", time.Since(start))
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("slowloris cut after %s, want about the 5 s header timeout", took)
	}
	// The raw idle ones are closed by the same timeout.
	_ = idle[0].SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("idle connection not closed by the server: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSoak runs the server at a fixed rate for DITTOFS_SOAK (e.g. 60s, `make
// soak`): no error, and RSS and goroutine count flat between the end of the
// warm-up and the end of the run.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("DITTOFS_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set DITTOFS_SOAK=60s to run (make soak)")
	}
	const clients, perClient = 4, 50 // 200 requests/s
	s := startBinary(t)
	l := startLoad(s, clients, int64(d.Seconds()+10)*clients*perClient, time.Second/perClient)
	warmup := 5 * time.Second
	time.Sleep(warmup)
	rss0, gr0 := rss(t, s.cmd.Process.Pid), s.metric(t, "go_goroutines")
	ok0 := l.ok.Load()
	time.Sleep(d - warmup)
	rss1, gr1 := rss(t, s.cmd.Process.Pid), s.metric(t, "go_goroutines")
	ok1 := l.ok.Load()
	l.finish()
	rate := float64(ok1-ok0) / (d - warmup).Seconds()
	t.Logf("soak %s at %.0f req/s: %d answered, %d failed; RSS %d KiB -> %d KiB; goroutines %.0f -> %.0f",
		d, rate, l.ok.Load(), l.failed.Load(), rss0, rss1, gr0, gr1)
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed: %v", l.failed.Load(), l.errs)
	}
	if rss1 > rss0+rss0/2+16<<10 {
		t.Errorf("RSS grew from %d KiB to %d KiB", rss0, rss1)
	}
	if gr1 > gr0+8 {
		t.Errorf("goroutines grew from %.0f to %.0f", gr0, gr1)
	}
}

// rss reads VmRSS (KiB) of a process.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
