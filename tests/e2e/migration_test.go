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

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
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
//
// It runs twice: for a labelled StatefulSet created before the webhooks, and
// for one never labelled (the webhooks installed all along), which a user
// cannot label in place (U3) and brings under management with eval
// --recreate --manage (issue 19).
func TestMigrateStatefulSetOlderThanTheWebhooks(t *testing.T) {
	t.Run("labelled before the webhooks", func(t *testing.T) { testMigrate(t, true) })
	t.Run("never labelled", func(t *testing.T) { testMigrate(t, false) })
}

func testMigrate(t *testing.T, labelled bool) {
	ns := newNamespace(t)
	standInKubelet(t, ns)

	// The old way (an emptyDir cache), Delete retention: before the
	// install, or without the label.
	restore := func() {}
	if labelled {
		restore = withoutWebhooks(t)
	}
	m := dittofs("old")
	m.managed = labelled
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
	var manifest, script string
	if labelled {
		stored := mustKubectl(t, "", "get", "statefulsets", "-n", ns, "-l", labelServer, "-o", "yaml").Stdout
		manifest, script = recreateSteps(t, stored)
	} else {
		// Labelling it in place is denied: an update cannot add the cache.
		r := kubectl(t, "", "label", "statefulset", "old", "-n", ns, labelServer+"=old")
		requireDenied(t, r, "cache-storage", "--cascade=orphan")
		stored := mustKubectl(t, "", "get", "statefulset", "old", "-n", ns, "-o", "yaml").Stdout
		// eval --recreate says it is not managed and what to do ...
		manifest, script = recreateSteps(t, stored)
		if manifest != "" || len(scriptCommands(script)) > 0 {
			t.Errorf("eval --recreate printed a manifest or steps for an unlabelled StatefulSet:\n%s\n%s", manifest, script)
		}
		for _, w := range []string{"not managed", "--manage"} {
			if !strings.Contains(script, w) {
				t.Errorf("eval --recreate on an unlabelled StatefulSet does not say %q:\n%s", w, script)
			}
		}
		// ... and --manage does it.
		manifest, script = recreateSteps(t, stored, "--manage")
	}
	want := []string{
		`kubectl patch statefulset old -n ` + ns + ` --type=merge -p '{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}'`,
		`kubectl delete statefulset old --cascade=orphan -n ` + ns,
		`kubectl create -f recreate.yaml`,
		`kubectl delete pod old-0 -n ` + ns + ` && until kubectl get pod old-0 -n ` + ns + ` >/dev/null 2>&1; do sleep 1; done && kubectl wait --for=condition=Ready pod/old-0 -n ` + ns + ` --timeout=15m`,
		`kubectl delete pod old-1 -n ` + ns + ` && until kubectl get pod old-1 -n ` + ns + ` >/dev/null 2>&1; do sleep 1; done && kubectl wait --for=condition=Ready pod/old-1 -n ` + ns + ` --timeout=15m`,
	}
	steps := scriptCommands(script)
	// The script is meant to be run as it is (bash steps.sh): every line
	// that is not a # comment runs as a command. Any other text there is an
	// error of its own (and would run: a backquoted word in it is a command
	// substitution); the commands are still checked and run below.
	steps = slices.DeleteFunc(steps, func(l string) bool {
		if !strings.HasPrefix(l, "kubectl ") {
			t.Errorf("eval --recreate's stderr is not a runnable script: this line is neither a # comment nor a step:\n%s", l)
			return true
		}
		return false
	})
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
		out := runStep(t, dir, step)
		// The manifest is what the cluster stores (the mutation applied):
		// the webhook has nothing to change, so nothing to warn about.
		if step == "kubectl create -f recreate.yaml" && strings.Contains(out, "Warning:") {
			t.Errorf("creating the printed manifest made the webhook warn: it is not the mutated object:\n%s", out)
		}
	}

	sts := mustGetSTS(t, ns, "old")
	if sts.UID == oldSTS.UID {
		t.Fatalf("the StatefulSet was not recreated (same uid %s)", sts.UID)
	}
	if v, ok := sts.Labels[labelServer]; !ok || v != "old" {
		t.Errorf("the recreated StatefulSet is not labelled %s=old (labels %v)", labelServer, sts.Labels)
	}
	requireMutated(t, sts, "fast")
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

// recreateSteps runs `dittofs-webhook eval --recreate [FLAGS] -f FILE` on the
// stored StatefulSets and returns its stdout (the manifest to create) and
// stderr (the steps). Its exit status is not judged beyond "read the input"
// (not 2).
func recreateSteps(t *testing.T, stored string, flags ...string) (manifest, script string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "stored.yaml")
	if err := os.WriteFile(in, []byte(stored), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{"eval", "--recreate"}, flags...), "-f", in)
	cmd := exec.Command(filepath.Join(env.artifacts, "bin", "dittofs-webhook"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("$ dittofs-webhook %s  → %v\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), err, framework.Indent(stdout.String()), framework.Indent(stderr.String()))
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) || exit != nil && exit.ExitCode() == 2 {
		t.Fatalf("dittofs-webhook eval --recreate could not read the stored StatefulSets: %v", err)
	}
	return stdout.String(), stderr.String()
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
// e2e admin's. It must succeed; it returns what the step printed.
func runStep(t *testing.T, dir, line string) string {
	t.Helper()
	framework.HaltIfStopping()
	ctx, cancel := context.WithTimeout(context.Background(), migrationStepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + env.assets + string(os.PathListSeparator) + os.Getenv("PATH"),
		"KUBECONFIG=" + env.Kubeconfig,
		"HOME=" + filepath.Join(env.artifacts, "home"),
		"LANG=C",
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	framework.HaltIfStopping()
	t.Logf("$ %s  → %v (%s)\n%s", line, err, time.Since(t0).Round(time.Millisecond), framework.Indent(string(out)))
	if err != nil {
		t.Fatalf("migration step failed: %s: %v\n%s", line, err, out)
	}
	return string(out)
}
