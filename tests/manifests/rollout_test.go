package manifests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

	if len(def.objs) != len(warn.objs) {
		t.Errorf("deploy/default renders %d objects, deploy/rollout-warn %d", len(def.objs), len(warn.objs))
	}
	for _, o := range warn.objs {
		i := slices.IndexFunc(def.objs, func(d object) bool { return d.String() == o.String() })
		if i < 0 {
			t.Errorf("deploy/rollout-warn renders %s, which deploy/default does not", o)
			continue
		}
		raw := o.raw
		if o.Kind == "Deployment" {
			raw = bytes.Replace(raw, []byte(`"--validation-action=warn"`), []byte(`"--validation-action=deny"`), 1)
		}
		if !bytes.Equal(raw, def.objs[i].raw) {
			t.Errorf("%s differs between deploy/default and deploy/rollout-warn by more than the flag:\n%s\n%s", o, def.objs[i].raw, o.raw)
		}
	}
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
