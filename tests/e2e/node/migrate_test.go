package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// TestMigrateStatefulSetOlderThanTheWebhooks migrates a StatefulSet that predates the webhook with the steps
// `dittofs-webhook eval --recreate` prints, run as a user runs them, on the node: it ends with the cache, every
// pod is recreated by the new StatefulSet and mounts its own cache claim, and the metadata and content PVCs are
// the same objects throughout (issue 12, SPEC §5 eval).
//
// What the steps avoid (issue 12): without the pod restarts the new StatefulSet's controller adopts the running
// pods, tries to add the cache claim to NAME-0 in place, is refused and retries forever; and with whenDeleted:
// Delete still stored, a plain `kubectl delete statefulset` deletes the PVCs (the control of
// TestCacheOutlivesThePod).
//
// It runs for a labelled StatefulSet created before the webhooks, and for one never labelled (the webhooks
// installed all along), which a user cannot label in place (U3) and brings under management with eval
// --recreate --manage (issue 19).
func TestMigrateStatefulSetOlderThanTheWebhooks(t *testing.T) {
	for _, labelled := range []bool{true, false} {
		t.Run(fmt.Sprintf("labelled %v", labelled), func(t *testing.T) { testMigrate(t, labelled) })
	}
}

func testMigrate(t *testing.T, labelled bool) {
	ns := fmt.Sprintf("dittofs-e2e-migrate-%v", labelled)
	mustKubectl(t, "", "create", "namespace", ns)
	sts := env.Client.AppsV1().StatefulSets(ns)

	// The old way (an emptyDir cache), Delete retention: before the install, or without the label. restore is the
	// install again, as an operator installs the webhooks; also when the test fails, for the tests after it.
	var once sync.Once // not sync.OnceFunc, which turns a t.Fatal inside into a panic
	restore := func() {
		once.Do(func() {
			mustKubectl(t, "", "apply", "-k", filepath.Join(env.artifacts, "install"))
			waitInjected(t, secretData(t, servingSecret)["ca.crt"])
			waitWebhooks(t, ns, true)
		})
	}
	if labelled {
		t.Cleanup(restore)
		for _, kind := range []string{"mutatingwebhookconfiguration", "validatingwebhookconfiguration"} {
			mustKubectl(t, "", "delete", kind, webhookConfigName)
		}
		waitWebhooks(t, ns, false)
	}
	mustKubectl(t, cacheStatefulSet(labelled), "-n", ns, "create", "-f", "-")
	var oldPods []string
	for i := range 2 {
		waitStarted(t, ns, fmt.Sprintf("fs-%d", i))
		uid := mustKubectl(t, "", "-n", ns, "get", "pod", fmt.Sprint("fs-", i), "-o", "jsonpath={.metadata.uid}").Stdout
		oldPods = append(oldPods, uid)
	}
	old := tests.Must(sts.Get(context.Background(), "fs", metav1.GetOptions{}))(t)
	// The danger is real: under whenDeleted: Delete the StatefulSet controller makes the set the owner of its
	// PVCs, so the garbage collector would delete them with it.
	framework.Eventually(t, time.Minute, "the old StatefulSet owns its PVCs", nil, func() (bool, string) {
		o := claims(t, ns)["metadata-fs-0"].Owners
		return len(o) == 1 && o[0].UID == old.UID, fmt.Sprintf("owners of metadata-fs-0: %v", o)
	})
	uids := claims(t, ns)
	if labelled {
		restore()
	}

	// As the README tells a user: what is stored, through eval --recreate (exit 2 is an input it could not read),
	// each step as a user runs it, with the built dittofs-webhook on PATH.
	dir := t.TempDir()
	runStep := func(line string) string { return env.Kubectl.Shell(t, dir, line, filepath.Dir(env.webhookBin)) }
	evalRecreate := func(get, flags string) (manifest, script string) {
		runStep(get + " -o yaml | dittofs-webhook eval --recreate" + flags + " -f - >recreate.yaml 2>steps.sh; test $? != 2")
		m, _ := os.ReadFile(filepath.Join(dir, "recreate.yaml"))
		s, _ := os.ReadFile(filepath.Join(dir, "steps.sh"))
		return string(m), string(s)
	}
	var script string
	if labelled {
		_, script = evalRecreate("kubectl get statefulsets -n "+ns+" -l dittofs.com/server", "")
	} else {
		// Labelling it in place is denied: an update cannot add the cache.
		r := runKubectl("", "label", "statefulset", "fs", "-n", ns, "dittofs.com/server=fs")
		if r.OK() || !strings.Contains(r.Stderr, "cache-storage") || !strings.Contains(r.Stderr, "--cascade=orphan") {
			t.Errorf("labelling in place was not denied with cache-storage and the way out (--cascade=orphan):\n%s", r)
		}
		// eval --recreate says it is not managed and what to do ...
		manifest, advice := evalRecreate("kubectl get statefulset fs -n "+ns, "")
		if manifest != "" || len(scriptCommands(advice)) > 0 || !strings.Contains(advice, "not managed") ||
			!strings.Contains(advice, "--manage") {
			t.Errorf("eval --recreate on an unlabelled StatefulSet: want no manifest, no steps, "+
				"\"not managed\" and \"--manage\":\n%s\n%s", manifest, advice)
		}
		// ... and --manage does it.
		_, script = evalRecreate("kubectl get statefulset fs -n "+ns, " --manage")
	}
	restart := func(pod string) string {
		return fmt.Sprintf(`kubectl delete pod %[1]s -n %[2]s && `+
			`until kubectl get pod %[1]s -n %[2]s >/dev/null 2>&1; do sleep 1; done && `+
			`kubectl wait --for=condition=Ready pod/%[1]s -n %[2]s --timeout=15m`, pod, ns)
	}
	want := []string{
		`kubectl patch statefulset fs -n ` + ns + ` --type=merge -p ` +
			`'{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}'`,
		`kubectl delete statefulset fs --cascade=orphan -n ` + ns,
		`kubectl create -f recreate.yaml`,
		restart("fs-0"),
		restart("fs-1"),
	}
	// The script is meant to be run as it is (bash steps.sh): any text in a line that is not a # comment would
	// run.
	steps := scriptCommands(script)
	if d := cmp.Diff(want, steps); d != "" {
		t.Fatalf("the migration steps (-want +got):\n%s\nscript:\n%s", d, script)
	}
	// The user runs the steps where recreate.yaml is. The manifest is what the cluster stores (the mutation
	// applied): the webhook has nothing to change, so nothing to warn about.
	for _, step := range steps {
		if out := runStep(step); step == want[2] && strings.Contains(out, "Warning:") {
			t.Errorf("creating the printed manifest made the webhook warn: it is not the mutated object:\n%s", out)
		}
	}

	recreated := tests.Must(sts.Get(context.Background(), "fs", metav1.GetOptions{}))(t)
	if recreated.UID == old.UID {
		t.Fatalf("the StatefulSet was not recreated (same uid %s)", old.UID)
	}
	// Labelled and mutated; the control's mount of the emptyDir stays.
	if got := mustKubectl(t, "", "get", "statefulset", "fs", "-n", ns, "-o", storedFields).Stdout; got != mutated {
		t.Errorf("recreated: %q, want %q", got, mutated)
	}
	for i, oldUID := range oldPods {
		waitStarted(t, ns, fmt.Sprintf("fs-%d", i))
		p := requirePodClaims(t, ns, i)
		if ref := metav1.GetControllerOf(p); string(p.UID) == oldUID || ref == nil || ref.UID != recreated.UID {
			t.Errorf("pod %s (uid %s, was %s) is controlled by %v, want a new pod of StatefulSet uid %s",
				p.Name, p.UID, oldUID, ref, recreated.UID)
		}
	}
	// The user's data: the same PVCs (uids), never deleted, owned by nothing.
	have := claims(t, ns)
	requireClaims(t, have)
	for name, c := range uids {
		if have[name].UID != c.UID {
			t.Errorf("PVC %s was deleted and made again (uid %s, was %s)", name, have[name].UID, c.UID)
		}
	}
}

// waitWebhooks waits until a labelled StatefulSet's server-side dry-run create is mutated (active) or stored as
// sent (not): the kube-apiserver follows webhook configurations with a lag.
func waitWebhooks(t *testing.T, ns string, active bool) {
	t.Helper()
	framework.Eventually(t, time.Minute, fmt.Sprintf("the webhooks called: %v", active), nil, func() (bool, string) {
		r := runKubectl(statefulSet("probe", true), "-n", ns, "create", "--dry-run=server", "-f", "-", "-o",
			"jsonpath={.spec.volumeClaimTemplates[*].metadata.name}")
		return r.OK() && strings.HasSuffix(r.Stdout, "cache") == active, r.String()
	})
}

// scriptCommands are the non-empty lines of a shell script that are not # comments, in order.
func scriptCommands(script string) []string {
	var cmds []string
	for l := range strings.SplitSeq(script, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}
