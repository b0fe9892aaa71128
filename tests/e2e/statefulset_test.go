package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

// 1. A labelled StatefulSet without cache gets the persistent cache (5Gi by
// default, in the metadata claim's storage class), the Retain/Retain
// retention and the mount; its emptyDir "cache" is removed with a warning
// (SPEC §2 M1-M4). So does the shipped sample (deploy/samples, in the cluster
// default class), and a server-side dry run answers it and stores nothing.
func TestCreateInjectsPersistentCache(t *testing.T) {
	ns := newNamespace(t)
	m := dittofs("fs")
	m.emptyDirCache = true
	dry := m
	dry.name = "dry"
	for _, c := range []struct {
		name, stdin, sts, class string
		dryRun                  bool
		args                    []string
	}{
		{"manifest", m.yaml(), "fs", "fast", false, []string{"-f", "-"}},
		{"shipped sample", "", "dittofs-sample", "", false, []string{"-k", filepath.Join(env.repoRoot, "deploy", "samples")}},
		{"server dry run", dry.yaml(), "dry", "fast", true, []string{"--dry-run=server", "-o", "json", "-f", "-"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustKubectl(t, c.stdin, append([]string{"apply", "-n", ns}, c.args...)...)
			requireWarning(t, r, "emptyDir")
			sts := new(appsv1.StatefulSet)
			if c.dryRun {
				requireNotStored(t, ns, c.sts)
				mustDecode(t, r, sts)
			} else {
				sts = mustGetSTS(t, ns, c.sts)
			}
			requireMutated(t, sts, c.class)
			// The user's claims are as written.
			if got := ptr.Deref(vct(sts, "metadata").Spec.StorageClassName, ""); got != c.class {
				t.Errorf("the metadata claim's class is %q, want %q", got, c.class)
			}
		})
	}
}

// 4. Re-applying the unchanged manifest — client-side apply, server-side
// apply, a GitOps-style PUT (kubectl replace) — succeeds silently and changes
// nothing; a new image is a normal update that keeps the cache (SPEC §2 U1,
// U2). The same with server-side apply from the start, as GitOps tools do.
func TestReapplyUnchangedManifest(t *testing.T) {
	for _, c := range []struct {
		name      string
		emptyDir  bool       // the manifest keeps the emptyDir the webhook removed
		apply     []string   // how the manifest is created and updated
		reapplies [][]string // of the unchanged manifest
		warning   string     // the only warning the update may print
	}{
		// --force-conflicts is needed once, as with any mutating webhook:
		// server-side apply checks ownership before admission, and the
		// fields the manifest has otherwise than stored (the atomic
		// volumeClaimTemplates, the emptyDir) belong to the client-side
		// apply. After the replace kubectl may warn that it puts the
		// last-applied annotation back.
		{"client-side", true, []string{"apply"},
			[][]string{{"apply"}, {"apply", "--server-side", "--force-conflicts"}, {"replace"}}, "last-applied-configuration"},
		// Managed with server-side apply from the start: the flag is never needed.
		{"server-side", false, []string{"apply", "--server-side"}, [][]string{{"apply", "--server-side"}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := newNamespace(t)
			m := dittofs("fs")
			m.emptyDirCache = c.emptyDir
			manifest := m.yaml()
			mustKubectl(t, manifest, append(c.apply, "-n", ns, "-f", "-")...)
			before := mustGetSTS(t, ns, "fs")
			requireCache(t, before, defaultCacheSize, "fast")
			beforeSpec := getRaw(t, "statefulset", ns, "fs")["spec"].(map[string]any)
			for _, args := range c.reapplies {
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					requireUnchanged(t, kubectlRetryConflict(t, manifest, append(args, "-n", ns, "-f", "-")...), before, beforeSpec)
				})
			}

			m.image = newImage
			r := mustKubectl(t, m.yaml(), append(c.apply, "-n", ns, "-f", "-")...)
			for _, w := range r.Warnings() {
				if c.warning == "" || !strings.Contains(w, c.warning) {
					t.Errorf("unexpected warning %q:\n%s", w, r)
				}
			}
			after := mustGetSTS(t, ns, "fs")
			if after.Generation != before.Generation+1 || container(after, "dittofs").Image != newImage {
				t.Errorf("generation %d → %d, want +1, to the image %s; stored:\n%s",
					before.Generation, after.Generation, newImage, toYAML(after.Spec.Template.Spec.Containers))
			}
			afterSpec := getRaw(t, "statefulset", ns, "fs")["spec"].(map[string]any)
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
