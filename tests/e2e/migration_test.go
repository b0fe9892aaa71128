package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// runStep runs one line of a pipeline the docs give with bash, as a user
// pastes it into a shell in dir: the built kubectl first on PATH, KUBECONFIG
// the e2e admin's. It must succeed; it returns what the step printed.
// (TestMigrateStatefulSetOlderThanTheWebhooks, its first user, runs on the
// node now: tests/e2e/node.)
func runStep(t *testing.T, dir, line string) string {
	t.Helper()
	framework.HaltIfStopping()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + env.assets + string(os.PathListSeparator) + os.Getenv("PATH"),
		"KUBECONFIG=" + env.Kubeconfig,
		"HOME=" + filepath.Join(env.artifacts, "home"),
		"LANG=C",
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	framework.HaltIfStopping()
	t.Logf("$ %s  → %v (%s)\n%s", line, err, time.Since(t0).Round(time.Millisecond), framework.Indent(string(out)))
	if err != nil {
		t.Fatalf("step failed: %s: %v\n%s", line, err, out)
	}
	return string(out)
}
