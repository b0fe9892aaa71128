package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// server is a running `dittofs-webhook serve`.
type server struct {
	listen  string // 127.0.0.1:PORT, admission (HTTPS)
	metrics string // 127.0.0.1:PORT, /readyz and /metrics (HTTP)
	proc    *framework.Process

	stopOnce sync.Once
	stopErr  error
}

// startServer runs the server on free loopback ports with the certificate in
// tlsDir and more serve flags args, and waits until /readyz answers 200.
// Ports are picked free and then bound by the server, so another process can
// take one in between: then the server exits at once and another pair is
// tried.
func startServer(artifacts, bin, tlsDir string, args ...string) (*server, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		s := &server{listen: "127.0.0.1:" + ports[0], metrics: "127.0.0.1:" + ports[1]}
		cmd := exec.Command(bin, append([]string{"serve", "--listen", s.listen, "--metrics-listen", s.metrics,
			"--tls-cert-file", filepath.Join(tlsDir, "tls.crt"), "--tls-key-file", filepath.Join(tlsDir, "tls.key"),
			"--log-format", "text"}, args...)...)
		if s.proc, lastErr = framework.StartProcess(filepath.Join(artifacts, "dittofs-webhook-"+ports[0]+".log"), cmd); lastErr != nil {
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

// stop sends SIGTERM and waits for the process to exit, which must be with
// status 0 (SPEC §5: "On SIGTERM: not ready, in-flight requests finish, exit 0")
// and not before (a server that had already exited is an error). After
// timeout it is killed.
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

// makeCertificates makes the development CA and serving pair with the
// repository's dev-certs command and lays them out as the kubelet mounts the
// cert-manager Secret, so the rotation test can swap them the same way.
func (h *harness) makeCertificates() error {
	pair, err := h.issueServingPair("initial")
	if err != nil {
		return err
	}
	h.caPEM = pair.ca
	h.tlsDir = filepath.Join(h.artifacts, "tls")
	if err := os.MkdirAll(h.tlsDir, 0o755); err != nil {
		return err
	}
	return writeSecretVolume(h.tlsDir, pair)
}

// servingPair is what the cert-manager Secret holds.
type servingPair struct {
	ca, cert, key []byte
}

// issueServingPair runs `dev-certs -out DIR` in a fresh directory named name.
// After the first call the directory is seeded with the first CA, which
// dev-certs reuses: every pair is signed by the same CA, as cert-manager's
// renewals are.
func (h *harness) issueServingPair(name string) (servingPair, error) {
	dir := filepath.Join(h.artifacts, "certs", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return servingPair{}, err
	}
	if first := filepath.Join(h.artifacts, "certs", "initial"); dir != first {
		for _, f := range []string{"ca.crt", "ca.key"} {
			data, err := os.ReadFile(filepath.Join(first, f))
			if err != nil {
				return servingPair{}, err
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
				return servingPair{}, err
			}
		}
	}
	out, err := exec.Command(h.devCertsBin, "-out", dir).CombinedOutput()
	if err != nil {
		return servingPair{}, fmt.Errorf("dev-certs -out %s: %w\n%s", dir, err, out)
	}
	ca, errCA := os.ReadFile(filepath.Join(dir, "ca.crt"))
	cert, errCert := os.ReadFile(filepath.Join(dir, "tls.crt"))
	key, errKey := os.ReadFile(filepath.Join(dir, "tls.key"))
	return servingPair{ca, cert, key}, errors.Join(errCA, errCert, errKey)
}

// writeSecretVolume writes p into dir as the kubelet writes a Secret volume.
func writeSecretVolume(dir string, p servingPair) error {
	return tests.WriteSecretVolume(dir, map[string][]byte{"ca.crt": p.ca, "tls.crt": p.cert, "tls.key": p.key})
}
