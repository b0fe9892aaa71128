package main

// The server started before its certificate files are usable (SPEC §5:
// "/readyz fails until a certificate is loaded"), driven through the real
// binary; and flag values that stay fatal at start whatever the certificate.

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeWaitsForCertificate: started with an empty Secret-volume
// directory, the process stays up, alive but not ready, fails TLS handshakes
// and logs why; when the kubelet-style ..data swap brings the pair it is
// served within 10 s (default poll), /readyz turns 200, admission works, and
// SIGTERM still exits 0.
func TestServeWaitsForCertificate(t *testing.T) {
	s := launch(t, false)

	deadline := time.Now().Add(10 * time.Second)
	for status(s.metrics, "/healthz") != 200 {
		select {
		case err := <-s.exited:
			t.Fatalf("exited (%v) without a certificate instead of waiting for one", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz not 200 within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readyz(s.metrics); got != 503 {
		t.Errorf("/readyz = %d without a certificate, want 503", got)
	}
	if conn, err := tls.Dial("tcp", s.admission, &tls.Config{InsecureSkipVerify: true}); err == nil { //nolint:gosec // any certificate would do
		conn.Close()
		t.Error("TLS handshake succeeded without a certificate")
	}
	for !strings.Contains(s.logText(), `"level":"ERROR"`) { // the log is flushed within a second
		if time.Now().After(deadline) {
			t.Fatal("no error logged for the missing certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}

	s.rotate(t, nil)
	start := time.Now()
	for readyz(s.metrics) != 200 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("/readyz not 200 within 10 s of the certificate appearing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ready %s after the certificate appeared", time.Since(start).Round(time.Millisecond))
	if err := post(s.client(false), s.admission, "after-wait"); err != nil {
		t.Fatalf("admission once the certificate is loaded: %v", err)
	}
	if got := s.metric(t, `dittofs_webhook_tls_certificate_reloads_total{result="success"}`); got != 1 {
		t.Errorf("reloads{success} = %v, want 1 (the first load)", got)
	}
	if got := s.metric(t, `dittofs_webhook_tls_certificate_reloads_total{result="failure"}`); got != 1 {
		t.Errorf("reloads{failure} = %v, want 1 (missing files, counted once)", got)
	}

	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestServeBadFlagValueExits2: a flag whose value is invalid still stops the
// server at start with exit 2, though it would wait for a missing certificate.
func TestServeBadFlagValueExits2(t *testing.T) {
	bin := binary(t)
	missing := []string{"--tls-cert-file", "/nonexistent/tls.crt", "--tls-key-file", "/nonexistent/tls.key",
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}
	cases := []struct {
		name string
		args []string
	}{
		{"tls min version", []string{"--tls-min-version", "1.1"}},
		{"default cache size", []string{"--default-cache-size", "-5Gi"}},
		{"cache mount path", []string{"--cache-mount-path", "relative"}},
		{"shutdown timeout", []string{"--shutdown-timeout", "-1s"}},
		{"shutdown drain period", []string{"--shutdown-drain-period", "-1s"}},
		{"log format", []string{"--log-format", "xml"}},
		{"log level", []string{"--log-level", "loud"}},
		{"unknown flag", []string{"--no-such-flag"}},
		{"extra argument", []string{"extra"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // were it to start
			defer cancel()
			args := append(append([]string{"serve"}, missing...), tc.args...)
			err := exec.CommandContext(ctx, bin, args...).Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Errorf("serve %v: %v, want exit status 2", tc.args, err)
			}
		})
	}
}

func status(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
