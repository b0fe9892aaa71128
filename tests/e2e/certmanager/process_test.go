package certmanager

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a program the harness runs, its output in a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when it has exited
	err     error         // its exit status, once done is closed
}

// startProcess starts cmd with its output in logPath, in a process group of
// its own (a Ctrl-C of `go test` reaches the harness, which stops it in order).
func startProcess(logPath string, cmd *exec.Cmd) (*process, error) {
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
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to timeout for a clean exit (status 0), then
// kills it. Safe on nil and more than once.
func (p *process) stop(timeout time.Duration) error {
	if p == nil {
		return nil
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s did not exit within %s of SIGTERM (log %s)", p.cmd.Path, timeout, p.logPath)
		}
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return fmt.Errorf("%s exited: %v (log %s)", p.cmd.Path, p.err, p.logPath)
	}
	return nil
}

// printLogTail prints the last lines of the log.
func (p *process) printLogTail(w io.Writer, n int) {
	if p == nil {
		return
	}
	f, err := os.Open(p.logPath)
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
	fmt.Fprintf(w, "--- last lines of %s\n%s\n", p.logPath, strings.Join(lines, "\n"))
}
