package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// withInTree swaps the webhooks for deploy/OVERLAY (in-tree or in-tree-warn:
// the policy as admission policies, SPEC §7) until the test ends.
func withInTree(t *testing.T, overlay string) {
	t.Helper()
	restore := withoutWebhooks(t)
	dir := filepath.Join(env.repoRoot, "deploy", overlay)
	t.Cleanup(func() {
		mustKubectl(t, "", "delete", "--ignore-not-found", "-k", dir)
		if err := env.waitWebhooks(false, time.Minute); err != nil {
			t.Errorf("the in-tree policies still act after their deletion: %v", err)
		}
		restore()
	})
	mustKubectl(t, "", "apply", "-k", dir)
	if overlay != "in-tree" {
		return
	}
	// Policies load asynchronously: the webhooks' probes do not care who mutates and denies.
	if err := env.waitWebhooks(true, time.Minute); err != nil {
		t.Fatalf("deploy/in-tree does not act: %v", err)
	}
}

// TestInTreeWarn: deploy/in-tree-warn mutates as deploy/in-tree does and
// turns a denial into a warning naming the rule.
func TestInTreeWarn(t *testing.T) {
	withInTree(t, "in-tree-warn")
	ns := newNamespace(t)
	noContent := dittofs("no-content")
	noContent.vcts = noContent.vcts[:1]
	// The two policies load independently: wait until both act.
	framework.Eventually(t, time.Minute, "the warn-only policies mutate and warn", nil, func() (bool, string) {
		r := kubectl(t, noContent.yaml(), "create", "--dry-run=server", "-o", "json", "-n", ns, "-f", "-")
		return hasCache(r) && strings.Contains(r.Stderr, "content-storage"), r.String()
	})
	r := mustKubectl(t, noContent.yaml(), "create", "-n", ns, "-f", "-")
	requireWarning(t, r, "content-storage")
	sts := mustGetSTS(t, ns, "no-content")
	requireVCTs(t, sts, "metadata", "cache")
	requireRetention(t, sts, "Retain/Retain")
}

// inTreeException is why a fixture cannot run through both paths (the
// apiserver cannot send it, or a difference by design), or "" when it runs.
func inTreeException(f tests.Fixture, req *tests.ReviewRequest) string {
	switch {
	case f.Raw != nil || req == nil:
		return "an HTTP protocol case: no apiserver sends it"
	case req.Kind.Kind != "StatefulSet" || req.Kind.Group != "apps":
		return "another kind: the policies match apps/v1 statefulsets only, as the webhook configurations do"
	case req.Operation != "CREATE" && req.Operation != "UPDATE":
		return "another operation: neither path is called for it"
	case req.SubResource != "":
		return "a subresource: neither path is called for it"
	case strings.HasPrefix(f.Name, "always-undecodable"):
		return "an object that does not decode: the apiserver decodes every object before admission"
	case f.Options != nil && (f.Options.DefaultCacheSize != "" || f.Options.CacheMountPath != ""):
		return "non-default server options: in-tree they are the policy's variables, set per install (docs/in-tree.md)"
	case f.Options != nil && f.Options.ValidationAction == "warn":
		return "warn mode: a server flag here, a binding's validationActions in-tree (TestInTreeWarn)"
	}
	return ""
}

// outcome is what the apiserver made of one fixture's request.
type outcome struct {
	stored map[string]any // the object as stored (or returned by a dry run), normalized
	rules  []string       // the rules of a denial
	err    string         // any other refusal, as kubectl printed it
}

// rulePatterns find each rule a denial names: the webhook's 422 causes and the ValidatingAdmissionPolicy's
// message give the rule ID, the webhook's mutating-side denials (policies.MutationRules) a field path.
var rulePatterns = func() map[string]*regexp.Regexp {
	fields := map[string]string{
		policies.RuleCacheSize: regexp.QuoteMeta(field.NewPath("metadata", "annotations").Key(policies.AnnotationCacheSize).String()),
		policies.RuleReservedCacheVolume: regexp.QuoteMeta(field.NewPath("spec", "template", "spec", "volumes").String()) +
			`\[\d+\]\.name: Invalid value: "` + regexp.QuoteMeta(policies.CacheVolume) + `"`,
	}
	out := map[string]*regexp.Regexp{}
	for _, r := range policies.RuleOrder {
		pattern := `(?:^|[\s*])` + regexp.QuoteMeta(r) + `: `
		if f, ok := fields[r]; ok {
			pattern += "|" + f
		}
		out[r] = regexp.MustCompile(pattern)
	}
	return out
}()

// deniedRules lists the rules a denial (or warning) names, in
// policies.RuleOrder: the webhook's order of checks, which the
// ValidatingAdmissionPolicy follows.
func deniedRules(stderr string) []string {
	var rules []string
	for _, r := range policies.RuleOrder {
		if rulePatterns[r].MatchString(stderr) {
			rules = append(rules, r)
		}
	}
	return rules
}

// serverSet are the metadata the apiserver sets, different in each store of an object.
var serverSet = []string{"uid", "resourceVersion", "creationTimestamp", "managedFields"}

// stripped decodes an object without its status (the StatefulSet controller's) and the metadata named.
func stripped(t *testing.T, raw []byte, metadata ...string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	delete(obj, "status")
	for _, k := range metadata {
		unstructured.RemoveNestedField(obj, "metadata", k)
	}
	return obj
}

// asStored makes a fixture's object something to send: its own name in ns, without what the apiserver sets.
func asStored(t *testing.T, raw json.RawMessage, name, ns string) string {
	t.Helper()
	obj := stripped(t, raw, append(serverSet, "generation", "generateName")...)
	u := unstructured.Unstructured{Object: obj}
	u.SetName(name)
	u.SetNamespace(ns)
	return toYAML(obj)
}

type equivalenceCase struct {
	fixture tests.Fixture
	req     *tests.ReviewRequest
	name    string
}

// run sends the case's request through whatever admission is installed: a create, or a replace of the old object.
func (c equivalenceCase) run(t *testing.T, ns string) outcome {
	args := []string{"create"}
	if c.req.Operation == "UPDATE" {
		args = []string{"replace"}
	}
	args = append(args, "--validate=false", "-o", "json", "-n", ns, "-f", "-")
	if c.req.DryRun != nil && *c.req.DryRun {
		args = append(args, "--dry-run=server")
	}
	r := kubectlRetryConflict(t, asStored(t, c.req.Object, c.name, ns), args...)
	if r.OK() {
		return outcome{stored: stripped(t, []byte(r.Stdout), append(serverSet, "namespace")...)}
	}
	if rules := deniedRules(r.Stderr); len(rules) > 0 {
		return outcome{rules: rules}
	}
	// Warnings are the webhook's alone (by design): the refusal is the rest.
	var refusal []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if !strings.HasPrefix(l, "Warning: ") {
			refusal = append(refusal, strings.ReplaceAll(l, ns, "NS"))
		}
	}
	return outcome{err: strings.Join(refusal, "\n")}
}

// 19, 20. Every fixture the apiserver can express goes through it twice, with
// the webhooks and with deploy/in-tree, with the same outcome (SPEC §7): the
// differences by design are named exceptions, warnings, metrics, audit
// annotations and a denial's wording are not compared. An update's old object
// is stored first with no admission. Then U1 in-tree beyond the fixtures.
func TestInTreeEquivalence(t *testing.T) {
	fixtures, err := tests.LoadFixtures(filepath.Join(env.repoRoot, "tests", "fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []equivalenceCase
	exceptions := map[string][]string{} // why → the fixtures, printed at the end
	except := func(why, name string) { exceptions[why] = append(exceptions[why], name) }
	for _, f := range fixtures {
		req, _ := f.Request()
		if why := inTreeException(f, req); why != "" {
			except(why, f.Name)
			continue
		}
		name := strings.Trim(nonName.ReplaceAllString(f.Name, "-"), "-")
		cases = append(cases, equivalenceCase{fixture: f, req: req, name: name})
	}
	nsWebhook, nsInTree := newNamespace(t), newNamespace(t)

	// With no admission: the old objects (an update whose old object the apiserver refuses cannot be sent), and
	// one whose cache template has members the policy does not name, six levels deep.
	restore := withoutWebhooks(t)
	cases = slices.DeleteFunc(cases, func(c equivalenceCase) bool {
		refused := c.req.Operation == "UPDATE" && slices.ContainsFunc([]string{nsWebhook, nsInTree}, func(ns string) bool {
			return !kubectl(t, asStored(t, c.req.OldObject, c.name, ns), "create", "--validate=false", "-n", ns, "-f", "-").OK()
		})
		if refused {
			except("an old object the apiserver refuses to store", c.fixture.Name)
		}
		return refused
	})
	whole := dittofs("whole")
	whole.retention = "Retain/Retain"
	const richCache = `
  - metadata: {name: cache, labels: {tier: wal}}
    spec:
      accessModes: [ReadWriteOnce]
      volumeName: pv-wal
      storageClassName: fast
      dataSource: {kind: PersistentVolumeClaim, name: seed}
      selector:
        matchLabels: {disk: ssd}
        matchExpressions: [{key: zone, operator: In, values: [a, b]}]
      resources: {requests: {storage: 3Gi}, limits: {storage: 4Gi}}`
	mustKubectl(t, strings.TrimRight(whole.yaml(), "\n")+richCache+"\n", "create", "-n", nsInTree, "-f", "-")
	wholeStored := getRaw(t, "statefulset", nsInTree, "whole")
	restore()

	webhook := make([]outcome, len(cases))
	for i, c := range cases {
		webhook[i] = c.run(t, nsWebhook)
	}
	withInTree(t, "in-tree")
	inTree := make([]outcome, len(cases))
	for i, c := range cases {
		inTree[i] = c.run(t, nsInTree)
	}

	for i, c := range cases {
		w, it := webhook[i], inTree[i]
		switch {
		case w.stored != nil && it.stored != nil:
			if d := cmp.Diff(w.stored, it.stored); d != "" {
				t.Errorf("%s: the stored objects differ (-webhook +in-tree):\n%s", c.fixture.Name, d)
			}
		case len(w.rules) > 0 && len(it.rules) > 0:
			// A ValidatingAdmissionPolicy reports only its first failing validation.
			if len(it.rules) != 1 || it.rules[0] != w.rules[0] {
				t.Errorf("%s: denied for %v by the webhook, for %v in-tree", c.fixture.Name, w.rules, it.rules)
			}
		case w.err != "" && w.err == it.err:
			// The apiserver's own validation refused both alike.
		case len(w.rules) > 0 && slices.Contains(policies.MutationRules, w.rules[0]) && it.err != "":
			// The webhook denies before the apiserver validates; a ValidatingAdmissionPolicy would after.
			except("a mutating-side denial the apiserver's validation pre-empts in-tree", c.fixture.Name)
		default:
			t.Errorf("%s: the two paths disagree:\nwebhook: %s\nin-tree: %s", c.fixture.Name, w, it)
		}
	}
	t.Logf("%d of %d fixtures ran through both paths (webhook and in-tree) on kube-apiserver", len(cases), len(fixtures))
	for _, why := range slices.Sorted(maps.Keys(exceptions)) {
		t.Logf("named exception: %s: %d fixture(s): %s", why, len(exceptions[why]), strings.Join(exceptions[why], ", "))
	}

	// The apiserver refuses any change of volumeClaimTemplates: a partial copy would be denied.
	mustKubectl(t, whole.yaml(), "apply", "-n", nsInTree, "-f", "-")
	vcts := func(obj map[string]any) any { return obj["spec"].(map[string]any)["volumeClaimTemplates"] }
	if d := cmp.Diff(vcts(wholeStored), vcts(getRaw(t, "statefulset", nsInTree, "whole"))); d != "" {
		t.Errorf("the re-apply changed the stored volumeClaimTemplates (-before +after):\n%s", d)
	}
}

func (o outcome) String() string {
	switch {
	case o.stored != nil:
		return "stored " + toYAML(o.stored)
	case len(o.rules) > 0:
		return fmt.Sprintf("denied %v", o.rules)
	}
	return "refused: " + o.err
}
