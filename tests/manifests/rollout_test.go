package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRolloutWarn: deploy/rollout-warn (deploy/default with the
// components/validation-warn patch) is deploy/default with the one flag
// --validation-action=warn instead of deny, and nothing else changed. That
// it passes every installCheck is TestInstall's (installOverlays).
func TestRolloutWarn(t *testing.T) {
	def, warn := render(t, "deploy/default"), render(t, "deploy/rollout-warn")
	diff(t, "--validation-action of deploy/default, deploy/rollout-warn", []string{"deny", "warn"},
		[]string{loadInstall(t, def).flags["validation-action"], loadInstall(t, warn).flags["validation-action"]})

	// Each object's JSON, the Deployment's with the flag set back to deny.
	raws := func(r *rendering) (out []string) {
		for _, o := range r.objs {
			out = append(out, o.String()+" "+strings.Replace(string(o.raw), `"--validation-action=warn"`, `"--validation-action=deny"`, 1))
		}
		return out
	}
	diff(t, "deploy/default and deploy/rollout-warn, --validation-action aside", raws(def), raws(warn))
}

// TestWarnComponentOnMonitoring builds the overlay docs/install-helm.md shows
// for warn mode with monitoring: deploy/monitoring plus the component.
func TestWarnComponentOnMonitoring(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Kustomize takes no absolute paths.
	monitoring, err1 := filepath.Rel(dir, filepath.Join(root, "deploy", "monitoring"))
	warn, err2 := filepath.Rel(dir, filepath.Join(root, "deploy", "components", "validation-warn"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	k := fmt.Sprintf("resources: [%s]\ncomponents: [%s]\n", monitoring, warn)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	in := loadInstall(t, render(t, rel))
	diff(t, "--validation-action, objects", []any{"warn", len(render(t, "deploy/monitoring").objs)},
		[]any{in.flags["validation-action"], len(in.all.objs)})
}
