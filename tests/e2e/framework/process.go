package framework

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is a program a harness runs, its output in a log file.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string
	Done    chan struct{} // closed when it has exited
	Err     error         // its exit status, once Done is closed
}

// StartProcess starts cmd with its output in logPath, in a process group of
// its own (a Ctrl-C of `go test` reaches the harness, which stops it in order).
func StartProcess(logPath string, cmd *exec.Cmd) (*Process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &Process{Cmd: cmd, LogPath: logPath, Done: make(chan struct{})}
	go func() {
		p.Err = cmd.Wait()
		log.Close()
		close(p.Done)
	}()
	return p, nil
}

// WaitHTTP polls url with client until it answers 200, failing when the
// process exits first or timeout passes.
func (p *Process) WaitHTTP(client *http.Client, url string, timeout time.Duration) error {
	return Poll(timeout, p.Alive, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %s %s", url, resp.Status, body)
	})
}

// Alive is nil while the process runs: a Poll's or an Eventually's alive, so that a wait fails at once.
func (p *Process) Alive() error {
	if p.Exited() {
		return fmt.Errorf("%s exited: %v (log %s)", filepath.Base(p.Cmd.Path), p.Err, p.LogPath)
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to timeout for a clean exit (status 0), then
// kills it. Safe on nil and more than once.
func (p *Process) Stop(timeout time.Duration) error {
	if err := p.Terminate(timeout); err != nil || p == nil {
		return err
	}
	if _, ok := errors.AsType[*exec.ExitError](p.Err); ok {
		return p.Alive()
	}
	return nil
}

// Terminate is Stop for a program whose exit status on SIGTERM says nothing
// (kube-controller-manager, the kubelet): only not exiting in time is an error.
func (p *Process) Terminate(timeout time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
		return nil
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.Done
		return fmt.Errorf("%s did not exit within %s of SIGTERM (log %s)", p.Cmd.Path, timeout, p.LogPath)
	}
}

// PrintLogTail prints the last lines of the log.
func (p *Process) PrintLogTail(w io.Writer, n int) {
	if p == nil {
		return
	}
	f, err := os.Open(p.LogPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	fmt.Fprintf(w, "--- last lines of %s\n%s\n", p.LogPath, strings.Join(lines, "\n"))
}
