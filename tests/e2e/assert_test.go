package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// requireWarning fails unless one of kubectl's "Warning:" lines contains
// every one of parts.
func requireWarning(t testing.TB, r result, parts ...string) {
	t.Helper()
	for _, w := range r.Warnings() {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(w, p) }) {
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

// requireNotStored fails if the StatefulSet exists.
func requireNotStored(t testing.TB, ns, name string) {
	t.Helper()
	if sts, err := getSTS(ns, name); !apierrors.IsNotFound(err) {
		t.Errorf("statefulset %s/%s: %v, want not found; stored:\n%s", ns, name, err, storage(sts))
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
	if got := vctNames(sts); !slices.Equal(got, want) {
		t.Errorf("volumeClaimTemplates %v, want %v; stored:\n%s", got, want, storage(sts))
	}
}

// mutation is what the mutation is about in a stored StatefulSet.
type mutation struct {
	VCTs        []string
	CacheSize   resource.Quantity // go-cmp compares it with Quantity.Equal: by value
	CacheClass  *string
	CacheModes  []corev1.PersistentVolumeAccessMode
	Retention   string
	CacheMounts []string // of the dittofs container
	CacheVolume bool     // a pod-template volume named cache
}

// requireMutated checks a StatefulSet as the mutation stores it: metadata,
// content and a ReadWriteOnce 5Gi cache template in class (the metadata
// template's; empty: unset), Retain/Retain, the cache mounted once at
// /data/cache, no (emptyDir) volume cache.
func requireMutated(t testing.TB, sts *appsv1.StatefulSet, class string) {
	t.Helper()
	want := mutation{VCTs: []string{"metadata", "content", "cache"}, CacheSize: resource.MustParse(defaultCacheSize),
		CacheModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, Retention: "Retain/Retain",
		CacheMounts: []string{defaultCacheMount}}
	if class != "" {
		want.CacheClass = &class
	}
	got := mutation{VCTs: vctNames(sts), Retention: retention(sts), CacheMounts: cacheMounts(container(sts, "dittofs")),
		CacheVolume: volume(sts, "cache") != nil}
	if c := vct(sts, "cache"); c != nil {
		got.CacheSize, got.CacheClass, got.CacheModes = c.Spec.Resources.Requests[corev1.ResourceStorage],
			c.Spec.StorageClassName, c.Spec.AccessModes
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("not as the mutation stores it (-want +got):\n%s\nstored:\n%s", d, storage(sts))
	}
}
