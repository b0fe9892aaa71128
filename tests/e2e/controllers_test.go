package e2e

import (
	"fmt"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The scenarios below run with kube-controller-manager's StatefulSet, garbage
// collector and PVC protection controllers (see controllermanager_test.go):
// they check the PVCs and pods those make from what the webhook stored, not
// only the stored StatefulSet. No kubelet runs: standInKubelet marks pods
// Ready.

// dittofsTemplates are the volumeClaimTemplates of a managed StatefulSet
// after the webhook, in order.
var dittofsTemplates = []string{"metadata", "content", "cache"}

// 10. A labelled StatefulSet of 2 replicas gets, from the StatefulSet
// controller, a cache PVC per pod (cache-NAME-0, cache-NAME-1) of the size
// and class of SPEC §2 M1, and each pod mounts its own claim at /data/cache.
func TestControllersMakeCachePerPod(t *testing.T) {
	ns := newNamespace(t)
	standInKubelet(t, ns)
	for _, tc := range []struct {
		set         string
		tweak       func(*stsManifest)
		size, class string
	}{
		// 5Gi by default, in the metadata claim's class ("fast").
		{set: "inherited", size: defaultCacheSize, class: "fast"},
		{set: "annotated", size: "20Gi", class: "slow", tweak: func(m *stsManifest) {
			m.annotations = map[string]string{annCacheSize: "20Gi", annCacheClass: "slow"}
		}},
		// No class anywhere: unset, the cluster default.
		{set: "noclass", size: defaultCacheSize, tweak: func(m *stsManifest) {
			m.vcts = []vctSpec{{name: "metadata", size: "1Gi"}, {name: "content", size: "10Gi"}}
		}},
	} {
		t.Run(tc.set, func(t *testing.T) {
			set := tc.set
			m := dittofs(set)
			m.replicas = 2
			if tc.tweak != nil {
				tc.tweak(&m)
			}
			mustKubectl(t, m.yaml(), "apply", "-n", ns, "-f", "-")
			claimUIDs(t, ns, claimNames(set, dittofsTemplates, 0, 1))
			have := claims(t, ns)
			for i := range 2 {
				requireCacheClaim(t, have[fmt.Sprintf("cache-%s-%d", set, i)], tc.size, tc.class)
				p := readyPod(t, ns, fmt.Sprintf("%s-%d", set, i), "")
				requirePodClaims(t, p, set, i)
				requirePodMountsCache(t, p, "dittofs", fmt.Sprintf("cache-%s-%d", set, i), defaultCacheMount)
			}
		})
	}
}

// 11. What the cache and the user's storage live through: a deleted pod
// comes back with the same claims, scaling down keeps the removed ordinal's
// PVCs, deleting the StatefulSet keeps every PVC, although the manifest
// says whenDeleted and whenScaled: Delete (the webhook stores Retain, SPEC §2
// M2). The control case: the same StatefulSet unlabelled keeps Delete, and
// loses its PVCs on scale-down and delete, so the garbage collector really
// runs and would have deleted them.
func TestClaimsOutlivePodsAndStatefulSet(t *testing.T) {
	ns := newNamespace(t)
	standInKubelet(t, ns)
	m := dittofs("fs")
	m.replicas = 2
	m.retention = "Delete/Delete"
	r := mustKubectl(t, m.yaml(), "apply", "-n", ns, "-f", "-")
	requireWarning(t, r, "whenDeleted")
	uids := claimUIDs(t, ns, claimNames("fs", dittofsTemplates, 0, 1))
	readyPod(t, ns, "fs-1", "")

	if !t.Run("deleted pod comes back with the same claims", func(t *testing.T) {
		before := readyPod(t, ns, "fs-0", "")
		mustKubectl(t, "", "delete", "pod", "fs-0", "-n", ns)
		after := readyPod(t, ns, "fs-0", before.UID)
		requirePodClaims(t, after, "fs", 0)
		requirePodMountsCache(t, after, "dittofs", "cache-fs-0", defaultCacheMount)
		requireClaimsKept(t, ns, uids)
	}) {
		return
	}
	if !t.Run("scale 2 to 1 keeps ordinal 1's claims", func(t *testing.T) {
		mustKubectl(t, "", "scale", "statefulset", "fs", "-n", ns, "--replicas=1")
		podGone(t, ns, "fs-1")
		requireClaimsKept(t, ns, uids)
	}) {
		return
	}
	if !t.Run("delete keeps every claim", func(t *testing.T) {
		mustKubectl(t, "", "delete", "statefulset", "fs", "-n", ns)
		// The garbage collector deletes the pods the StatefulSet owned.
		podGone(t, ns, "fs-0")
		requireClaimsKept(t, ns, uids)
	}) {
		return
	}

	t.Run("control: unlabelled with Delete loses its claims", func(t *testing.T) {
		plain := m
		plain.name, plain.managed = "plain", false
		mustKubectl(t, plain.yaml(), "apply", "-n", ns, "-f", "-")
		userTemplates := []string{"metadata", "content"}
		claimUIDs(t, ns, claimNames("plain", userTemplates, 0, 1))
		readyPod(t, ns, "plain-1", "")

		mustKubectl(t, "", "scale", "statefulset", "plain", "-n", ns, "--replicas=1")
		claimsGone(t, ns, claimNames("plain", userTemplates, 1))
		mustKubectl(t, "", "delete", "statefulset", "plain", "-n", ns)
		claimsGone(t, ns, claimNames("plain", userTemplates, 0))
		// Meanwhile the webhook's Retain kept every claim of fs, in the
		// same namespace, under the same controllers.
		requireClaimsKept(t, ns, uids)
	})
}

// requirePodClaims checks that the pod of ordinal i of set uses that
// ordinal's claim for each of the DittoFS volumes.
func requirePodClaims(t testing.TB, p *corev1.Pod, set string, i int) {
	t.Helper()
	got := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			got[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	want := map[string]string{}
	for _, tpl := range dittofsTemplates {
		want[tpl] = fmt.Sprintf("%s-%s-%d", tpl, set, i)
	}
	if !maps.Equal(got, want) {
		t.Errorf("pod %s uses the claims %v, want %v", p.Name, got, want)
	}
}

// claimsGone waits until none of the named PVCs exists.
func claimsGone(t testing.TB, ns string, names []string) {
	t.Helper()
	eventually(t, controllerTimeout, fmt.Sprintf("PVCs %v are gone", names), func() (bool, string) {
		have := claims(t, ns)
		for _, n := range names {
			if c, ok := have[n]; ok {
				return false, fmt.Sprintf("%s still there (deleting: %v, finalizers %v, owners %v)",
					n, c.DeletionTimestamp != nil, c.Finalizers, c.OwnerReferences)
			}
		}
		return true, ""
	})
}
