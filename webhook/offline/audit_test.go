package offline

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// storedSTS is a StatefulSet the webhooks created, as stored: every rule passes.
const storedSTS = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: fs
  namespace: prod
  uid: 0b7e54b2-7a3c-4f6e-8d51-2a9c1d9e0f01
  resourceVersion: "7"
  labels: {dittofs.com/server: fs}
spec:
  replicas: 2
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}
  template:
    spec:
      containers:
      - name: dittofs
        volumeMounts:
        - name: cache
          mountPath: /data/cache
  volumeClaimTemplates:
  - {metadata: {name: metadata}, spec: {resources: {requests: {storage: 1Gi}}}}
  - {metadata: {name: content}, spec: {resources: {requests: {storage: 1Gi}}}}
  - {metadata: {name: cache}, spec: {resources: {requests: {storage: 5Gi}}}}
`

// withoutTemplate removes the volumeClaimTemplate named name.
func withoutTemplate(name string) func(string) string {
	re := regexp.MustCompile(`(?m)^  - \{metadata: \{name: ` + name + `\}.*\n`)
	return func(s string) string { return re.ReplaceAllString(s, "") }
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// audit reads doc and audits it.
func audit(t *testing.T, doc string) *AuditResult {
	t.Helper()
	in := tests.Must(Read(ReadOptions{Stdin: strings.NewReader(doc)}))(t)
	return tests.Must(Audit(in, &admission.Admitter{Policy: policies.DefaultOptions()}))(t)
}

// TestAuditJudgesStoredStatefulSets: every rule's verdict and fields on tweaks of storedSTS
// (skipping, --manage's note and undecodable input are the audit-*.txtar scripts').
func TestAuditJudgesStoredStatefulSets(t *testing.T) {
	type edits = []func(string) string
	type fieldsOf = map[string][]string
	// cacheVolume adds a pod volume named cache, of the source given.
	cacheVolume := func(source string) func(string) string {
		const vcts = "  volumeClaimTemplates:\n"
		return replace(vcts, "      volumes:\n      - name: cache\n"+source+vcts)
	}
	const cacheMount = "        volumeMounts:\n        - name: cache\n          mountPath: /data/cache\n"
	for _, tc := range []struct {
		name   string
		tweaks edits
		fields fieldsOf // of the failing rules; every other rule passes
	}{
		{name: "created through the webhooks"},
		{"created before them: no cache, Delete retention", // cache-mount passes: the next update adds no mount (U3)
			edits{withoutTemplate("cache"), replace("whenDeleted: Retain", "whenDeleted: Delete")}, fieldsOf{
				policies.RuleCacheStorage:    {"spec.volumeClaimTemplates"},
				policies.RuleRetentionPolicy: {"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"}}},
		{"no retention policy: the API's default, Retain", edits{replace(
			"  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}\n", "")}, nil},
		{"whenScaled Delete", edits{replace("whenScaled: Retain", "whenScaled: Delete")},
			fieldsOf{policies.RuleRetentionPolicy: {"spec.persistentVolumeClaimRetentionPolicy.whenScaled"}}},
		{"no content storage (stored in warn mode)", edits{withoutTemplate("content")},
			fieldsOf{policies.RuleContentStorage: {"spec.volumeClaimTemplates"}}},
		{"no metadata storage", edits{withoutTemplate("metadata")},
			fieldsOf{policies.RuleMetadataStorage: {"spec.volumeClaimTemplates"}}},
		{"a zero size", edits{replace("storage: 1Gi", "storage: \"0\"")},
			fieldsOf{policies.RuleStorageSize: {"spec.volumeClaimTemplates[0].spec.resources.requests[storage]"}}},
		{"the cache not mounted: the next update adds the mount", edits{replace(cacheMount, "")},
			fieldsOf{policies.MutationCacheVolumeMount: {"spec.template.spec.containers"}}},
		{"the cache cannot be mounted: the mount path is taken",
			edits{replace(cacheMount, strings.Replace(cacheMount, "name: cache", "name: scratch", 1))},
			fieldsOf{policies.MutationCacheVolumeMount: {"spec.template.spec.containers"}}},
		{"a pod volume named cache that is not an emptyDir: the next update is denied",
			edits{cacheVolume("        hostPath:\n          path: /var/cache\n")},
			fieldsOf{policies.RuleReservedCacheVolume: {"spec.template.spec.volumes[0].name"}}},
		{"an emptyDir named cache: the next update removes it", edits{cacheVolume("        emptyDir: {}\n")},
			fieldsOf{policies.MutationEmptyDirRemoved: {"spec.template.spec.volumes[0]"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := storedSTS
			for _, tw := range tc.tweaks {
				if tw(doc) == doc {
					t.Fatal("a tweak changed nothing")
				}
				doc = tw(doc)
			}
			r := audit(t, doc)
			if len(r.Audited) != 1 {
				t.Fatalf("%d audited, want 1", len(r.Audited))
			}
			a := r.Audited[0]
			want := map[string]Verdict{}
			for _, rule := range AuditRules {
				want[rule] = Pass
				if _, ok := tc.fields[rule]; ok {
					want[rule] = Fail
				}
			}
			got, fields := map[string]Verdict{}, map[string][]string{}
			for _, res := range a.Results {
				got[res.Rule] = res.Verdict
				if res.Verdict == Fail {
					fields[res.Rule] = res.Fields
					if res.Fix == "" || res.Message == "" || res.Severity == "" {
						t.Errorf("rule %s fails without a message, a fix or a severity: %+v", res.Rule, res)
					}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.fields, fields, cmpEmpty); diff != "" {
				t.Errorf("fields of the failing rules (-want +got):\n%s", diff)
			}
			if want := min(len(a.Failed()), 1); r.ExitCode() != want {
				t.Errorf("exit code %d, want %d", r.ExitCode(), want)
			}
		})
	}
}

// cmpEmpty makes nil and empty maps equal.
var cmpEmpty = cmp.FilterValues(func(a, b map[string][]string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// TestReadBounded: an input at the limit is read whole, one byte more refused.
func TestReadBounded(t *testing.T) {
	if got, err := readBounded(strings.NewReader("abcd"), 4); err != nil || string(got) != "abcd" {
		t.Fatalf("at the limit: %q, %v", got, err)
	}
	if _, err := readBounded(strings.NewReader("abcde"), 4); err == nil {
		t.Fatal("over the limit: no error")
	}
}
