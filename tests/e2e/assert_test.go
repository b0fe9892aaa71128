package e2e

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// requireWarning fails unless one of kubectl's "Warning:" lines contains
// every one of parts.
func requireWarning(t testing.TB, r result, parts ...string) {
	t.Helper()
	for _, w := range r.warnings() {
		if containsAll(w, parts...) {
			return
		}
	}
	t.Errorf("kubectl printed no warning containing %q:\n%s", parts, r)
}

// requireNoWarning fails if kubectl printed any "Warning:" line.
func requireNoWarning(t testing.TB, r result) {
	t.Helper()
	if w := r.warnings(); len(w) > 0 {
		t.Errorf("kubectl printed %d warning(s), want none:\n%s", len(w), r)
	}
}

// requireDenied fails unless kubectl failed and its error output contains
// every one of parts.
func requireDenied(t testing.TB, r result, parts ...string) {
	t.Helper()
	if r.ok() {
		t.Fatalf("kubectl succeeded, want it denied:\n%s", r)
	}
	if !containsAll(r.stderr, parts...) {
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

// requireCache checks the injected cache claim: size, storage class (empty:
// unset) and ReadWriteOnce.
func requireCache(t testing.TB, sts *appsv1.StatefulSet, size, class string) {
	t.Helper()
	c := vct(sts, "cache")
	if c == nil {
		t.Fatalf("no cache volumeClaimTemplate; stored:\n%s", storage(sts))
	}
	q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok || q.Cmp(resource.MustParse(size)) != 0 {
		t.Errorf("cache requests storage %v, want %s; stored:\n%s", c.Spec.Resources.Requests, size, storage(sts))
	}
	switch got := c.Spec.StorageClassName; {
	case class == "" && got != nil:
		t.Errorf("cache storageClassName %q, want unset (the cluster default); stored:\n%s", *got, storage(sts))
	case class != "" && (got == nil || *got != class):
		t.Errorf("cache storageClassName %v, want %q; stored:\n%s", strPtr(got), class, storage(sts))
	}
	if !slices.Equal(c.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("cache accessModes %v, want [ReadWriteOnce]; stored:\n%s", c.Spec.AccessModes, storage(sts))
	}
}

// requireCacheMounted checks that the container mounts the cache at path,
// once.
func requireCacheMounted(t testing.TB, sts *appsv1.StatefulSet, containerName, path string) {
	t.Helper()
	c := container(sts, containerName)
	if c == nil {
		t.Fatalf("no container %q; stored:\n%s", containerName, storage(sts))
	}
	var n int
	for _, m := range c.VolumeMounts {
		if m.Name == "cache" {
			n++
			if m.MountPath != path {
				t.Errorf("container %q mounts cache at %q, want %q; stored:\n%s", containerName, m.MountPath, path, storage(sts))
			}
		}
	}
	if n != 1 {
		t.Errorf("container %q mounts cache %d times, want once at %s; stored:\n%s", containerName, n, path, storage(sts))
	}
}

func requireRetention(t testing.TB, sts *appsv1.StatefulSet, want string) {
	t.Helper()
	if got := retention(sts); got != want {
		t.Errorf("persistentVolumeClaimRetentionPolicy %s, want %s; stored:\n%s", got, want, storage(sts))
	}
}

func requireVCTs(t testing.TB, sts *appsv1.StatefulSet, want ...string) {
	t.Helper()
	if got := vctNames(sts); !slices.Equal(got, want) {
		t.Errorf("volumeClaimTemplates %v, want %v; stored:\n%s", got, want, storage(sts))
	}
}

func strPtr(p *string) string {
	if p == nil {
		return "(unset)"
	}
	return *p
}
