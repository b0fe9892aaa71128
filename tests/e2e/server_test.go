package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

// server is a running `dittofs-webhook serve`.
type server struct {
	bin     string
	args    []string // more serve flags
	listen  string   // 127.0.0.1:PORT, admission (HTTPS)
	metrics string   // 127.0.0.1:PORT, /readyz and /metrics (HTTP)
	logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed

	stopOnce sync.Once
	stopErr  error
}

// startServer runs the server on free loopback ports with the certificate in
// tlsDir and waits until /readyz answers 200. Ports are picked free and then
// bound by the server, so another process can take one in between: then the
// server exits at once and another pair is tried.
func startServer(artifacts, bin, tlsDir string, args ...string) (*server, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		s := &server{
			args:    args,
			bin:     bin,
			listen:  net.JoinHostPort("127.0.0.1", ports[0]),
			metrics: net.JoinHostPort("127.0.0.1", ports[1]),
			logPath: filepath.Join(artifacts, fmt.Sprintf("dittofs-webhook-%s.log", ports[0])),
		}
		if lastErr = s.start(tlsDir); lastErr == nil {
			return s, nil
		}
		s.printLogTail(os.Stderr, 40)
		_ = s.stop(5 * time.Second)
	}
	return nil, lastErr
}

func (s *server) start(tlsDir string) error {
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(s.bin, "serve",
		"--listen", s.listen,
		"--metrics-listen", s.metrics,
		"--tls-cert-file", filepath.Join(tlsDir, "tls.crt"),
		"--tls-key-file", filepath.Join(tlsDir, "tls.key"),
		"--log-format", "text",
	)
	s.cmd.Args = append(s.cmd.Args, s.args...)
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	s.cmd.SysProcAttr = serverProcAttr()
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.done = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()

	readyz := "http://" + s.metrics + "/readyz"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("dittofs-webhook serve exited before it was ready: %v (log %s)", s.err, s.logPath)
		default:
		}
		resp, err := client.Get(readyz)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", readyz, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dittofs-webhook not ready within 30s: %v (log %s)", err, s.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit, which must be with
// status 0 (SPEC §5: "On SIGTERM: not ready, in-flight requests finish, exit 0").
// After timeout it is killed.
func (s *server) stop(timeout time.Duration) error {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil || s.done == nil {
			return
		}
		select {
		case <-s.done:
			s.stopErr = fmt.Errorf("dittofs-webhook had already exited: %v (log %s)", s.err, s.logPath)
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
			if s.err != nil {
				s.stopErr = fmt.Errorf("dittofs-webhook did not exit 0 on SIGTERM: %v (log %s)", s.err, s.logPath)
			}
		case <-time.After(timeout):
			_ = s.cmd.Process.Kill()
			<-s.done
			s.stopErr = fmt.Errorf("dittofs-webhook still running %s after SIGTERM: killed (log %s)", timeout, s.logPath)
		}
	})
	return s.stopErr
}

func (s *server) printLogTail(w io.Writer, lines int) {
	if s == nil {
		return
	}
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	fmt.Fprintf(w, "e2e: last lines of %s:\n", s.logPath)
	for _, l := range all {
		fmt.Fprintln(w, "  |", l)
	}
}

// servedCertificate dials the admission port the way the kube-apiserver does,
// trusting only the development CA, and returns the leaf certificate served.
func (s *server) servedCertificate(caPEM []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in the CA bundle")
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", s.listen, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	haltIfStopping()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
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

func (p servingPair) leaf() (*x509.Certificate, error) {
	block, _ := pem.Decode(p.cert)
	if block == nil {
		return nil, errors.New("tls.crt holds no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func (p servingPair) serial() *big.Int {
	c, err := p.leaf()
	if err != nil {
		return nil
	}
	return c.SerialNumber
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
	var p servingPair
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"ca.crt", &p.ca}, {"tls.crt", &p.cert}, {"tls.key", &p.key}} {
		if *f.dst, err = os.ReadFile(filepath.Join(dir, f.name)); err != nil {
			return servingPair{}, err
		}
	}
	return p, nil
}

// writeSecretVolume writes p into dir as the kubelet writes a Secret volume.
func writeSecretVolume(dir string, p servingPair) error {
	return e2ekit.WriteSecretVolume(dir, map[string][]byte{"ca.crt": p.ca, "tls.crt": p.cert, "tls.key": p.key})
}

// sameBytes reports whether the file at path holds data (through symlinks).
func sameBytes(path string, data []byte) bool {
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, data)
}
