package main

// Reliability tests that drive the real binary the way a cluster does: signals,
// a certificate arriving by Secret-volume symlink swap, hostile connections,
// and (behind `make soak`) a long run at a fixed rate. All traffic is on loopback
// and every loop is bounded in count and time.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
)

// server is a dittofs-webhook serve process on a Secret-volume certificate
// directory.
type server struct {
	*tests.SecretVolume
	cmd                *exec.Cmd
	admission, metrics string
	logFile            string // the process's stdout and stderr
	exited             chan error
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// launch starts the binary — with a first pair in its certificate directory
// when withPair — and kills it when the test ends.
func launch(t *testing.T, withPair bool, args ...string) *server {
	t.Helper()
	s := &server{
		SecretVolume: tests.NewSecretVolume(t, t.TempDir()),
		logFile:      filepath.Join(t.TempDir(), "log"), exited: make(chan error, 1),
	}
	logs, err := os.Create(s.logFile)
	must(t, err)
	defer logs.Close() // the process has its own descriptor
	if withPair {
		s.Write(t, s.Issue(t))
	}
	s.admission, s.metrics = freePort(t), freePort(t)
	args = append([]string{"serve", "--listen", s.admission, "--metrics-listen", s.metrics,
		"--tls-cert-file", s.CertFile(), "--tls-key-file", s.KeyFile()}, args...)
	s.cmd = exec.Command("dittofs-webhook", args...) // the test binary, as TestMain puts it in $PATH
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	must(t, s.cmd.Start())
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs())
		}
	})
	return s
}

// startBinary launches the binary with a certificate and waits until it is ready.
func startBinary(t *testing.T, extra ...string) *server {
	t.Helper()
	s := launch(t, true, append([]string{"--log-level", "warn"}, extra...)...)
	s.waitReady(t, 10*time.Second)
	return s
}

func (s *server) ready() int { return tests.HTTPStatus("http://" + s.metrics + "/readyz") }

func (s *server) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	tests.Eventually(t, d, func() (int, bool) { r := s.ready(); return r, r == 200 })
}

// metric sums the series a selector matches on /metrics.
func (s *server) metric(t *testing.T, selector string) float64 {
	t.Helper()
	return tests.Metric(t, "http://"+s.metrics+"/metrics", selector)
}

func (s *server) logs() string { return readFile(s.logFile) }

// readFile is the content of a file another process or goroutine writes to.
func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// client is a client of the admission port; without keepAlive every request
// dials (and handshakes) again.
func (s *server) client(keepAlive bool) *http.Client {
	c := s.Client()
	tr := c.Transport.(*http.Transport)
	tr.DisableKeepAlives, tr.MaxIdleConnsPerHost = !keepAlive, 4
	return c
}

// review is the review of a StatefulSet that needs every mutation.
func review(uid string) []byte {
	return tests.NewReview(uid, "CREATE", []byte(tests.ManagedStatefulSet), nil)
}

// post sends body, review(uid) when nil, and checks the answer is a review
// that echoes the uid with a patch.
func post(c *http.Client, addr, uid string, body io.Reader) error {
	if body == nil {
		body = bytes.NewReader(review(uid))
	}
	resp, err := c.Post("https://"+addr+"/mutate-apps-v1-statefulset", "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	a, err := tests.ParseAnswer(nil, resp.StatusCode, answer)
	if r := a.Response(); err != nil || r == nil || string(r.UID) != uid || len(a.Patch) == 0 {
		return fmt.Errorf("HTTP %d (%v): %s", resp.StatusCode, err, answer)
	}
	return nil
}

// TestServeWaitsForCertificate (SPEC §5: "/readyz fails until a certificate is
// loaded"): started with an empty certificate directory, the process stays up,
// alive, and logs why it is not ready; when the kubelet-style ..data swap
// brings the pair it is served within 10 s (default poll), /readyz turns 200
// and admission works. What the server does while it waits (/readyz 503, TLS
// handshakes failing) and on later rotations is webhook's TestServer and
// TestCertWatcher*. Fatal flag values:
// tests/eval/serve-bad-flags.txtar.
func TestServeWaitsForCertificate(t *testing.T) {
	s := launch(t, false)
	tests.Eventually(t, 10*time.Second, func() (int, bool) {
		select {
		case err := <-s.exited:
			t.Fatalf("exited (%v) without a certificate instead of waiting for one", err)
		default:
		}
		h := tests.HTTPStatus("http://" + s.metrics + "/healthz")
		return h, h == 200
	})
	// The log is flushed within a second.
	tests.Eventually(t, 10*time.Second, func() (string, bool) {
		l := s.logs()
		return l, strings.Contains(l, `"level":"ERROR"`)
	})

	s.Write(t, s.Issue(t))
	s.waitReady(t, 10*time.Second)
	if err := post(s.client(false), s.admission, "after-wait", nil); err != nil {
		t.Fatalf("admission once the certificate is loaded: %v", err)
	}
	const reloads = "dittofs_webhook_tls_certificate_reloads_total"
	ok, bad := s.metric(t, reloads+`{result="success"}`), s.metric(t, reloads+`{result="failure"}`)
	if ok != 1 || bad != 1 {
		t.Errorf("reloads{success} %v, {failure} %v; want 1 (the first load) and 1 (missing files, counted once)",
			ok, bad)
	}
}

// TestSIGTERMWithRequestsInFlight: SIGTERM while a request's body is still
// arriving. /readyz fails first; through the drain the server keeps answering;
// the in-flight request is answered 200, and the process exits 0 within the
// drain period plus --shutdown-timeout. (webhook's TestDrain table covers the
// drain under load; this test proves the binary's flags and signal wiring.)
func TestSIGTERMWithRequestsInFlight(t *testing.T) {
	const drain, timeout = 3 * time.Second, 8 * time.Second
	s := startBinary(t, "--shutdown-drain-period", drain.String(), "--shutdown-timeout", timeout.String())
	body, inflight := review("in-flight"), make(chan error, 1)
	pr, pw := io.Pipe()
	go func() { inflight <- post(s.client(false), s.admission, "in-flight", pr) }()
	_, _ = pw.Write(body[:20])
	time.Sleep(300 * time.Millisecond)

	sent := time.Now()
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	tests.Eventually(t, 5*time.Second, func() (int, bool) { r := s.ready(); return r, r != 200 })
	select {
	case err := <-s.exited:
		t.Fatalf("exited (%v) with a request in flight", err)
	default:
	}
	if err := post(s.client(false), s.admission, "in-drain", nil); err != nil {
		t.Errorf("a request during the drain period: %v", err)
	}
	_, _ = pw.Write(body[20:])
	_ = pw.Close()
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		must(t, err)
	case <-time.After(drain + timeout + 2*time.Second):
		t.Fatal("no exit within the drain period and --shutdown-timeout")
	}
	if took := time.Since(sent); took > drain+timeout {
		t.Errorf("exit took %s, over --shutdown-drain-period %s + --shutdown-timeout %s", took, drain, timeout)
	}
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
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", s.admission)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		idle = append(idle, c)
	}
	start := time.Now()
	if err := post(s.client(false), s.admission, "while-flooded", nil); err != nil {
		t.Fatalf("well-behaved client with 300 idle connections open: %v", err)
	}
	t.Logf("answered in %s with 300 idle connections", time.Since(start).Round(time.Microsecond))

	// Slowloris: TLS done, then one header byte every 500 ms until the
	// server closes the connection.
	conn, err := tls.Dial("tcp", s.admission, s.Client().Transport.(*http.Transport).TLSClientConfig)
	must(t, err)
	defer conn.Close() // ends the writer
	header := "POST /mutate-apps-v1-statefulset HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	go func() {
		for i := 0; i < len(header); i++ {
			if _, err := conn.Write([]byte{header[i]}); err != nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	start = time.Now()
	_ = conn.SetReadDeadline(start.Add(15 * time.Second))
	if _, err := io.Copy(io.Discard, conn); isTimeout(err) { // until the server closes it
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
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range clients {
		c := s.client(i%2 == 0) // half keep-alive, half a handshake per request
		wg.Go(func() {
			tick := time.NewTicker(time.Second / perClient)
			defer tick.Stop()
			for n := 0; ; n++ {
				if err := post(c, s.admission, fmt.Sprintf("c%d-%d", i, n), nil); err == nil {
					ok.Add(1)
				} else if failed.Add(1) <= 5 {
					t.Errorf("request c%d-%d: %v", i, n, err)
				}
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		})
	}
	warmup := 5 * time.Second
	time.Sleep(warmup)
	rss0, gr0, ok0 := s.metric(t, "process_resident_memory_bytes"), s.metric(t, "go_goroutines"), ok.Load()
	time.Sleep(d - warmup)
	rss1, gr1, ok1 := s.metric(t, "process_resident_memory_bytes"), s.metric(t, "go_goroutines"), ok.Load()
	close(stop)
	wg.Wait()
	t.Logf("soak %s at %.0f req/s: %d answered, %d failed; RSS %.0f KiB -> %.0f KiB; goroutines %.0f -> %.0f",
		d, float64(ok1-ok0)/(d-warmup).Seconds(), ok.Load(), failed.Load(), rss0/1024, rss1/1024, gr0, gr1)
	if rss1 > rss0+rss0/2+16<<20 {
		t.Errorf("RSS grew from %.0f KiB to %.0f KiB", rss0/1024, rss1/1024)
	}
	if gr1 > gr0+8 {
		t.Errorf("goroutines grew from %.0f to %.0f", gr0, gr1)
	}
}
