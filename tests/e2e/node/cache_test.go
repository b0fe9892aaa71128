package node

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// dittofsStandIn is the DittoFS container of the scenario: a static busybox
// that, at every start, prints what it finds in each of its data folders and
// appends a line (pod name, start count) to each. It makes a missing folder
// first, so a cache the webhook did not mount shows as a lost file, not a
// crash.
const dittofsStandIn = `for d in cache metadata content; do
  /bin/busybox mkdir -p /data/$d
  f=/data/$d/starts
  echo "found /data/$d: $(/bin/busybox cat $f 2>/dev/null | /bin/busybox tr '\n' ';')"
  n=$(/bin/busybox cat $f 2>/dev/null | /bin/busybox wc -l)
  echo "$POD start $((n+1))" >>$f
done
trap 'exit 0' TERM
while :; do /bin/busybox sleep 1 & wait; done`

// cacheStatefulSet is the README's example StatefulSet, with the stand-in
// for DittoFS: labelled, metadata and content templates, `whenDeleted:
// Delete` written by its author, an emptyDir `cache` it does not mount. The
// webhook replaces the emptyDir by a cache claim mounted at /data/cache and
// stores Retain. labelled false is the control: no label (no webhook), and
// its emptyDir mounted at /data/cache as a user without the webhook would.
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
  serviceName: fs
  selector: {matchLabels: {app: fs}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}
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

// TestCacheOutlivesThePod is the point of the project: DittoFS keeps its
// write-ahead log in /data/cache, and it must survive the pod. A labelled
// StatefulSet's pod writes to its cache, metadata and content folders at
// each start; after the pod is deleted and recreated, after a scale to 0 and
// back to 1, and after the StatefulSet is deleted and created again from the
// same manifest, every line written before is found, on the same claims.
// The same StatefulSet unlabelled (its cache an emptyDir) loses the cache at
// the first restart, and keeps metadata and content.
func TestCacheOutlivesThePod(t *testing.T) {
	const ns = "dittofs-e2e-cache"
	mustKubectl(t, "", "create", "namespace", ns)
	manifest := cacheStatefulSet(true)
	r := mustKubectl(t, manifest, "-n", ns, "apply", "-f", "-")
	t.Logf("kubectl apply printed: %s", strings.TrimSpace(r.Stderr))
	stored := mustKubectl(t, "", "-n", ns, "get", "statefulset", "fs", "-o",
		`jsonpath={.spec.volumeClaimTemplates[*].metadata.name} {.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}/{.spec.persistentVolumeClaimRetentionPolicy.whenScaled} {.spec.template.spec.containers[0].volumeMounts[*].mountPath}`)
	t.Logf("stored: %s", stored.Stdout)

	var lines []string // every line written so far, in order
	claims := ""
	step := func(what string) {
		t.Helper()
		found := waitStarted(t, ns)
		want := strings.Join(lines, ";")
		if want != "" {
			want += ";"
		}
		for _, d := range []string{"cache", "metadata", "content"} {
			t.Logf("%s: found /data/%s: %q", what, d, found[d])
			if found[d] != want {
				t.Errorf("%s: /data/%s holds %q, want %q (every line written before)", what, d, found[d], want)
			}
		}
		c := mustKubectl(t, "", "-n", ns, "get", "pvc", "-o", "custom-columns=CLAIM:.metadata.name,UID:.metadata.uid,VOLUME:.spec.volumeName", "--no-headers").Stdout
		t.Logf("%s: claims\n%s", what, c)
		if claims != "" && c != claims {
			t.Errorf("%s: the claims changed:\n%s\nwere\n%s", what, c, claims)
		}
		claims = c
		lines = append(lines, fmt.Sprintf("fs-0 start %d", len(lines)+1))
	}
	step("first start")
	mustKubectl(t, "", "-n", ns, "delete", "pod", "fs-0")
	step("pod fs-0 deleted and recreated by the controller")
	mustKubectl(t, "", "-n", ns, "scale", "statefulset/fs", "--replicas=0")
	mustKubectl(t, "", "-n", ns, "wait", "--for=delete", "pod/fs-0", "--timeout=2m")
	mustKubectl(t, "", "-n", ns, "scale", "statefulset/fs", "--replicas=1")
	step("scaled to 0 and back to 1")
	mustKubectl(t, manifest, "-n", ns, "delete", "-f", "-", "--wait=true")
	mustKubectl(t, "", "-n", ns, "wait", "--for=delete", "pod/fs-0", "--timeout=2m")
	mustKubectl(t, manifest, "-n", ns, "apply", "-f", "-")
	step("StatefulSet deleted and created again from the same manifest")

	// The control: no webhook, the cache an emptyDir.
	const control = "dittofs-e2e-cache-control"
	mustKubectl(t, "", "create", "namespace", control)
	mustKubectl(t, cacheStatefulSet(false), "-n", control, "apply", "-f", "-")
	first := waitStarted(t, control)
	mustKubectl(t, "", "-n", control, "delete", "pod", "fs-0")
	again := waitStarted(t, control)
	t.Logf("control (unlabelled, emptyDir cache): first start found %q; after pod fs-0 was deleted and recreated: /data/cache %q, /data/metadata %q, /data/content %q",
		first, again["cache"], again["metadata"], again["content"])
	if again["cache"] != "" || again["metadata"] != "fs-0 start 1;" {
		t.Errorf("the control did not behave as an emptyDir cache and claims: %q", again)
	}
}

// waitStarted waits until pod fs-0 of ns runs and has printed what it found,
// and returns that per folder.
func waitStarted(t *testing.T, ns string) map[string]string {
	t.Helper()
	eventually(t, 3*time.Minute, "", "-n", ns, "wait", "--for=condition=Ready", "pod/fs-0", "--timeout=10s")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		r := runKubectl("", "-n", ns, "logs", "fs-0")
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
			t.Fatalf("pod fs-0 of %s did not print what it found: %s", ns, r)
		}
	}
}
