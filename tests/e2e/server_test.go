package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// server is a running `dittofs-webhook serve`.
type server struct {
	listen   string // 127.0.0.1:PORT, admission (HTTPS)
	metrics  string // 127.0.0.1:PORT, /readyz and /metrics (HTTP)
	proc     *framework.Process
	stopOnce sync.Once
	stopErr  error
}

// startServer runs the server on free loopback ports with the harness's certificate and serve flags args, and
// waits for /readyz; a port taken between its pick and the server's bind: the server exits, another pair is tried.
func (h *harness) startServer(args ...string) (*server, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		s := &server{listen: "127.0.0.1:" + ports[0], metrics: "127.0.0.1:" + ports[1]}
		cmd := exec.Command(h.bin("dittofs-webhook"), append([]string{"serve",
			"--listen", s.listen, "--metrics-listen", s.metrics,
			"--tls-cert-file", filepath.Join(h.tlsDir, "tls.crt"), "--tls-key-file", filepath.Join(h.tlsDir, "tls.key"),
			"--log-format", "text"}, args...)...)
		if s.proc, lastErr = framework.StartProcess(filepath.Join(h.artifacts, "dittofs-webhook-"+ports[0]+".log"), cmd); lastErr != nil {
			return nil, lastErr
		}
		client := &http.Client{Timeout: time.Second}
		if lastErr = s.proc.WaitHTTP(client, "http://"+s.metrics+"/readyz", 30*time.Second); lastErr == nil {
			return s, nil
		}
		s.proc.PrintLogTail(os.Stderr, 40)
		_ = s.stop(5 * time.Second)
	}
	return nil, lastErr
}

// stop sends SIGTERM; the server must exit with status 0 (SPEC §5), and not
// before (then it is an error). After timeout it is killed.
func (s *server) stop(timeout time.Duration) error {
	s.stopOnce.Do(func() {
		if s.proc.Exited() {
			s.stopErr = fmt.Errorf("dittofs-webhook had already exited: %v (log %s)", s.proc.Err, s.proc.LogPath)
			return
		}
		s.stopErr = s.proc.Stop(timeout)
	})
	return s.stopErr
}

func freePorts(n int) ([]string, error) {
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	return ports, nil
}

// makeCertificates makes the development CA and serving pair with dev-certs,
// laid out as the kubelet mounts a Secret, so the rotation test can swap them.
func (h *harness) makeCertificates() error {
	pair, err := h.issueServingPair("initial")
	if err != nil {
		return err
	}
	h.caPEM, h.tlsDir = pair["ca.crt"], filepath.Join(h.artifacts, "tls")
	return tests.WriteSecretVolume(h.tlsDir, pair)
}

// issueServingPair runs `dev-certs -out DIR` in a fresh directory named name and returns what the Secret holds
// (ca.crt, tls.crt, tls.key); after the first, seeded with the first CA, which dev-certs reuses.
func (h *harness) issueServingPair(name string) (map[string][]byte, error) {
	dir := filepath.Join(h.artifacts, "certs", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if first := filepath.Join(h.artifacts, "certs", "initial"); dir != first {
		for _, f := range []string{"ca.crt", "ca.key"} {
			if err := os.Link(filepath.Join(first, f), filepath.Join(dir, f)); err != nil {
				return nil, err
			}
		}
	}
	if out, err := exec.Command(h.bin("dev-certs"), "-out", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dev-certs -out %s: %w\n%s", dir, err, out)
	}
	pair := map[string][]byte{}
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		var err error
		if pair[f], err = os.ReadFile(filepath.Join(dir, f)); err != nil {
			return nil, err
		}
	}
	return pair, nil
}

// withWarnOnlyServer points the webhooks at a server run with --validation-action warn until restore (or the
// test's end). Until a dry run of probe, which the enforcing server denies, is allowed, that one still answers.
func withWarnOnlyServer(t *testing.T, probe string) (warn *server, restore func()) {
	t.Helper()
	warn, err := env.startServer("--validation-action", "warn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := warn.stop(serverStopTimeout); err != nil {
			t.Error(err)
		}
	})
	mustKubectl(t, strings.ReplaceAll(string(env.webhooks), env.server.listen, warn.listen), "replace", "-f", "-")
	restore = webhooksBack(t, "replace")
	framework.Eventually(t, time.Minute, "the webhooks point at the warn server", nil, func() (bool, string) {
		r := env.Kubectl.Run(probe, "create", "--dry-run=server", "-n", probeNamespace, "-f", "-")
		return r.OK(), r.String()
	})
	return warn, restore
}
