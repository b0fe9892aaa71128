package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Stopping is set when the watchdog tears down: then nothing talks to the dying
// apiserver (HaltIfStopping), so no test reports the teardown as its failure.
var Stopping atomic.Bool

// HaltIfStopping blocks for good once the watchdog tears down: the process is about to exit.
func HaltIfStopping() {
	if Stopping.Load() {
		select {}
	}
}

// Kubectl runs a kubectl binary as the test cluster's admin, with its own
// kubeconfig, discovery cache and home: nothing of the caller's environment.
type Kubectl struct {
	Bin, Kubeconfig, CacheDir, Home string
	// Dir is where it runs (relative paths in -f, -k); Timeout bounds a call.
	Dir     string
	Timeout time.Duration
}

// On is the same kubectl as the admin of another kubeconfig.
func (k Kubectl) On(kubeconfig string) Kubectl {
	k.Kubeconfig = kubeconfig
	return k
}

// Run runs kubectl with args and stdin (none when empty); see Result. It
// blocks once the watchdog tears down (RunQuietly does not).
func (k Kubectl) Run(stdin string, args ...string) Result {
	HaltIfStopping()
	r := k.RunQuietly(stdin, args...)
	HaltIfStopping()
	return r
}

// RunQuietly is Run for the teardown itself.
func (k Kubectl) RunQuietly(stdin string, args ...string) Result {
	r := Result{Args: args, Stdin: stdin, Code: -1}
	ctx, cancel := context.WithTimeout(context.Background(), k.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.Bin, append([]string{"--kubeconfig", k.Kubeconfig, "--cache-dir", k.CacheDir}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + k.Home, "LANG=C"}
	cmd.Dir = k.Dir
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r.Stdout, r.Stderr = out.String(), errOut.String()
	exit, isExit := errors.AsType[*exec.ExitError](err)
	switch {
	case err != nil && ctx.Err() != nil:
		r.Err = fmt.Errorf("killed after %s", k.Timeout)
	case err == nil:
		r.Code = 0
	case isExit:
		r.Code = exit.ExitCode()
	default:
		r.Err = err
	}
	return r
}

// T runs kubectl for a test and logs what it printed. A kubectl that cannot
// run at all fails the test; its exit status is the caller's to judge.
func (k Kubectl) T(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	r := k.Run(stdin, args...)
	t.Log(r.Brief())
	if r.Err != nil {
		t.Fatalf("kubectl did not run to the end:\n%s", r)
	}
	return r
}

// Must is T for a command that must succeed.
func (k Kubectl) Must(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	r := k.T(t, stdin, args...)
	if !r.OK() {
		t.Fatalf("kubectl failed:\n%s", r)
	}
	return r
}

// Shell runs one line that must succeed with bash in dir, as a user pastes a
// pipeline the docs give: this kubectl's directory, then path, first on PATH,
// KUBECONFIG the admin's. It returns what the line printed.
func (k Kubectl) Shell(t testing.TB, dir, line string, path ...string) string {
	t.Helper()
	HaltIfStopping()
	// A documented step may wait longer (`kubectl wait --timeout=15m`); here each is done in seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = dir
	dirs := append(append([]string{filepath.Dir(k.Bin)}, path...), os.Getenv("PATH"))
	cmd.Env = []string{"PATH=" + strings.Join(dirs, string(os.PathListSeparator)), "KUBECONFIG=" + k.Kubeconfig,
		"HOME=" + k.Home, "LANG=C"}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	HaltIfStopping()
	t.Logf("$ %s  → %v (%s)\n%s", line, err, time.Since(t0).Round(time.Millisecond), indent(string(out)))
	if err != nil {
		t.Fatalf("step failed: %s: %v\n%s", line, err, out)
	}
	return string(out)
}

// Result is what one kubectl command did.
type Result struct {
	Args           []string
	Stdin          string
	Stdout, Stderr string
	Code           int   // exit status; -1 when kubectl did not run to the end
	Err            error // kubectl could not be run or was killed (timeout)
}

// OK reports whether kubectl ran and exited 0.
func (r Result) OK() bool { return r.Err == nil && r.Code == 0 }

// command is what was run and how it ended.
func (r Result) command() string {
	s := fmt.Sprintf("kubectl %s  → exit %d", strings.Join(r.Args, " "), r.Code)
	if r.Err != nil {
		s += fmt.Sprintf(" (%v)", r.Err)
	}
	return s
}

// String is the whole story of a command, for failure messages.
func (r Result) String() string {
	stdin := ""
	if r.Stdin != "" {
		stdin = fmt.Sprintf("stdin:\n%s", indent(r.Stdin))
	}
	return fmt.Sprintf("$ %s\n%sstdout:\n%sstderr:\n%s", r.command(), stdin, indent(r.Stdout), indent(r.Stderr))
}

// Brief is the log line of a command: what was run, how it ended, its stderr
// and, when short, its stdout.
func (r Result) Brief() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ %s\n", r.command())
	if s := strings.TrimSpace(r.Stdout); len(s) > 400 {
		fmt.Fprintf(&b, "  | (%d bytes on stdout)\n", len(r.Stdout))
	} else if s != "" {
		b.WriteString(indent(r.Stdout))
	}
	if strings.TrimSpace(r.Stderr) != "" {
		b.WriteString(indent(r.Stderr))
	}
	return strings.TrimRight(b.String(), "\n")
}

// Warnings are the apiserver's warning headers (webhooks' among them) kubectl printed as "Warning: ..."
func (r Result) Warnings() []string {
	var w []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if s, ok := strings.CutPrefix(l, "Warning: "); ok {
			w = append(w, s)
		}
	}
	return w
}

// indent prefixes each line of s with "  | " for a log; "(nothing)" when empty.
func indent(s string) string {
	if strings.TrimSpace(s) == "" {
		return "  | (nothing)\n"
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  | " + l + "\n")
	}
	return b.String()
}

// Poll calls cond every 200 ms (apimachinery's wait) until it reports done;
// after timeout, or as soon as alive (if not nil) reports an error (a program
// it waits for has died), it returns an error with the last state described.
func Poll(timeout time.Duration, alive func() error, cond func() (done bool, state string)) error {
	var state string
	var dead error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) {
			HaltIfStopping()
			var done bool
			if done, state = cond(); done {
				return true, nil
			}
			if alive != nil {
				dead = alive()
			}
			return false, dead
		})
	switch {
	case err == nil:
		return nil
	case dead != nil:
		return fmt.Errorf("%v; last state:\n%s", dead, state)
	default:
		return fmt.Errorf("not after %s; last state:\n%s", timeout, state)
	}
}

// Eventually is Poll for a test: it fails the test when Poll does.
func Eventually(t testing.TB, timeout time.Duration, what string, alive func() error, cond func() (done bool, state string)) {
	t.Helper()
	t0 := time.Now()
	if err := Poll(timeout, alive, cond); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
	t.Logf("%s: after %s", what, time.Since(t0).Round(time.Millisecond))
}

// GoModDir downloads a module through the Go module proxy (or finds it in the
// module cache) and returns its directory: the one registry reachable here.
func GoModDir(module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = os.TempDir() // outside any module: nothing to resolve against
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %v %s", module, runErr, err, info.Error)
	}
	return info.Dir, nil
}
