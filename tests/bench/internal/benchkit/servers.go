package benchkit

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dittofs/dittofs-webhook/certs"
)

// Kind names one of the servers under test.
type Kind string

const (
	Ditto Kind = "dittofs-webhook"
	Peer  Kind = "controller-runtime"
	Floor Kind = "floor"
)

// Binaries are the built servers.
type Binaries struct {
	Dir                string
	Ditto, Peer, Floor string
}

// FindRepo returns the dittofs-webhook repository root: the first folder at or
// above the working directory that holds cmd/dittofs-webhook.
func FindRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, "cmd", "dittofs-webhook")); err == nil && st.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no cmd/dittofs-webhook at or above the working directory: run from the repository")
		}
		dir = parent
	}
}

// Build builds the three servers into dir with the same flags as `make build`
// (static, trimmed, stripped).
func Build(repoRoot, dir string) (*Binaries, error) {
	b := &Binaries{Dir: dir, Ditto: filepath.Join(dir, "dittofs-webhook"), Peer: filepath.Join(dir, "peer"), Floor: filepath.Join(dir, "floor")}
	run := func(wd string, args ...string) error {
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-ldflags", "-s -w"}, args...)...)
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	bench := filepath.Join(repoRoot, "tests", "bench")
	if err := run(repoRoot, "-o", b.Ditto, "./cmd/dittofs-webhook"); err != nil {
		return nil, err
	}
	if err := run(bench, "-o", b.Peer, "./peer"); err != nil {
		return nil, err
	}
	if err := run(bench, "-o", b.Floor, "./floor"); err != nil {
		return nil, err
	}
	return b, nil
}

// Certs writes a development CA and serving certificate into dir and returns
// the CA pool and PEM.
func Certs(dir string) (*x509.CertPool, []byte, error) {
	if err := certs.Write(certs.Options{Dir: dir}); err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("bad ca.crt")
	}
	return pool, caPEM, nil
}

// FreePort returns a loopback port the kernel had free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ServerSpec says how to start one server.
type ServerSpec struct {
	Kind     Kind
	Label    string // name in reports; Kind when empty
	Bins     *Binaries
	CertDir  string
	LogLevel string // dittofs-webhook and peer: info or warn
	CPU      string // taskset CPU list ("1"); empty: not pinned
	Nice     int    // nice value (e.g. -19, as root) to keep other load off the measurement; 0: unchanged
	LogDir   string
	// Listen is the admission address; a free loopback port when empty.
	Listen string
	// Args are added to the server's command line.
	Args []string
	// Env is added to the server's environment (e.g. GOGC=200).
	Env []string
}

// Server is a running server process.
type Server struct {
	Spec  ServerSpec
	Label string
	Addr  string // host:port of the admission listener
	// MetricsAddr is dittofs-webhook's plain-HTTP metrics address.
	MetricsAddr string
	cmd         *exec.Cmd
	logFile     *os.File
	exited      chan error
}

// URL returns the https URL of path on the server.
func (s *Server) URL(path string) string { return "https://" + s.Addr + path }

// Pid is the server's process id (nice and taskset exec the server in place).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// LogPath is where the server's output goes.
func (s *Server) LogPath() string { return s.logFile.Name() }

// Start starts the server, pinned to spec.CPU with GOMAXPROCS=1 when pinned,
// and waits until it answers TLS on its port (at most 20 s).
func Start(spec ServerSpec) (*Server, error) {
	label := spec.Label
	if label == "" {
		label = string(spec.Kind)
	}
	addr := spec.Listen
	if addr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr = "127.0.0.1:" + strconv.Itoa(port)
	}
	crt, key := filepath.Join(spec.CertDir, certs.CertFile), filepath.Join(spec.CertDir, certs.KeyFile)
	var args []string
	metricsAddr := ""
	switch spec.Kind {
	case Ditto:
		mport, err := FreePort()
		if err != nil {
			return nil, err
		}
		metricsAddr = "127.0.0.1:" + strconv.Itoa(mport)
		args = []string{spec.Bins.Ditto, "serve", "--listen", addr, "--metrics-listen", metricsAddr,
			"--tls-cert-file", crt, "--tls-key-file", key, "--log-level", spec.LogLevel}
	case Peer:
		args = []string{spec.Bins.Peer, "--listen", addr, "--cert-dir", spec.CertDir, "--log-level", spec.LogLevel}
	case Floor:
		args = []string{spec.Bins.Floor, "--listen", addr, "--tls-cert-file", crt, "--tls-key-file", key}
	default:
		return nil, fmt.Errorf("unknown server kind %q", spec.Kind)
	}
	args = append(args, spec.Args...)
	env := append(os.Environ(), spec.Env...)
	if spec.CPU != "" {
		args = append([]string{"taskset", "-c", spec.CPU}, args...)
		env = append(env, "GOMAXPROCS=1")
	}
	if spec.Nice != 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(spec.Nice)}, args...)
	}
	logFile, err := os.CreateTemp(spec.LogDir, strings.ReplaceAll(label, " ", "_")+"-*.log")
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
	s := &Server{Spec: spec, Label: label, Addr: addr, MetricsAddr: metricsAddr, cmd: cmd, logFile: logFile, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	if err := s.waitReady(20 * time.Second); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("%s did not start: %w (log %s)", label, err, logFile.Name())
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exited:
			s.exited <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no TLS answer in time")
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

// NewClient returns an HTTP/1.1 keep-alive client trusting pool, with up to
// conns idle connections kept.
func NewClient(pool *x509.CertPool, conns int) *http.Client {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		Protocols:           protocols,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// ProcCPU returns the user+system CPU time a process has used (all threads,
// from /proc/PID/stat, in clock ticks of 10 ms turned into a Duration).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat times")
	}
	return time.Duration(ut+st) * (time.Second / clockTicks), nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTicks = 100

// ProcStatusKB returns a kB field of /proc/PID/status (VmHWM, VmRSS).
func ProcStatusKB(pid int, field string) (int64, error) {
	return ProcStatusKBFile(fmt.Sprintf("/proc/%d/status", pid), field)
}

// CPUBusy returns the busy time (all but idle and iowait) of one CPU from /proc/stat.
func CPUBusy(cpu int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		var busy int64
		for i, v := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i == 3 || i == 4 || i == 8 || i == 9 { // idle, iowait, guest, guest_nice (already in user)
				continue
			}
			busy += n
		}
		return time.Duration(busy) * (time.Second / clockTicks), nil
	}
	return 0, fmt.Errorf("no %s in /proc/stat", strings.TrimSpace(prefix))
}

// WaitCtx sleeps d or until ctx ends.
func WaitCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ProcStatusKBFile returns a kB field of a /proc file laid out like
// /proc/PID/status (e.g. /proc/meminfo's MemTotal).
func ProcStatusKBFile(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}
