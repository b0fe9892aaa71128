package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

// reportsModule is the module whose Go types `audit -o report` prints and
// whose CRDs the test installs, at the version the main module requires.
const reportsModule = "github.com/openreports/reports-api"

// TestAuditReportsApplied is `audit -o report` against the real schema (issue
// 25, SPEC §5 audit): the OpenReports CRD of the reports-api module the Go
// types come from is installed, the cluster gets the StatefulSets an audit is
// for — one the webhooks protected, one created before them (emptyDir cache,
// Delete retention), one created while the webhooks were in warn mode
// (without content storage, with Delete retention in its manifest) and one
// unlabelled — and the pipeline the docs show,
//
//	kubectl get sts -A -o yaml | dittofs-webhook audit -o report | kubectl apply -f -
//
// is run as a user runs it. The Reports read back with kubectl are what the
// apiserver's schema accepted (apply --validate=strict refuses unknown
// fields), one per labelled StatefulSet, with the right result per rule.
func TestAuditReportsApplied(t *testing.T) {
	installReportsCRD(t)
	ns := newNamespace(t)

	// Before the webhooks: the old way, as it stays stored.
	restore := withoutWebhooks(t)
	legacy := dittofs("legacy")
	legacy.emptyDirCache = true
	legacy.retention = "Delete/Delete"
	mustKubectl(t, legacy.yaml(), "apply", "-n", ns, "-f", "-")
	restore()

	// Protected: created through the webhooks.
	mustKubectl(t, dittofs("protected").yaml(), "apply", "-n", ns, "-f", "-")

	// In warn mode: the validator lets the missing content storage
	// through; the mutating webhook acts as in deny mode, so the Delete of
	// its manifest is replaced by Retain all the same (SPEC §3).
	warned := dittofs("warned")
	warned.vcts = userVCTs()[:1]
	warned.retention = "Delete/Delete"
	_, restoreWebhooks := withWarnOnlyServer(t, warned.yaml())
	r := mustKubectl(t, warned.yaml(), "create", "-n", ns, "-f", "-")
	restoreWebhooks()
	requireWarning(t, r, "content-storage", "denied under deny")

	// Unlabelled: skipped and counted.
	plain := dittofs("plain")
	plain.managed = false
	mustKubectl(t, plain.yaml(), "apply", "-n", ns, "-f", "-")

	// The pipeline, with -A as the docs have it: other tests' namespaces
	// get their reports too, which is harmless; this one's are judged.
	dir := t.TempDir()
	audit := filepath.Join(env.artifacts, "bin", "dittofs-webhook") + " audit"
	env.Kubectl.Shell(t, dir, "kubectl get sts -A -o yaml | "+audit+" -o report | kubectl apply --validate=strict -f -")

	var list reportsv1alpha1.ReportList
	out := mustKubectl(t, "", "get", "reports.openreports.io", "-n", ns, "-o", "json").Stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("the Reports read back do not decode as OpenReports Reports: %v\n%s", err, out)
	}
	// One result per rule audit judges; a rule not named here passes. The
	// unlabelled StatefulSet is skipped: no report.
	type judged struct {
		Source  string
		UID     types.UID
		Results map[string]reportsv1alpha1.Result
		Summary reportsv1alpha1.ReportSummary
	}
	want := map[string]judged{}
	for name, failing := range map[string][]string{
		"protected": nil,
		"legacy":    {policies.RuleCacheStorage, policies.RuleRetentionPolicy},
		"warned":    {policies.RuleContentStorage},
	} {
		j := judged{Source: "dittofs-webhook", UID: mustGetSTS(t, ns, name).UID, Results: map[string]reportsv1alpha1.Result{}}
		for _, rule := range offline.AuditRules {
			j.Results[rule] = "pass"
			if slices.Contains(failing, rule) {
				j.Results[rule] = "fail"
			}
		}
		j.Summary = reportsv1alpha1.ReportSummary{Fail: len(failing), Pass: len(offline.AuditRules) - len(failing)}
		want[name] = j
	}
	got := map[string]judged{}
	for _, rep := range list.Items {
		if rep.Scope == nil || rep.Scope.Kind != "StatefulSet" || rep.Scope.Namespace != ns {
			t.Errorf("report %s: scope %+v, want a StatefulSet of namespace %s", rep.Name, rep.Scope, ns)
			continue
		}
		j := judged{Source: rep.Source, UID: rep.Scope.UID, Results: map[string]reportsv1alpha1.Result{}, Summary: rep.Summary}
		for _, res := range rep.Results {
			j.Results[res.Rule] = res.Result
			if res.Policy != "dittofs-storage" || res.Severity == "" || res.Description == "" ||
				len(res.Subjects) != 1 || res.Subjects[0].UID != rep.Scope.UID {
				t.Errorf("report %s, rule %s: policy %q, severity %q, message %q, resources %+v",
					rep.Name, res.Rule, res.Policy, res.Severity, res.Description, res.Subjects)
			}
		}
		got[rep.Scope.Name] = j
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the Reports by StatefulSet (-want +got):\n%s", d)
	}

	// The same audit as text exits 1 (something fails) and says so per
	// StatefulSet.
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
}

// installReportsCRD installs the OpenReports Report CRD from the module cache,
// at the version of the main module's requirement, and waits until it is
// served.
func installReportsCRD(t *testing.T) {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", reportsModule)
	cmd.Dir = env.repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s (in %s): %v", reportsModule, env.repoRoot, err)
	}
	installCRDs(t, filepath.Join(strings.TrimSpace(string(out)), "config", "crd"), "openreports.io_reports.yaml")
}
