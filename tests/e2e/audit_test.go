package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
)

// reportsModule's Go types are what `audit -o report` prints; its CRD is installed.
const reportsModule = "github.com/openreports/reports-api"

// TestAuditReportsApplied: StatefulSets older than the policy — before the
// webhooks, while they warn only (SPEC §3), unlabelled — then the audit
// pipeline the docs show (§5) and updates of the oldest (§2 U3).
func TestAuditReportsApplied(t *testing.T) {
	// The OpenReports Report CRD at the version the main module requires.
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", reportsModule)
	cmd.Dir = env.repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s (in %s): %v", reportsModule, env.repoRoot, err)
	}
	installCRDs(t, filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "openreports.io_reports.yaml"))
	ns := newNamespace(t)

	restore := withoutWebhooks(t)
	legacy := dittofs("legacy")
	legacy.emptyDirCache, legacy.retention = true, "Delete/Delete"
	mustKubectl(t, legacy.yaml(), "apply", "-n", ns, "-f", "-")
	restore()

	mustKubectl(t, dittofs("protected").yaml(), "apply", "-n", ns, "-f", "-")

	warned := dittofs("warned")
	warned.vcts, warned.retention = userVCTs()[:1], "Delete/Delete"
	warn, restoreWebhooks := withWarnOnlyServer(t, warned.yaml())
	r := mustKubectl(t, warned.yaml(), "create", "-n", ns, "-f", "-")
	requireWarning(t, r, "content-storage: spec.volumeClaimTemplates: Required value", "denied under deny")
	// The mutating webhook's warning (Delete replaced) names a field, not a rule.
	if v := slices.DeleteFunc(r.Warnings(), func(w string) bool { return deniedRules(w) == nil }); len(v) != 1 {
		t.Errorf("%d warnings name a rule, want one (content-storage):\n%s", len(v), r)
	}
	requireVCTs(t, mustGetSTS(t, ns, "warned"), "metadata", "cache")
	// The dry runs of withWarnOnlyServer were counted too: at least one, and never as deny.
	violations := map[string]float64{}
	for _, s := range tests.Scrape(t, "http://"+warn.metrics+"/metrics") {
		if s.Name == "dittofs_webhook_violations_total" && s.Labels["rule"] == policies.RuleContentStorage {
			violations[s.Labels["action"]] = s.Value
		}
	}
	if deny, ok := violations["deny"]; violations["warn"] < 1 || !ok || deny != 0 {
		t.Errorf("content-storage violations by action %v, want warn ≥ 1 and deny 0 (present)", violations)
	}
	restoreWebhooks()
	again := warned
	again.name = "warned-again"
	r = kubectl(t, again.yaml(), "create", "-n", ns, "-f", "-")
	if r.OK() || !strings.Contains(r.Stderr, "content-storage") {
		t.Errorf("enforcing again, the manifest is not denied for content-storage:\n%s", r)
	}

	plain := dittofs("plain") // unlabelled: skipped and counted
	plain.managed = false
	mustKubectl(t, plain.yaml(), "apply", "-n", ns, "-f", "-")

	// With -A as the docs have it: other tests' namespaces get reports too, harmlessly.
	dir := t.TempDir()
	audit := env.bin("dittofs-webhook") + " audit"
	env.Kubectl.Shell(t, dir, "kubectl get sts -A -o yaml | "+audit+" -o report | kubectl apply --validate=strict -f -")

	var list reportsv1alpha1.ReportList
	mustDecode(t, mustKubectl(t, "", "get", "reports.openreports.io", "-n", ns, "-o", "json"), &list)
	// What a Report says is the renderer's (tests/eval/audit-report.txtar compares it whole); here: one per
	// labelled StatefulSet, scoped to it by UID, failing the rules it breaks.
	type judged struct {
		Source  string
		UID     types.UID
		Failing []string
	}
	want := map[string]judged{}
	for name, failing := range map[string][]string{
		"protected": nil,
		"legacy":    {policies.RuleCacheStorage, policies.RuleRetentionPolicy},
		"warned":    {policies.RuleContentStorage},
	} {
		want[name] = judged{"dittofs-webhook", mustGetSTS(t, ns, name).UID, failing}
	}
	got := map[string]judged{}
	for _, rep := range list.Items {
		if rep.Scope == nil || rep.Scope.Kind != "StatefulSet" || rep.Scope.Namespace != ns {
			t.Errorf("report %s: scope %+v, want a StatefulSet of namespace %s", rep.Name, rep.Scope, ns)
			continue
		}
		j := judged{Source: rep.Source, UID: rep.Scope.UID}
		for _, res := range rep.Results {
			if res.Result == "fail" {
				j.Failing = append(j.Failing, res.Rule)
			}
		}
		slices.Sort(j.Failing)
		got[rep.Scope.Name] = j
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the Reports by StatefulSet (-want +got):\n%s", d)
	}

	// The same audit as text exits 1 (something fails) and says so per StatefulSet.
	text := env.Kubectl.Shell(t, dir, "kubectl get sts -n "+ns+" -o yaml | "+audit+"; echo \"exit $?\"")
	for _, line := range []string{
		ns + "/protected: pass",
		ns + "/legacy: fail (cache-storage, retention-policy)",
		ns + "/warned: fail (content-storage)",
		"1 not labelled dittofs.com/server skipped",
		"exit 1",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("audit -o text does not say %q:\n%s", line, text)
		}
	}

	// Older than the webhooks: `kubectl scale` writes the scale subresource,
	// which the webhooks' rules leave out; a patch of spec.replicas and a new
	// image go through them, allowed (an existing violation) with the advice.
	update := func(replicas int32, warns bool, stdin string, args ...string) {
		r := mustKubectl(t, stdin, append(args, "-n", ns)...)
		if warns {
			requireWarning(t, r, "--cascade=orphan")
			requireWarning(t, r, "cache-storage")
		}
		if sts := mustGetSTS(t, ns, "legacy"); ptr.Deref(sts.Spec.Replicas, 0) != replicas {
			t.Errorf("%s: replicas %v, want %d", r.Args, sts.Spec.Replicas, replicas)
		}
	}
	update(2, false, "", "scale", "statefulset", "legacy", "--replicas=2")
	update(3, true, "", "patch", "statefulset", "legacy", "--type=merge", "-p", `{"spec":{"replicas":3}}`)
	legacy.image, legacy.replicas = newImage, 4
	update(4, true, legacy.yaml(), "apply", "-f", "-")
	after := mustGetSTS(t, ns, "legacy")
	// Nothing is injected in place: the claims cannot change on update.
	requireVCTs(t, after, "metadata", "content")
	if c := container(after, "dittofs"); c == nil || c.Image != newImage || len(cacheMounts(c)) != 0 {
		t.Errorf("not the new image, or a cache mount without a cache claim; stored:\n%s", storage(after))
	}
}
