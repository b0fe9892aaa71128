package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dittofs/dittofs-webhook/certs"
	"github.com/dittofs/dittofs-webhook/policies"
)

// testServer is a running Run with development certificates.
type testServer struct {
	admission, metrics string
	ca                 *certs.CA
	dir                string // certificate directory (Secret-volume layout)
	reg                *prometheus.Registry
	cancel             context.CancelFunc
	done               chan error
}

// startServer runs the real server on kernel-chosen ports. The certificate
// files are laid out as a Kubernetes Secret volume: tls.crt -> ..data/tls.crt,
// ..data -> ..<timestamp>.
func startServer(t *testing.T, mutate func(*Options)) *testServer {
	t.Helper()
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ca: ca, dir: t.TempDir(), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	ts.rotate(t, nil)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(ts.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	ts.run(t, mutate)
	return ts
}

// run starts Run with the certificate files in ts.dir, whatever state they
// are in.
func (ts *testServer) run(t *testing.T, mutate func(*Options)) {
	t.Helper()
	ready := make(chan struct{})
	o := Options{
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0",
		CertFile: filepath.Join(ts.dir, "tls.crt"), KeyFile: filepath.Join(ts.dir, "tls.key"),
		TLSMinVersion: tls.VersionTLS12, Policy: policies.DefaultOptions(),
		ShutdownTimeout: 10 * time.Second, Log: discardLog, Registry: ts.reg,
		Ready: func(a, m net.Addr) { ts.admission, ts.metrics = a.String(), m.String(); close(ready) },
	}
	if mutate != nil {
		mutate(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-ts.done:
		t.Fatalf("server exited: %v", err)
	}
	t.Cleanup(func() { ts.stop(t) })
}

func (ts *testServer) stop(t *testing.T) {
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("server did not stop")
	}
}

// rotate writes a new serving pair the way the kubelet updates a Secret
// volume: a new timestamped directory, then an atomic rename of a ..data_tmp
// symlink over ..data. certPEM/keyPEM override the pair (nil: issue one).
func (ts *testServer) rotate(t *testing.T, pair [][]byte) {
	t.Helper()
	if pair == nil {
		crt, key, err := ts.ca.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair = [][]byte{crt, key}
	}
	stamp := fmt.Sprintf("..%d", time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(ts.dir, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(ts.dir, stamp, f), pair[i], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(ts.dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(ts.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func (ts *testServer) client(protos ...string) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ts.ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: protos}, ForceAttemptHTTP2: len(protos) > 0}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// servedSerial dials the admission port and returns the serial of the
// certificate the server presents.
func (ts *testServer) servedSerial(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.admission, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reading the certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func (ts *testServer) post(t *testing.T, c *http.Client, path string, body []byte) *http.Response {
	t.Helper()
	resp, err := c.Post("https://"+ts.admission+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServerServesOverTLSWithoutHTTP2(t *testing.T) {
	ts := startServer(t, nil)
	if got := getStatus(t, "http://"+ts.metrics+"/readyz"); got != 200 {
		t.Fatalf("/readyz = %d", got)
	}
	if got := getStatus(t, "http://"+ts.metrics+"/healthz"); got != 200 {
		t.Fatalf("/healthz = %d", got)
	}
	resp := ts.post(t, ts.client("h2", "http/1.1"), MutatePath, review(stsRequest("CREATE", map[string]any{})))
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("status %d over %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
	}
	// Plain HTTP on the admission port is refused.
	if resp, err := http.Post("http://"+ts.admission+MutatePath, "application/json", strings.NewReader("{}")); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP accepted on the admission port")
		}
		resp.Body.Close()
	}
	metrics, err := http.Get("http://" + ts.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	for _, name := range []string{
		"dittofs_webhook_admission_requests_total", "dittofs_webhook_admission_duration_seconds_bucket",
		"dittofs_webhook_violations_total", "dittofs_webhook_mutations_total", "dittofs_webhook_bad_requests_total",
		"dittofs_webhook_panics_total", "dittofs_webhook_tls_certificate_expiry_timestamp_seconds",
		"dittofs_webhook_tls_certificate_reloads_total", "dittofs_webhook_build_info", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(string(text), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestServerHTTP2WhenEnabled(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.EnableHTTP2 = true })
	resp := ts.post(t, ts.client("h2", "http/1.1"), MutatePath, review(stsRequest("CREATE", map[string]any{})))
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s with --enable-http2", resp.Proto)
	}
}

func TestServerTLSMinVersion(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.TLSMinVersion = tls.VersionTLS13 })
	_, err := tls.Dial("tcp", ts.admission, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}) //nolint:gosec
	if err == nil {
		t.Fatal("TLS 1.2 handshake accepted with --tls-min-version 1.3")
	}
}

// TestServerWaitsForCertificate: without a loadable pair at start the server
// starts anyway, alive but not ready: /healthz 200, /readyz 503 with a
// one-line reason, TLS handshakes on the admission port fail, the failure is
// logged and counted once. When a good pair appears it is served within 10 s
// (a short poll here), /readyz turns 200 and admission works; Run stops
// cleanly with no watcher left running.
func TestServerWaitsForCertificate(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T, dir string, ca *certs.CA) // nil: no directory at start
	}{
		{"files written later", func(t *testing.T, dir string, _ *certs.CA) { must(t, os.Mkdir(dir, 0o755)) }},
		{"directory created later", nil},
		{"bad pair, then a good one", func(t *testing.T, dir string, _ *certs.CA) { writeSecretVolume(t, dir, garbagePair) }},
		{"mismatched pair, then a good one", func(t *testing.T, dir string, ca *certs.CA) { writeSecretVolume(t, dir, mismatchedPair(t, ca)) }},
	}
	const expiry, reloads = "dittofs_webhook_tls_certificate_expiry_timestamp_seconds", "dittofs_webhook_tls_certificate_reloads_total"
	const poll = 50 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := certs.NewCA(0)
			if err != nil {
				t.Fatal(err)
			}
			ts := &testServer{ca: ca, dir: filepath.Join(t.TempDir(), "tls"), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
			if tc.start != nil {
				tc.start(t, ts.dir, ca)
			}
			logs := &logCounter{}
			ts.run(t, func(o *Options) { o.CertPollInterval = poll; o.Log = slog.New(logs) })

			time.Sleep(10 * poll) // several polls see the same failure
			if got := getStatus(t, "http://"+ts.metrics+"/healthz"); got != 200 {
				t.Errorf("/healthz = %d while waiting for a certificate, want 200", got)
			}
			code, body := getBody(t, "http://"+ts.metrics+"/readyz")
			if reason := strings.TrimSuffix(body, "\n"); code != 503 || reason == "" || strings.Contains(reason, "\n") {
				t.Errorf("/readyz = %d %q while waiting for a certificate, want 503 with a one-line reason", code, body)
			}
			if conn, err := tls.Dial("tcp", ts.admission, &tls.Config{InsecureSkipVerify: true}); err == nil { //nolint:gosec // any certificate would do
				conn.Close()
				t.Error("TLS handshake succeeded without a certificate")
			}
			if got := ts.metricValue(t, reloads, "result", "failure"); got != 1 {
				t.Errorf("reloads{failure} = %v while waiting, want 1 (once, not per poll)", got)
			}
			if got := logs.errors.Load(); got != 1 {
				t.Errorf("%d errors logged while waiting, want 1 (once, not per poll)", got)
			}
			if got := ts.metricValue(t, expiry); got != 0 {
				t.Errorf("expiry gauge %v without a certificate, want 0", got)
			}

			writeSecretVolume(t, ts.dir, issuePair(t, ca))
			waitFor(t, 10*time.Second, func() (int, bool) { s := getStatus(t, "http://"+ts.metrics+"/readyz"); return s, s == 200 })
			resp := ts.post(t, ts.client(), MutatePath, review(stsRequest("CREATE", map[string]any{})))
			if resp.StatusCode != 200 {
				t.Errorf("admission status %d once the certificate is loaded", resp.StatusCode)
			}
			if got := ts.metricValue(t, reloads, "result", "success"); got != 1 {
				t.Errorf("reloads{success} = %v after the first load, want 1", got)
			}
			if got := ts.metricValue(t, reloads, "result", "failure"); got != 1 {
				t.Errorf("reloads{failure} = %v after the first load, want still 1", got)
			}
			if got := ts.metricValue(t, expiry); got <= float64(time.Now().Unix()) {
				t.Errorf("expiry gauge %v after the first load, want the certificate's NotAfter", got)
			}

			ts.cancel()
			select {
			case err := <-ts.done:
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
				ts.done <- nil // for the cleanup
			case <-time.After(15 * time.Second):
				t.Fatal("server did not stop")
			}
			noWatcherGoroutines(t)
		})
	}
}

// TestServerFailsFastOnBadOptions: an invalid option is still an error at
// start, certificate or not.
func TestServerFailsFastOnBadOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // were it to start
	defer cancel()
	err := Run(ctx, Options{
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key",
		Policy: policies.Options{}, Log: discardLog,
	})
	if err == nil {
		t.Fatal("Run started with invalid policy options")
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCertificateRotation swaps the Secret-volume symlink and expects the new
// certificate served well within 10 s with the poll interval left at its
// default (the fsnotify watch does it), the expiry gauge and the reload
// counter updated, and a bad pair ignored with the old one kept.
func TestCertificateRotation(t *testing.T) {
	ts := startServer(t, nil)
	const expiry, reloads = "dittofs_webhook_tls_certificate_expiry_timestamp_seconds", "dittofs_webhook_tls_certificate_reloads_total"
	before := ts.servedSerial(t)
	expiryBefore := ts.metricValue(t, expiry)

	time.Sleep(1100 * time.Millisecond) // a NotAfter one second later
	ts.rotate(t, nil)
	after := waitFor(t, 10*time.Second, func() (string, bool) { s := ts.servedSerial(t); return s, s != before })
	if got := ts.metricValue(t, reloads, "result", "success"); got != 1 {
		t.Errorf("reloads{success} = %v, want 1", got)
	}
	if got := ts.metricValue(t, expiry); got <= expiryBefore {
		t.Errorf("expiry gauge %v not updated (was %v)", got, expiryBefore)
	}

	// A corrupt pair: counted once, the previous certificate keeps serving.
	ts.rotate(t, [][]byte{[]byte("not a certificate"), []byte("not a key")})
	waitFor(t, 10*time.Second, func() (float64, bool) {
		v := ts.metricValue(t, reloads, "result", "failure")
		return v, v == 1
	})
	if s := ts.servedSerial(t); s != after {
		t.Fatalf("serving %s after a bad pair, want the previous %s", s, after)
	}
	if got := getStatus(t, "http://"+ts.metrics+"/readyz"); got != 200 {
		t.Errorf("/readyz = %d after a bad pair", got)
	}
	resp := ts.post(t, ts.client(), MutatePath, review(stsRequest("CREATE", map[string]any{})))
	if resp.StatusCode != 200 {
		t.Errorf("status %d after a bad pair", resp.StatusCode)
	}
	// A key that does not match the certificate is bad too.
	crt, _, _ := ts.ca.Issue([]string{"127.0.0.1"}, time.Hour)
	_, otherKey, _ := ts.ca.Issue([]string{"127.0.0.1"}, time.Hour)
	ts.rotate(t, [][]byte{crt, otherKey})
	waitFor(t, 10*time.Second, func() (float64, bool) {
		v := ts.metricValue(t, reloads, "result", "failure")
		return v, v == 2
	})
	if s := ts.servedSerial(t); s != after {
		t.Fatalf("serving %s after a mismatched pair, want %s", s, after)
	}
}

// TestCertificateRotationByPolling covers a missed event: with no watchable
// change (the files rewritten in place under a directory we cannot watch
// would look the same), the poll still picks the new pair up.
func TestCertificateRotationByPolling(t *testing.T) {
	dir := t.TempDir()
	ca, _ := certs.NewCA(0)
	crt, key, _ := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, crt, 0o600)
	_ = os.WriteFile(keyFile, key, 0o600)
	w := loadedCertWatcher(t, certFile, keyFile, nil)
	w.poll = 50 * time.Millisecond
	first := w.Leaf().SerialNumber.String()
	crt2, key2, _ := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	_ = os.WriteFile(keyFile, key2, 0o600)
	_ = os.WriteFile(certFile, crt2, 0o600)
	// Start after the write: fsnotify cannot have seen it, only the poll can.
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Start(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	waitFor(t, 5*time.Second, func() (string, bool) { s := w.Leaf().SerialNumber.String(); return s, s != first })
}

// TestGracefulShutdown: a request in flight when the server is told to stop
// is answered, /readyz fails while it drains, and Run returns nil, with no
// server goroutine left; with a drain, the answer (written during the drain)
// closes the connection.
func TestGracefulShutdown(t *testing.T) {
	for _, period := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprintf("drain %s", period), func(t *testing.T) {
			ts := startServer(t, func(o *Options) { o.DrainPeriod = period })
			body := review(stsRequest("CREATE", map[string]any{}))
			pr, pw := io.Pipe()
			c := ts.client()
			defer c.CloseIdleConnections()
			result := make(chan error, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodPost, "https://"+ts.admission+MutatePath, pr)
				req.Header.Set("Content-Type", "application/json")
				req.ContentLength = int64(len(body))
				resp, err := c.Do(req)
				if err == nil {
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					} else if period > 0 && !resp.Close {
						err = errors.New("answered during the drain without Connection: close")
					}
					resp.Body.Close()
				}
				result <- err
			}()
			_, _ = pw.Write(body[:10]) // the request is now in flight
			// Wait until the server holds the connection (its TLS handshake done and
			// the headers read), by which time Shutdown must wait for it.
			time.Sleep(300 * time.Millisecond)
			ts.cancel()
			waitFor(t, 5*time.Second, func() (int, bool) {
				s := getStatus(t, "http://"+ts.metrics+"/readyz")
				return s, s != 200
			})
			_, _ = pw.Write(body[10:])
			_ = pw.Close()
			if err := <-result; err != nil {
				t.Fatalf("in-flight request failed: %v", err)
			}
			ts.waitRun(t, 10*time.Second)
		})
	}
}

// metricValue returns the value of the series of family name whose labels
// include the given pairs ("result", "success"), from the server's registry.
func (ts *testServer) metricValue(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func waitFor[T any](t *testing.T, d time.Duration, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s (last value %v)", d, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
