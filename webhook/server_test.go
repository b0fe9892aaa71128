package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
)

var discardLog = slog.New(slog.DiscardHandler)

// testServer is a running Run on a Secret-volume certificate directory.
type testServer struct {
	*tests.SecretVolume
	*tests.Running
	admission, metrics string
}

// startServer runs the real server on kernel-chosen ports with a first pair.
func startServer(t *testing.T, mutate func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{SecretVolume: tests.NewSecretVolume(t, filepath.Join(t.TempDir(), "tls"))}
	ts.Write(t, ts.Issue(t))
	ts.run(t, mutate)
	return ts
}

// run starts Run on the certificate files in ts.Dir, whatever their state.
func (ts *testServer) run(t *testing.T, mutate func(*Options)) {
	t.Helper()
	o := Options{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", CertFile: ts.CertFile(), KeyFile: ts.KeyFile(),
		TLSMinVersion: tls.VersionTLS12, Policy: policies.DefaultOptions(), ShutdownTimeout: 10 * time.Second,
		Log: discardLog}
	if mutate != nil {
		mutate(&o)
	}
	ts.Running = tests.StartRun(t, func(ctx context.Context, ready func()) error {
		o.Ready = func(a, m net.Addr) { ts.admission, ts.metrics = a.String(), "http://"+m.String(); ready() }
		return Run(ctx, o)
	})
}

// waitRun waits for Run to return nil within d, no goroutine of it left.
func (ts *testServer) waitRun(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-ts.Done:
		ts.Done <- nil // for the cleanup
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Run did not return within %s", d)
	}
	noGoroutines(t, "server", "net/http.(*conn).serve", "net/http.(*Server).Serve", "webhook.Run", "webhook.(*drain)",
		"(*CertWatcher).Start", "fsnotify")
}

// ready is the status of /readyz.
func (ts *testServer) ready() int { return tests.HTTPStatus(ts.metrics + "/readyz") }

// post sends an AdmissionReview of an unmanaged StatefulSet.
func (ts *testServer) post(t *testing.T, c *http.Client) *http.Response {
	t.Helper()
	resp := must(c.Post("https://"+ts.admission+MutatePath, "application/json", bytes.NewReader(emptyReview("uid-1"))))(t)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func emptyReview(uid string) []byte { return tests.NewReview(uid, "CREATE", []byte(`{}`), nil) }

// TestServer: without a certificate directory the server waits, /readyz 503
// with a one-line reason (the failing handshakes are TestServeWaitsForCertificate's);
// with a pair, the probes, TLS on the admission port (HTTP/1.1 unless
// --enable-http2, --tls-min-version, no plain HTTP), every metric family, and
// a clean stop with no goroutine left.
func TestServer(t *testing.T) {
	const poll = 50 * time.Millisecond
	ts := &testServer{SecretVolume: tests.NewSecretVolume(t, filepath.Join(t.TempDir(), "tls"))}
	ts.run(t, func(o *Options) { o.CertPollInterval, o.TLSMinVersion = poll, tls.VersionTLS13 })
	time.Sleep(10 * poll) // several polls see the same failure
	resp := must(http.Get(ts.metrics + "/readyz"))(t)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if reason := strings.TrimSuffix(string(body), "\n"); resp.StatusCode != 503 || reason == "" ||
		strings.Contains(reason, "\n") {
		t.Errorf("/readyz = %d %q while waiting for a certificate, want 503 with a one-line reason",
			resp.StatusCode, body)
	}
	ts.Write(t, ts.Issue(t))
	tests.Eventually(t, 10*time.Second, func() (int, bool) { s := ts.ready(); return s, s == 200 })
	if h := tests.HTTPStatus(ts.metrics + "/healthz"); h != 200 {
		t.Errorf("/healthz %d", h)
	}
	if resp := ts.post(t, ts.Client("h2", "http/1.1")); resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("status %d over %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
	}
	plain := "http://" + ts.admission + MutatePath
	if resp, err := http.Post(plain, "application/json", strings.NewReader("{}")); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP accepted on the admission port")
		}
		resp.Body.Close()
	}
	tls12 := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12} //nolint:gosec
	if c, err := tls.Dial("tcp", ts.admission, tls12); err == nil {
		c.Close()
		t.Error("TLS 1.2 handshake accepted with --tls-min-version 1.3")
	}
	names := map[string]bool{}
	for _, s := range tests.Scrape(t, ts.metrics+"/metrics") {
		names[s.Name] = true
	}
	for _, name := range []string{
		"dittofs_webhook_admission_requests_total", "dittofs_webhook_admission_duration_seconds_bucket",
		"dittofs_webhook_violations_total", "dittofs_webhook_mutations_total", "dittofs_webhook_bad_requests_total",
		"dittofs_webhook_panics_total", "dittofs_webhook_tls_certificate_expiry_timestamp_seconds",
		"dittofs_webhook_tls_certificate_reloads_total",
		"dittofs_webhook_build_info", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !names[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	ts.Cancel()
	ts.waitRun(t, 15*time.Second)

	h2 := startServer(t, func(o *Options) { o.EnableHTTP2 = true })
	if resp := h2.post(t, h2.Client("h2", "http/1.1")); resp.ProtoMajor != 2 {
		t.Fatalf("served over %s with --enable-http2", resp.Proto)
	}
}

// TestServerFailsFastOnBadOptions: an invalid option is an error at start, certificate or not.
func TestServerFailsFastOnBadOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // were it to start
	defer cancel()
	if Run(ctx, Options{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", CertFile: "/nonexistent/tls.crt",
		KeyFile: "/nonexistent/tls.key", Policy: policies.Options{}, Log: discardLog}) == nil {
		t.Fatal("Run started with invalid policy options")
	}
}
