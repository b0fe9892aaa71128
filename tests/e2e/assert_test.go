package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// requireWarning fails unless one of kubectl's "Warning:" lines contains
// every one of parts.
func requireWarning(t testing.TB, r result, parts ...string) {
	t.Helper()
	for _, w := range r.Warnings() {
		if containsAll(w, parts...) {
			return
		}
	}
	t.Errorf("kubectl printed no warning containing %q:\n%s", parts, r)
}

// requireNoWarning fails if kubectl printed any "Warning:" line.
func requireNoWarning(t testing.TB, r result) {
	t.Helper()
	if w := r.Warnings(); len(w) > 0 {
		t.Errorf("kubectl printed %d warning(s), want none:\n%s", len(w), r)
	}
}

// requireDenied fails unless kubectl failed and its error output contains
// every one of parts.
func requireDenied(t testing.TB, r result, parts ...string) {
	t.Helper()
	if r.OK() {
		t.Fatalf("kubectl succeeded, want it denied:\n%s", r)
	}
	if !containsAll(r.Stderr, parts...) {
		t.Errorf("kubectl's error does not contain all of %q:\n%s", parts, r)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// requireNotStored fails if the StatefulSet exists.
func requireNotStored(t testing.TB, ns, name string) {
	t.Helper()
	if sts := getSTS(t, ns, name); sts != nil {
		t.Errorf("statefulset %s/%s was stored, want nothing stored:\n%s", ns, name, storage(sts))
	}
}

// requireCache checks the injected cache claim: storage size, class (empty:
// unset, the cluster default) and ReadWriteOnce.
func requireCache(t testing.TB, sts *appsv1.StatefulSet, size, class string) {
	t.Helper()
	c := vct(sts, "cache")
	if c == nil {
		t.Fatalf("no cache volumeClaimTemplate; stored:\n%s", storage(sts))
	}
	type claim struct {
		Storage     resource.Quantity
		Class       *string
		AccessModes []corev1.PersistentVolumeAccessMode
	}
	want := claim{resource.MustParse(size), nil, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}
	if class != "" {
		want.Class = &class
	}
	// go-cmp compares quantities with Quantity.Equal: by value.
	got := claim{c.Spec.Resources.Requests[corev1.ResourceStorage], c.Spec.StorageClassName, c.Spec.AccessModes}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the cache claim (-want +got):\n%s", d)
	}
}

// cacheMounts are where the container (nil: none) mounts the volume cache.
func cacheMounts(c *corev1.Container) []string {
	var at []string
	for _, m := range ptr.Deref(c, corev1.Container{}).VolumeMounts {
		if m.Name == "cache" {
			at = append(at, m.MountPath)
		}
	}
	return at
}

func requireRetention(t testing.TB, sts *appsv1.StatefulSet, want string) {
	t.Helper()
	if got := retention(sts); got != want {
		t.Errorf("persistentVolumeClaimRetentionPolicy %s, want %s; stored:\n%s", got, want, storage(sts))
	}
}

func requireVCTs(t testing.TB, sts *appsv1.StatefulSet, want ...string) {
	t.Helper()
	var got []string
	for _, v := range sts.Spec.VolumeClaimTemplates {
		got = append(got, v.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("volumeClaimTemplates %v, want %v; stored:\n%s", got, want, storage(sts))
	}
}

// requireMutated checks a StatefulSet with an emptyDir cache as the mutation
// stores it: metadata, content and a 5Gi cache template in class (the
// metadata template's; empty: unset), Retain/Retain, the cache mounted once
// at /data/cache, the emptyDir gone.
func requireMutated(t testing.TB, sts *appsv1.StatefulSet, class string) {
	t.Helper()
	requireVCTs(t, sts, "metadata", "content", "cache")
	requireCache(t, sts, defaultCacheSize, class)
	requireRetention(t, sts, "Retain/Retain")
	if at := cacheMounts(container(sts, "dittofs")); !slices.Equal(at, []string{defaultCacheMount}) {
		t.Errorf("container dittofs mounts cache at %v, want once at %s; stored:\n%s", at, defaultCacheMount, storage(sts))
	}
	if volume(sts, "cache") != nil {
		t.Errorf("the emptyDir volume cache is still in the pod template; stored:\n%s", storage(sts))
	}
}
