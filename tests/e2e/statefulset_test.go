package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

// 1, 4. Created from a manifest, from the shipped sample and in a dry run, a
// labelled StatefulSet gets the persistent cache (SPEC §2 M1-M4); re-applied
// unchanged — client-side, server-side, replace — it changes nothing, and a
// new image keeps the cache (U1, U2).
func TestCreateAndReapply(t *testing.T) {
	m := dittofs("fs")
	m.emptyDirCache = true
	noEmptyDir := dittofs("fs")
	for _, c := range []struct {
		name      string
		m         *stsManifest // nil: the shipped sample
		apply     []string     // how it is created and updated
		dryRun    bool         // apply is a server-side dry run
		class     string       // of the metadata claim, which the cache inherits
		reapplies [][]string   // of the unchanged manifest
		warning   string       // the only warning the update may print
	}{
		// --force-conflicts once, as with any mutating webhook: ownership is checked before admission, and the
		// client-side apply owns the fields stored otherwise than the manifest has them (README.md). After the
		// replace kubectl may warn that it puts the last-applied annotation back.
		{"client-side", &m, []string{"apply"}, false, "fast",
			[][]string{{"apply"}, {"apply", "--server-side", "--force-conflicts"}, {"replace"}}, "last-applied-configuration"},
		{"server-side", &noEmptyDir, []string{"apply", "--server-side"}, false, "fast",
			[][]string{{"apply", "--server-side"}}, ""},
		{"shipped sample", nil, []string{"apply"}, false, "", nil, ""},
		{"server dry run", &m, []string{"apply", "--dry-run=server", "-o", "json"}, true, "fast", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := newNamespace(t)
			samples := filepath.Join(env.repoRoot, "deploy", "samples")
			stdin, name, source := "", "dittofs-sample", []string{"-k", samples}
			if c.m != nil {
				stdin, name, source = c.m.yaml(), c.m.name, []string{"-f", "-"}
			}
			r := mustKubectl(t, stdin, append(append(c.apply, "-n", ns), source...)...)
			if c.m == nil || c.m.emptyDirCache {
				requireWarning(t, r, "emptyDir")
			}
			before := new(appsv1.StatefulSet)
			if c.dryRun {
				requireNotStored(t, ns, name)
				mustDecode(t, r, before)
			} else {
				before = mustGetSTS(t, ns, name)
			}
			requireMutated(t, before, c.class)
			if got := ptr.Deref(vct(before, "metadata").Spec.StorageClassName, ""); got != c.class {
				t.Errorf("the metadata claim's class is %q, want %q: the user's claims are as written", got, c.class)
			}
			if c.reapplies == nil {
				return
			}
			beforeSpec := getRaw(t, "statefulset", ns, name)["spec"].(map[string]any)
			for _, args := range c.reapplies {
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					r := kubectlRetryConflict(t, stdin, append(args, "-n", ns, "-f", "-")...)
					requireUnchanged(t, r, before, beforeSpec)
				})
			}

			updated := *c.m
			updated.image = newImage
			r = mustKubectl(t, updated.yaml(), append(c.apply, "-n", ns, "-f", "-")...)
			for _, w := range r.Warnings() {
				if c.warning == "" || !strings.Contains(w, c.warning) {
					t.Errorf("unexpected warning %q:\n%s", w, r)
				}
			}
			after := mustGetSTS(t, ns, name)
			if after.Generation != before.Generation+1 || container(after, "dittofs").Image != newImage {
				t.Errorf("generation %d → %d, want +1, to the image %s; stored:\n%s",
					before.Generation, after.Generation, newImage, toYAML(after.Spec.Template.Spec.Containers))
			}
			afterSpec := getRaw(t, "statefulset", ns, name)["spec"].(map[string]any)
			if diff := gocmp.Diff(beforeSpec["volumeClaimTemplates"], afterSpec["volumeClaimTemplates"]); diff != "" {
				t.Errorf("volumeClaimTemplates changed (-before +after):\n%s", diff)
			}
			requireMutated(t, after, "fast")
		})
	}
}

// requireUnchanged checks that r, a re-apply of the unchanged manifest,
// succeeded silently and left the same generation (no rollout) and spec.
func requireUnchanged(t *testing.T, r result, before *appsv1.StatefulSet, beforeSpec any) {
	t.Helper()
	if !r.OK() {
		t.Fatalf("re-applying the unchanged manifest failed:\n%s", r)
	}
	requireNoWarning(t, r)
	after := mustGetSTS(t, before.Namespace, before.Name)
	if after.Generation != before.Generation {
		t.Errorf("metadata.generation %d → %d: the re-apply changed the spec (a rollout would start); stored:\n%s",
			before.Generation, after.Generation, storage(after))
	}
	if diff := gocmp.Diff(beforeSpec, getRaw(t, "statefulset", before.Namespace, before.Name)["spec"]); diff != "" {
		t.Errorf("the stored spec changed (-before +after):\n%s", diff)
	}
}
