package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dittofs/dittofs-webhook/tests"
)

// dittofsStandIn is the DittoFS container of the scenarios: a static busybox that, at every start, prints what it
// finds in each of its data folders and appends a line (pod name, start count) to each. It makes a missing folder
// first, so a cache the webhook did not mount shows as a lost file, not a crash.
const dittofsStandIn = `for d in cache metadata content; do
  /bin/busybox mkdir -p /data/$d
  f=/data/$d/starts
  echo "found /data/$d: $(/bin/busybox cat $f 2>/dev/null | /bin/busybox tr '\n' ';')"
  n=$(/bin/busybox cat $f 2>/dev/null | /bin/busybox wc -l)
  echo "$POD start $((n+1))" >>$f
done
trap 'exit 0' TERM
while :; do /bin/busybox sleep 1 & wait; done`

// cacheStatefulSet is the README's example StatefulSet fs of 2 replicas, with the stand-in for DittoFS: labelled,
// metadata and content templates, Delete/Delete retention written by its author, an emptyDir `cache` it does not
// mount. The webhook replaces the emptyDir by a cache claim mounted at /data/cache and stores Retain/Retain.
// labelled false is the control: no label (no webhook), its emptyDir mounted at /data/cache.
func cacheStatefulSet(labelled bool) string {
	label, mount := "\n  labels: {dittofs.com/server: fs}", ""
	if !labelled {
		label, mount = "", "\n        - {name: cache, mountPath: /data/cache}"
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: fs%s
spec:
  replicas: 2
  serviceName: fs
  selector: {matchLabels: {app: fs}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  template:
    metadata: {labels: {app: fs}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 5
      containers:
      - name: dittofs
        image: %s
        imagePullPolicy: Never
        command: [/bin/busybox, sh, -c, %q]
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        volumeMounts:
        - {name: metadata, mountPath: /data/metadata}
        - {name: content, mountPath: /data/content}%s
      volumes:
      - {name: cache, emptyDir: {}}
  volumeClaimTemplates:
  - metadata: {name: metadata}
    spec: {storageClassName: fast, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  - metadata: {name: content}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
`, label, busyboxImage, dittofsStandIn, mount)
}

// storedFields is what a test checks of a stored StatefulSet fs: label, templates, the cache template's size,
// class and modes, retention, pod volumes, the container's mounts.
const storedFields = `jsonpath={.metadata.labels.dittofs\.com/server} {.spec.volumeClaimTemplates[*].metadata.name} ` +
	`{.spec.volumeClaimTemplates[2].spec.resources.requests.storage} {.spec.volumeClaimTemplates[2].spec.storageClassName} ` +
	`{.spec.volumeClaimTemplates[2].spec.accessModes} {.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}/` +
	`{.spec.persistentVolumeClaimRetentionPolicy.whenScaled} volumes:{.spec.template.spec.volumes[*].name} ` +
	`mounts:{.spec.template.spec.containers[0].volumeMounts[*].mountPath}`

// mutated is storedFields of cacheStatefulSet as the webhook stores it (SPEC §2 M1, M2): a 5Gi cache in the
// metadata template's class, Retain/Retain, the emptyDir gone and the cache mounted at /data/cache.
const mutated = `fs metadata content cache 5Gi fast ["ReadWriteOnce"] Retain/Retain volumes: ` +
	`mounts:/data/metadata /data/content /data/cache`

// TestCacheOutlivesThePod is the point of the project: DittoFS keeps its write-ahead log in /data/cache, and it
// must survive the pod. A labelled StatefulSet's pods write to their cache, metadata and content folders at each
// start; the StatefulSet controller makes one cache claim per pod, which the pod mounts. After pod fs-0 is deleted
// and recreated, after a scale to 0 and back, and after the StatefulSet is deleted and created again from the same
// manifest, every line written before is found, on the same claims, which nothing owns (the manifest's
// Delete/Delete would make the garbage collector delete them). The same StatefulSet unlabelled (its cache an
// emptyDir) loses the cache at the first restart, keeps metadata and content, and its claims are deleted on
// scale-down and delete.
func TestCacheOutlivesThePod(t *testing.T) {
	const ns = "dittofs-e2e-cache"
	mustKubectl(t, "", "create", "namespace", ns)
	manifest := cacheStatefulSet(true)
	mustKubectl(t, manifest, "-n", ns, "apply", "-f", "-")
	if got := mustKubectl(t, "", "-n", ns, "get", "statefulset", "fs", "-o", storedFields).Stdout; got != mutated {
		t.Errorf("stored: %q, want %q", got, mutated)
	}

	var lines []string // every line fs-0 wrote so far, in order
	var first map[string]claim
	step := func(what string) {
		t.Helper()
		found := waitStarted(t, ns, "fs-0")
		want := strings.Join(append(slices.Clone(lines), ""), ";")
		for _, d := range []string{"cache", "metadata", "content"} {
			if found[d] != want {
				t.Errorf("%s: /data/%s holds %q, want %q (every line written before)", what, d, found[d], want)
			}
		}
		waitStarted(t, ns, "fs-1")
		for i := range 2 {
			requirePodClaims(t, ns, i)
		}
		have := claims(t, ns)
		if first == nil {
			first = have
			requireClaims(t, have)
		} else if d := cmp.Diff(first, have); d != "" {
			t.Errorf("%s: the claims changed (-first +now):\n%s", what, d)
		}
		lines = append(lines, fmt.Sprintf("fs-0 start %d", len(lines)+1))
	}
	step("first start")
	mustKubectl(t, "", "-n", ns, "delete", "pod", "fs-0")
	step("pod fs-0 deleted and recreated by the controller")
	mustKubectl(t, "", "-n", ns, "scale", "statefulset/fs", "--replicas=0")
	mustKubectl(t, "", "-n", ns, "wait", "--for=delete", "pod/fs-0", "pod/fs-1", "--timeout=2m")
	mustKubectl(t, "", "-n", ns, "scale", "statefulset/fs", "--replicas=2")
	step("scaled to 0 and back to 2")
	mustKubectl(t, manifest, "-n", ns, "delete", "-f", "-", "--wait=true")
	mustKubectl(t, "", "-n", ns, "wait", "--for=delete", "pod/fs-0", "pod/fs-1", "--timeout=2m")
	mustKubectl(t, manifest, "-n", ns, "apply", "-f", "-")
	step("StatefulSet deleted and created again from the same manifest")

	// The control: no webhook, the cache an emptyDir, Delete/Delete kept.
	const control = "dittofs-e2e-cache-control"
	mustKubectl(t, "", "create", "namespace", control)
	mustKubectl(t, cacheStatefulSet(false), "-n", control, "apply", "-f", "-")
	waitStarted(t, control, "fs-0")
	mustKubectl(t, "", "-n", control, "delete", "pod", "fs-0")
	if again := waitStarted(t, control, "fs-0"); again["cache"] != "" || again["metadata"] != "fs-0 start 1;" {
		t.Errorf("the control did not behave as an emptyDir cache and claims: %q", again)
	}
	waitStarted(t, control, "fs-1")
	mustKubectl(t, "", "-n", control, "scale", "statefulset/fs", "--replicas=1")
	mustKubectl(t, "", "-n", control, "wait", "--for=delete", "pvc/metadata-fs-1", "pvc/content-fs-1", "--timeout=2m")
	mustKubectl(t, "", "-n", control, "delete", "statefulset", "fs")
	mustKubectl(t, "", "-n", control, "wait", "--for=delete", "pvc/metadata-fs-0", "pvc/content-fs-0", "--timeout=2m")
	// Meanwhile the webhook's Retain kept every claim of the labelled set.
	if d := cmp.Diff(first, claims(t, ns)); d != "" {
		t.Errorf("the claims changed (-first +now):\n%s", d)
	}
}

// waitStarted waits until pod of ns runs and has printed what it found, and returns that per folder.
func waitStarted(t *testing.T, ns, pod string) map[string]string {
	t.Helper()
	eventually(t, 3*time.Minute, "", "-n", ns, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=10s")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		r := runKubectl("", "-n", ns, "logs", pod)
		found := map[string]string{}
		for l := range strings.SplitSeq(r.Stdout, "\n") {
			if rest, ok := strings.CutPrefix(l, "found /data/"); ok {
				d, v, _ := strings.Cut(rest, ": ")
				found[d] = v
			}
		}
		if len(found) == 3 {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s of %s did not print what it found: %s", pod, ns, r)
		}
	}
}

// claim is what the tests check of a PVC.
type claim struct {
	UID, Volume, Size, Class string
	Owners                   []metav1.OwnerReference
	Deleting                 bool
}

// claims are the PVCs of ns by name.
func claims(t *testing.T, ns string) map[string]claim {
	t.Helper()
	list := tests.Must(env.Client.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{}))(t)
	out := map[string]claim{}
	for _, c := range list.Items {
		out[c.Name] = claim{UID: string(c.UID), Volume: c.Spec.VolumeName, Class: *c.Spec.StorageClassName,
			Size: c.Spec.Resources.Requests.Storage().String(), Owners: c.OwnerReferences,
			Deleting: c.DeletionTimestamp != nil}
	}
	return out
}

// requireClaims checks the claims of the managed StatefulSet fs: each template's claim per pod, none owned or being
// deleted (SPEC §2 M2: the StatefulSet controller makes the set or the pod the owner under Delete), each cache
// claim of the mutation's size and class.
func requireClaims(t *testing.T, have map[string]claim) {
	t.Helper()
	want := []string{"cache-fs-0", "cache-fs-1", "content-fs-0", "content-fs-1", "metadata-fs-0", "metadata-fs-1"}
	if got := slices.Sorted(maps.Keys(have)); !slices.Equal(got, want) {
		t.Errorf("PVCs %v, want %v", got, want)
	}
	for name, c := range have {
		if c.Owners != nil || c.Deleting {
			t.Errorf("PVC %s: owners %v, being deleted %v: the garbage collector would delete it", name, c.Owners, c.Deleting)
		}
		if strings.HasPrefix(name, "cache-") && (c.Size != "5Gi" || c.Class != "fast") {
			t.Errorf("PVC %s: %s in class %q, want 5Gi in fast", name, c.Size, c.Class)
		}
	}
}

// requirePodClaims checks that pod i of the StatefulSet fs uses its own claim of each template and mounts the
// cache at /data/cache.
func requirePodClaims(t *testing.T, ns string, i int) *corev1.Pod {
	t.Helper()
	p := tests.Must(env.Client.CoreV1().Pods(ns).Get(context.Background(), fmt.Sprintf("fs-%d", i), metav1.GetOptions{}))(t)
	got := map[string]string{}
	want := map[string]string{"cache": fmt.Sprint("cache-fs-", i), "content": fmt.Sprint("content-fs-", i),
		"metadata": fmt.Sprint("metadata-fs-", i)}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			got[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	var mounts []string
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		if m.Name == "cache" {
			mounts = append(mounts, m.MountPath)
		}
	}
	if d := cmp.Diff(want, got); d != "" || !slices.Equal(mounts, []string{"/data/cache"}) {
		t.Errorf("pod %s: claims (-want +got):\n%s; cache mounted at %v, want once at /data/cache", p.Name, d, mounts)
	}
	return p
}
