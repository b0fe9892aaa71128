package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// Helpers of the scenarios that run the controllers: they read pods and PVCs
// with client-go (quietly, in polling loops); everything a user does goes
// through kubectl.

// controllerTimeout bounds how long a scenario waits for the controllers to
// act (they take well under a second on an idle machine).
const controllerTimeout = 90 * time.Second

// eventually polls cond until it reports done, failing the test with the last
// state it described after timeout, or at once if kube-controller-manager
// has died.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (done bool, state string)) {
	t.Helper()
	framework.Eventually(t, timeout, what, env.ControllersAlive, cond)
}

// claimNames are the PVCs the StatefulSet controller makes for a set's
// ordinals: TEMPLATE-SET-ORDINAL, e.g. cache-fs-0.
func claimNames(set string, templates []string, ordinals ...int) []string {
	var names []string
	for _, i := range ordinals {
		for _, tpl := range templates {
			names = append(names, fmt.Sprintf("%s-%s-%d", tpl, set, i))
		}
	}
	return names
}

// claims returns the namespace's PVCs by name.
func claims(t testing.TB, ns string) map[string]*corev1.PersistentVolumeClaim {
	t.Helper()
	list, err := env.Client.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing the PVCs of %s: %v", ns, err)
	}
	out := map[string]*corev1.PersistentVolumeClaim{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

// claimUIDs waits until every named PVC exists and returns their uids.
func claimUIDs(t testing.TB, ns string, names []string) map[string]types.UID {
	t.Helper()
	uids := map[string]types.UID{}
	eventually(t, controllerTimeout, fmt.Sprintf("PVCs %v exist", names), func() (bool, string) {
		have := claims(t, ns)
		for _, n := range names {
			c, ok := have[n]
			if !ok {
				return false, "PVCs: " + strings.Join(slices.Sorted(maps.Keys(have)), ", ")
			}
			uids[n] = c.UID
		}
		return true, ""
	})
	return uids
}

// requireClaimsKept checks that each PVC is still the same object (same uid)
// and is not being deleted. A PVC that was deleted at any moment since uids
// was taken fails this: it is either still Terminating (the
// kubernetes.io/pvc-protection finalizer holds it while a pod uses it) or
// gone, or made anew by the StatefulSet controller with another uid.
func requireClaimsKept(t testing.TB, ns string, uids map[string]types.UID) {
	t.Helper()
	have := claims(t, ns)
	for _, name := range slices.Sorted(maps.Keys(uids)) {
		c, ok := have[name]
		switch {
		case !ok:
			t.Errorf("PVC %s was deleted", name)
		case c.UID != uids[name]:
			t.Errorf("PVC %s was deleted and made again (uid %s, was %s)", name, c.UID, uids[name])
		case c.DeletionTimestamp != nil:
			t.Errorf("PVC %s is being deleted (deletionTimestamp %s)", name, c.DeletionTimestamp)
		}
		if ok {
			for _, o := range c.OwnerReferences {
				// The StatefulSet controller makes the set (whenDeleted:
				// Delete) or the pod (whenScaled: Delete) the PVC's owner,
				// so that the garbage collector deletes it with them.
				t.Errorf("PVC %s has the owner %s %s: the garbage collector would delete it with that owner", name, o.Kind, o.Name)
			}
		}
	}
}

// requireCacheClaim checks a PVC the StatefulSet controller made from the
// cache template: size, class (empty: unset), ReadWriteOnce.
func requireCacheClaim(t testing.TB, c *corev1.PersistentVolumeClaim, size, class string) {
	t.Helper()
	for _, p := range claimSpecProblems(c.Spec, size, class) {
		t.Errorf("PVC %s: %s", c.Name, p)
	}
}

// readyPod waits until the pod exists, is not the one with uid notUID (pass
// "" for any), and is Ready, and returns it.
func readyPod(t testing.TB, ns, name string, notUID types.UID) *corev1.Pod {
	t.Helper()
	pods := env.Client.CoreV1().Pods(ns)
	var pod *corev1.Pod
	eventually(t, controllerTimeout, fmt.Sprintf("pod %s is Ready", name), func() (bool, string) {
		p, err := pods.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if p.UID == notUID || p.DeletionTimestamp != nil || !framework.PodReady(p) {
			return false, fmt.Sprintf("uid %s, phase %s, deleting %v", p.UID, p.Status.Phase, p.DeletionTimestamp != nil)
		}
		pod = p
		return true, ""
	})
	return pod
}

// podGone waits until the pod no longer exists.
func podGone(t testing.TB, ns, name string) {
	t.Helper()
	pods := env.Client.CoreV1().Pods(ns)
	eventually(t, controllerTimeout, fmt.Sprintf("pod %s is gone", name), func() (bool, string) {
		p, err := pods.Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("uid %s, phase %s, owners %v", p.UID, p.Status.Phase, p.OwnerReferences)
	})
}

// requirePodMountsCache checks that the pod's volume "cache" is the PVC claim
// and that the container mounts it at path, once.
func requirePodMountsCache(t testing.TB, p *corev1.Pod, containerName, claim, path string) {
	t.Helper()
	vol := named(p.Spec.Volumes, "cache", func(v *corev1.Volume) string { return v.Name })
	switch {
	case vol == nil:
		t.Errorf("pod %s has no volume cache; volumes:\n%s", p.Name, toYAML(p.Spec.Volumes))
	case vol.PersistentVolumeClaim == nil || vol.PersistentVolumeClaim.ClaimName != claim:
		t.Errorf("pod %s's volume cache is not the claim %s:\n%s", p.Name, claim, toYAML(vol))
	}
	c := named(p.Spec.Containers, containerName, func(c *corev1.Container) string { return c.Name })
	if c == nil {
		t.Fatalf("pod %s has no container %s", p.Name, containerName)
	}
	var at []string
	for _, m := range c.VolumeMounts {
		if m.Name == "cache" {
			at = append(at, m.MountPath)
		}
	}
	if !slices.Equal(at, []string{path}) {
		t.Errorf("pod %s: container %s mounts cache at %v, want once at %s", p.Name, containerName, at, path)
	}
}

// requireOwnedBy checks that the pod's controller is the StatefulSet with
// that uid.
func requireOwnedBy(t testing.TB, p *corev1.Pod, set string, uid types.UID) {
	t.Helper()
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "StatefulSet" || ref.Name != set || ref.UID != uid {
		t.Errorf("pod %s is controlled by %v, want StatefulSet %s uid %s", p.Name, ref, set, uid)
	}
}
