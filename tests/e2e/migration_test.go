package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// migrationStepTimeout bounds one step of the migration script (its
// `kubectl wait` allows 15 minutes; here a pod is Ready in moments).
const migrationStepTimeout = 3 * time.Minute

// 12. A StatefulSet that predates the webhook is migrated with the steps
// `dittofs-webhook eval --recreate` prints, run as a user runs them, with the
// controllers running: it ends with the cache, every pod is recreated by the
// new StatefulSet and mounts its own cache claim, and the metadata and
// content PVCs are the same objects throughout (issue 12, SPEC §5 eval).
//
// What the steps avoid, seen with kube-controller-manager 1.37.2 (issue 12):
// without the pod restarts the new StatefulSet's controller adopts the
// running pods, tries to add the cache claim to NAME-0 in place, is refused
// ("pod updates may not change fields other than ...") and retries forever,
// never reaching its rolling update; and with whenDeleted: Delete still
// stored, a plain `kubectl delete statefulset` deletes the PVCs (the control
// case of TestClaimsOutlivePodsAndStatefulSet).
func TestMigrateStatefulSetOlderThanTheWebhooks(t *testing.T) {
	ns := newNamespace(t)
	standInKubelet(t, ns)

	// Before the install: the old way (an emptyDir cache), Delete retention.
	restore := withoutWebhooks(t)
	m := dittofs("old")
	m.replicas = 2
	m.emptyDirCache = true
	m.retention = "Delete/Delete"
	mustKubectl(t, m.yaml(), "apply", "-n", ns, "-f", "-")
	userTemplates := []string{"metadata", "content"}
	uids := claimUIDs(t, ns, claimNames("old", userTemplates, 0, 1))
	oldPods := []string{string(readyPod(t, ns, "old-0", "").UID), string(readyPod(t, ns, "old-1", "").UID)}
	oldSTS := mustGetSTS(t, ns, "old")
	// The danger is real: under whenDeleted: Delete the StatefulSet
	// controller makes the set the owner of its PVCs, so the garbage
	// collector would delete them with it.
	eventually(t, controllerTimeout, "the old StatefulSet owns its PVCs", func() (bool, string) {
		c := claims(t, ns)["metadata-old-0"]
		for _, o := range c.OwnerReferences {
			if o.UID == oldSTS.UID {
				return true, ""
			}
		}
		return false, fmt.Sprintf("owners of metadata-old-0: %v", c.OwnerReferences)
	})
	restore()

	// As the README tells a user: what is stored, through eval --recreate.
	stored := mustKubectl(t, "", "get", "statefulsets", "-n", ns, "-l", labelServer, "-o", "yaml").stdout
	manifest, script := recreateSteps(t, stored)
	want := []string{
		`kubectl patch statefulset old -n ` + ns + ` --type=merge -p '{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}'`,
		`kubectl delete statefulset old --cascade=orphan -n ` + ns,
		`kubectl create -f recreate.yaml`,
		`kubectl delete pod old-0 -n ` + ns + ` && kubectl wait --for=condition=Ready pod/old-0 -n ` + ns + ` --timeout=15m`,
		`kubectl delete pod old-1 -n ` + ns + ` && kubectl wait --for=condition=Ready pod/old-1 -n ` + ns + ` --timeout=15m`,
	}
	steps := scriptCommands(script)
	if !slices.Equal(steps, want) {
		t.Fatalf("the migration steps are not the ones expected:\n got: %q\nwant: %q\nscript:\n%s", steps, want, script)
	}
	// The user saved the manifest as recreate.yaml and runs the steps where
	// it is.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "recreate.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, step := range steps {
		runStep(t, dir, step)
	}

	sts := mustGetSTS(t, ns, "old")
	if sts.UID == oldSTS.UID {
		t.Fatalf("the StatefulSet was not recreated (same uid %s)", sts.UID)
	}
	requireVCTs(t, sts, "metadata", "content", "cache")
	requireCache(t, sts, defaultCacheSize, "fast")
	requireRetention(t, sts, "Retain/Retain")
	requireCacheMounted(t, sts, "dittofs", defaultCacheMount)
	if volume(sts, "cache") != nil {
		t.Errorf("the emptyDir volume cache is still in the pod template; stored:\n%s", storage(sts))
	}
	for i, oldUID := range oldPods {
		p := readyPod(t, ns, fmt.Sprintf("old-%d", i), "")
		if string(p.UID) == oldUID {
			t.Errorf("pod %s was not recreated (uid %s)", p.Name, p.UID)
		}
		requireOwnedBy(t, p, "old", sts.UID)
		requirePodClaims(t, p, "old", i)
		requirePodMountsCache(t, p, "dittofs", fmt.Sprintf("cache-old-%d", i), defaultCacheMount)
	}
	// The user's data: the same PVCs (uids), never deleted, owned by nothing.
	requireClaimsKept(t, ns, uids)
	have := claims(t, ns)
	for i := range 2 {
		if c := have[fmt.Sprintf("cache-old-%d", i)]; c == nil {
			t.Errorf("no PVC cache-old-%d", i)
		} else {
			requireCacheClaim(t, c, defaultCacheSize, "fast")
		}
	}
}

// recreateSteps runs `dittofs-webhook eval --recreate -f FILE` on the stored
// StatefulSets and returns its stdout (the manifest to create) and stderr (the
// steps).
//
// Until the server's eval has --recreate (it is being added on main), it
// returns the contract's equivalent instead, and logs that it did: the stored
// object without its server-set fields (the webhook applies the mutation on
// create) and the steps as the contract spells them.
func recreateSteps(t *testing.T, stored string) (manifest, script string) {
	t.Helper()
	bin := filepath.Join(env.artifacts, "bin", "dittofs-webhook")
	help, _ := exec.Command(bin, "eval", "--help").CombinedOutput()
	if !bytes.Contains(help, []byte("-recreate")) {
		t.Logf("NOTE: this dittofs-webhook has no eval --recreate yet: running the contract's steps inline")
		return inlineRecreate(t, stored)
	}
	in := filepath.Join(t.TempDir(), "stored.yaml")
	if err := os.WriteFile(in, []byte(stored), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "eval", "--recreate", "-f", in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("$ dittofs-webhook eval --recreate -f stored.yaml  → %v\nstdout:\n%sstderr:\n%s", err, indent(stdout.String()), indent(stderr.String()))
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) || exit != nil && exit.ExitCode() == 2 {
		t.Fatalf("dittofs-webhook eval --recreate could not read the stored StatefulSets: %v", err)
	}
	return stdout.String(), stderr.String()
}

// inlineRecreate is recreateSteps' stand-in until eval --recreate exists.
func inlineRecreate(t *testing.T, stored string) (manifest, script string) {
	t.Helper()
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := yaml.Unmarshal([]byte(stored), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("kubectl get -o yaml: want a List of one StatefulSet (%v):\n%s", err, stored)
	}
	obj := list.Items[0]
	delete(obj, "status")
	meta := obj["metadata"].(map[string]any)
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"} {
		delete(meta, f)
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	name, ns := meta["name"].(string), meta["namespace"].(string)
	var b strings.Builder
	fmt.Fprintf(&b, "# (inline stand-in for eval --recreate)\n")
	fmt.Fprintf(&b, "kubectl patch statefulset %s -n %s --type=merge -p '%s'\n", name, ns,
		`{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}`)
	fmt.Fprintf(&b, "kubectl delete statefulset %s --cascade=orphan -n %s\n", name, ns)
	fmt.Fprintf(&b, "kubectl create -f recreate.yaml\n")
	replicas, _ := obj["spec"].(map[string]any)["replicas"].(float64)
	for i := range int(replicas) {
		fmt.Fprintf(&b, "kubectl delete pod %s-%d -n %s && kubectl wait --for=condition=Ready pod/%s-%d -n %s --timeout=15m\n",
			name, i, ns, name, i, ns)
	}
	return string(out), b.String()
}

// scriptCommands are the commands of a shell script as eval --recreate
// prints it: every non-empty line that is not a # comment, in order.
func scriptCommands(script string) []string {
	var cmds []string
	for _, l := range strings.Split(script, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// runStep runs one line of the migration script with bash, as a user pastes
// it into a shell in dir: the built kubectl first on PATH, KUBECONFIG the
// e2e admin's. It must succeed.
func runStep(t *testing.T, dir, line string) {
	t.Helper()
	haltIfStopping()
	ctx, cancel := context.WithTimeout(context.Background(), migrationStepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + env.assets + string(os.PathListSeparator) + os.Getenv("PATH"),
		"KUBECONFIG=" + env.kubeconfig,
		"HOME=" + filepath.Join(env.artifacts, "home"),
		"LANG=C",
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	haltIfStopping()
	t.Logf("$ %s  → %v (%s)\n%s", line, err, time.Since(t0).Round(time.Millisecond), indent(string(out)))
	if err != nil {
		t.Fatalf("migration step failed: %s: %v\n%s", line, err, out)
	}
}
