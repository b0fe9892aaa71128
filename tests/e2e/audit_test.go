package e2e

import (
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"

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
	runStep(t, dir, "kubectl get sts -A -o yaml | "+audit+" -o report | kubectl apply --validate=strict -f -")

	var list reportsv1alpha1.ReportList
	out := mustKubectl(t, "", "get", "reports.openreports.io", "-n", ns, "-o", "json").Stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("the Reports read back do not decode as OpenReports Reports: %v\n%s", err, out)
	}
	// One result per rule audit judges; a rule not named here passes.
	fails := map[string][]string{
		"protected": nil,
		"legacy":    {policies.RuleCacheStorage, policies.RuleRetentionPolicy},
		"warned":    {policies.RuleContentStorage},
	}
	want := map[string]map[string]reportsv1alpha1.Result{}
	for name, failing := range fails {
		want[name] = map[string]reportsv1alpha1.Result{}
		for _, rule := range offline.AuditRules {
			want[name][rule] = "pass"
		}
		for _, rule := range failing {
			want[name][rule] = "fail"
		}
	}
	got := map[string]reportsv1alpha1.Report{}
	for _, rep := range list.Items {
		if rep.Scope == nil || rep.Scope.Kind != "StatefulSet" || rep.Scope.Namespace != ns {
			t.Errorf("report %s: scope %+v, want a StatefulSet of namespace %s", rep.Name, rep.Scope, ns)
			continue
		}
		got[rep.Scope.Name] = rep
	}
	if _, ok := got["plain"]; ok {
		t.Errorf("the unlabelled StatefulSet has a report: it should be skipped")
	}
	for name, rules := range want {
		rep, ok := got[name]
		if !ok {
			t.Errorf("no report for statefulset %s/%s (reports: %v)", ns, name, slices.Sorted(maps.Keys(got)))
			continue
		}
		sts := mustGetSTS(t, ns, name)
		if rep.Source != "dittofs-webhook" || rep.Scope.UID != sts.UID {
			t.Errorf("report %s: source %q, scope uid %s; want dittofs-webhook and the StatefulSet's uid %s", rep.Name, rep.Source, rep.Scope.UID, sts.UID)
		}
		var sum reportsv1alpha1.ReportSummary
		seen := map[string]reportsv1alpha1.Result{}
		for _, res := range rep.Results {
			seen[res.Rule] = res.Result
			switch res.Result {
			case "pass":
				sum.Pass++
			case "fail":
				sum.Fail++
			case "skip":
				sum.Skip++
			}
			if res.Policy != "dittofs-storage" || res.Severity == "" || res.Description == "" || len(res.Subjects) != 1 || res.Subjects[0].UID != sts.UID {
				t.Errorf("report %s, rule %s: policy %q, severity %q, message %q, resources %+v", rep.Name, res.Rule, res.Policy, res.Severity, res.Description, res.Subjects)
			}
		}
		if !maps.Equal(seen, rules) {
			t.Errorf("statefulset %s: results %v, want %v", name, seen, rules)
		}
		if rep.Summary != sum {
			t.Errorf("report %s: summary %+v, want %+v (its results)", rep.Name, rep.Summary, sum)
		}
	}

	// The same audit as text exits 1 (something fails) and says so per
	// StatefulSet.
	text := runStep(t, dir, "kubectl get sts -n "+ns+" -o yaml | "+audit+"; echo \"exit $?\"")
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
