package certmanager

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

const (
	kubectlTimeout    = 2 * time.Minute
	certManagerModule = "github.com/cert-manager/cert-manager@v1.21.2" // its CRDs; the same release as tests/tools/certmanager
)

// result is what a kubectl run printed and how it exited.
type result struct {
	args           []string
	stdout, stderr string
	err            error // kubectl could not run, or was killed
}

func (r result) ok() bool { return r.err == nil }

func (r result) String() string {
	return fmt.Sprintf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.err, r.stdout, r.stderr)
}

// runKubectl runs the built kubectl as the e2e admin, with nothing from the
// caller's environment (KUBECONFIG, ~/.kube) changing what it does.
func runKubectl(stdin string, args ...string) result {
	return kubectlOn(env.kubeconfig, stdin, args...)
}

// kubectlOn is runKubectl on the kube-apiserver of kubeconfig.
func kubectlOn(kubeconfig, stdin string, args ...string) result {
	if stopping.Load() {
		select {} // the harness is tearing down: the process is about to exit
	}
	r := result{args: args}
	r.stdout, r.stderr, r.err = env.kubectl(kubeconfig).Run(stdin, args...)
	return r
}

// kubectl is the built kubectl as the admin of kubeconfig.
func (h *harness) kubectl(kubeconfig string) e2ekit.Kubectl {
	return e2ekit.Kubectl{Bin: h.kubectlBin, Kubeconfig: kubeconfig, CacheDir: h.cacheDir,
		Home: filepath.Join(h.artifacts, "home"), Dir: h.repoRoot, Timeout: kubectlTimeout}
}

// mustKubectl runs kubectl for a test; a failure fails it.
func mustKubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	r := runKubectl(stdin, args...)
	if !r.ok() {
		t.Fatalf("%s", r)
	}
	t.Logf("kubectl %s\n%s%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// eventually retries kubectl until it succeeds or timeout passes: for what
// lags behind (kubectl's discovery of new CRDs, a controller's work).
func eventually(t testing.TB, timeout time.Duration, stdin string, args ...string) result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := runKubectl(stdin, args...)
		if r.ok() {
			t.Logf("kubectl %s\n%s%s", strings.Join(args, " "), r.stdout, r.stderr)
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, r)
		}
		time.Sleep(time.Second)
	}
}

// goModDir downloads a module through the Go module proxy (or finds it in
// the module cache) and returns its directory.
func goModDir(module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %v %s", module, runErr, err, info.Error)
	}
	return info.Dir, nil
}
