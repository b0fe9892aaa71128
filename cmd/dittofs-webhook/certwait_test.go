package main

// The server started before its certificate files are usable (SPEC §5:
// "/readyz fails until a certificate is loaded"), driven through the real
// binary. Flag values that stay fatal at start whatever the certificate are
// tests/eval/serve-bad-flags.txtar.

import (
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
)

// TestServeWaitsForCertificate: started with an empty certificate directory,
// the process stays up, alive, and logs why it is not ready; when the
// kubelet-style ..data swap brings the pair it is served within 10 s (default
// poll), /readyz turns 200 and admission works. What the server does while it
// waits (/readyz 503, TLS handshakes failing) and on later rotations is
// webhook's TestServerWaitsForCertificate and TestCertWatcher*.
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
	if ok, bad := s.metric(t, success), s.metric(t, failure); ok != 1 || bad != 1 {
		t.Errorf("reloads{success} %v, {failure} %v; want 1 (the first load) and 1 (missing files, counted once)",
			ok, bad)
	}
}
