package main

// The server started before its certificate files are usable (SPEC §5:
// "/readyz fails until a certificate is loaded"), driven through the real
// binary. Flag values that stay fatal at start whatever the certificate are
// tests/eval/serve-bad-flags.txtar.

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
)

// TestServeWaitsForCertificate: started with an empty certificate directory,
// the process stays up, alive but not ready, fails TLS handshakes and logs
// why; when the kubelet-style ..data swap brings the pair it is served within
// 10 s (default poll), /readyz turns 200, admission works, and a rotation is
// picked up.
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
	if got := s.ready(); got != 503 {
		t.Errorf("/readyz = %d without a certificate, want 503", got)
	}
	anyCert := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // any certificate would do
	if conn, err := tls.Dial("tcp", s.admission, anyCert); err == nil {
		conn.Close()
		t.Error("TLS handshake succeeded without a certificate")
	}
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

	// Rotation by ..data swap: the new pair is served within 10 s and the
	// expiry gauge follows; a corrupt pair is counted and the old one keeps
	// serving. (webhook's TestReloadDuringRotationNeverFails covers requests
	// during the swap.)
	time.Sleep(1100 * time.Millisecond) // a NotAfter one second later
	before, gauge := s.serial(t), s.metric(t, expiry)
	s.Write(t, s.Issue(t))
	tests.Eventually(t, 10*time.Second, func() (string, bool) { v := s.serial(t); return v, v != before })
	if got := s.metric(t, expiry); got <= gauge {
		t.Errorf("expiry gauge %v not moved past %v", got, gauge)
	}
	served := s.serial(t)
	s.Write(t, tests.GarbagePair)
	tests.Eventually(t, 10*time.Second, func() (float64, bool) { v := s.metric(t, failure); return v, v >= 2 })
	if got := s.serial(t); got != served {
		t.Errorf("serving %s after a bad pair, want %s", got, served)
	}
	if got := s.metric(t, success); got != 2 {
		t.Errorf("reloads{success} = %v after one rotation, want 2", got)
	}
}
