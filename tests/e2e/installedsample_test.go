package e2e

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// 10. The sample deploy/default installs is complete as written, so the order
// of creation does not matter (SPEC §6); README.md says how. Its objects are
// applied server-side: TestInstallManifests' dry run over them (-count=2) then
// has no last-applied annotation to migrate.
func TestInstalledSample(t *testing.T) {
	// The sample's objects of the rendered install (its Namespace, Service and StatefulSet), as a List.
	r := mustKubectl(t, "", "kustomize", filepath.Join(env.repoRoot, "deploy", "default"))
	docs, err := decodeDocs(r.Stdout)
	if err != nil {
		t.Fatalf("decoding kubectl kustomize deploy/default: %v", err)
	}
	var items []any
	var kinds []string
	var name string
	for _, doc := range docs {
		u := unstructured.Unstructured{Object: doc}
		if !(u.GetKind() == "Namespace" && u.GetName() == sampleNamespace) && u.GetNamespace() != sampleNamespace {
			continue
		}
		items = append(items, doc)
		if kinds = append(kinds, u.GetKind()); u.GetKind() == "StatefulSet" {
			name = u.GetName()
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"Namespace", "Service", "StatefulSet"}) {
		t.Fatalf("deploy/default should render a Namespace %s with a Service and a StatefulSet in it, got %v", sampleNamespace, kinds)
	}
	list := toYAML(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	// Left by an earlier run (-count=2): start without it.
	mustKubectl(t, "", "delete", "statefulset", name, "-n", sampleNamespace, "--ignore-not-found")
	apply := func() {
		t.Helper()
		requireNoWarning(t, mustKubectl(t, list, "apply", "--server-side", "-f", "-"))
	}
	spec := func() any {
		t.Helper()
		return getRaw(t, "statefulset", sampleNamespace, name)["spec"]
	}

	// A first install: stored without the webhooks, the reference.
	restore := withoutWebhooks(t)
	apply()
	ref := mustGetSTS(t, sampleNamespace, name)
	refSpec := spec()
	restore()

	// The next apply goes through the webhooks (an UPDATE): nothing changes.
	requireUnchanged(t, kubectl(t, list, "apply", "--server-side", "-f", "-"), ref, refSpec)

	// Created with the webhooks there (a CREATE): stored as without them.
	mustKubectl(t, "", "delete", "statefulset", name, "-n", sampleNamespace)
	requireNotStored(t, sampleNamespace, name)
	apply()
	if diff := cmp.Diff(refSpec, spec()); diff != "" {
		t.Errorf("created through the webhooks, the stored spec differs (-without +with the webhooks):\n%s", diff)
	}
	got := mustGetSTS(t, sampleNamespace, name)
	requireMutated(t, got, "")
	if got.Spec.Replicas == nil || *got.Spec.Replicas != 0 {
		t.Errorf("replicas %v, want 0: installing the webhook must start no pod", got.Spec.Replicas)
	}

	// All that would hold too if the webhooks left the namespace out: a copy
	// without the cache claim comes back with one.
	probe := &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name + "-probe", Labels: got.Labels}, Spec: got.Spec}
	probe.Spec.VolumeClaimTemplates = slices.DeleteFunc(probe.Spec.VolumeClaimTemplates,
		func(c corev1.PersistentVolumeClaim) bool { return c.Name == "cache" })
	r = kubectl(t, toYAML(probe), "create", "--dry-run=server", "-o", "json", "-n", sampleNamespace, "-f", "-")
	if !hasCache(r) {
		t.Errorf("the webhooks do not act in %s: a copy without the cache claim got none:\n%s", sampleNamespace, r)
	}
}
