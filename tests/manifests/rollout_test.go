package manifests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRolloutWarn: the validation-warn component (on deploy/monitoring as
// docs/install-helm.md shows) changes only --validation-action.
func TestRolloutWarn(t *testing.T) {
	root, _ := filepath.Abs(repoRoot)
	dir := t.TempDir()
	// Kustomize takes no absolute paths.
	monitoring, err1 := filepath.Rel(dir, filepath.Join(root, "deploy", "monitoring"))
	component, err2 := filepath.Rel(dir, filepath.Join(root, "deploy", "components", "validation-warn"))
	onMonitoring, err3 := filepath.Rel(root, dir)
	fatalIf(t, errors.Join(err1, err2, err3))
	k := fmt.Sprintf("resources: [%s]\ncomponents: [%s]\n", monitoring, component)
	fatalIf(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
	for base, warn := range map[string]string{"deploy/default": "deploy/rollout-warn", "deploy/monitoring": onMonitoring} {
		b, w := render(t, base), render(t, warn)
		diff(t, "--validation-action of "+base+", "+warn, []string{"deny", "warn"},
			[]string{loadInstall(t, b).flags["validation-action"], loadInstall(t, w).flags["validation-action"]})
		diff(t, base+" and "+warn+", --validation-action aside", asDeny(b), asDeny(w))
	}
}

// asDeny is each object's JSON, the Deployment's with the flag back to deny.
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
