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

	diff(t, "deploy/default and deploy/rollout-warn, --validation-action aside", asDeny(def), asDeny(warn))
}

// asDeny returns each object of r with its JSON, the Deployment's with
// --validation-action=warn set back to deny.
func asDeny(r *rendering) (out []string) {
	for _, o := range r.objs {
		raw := string(o.raw)
		if o.Kind == "Deployment" {
			raw = strings.Replace(raw, `"--validation-action=warn"`, `"--validation-action=deny"`, 1)
		}
		out = append(out, o.String()+" "+raw)
	}
	return out
}

// TestWarnComponentOnMonitoring builds the overlay docs/install-helm.md shows
// for warn mode with monitoring: deploy/monitoring plus the component, which
// changes the one flag.
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
	diff(t, "--validation-action", "warn", in.flags["validation-action"])
	diff(t, "deploy/monitoring and it, --validation-action aside", asDeny(render(t, "deploy/monitoring")), asDeny(in.all))
}
