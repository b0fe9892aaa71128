package benchkit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dittofs/dittofs-webhook/certs"
)

// Kind names one of the servers under test.
type Kind string

// The servers under test.
const (
	Ditto Kind = "dittofs-webhook"
	Peer  Kind = "controller-runtime"
	Floor Kind = "floor"
)

// build builds the three servers into dir with the flags of `make build`
// (static, trimmed, stripped) and returns their paths.
func build(repoRoot, dir string) (map[Kind]string, error) {
	bench := filepath.Join(repoRoot, "tests", "bench")
	bins := map[Kind]string{}
	for _, b := range []struct {
		kind    Kind
		wd, pkg string
	}{{Ditto, repoRoot, "./cmd/dittofs-webhook"}, {Peer, bench, "./peer"}, {Floor, bench, "./floor"}} {
		bins[b.kind] = filepath.Join(dir, string(b.kind))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bins[b.kind], b.pkg)
		cmd.Dir = b.wd
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return bins, nil
}

// writeCerts writes a development CA and serving certificate into dir and
// returns the CA's PEM and a pool holding it.
func writeCerts(dir string) ([]byte, *x509.CertPool, error) {
	if err := certs.Write(certs.Options{Dir: dir}); err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("bad " + certs.CACertFile)
	}
	return caPEM, pool, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ServerSpec says how to start one server.
type ServerSpec struct {
	Kind     Kind
	Label    string // name in reports; Kind when empty
	LogLevel string // dittofs-webhook and the peer: info or warn
	CPU      string // taskset CPU list ("1"), run with GOMAXPROCS=1; empty: not pinned
	Args     []string
	Env      []string // added to the server's environment (e.g. GOGC=200)
}

// Server is a running server process; its output goes to a file in the
// working folder.
type Server struct {
	Spec    ServerSpec
	Label   string
	Addr    string // host:port of the admission listener
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan error
}

// URL returns the https URL of path on the server.
func (s *Server) URL(path string) string { return "https://" + s.Addr + path }

// Pid is the server's process id (taskset execs the server in place).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Start starts a server and waits until it answers TLS on its port (at most
// 20 s). It dies with the benchmark (Pdeathsig).
func (e *Setup) Start(spec ServerSpec) (*Server, error) {
	label := spec.Label
	if label == "" {
		label = string(spec.Kind)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	crt, key := filepath.Join(e.CertDir, certs.CertFile), filepath.Join(e.CertDir, certs.KeyFile)
	args := []string{e.bins[spec.Kind]}
	switch spec.Kind {
	case Ditto:
		// A metrics port of its own: two dittofs-webhooks may run at once.
		metrics, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "serve", "--listen", addr, "--metrics-listen", metrics,
			"--tls-cert-file", crt, "--tls-key-file", key, "--log-level", spec.LogLevel)
	case Peer:
		args = append(args, "--listen", addr, "--cert-dir", e.CertDir, "--log-level", spec.LogLevel)
	case Floor:
		args = append(args, "--listen", addr, "--tls-cert-file", crt, "--tls-key-file", key)
	}
	args = append(args, spec.Args...)
	env := append(os.Environ(), spec.Env...)
	if spec.CPU != "" {
		args = append([]string{"taskset", "-c", spec.CPU}, args...)
		env = append(env, "GOMAXPROCS=1")
	}
	logFile, err := os.CreateTemp(e.Work, strings.ReplaceAll(label, " ", "_")+"-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	s := &Server{Spec: spec, Label: label, Addr: addr, cmd: cmd, logFile: logFile, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if !s.Alive() || time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("%s did not start (log %s):\n%s", label, logFile.Name(), s.LogTail(20))
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			return s, nil
		}
	}
}

// Alive reports whether the server process is still running.
func (s *Server) Alive() bool {
	select {
	case err := <-s.exited:
		s.exited <- err
		return false
	default:
		return true
	}
}

// LogTail returns the last n lines of the server's output.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logFile.Name())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Stop sends SIGTERM and waits (at most 30 s, then SIGKILL).
func (s *Server) Stop() error {
	defer s.logFile.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		return err
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop on SIGTERM within 30 s", s.Label)
	}
}

// NewClient returns an HTTP/1.1 keep-alive client trusting the benchmark's
// CA, keeping up to conns idle connections.
func (e *Setup) NewClient(conns int) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: e.Pool},
		Protocols:           protocols,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}}
}
