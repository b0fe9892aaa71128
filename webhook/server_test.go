package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"

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
	resp := tests.Must(c.Post("https://"+ts.admission+MutatePath, "application/json", bytes.NewReader(emptyReview("uid-1"))))(t)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func emptyReview(uid string) []byte { return tests.NewReview(uid, "CREATE", []byte(`{}`), nil) }

// TestServer: without a certificate directory the server waits, /readyz 503
// with a one-line reason, TLS handshakes fail;
// with a pair, the probes, TLS on the admission port (HTTP/1.1 unless
// --enable-http2, --tls-min-version, no plain HTTP), every metric family, and
// a clean stop with no goroutine left.
func TestServer(t *testing.T) {
	const poll = 50 * time.Millisecond
	ts := &testServer{SecretVolume: tests.NewSecretVolume(t, filepath.Join(t.TempDir(), "tls"))}
	ts.run(t, func(o *Options) { o.CertPollInterval, o.TLSMinVersion = poll, tls.VersionTLS13 })
	time.Sleep(10 * poll) // several polls see the same failure
	resp := tests.Must(http.Get(ts.metrics + "/readyz"))(t)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if reason := strings.TrimSuffix(string(body), "\n"); resp.StatusCode != 503 || reason == "" ||
		strings.Contains(reason, "\n") {
		t.Errorf("/readyz = %d %q while waiting for a certificate, want 503 with a one-line reason",
			resp.StatusCode, body)
	}
	if c, err := tls.Dial("tcp", ts.admission, &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("TLS handshake succeeded without a certificate")
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
	if resp, err := http.Post(plain, "application/json", bytes.NewReader(emptyReview("plain"))); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP accepted on the admission port")
		}
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

// keptAlive is a connection used for request after request, as kube-apiserver's pool does.
type keptAlive struct {
	conn *tls.Conn
	br   *bufio.Reader
}

func (ts *testServer) dialKeptAlive(t *testing.T) *keptAlive {
	t.Helper()
	conn := tests.Must(tls.Dial("tcp", ts.admission, &tls.Config{RootCAs: ts.CA.Pool(), NextProtos: []string{"http/1.1"}}))(t)
	t.Cleanup(func() { conn.Close() })
	return &keptAlive{conn: conn, br: bufio.NewReader(conn)}
}

// roundTrip sends a review with uid and reads the whole answer; an error: none came.
func (k *keptAlive) roundTrip(uid string) (*http.Response, error) {
	r, _ := http.NewRequest(http.MethodPost, "https://"+k.conn.RemoteAddr().String()+MutatePath, bytes.NewReader(emptyReview(uid)))
	r.Header.Set("Content-Type", "application/json")
	_ = k.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := r.Write(k.conn); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(k.br, r)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	var rr admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil || rr.Response == nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	if resp.StatusCode != http.StatusOK || string(rr.Response.UID) != uid {
		return nil, fmt.Errorf("HTTP %d for uid %q, want 200 for %q", resp.StatusCode, rr.Response.UID, uid)
	}
	return resp, nil
}

// closedByServer reports whether the server has closed the connection (EOF).
func (k *keptAlive) closedByServer() error {
	_ = k.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := k.br.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("read after the answer: %v, want EOF", err)
	}
	return nil
}

// checkDrained compares the "drained" lines logged, their period aside, with
// the counts wanted: {responses with Connection: close, open connections}.
func checkDrained(t *testing.T, l *logRecorder, want ...[2]int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var got, w []map[string]string
	for _, r := range l.records {
		if r.Message == "drained" {
			attrs := map[string]string{}
			r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
			delete(attrs, "period")
			got = append(got, attrs)
		}
	}
	for _, c := range want {
		w = append(w, map[string]string{"responses_with_connection_close": fmt.Sprint(c[0]),
			"open_connections": fmt.Sprint(c[1])})
	}
	if d := gocmp.Diff(w, got); d != "" {
		t.Errorf("drained lines logged (-want +got):\n%s", d)
	}
}

// inFlight sends a review whose body is still arriving when it returns (Shutdown
// must wait for it); finish sends the rest and returns the answer.
func (ts *testServer) inFlight(t *testing.T) (finish func() (*http.Response, error)) {
	t.Helper()
	body := emptyReview("in-flight")
	pr, pw := io.Pipe()
	c := ts.Client()
	t.Cleanup(c.CloseIdleConnections)
	var resp *http.Response
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodPost, "https://"+ts.admission+MutatePath, pr)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		if resp, err = c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	_, _ = pw.Write(body[:10])
	time.Sleep(300 * time.Millisecond) // the TLS handshake done and the headers read
	return func() (*http.Response, error) {
		_, _ = pw.Write(body[10:])
		_ = pw.Close()
		<-done
		return resp, err
	}
}

// TestDrainAnswersKeptAliveConnection is issue 22's rollout race: a kept-alive
// connection idle when the shutdown begins, then used (kube-apiserver ≤ 1.36's
// pooled connections). With the drain the request gets Connection: close and the
// connection is closed, the drain lasts its period, not ready but answering new
// connections; without it the request gets no answer. Either way a request in
// flight is answered and Run returns nil, no goroutine left.
func TestDrainAnswersKeptAliveConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		period   time.Duration
		answered bool
	}{
		{"drain", 2 * time.Second, true},
		{"no drain", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecorder{}
			ts := startServer(t, func(o *Options) { o.DrainPeriod = tc.period; o.Log = slog.New(logs) })
			k := ts.dialKeptAlive(t)
			if resp := tests.Must(k.roundTrip("before"))(t); resp.Close {
				t.Fatal("answered with Connection: close before the shutdown")
			}
			finish := ts.inFlight(t)
			ts.Cancel()
			tests.Eventually(t, 5*time.Second, func() (int, bool) { s := ts.ready(); return s, s != 200 })
			time.Sleep(100 * time.Millisecond) // without a drain, Shutdown has closed idle connections by then
			resp, err := k.roundTrip("during")
			switch {
			case !tc.answered && err == nil:
				t.Fatal("answered without a drain: the test no longer shows the race it guards against")
			case !tc.answered:
				t.Logf("without a drain, as expected: %v", err)
			case err != nil:
				t.Fatalf("request on the kept-alive connection during the drain: %v", err)
			default:
				if !resp.Close {
					t.Error("answered during the drain without Connection: close")
				}
				if err := k.closedByServer(); err != nil {
					t.Error(err)
				}
				// A client whose view of the endpoints is late still gets an answer.
				c := ts.Client()
				defer c.CloseIdleConnections()
				if resp := ts.post(t, c); resp.StatusCode != 200 || !resp.Close || ts.ready() != 503 {
					t.Errorf("new connection during the drain: HTTP %d, Connection: close %t, /readyz %d; want 200, true, 503",
						resp.StatusCode, resp.Close, ts.ready())
				}
				select {
				case err := <-ts.Done:
					t.Fatalf("Run returned (%v) before the end of the drain period", err)
				default:
				}
			}
			switch resp, err := finish(); {
			case err != nil:
				t.Fatalf("in-flight request: %v", err)
			case resp.StatusCode != 200 || (tc.period > 0 && !resp.Close):
				t.Errorf("in-flight request: HTTP %d, Connection: close %t; want 200 (and close under a drain)",
					resp.StatusCode, resp.Close)
			}
			ts.waitRun(t, 10*time.Second)
			if tc.period > 0 {
				checkDrained(t, logs, [2]int{3, 0}) // the kept-alive, the new connection's and the in-flight answers
			} else {
				checkDrained(t, logs)
			}
		})
	}
}

// TestDrainPeriodBounds: a connection kept idle through the whole drain does not
// hold the server: Shutdown closes it (docs/reliability.md) and Run returns.
func TestDrainPeriodBounds(t *testing.T) {
	logs := &logRecorder{}
	ts := startServer(t, func(o *Options) { o.DrainPeriod = 300 * time.Millisecond; o.Log = slog.New(logs) })
	k := ts.dialKeptAlive(t)
	tests.Must(k.roundTrip("before"))(t)
	ts.Cancel()
	ts.waitRun(t, 10*time.Second)
	if err := k.closedByServer(); err != nil {
		t.Error(err)
	}
	checkDrained(t, logs, [2]int{0, 1}) // the idle connection, left for Shutdown
}
