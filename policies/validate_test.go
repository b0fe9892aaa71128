package policies_test

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
)

const (
	vctsPath = "spec.volumeClaimTemplates"
	deleted  = "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"
	scaled   = "spec.persistentVolumeClaimRetentionPolicy.whenScaled"
	required = field.ErrorTypeRequired
	invalid  = field.ErrorTypeInvalid
)

func sizePath(i int) string {
	return fmt.Sprintf("spec.volumeClaimTemplates[%d].spec.resources.requests[storage]", i)
}

// TestValidate runs the validator on tweaks of the stored object: the edges
// that the fixtures of tests/fixtures (validate-*, warn-*, u3-*-validate-*,
// always-*-validate) do not show.
func TestValidate(t *testing.T) {
	update := policies.Update
	replicas := func(s *appsv1.StatefulSet) { s.Spec.Replicas = new(int32(2)) }
	for _, tc := range []struct {
		name                   string
		op                     policies.Operation // CREATE when empty
		action                 policies.Action    // DefaultOptions' when empty
		obj, old               *appsv1.StatefulSet
		errs, warned, existing []wantErr // warned: denied under deny, warned under warn
		warnings               [][]string
	}{
		{name: "valid update", op: update, obj: stored(replicas), old: stored()},
		{name: "retention-policy unknown value", obj: stored(withRetention("Recycle", retain)),
			errs: []wantErr{{invalid, deleted, "retention-policy"}}},
		{name: "a pod volume named content without the template: warning and denial",
			obj:      stored(withoutVCT("content"), withVolumes(emptyDir("content"))),
			errs:     []wantErr{{required, vctsPath, "content-storage"}},
			warnings: [][]string{{"spec.template.spec.volumes[0]", "not DittoFS storage"}}},
		{name: "same rule, other field: new", op: update,
			obj: stored(withRetention(retain, del)), old: stored(withRetention(del, retain)),
			errs: []wantErr{{invalid, scaled, "retention-policy"}}},
		{name: "same field, other rule: new", op: update,
			obj: stored(withoutVCT("metadata")), old: stored(withoutVCT("content")),
			errs: []wantErr{{required, vctsPath, "metadata-storage"}}},
		{name: "existing storage-size violation at the same index", op: update,
			obj: stored(withVCTSize(1, "0")), old: stored(withVCTSize(1, "0")),
			existing: []wantErr{{invalid, sizePath(1), "storage-size"}},
			warnings: [][]string{{"storage-size", sizePath(1)}}},
		{name: "warn: a new violation is warned, an existing one stays existing", op: update, action: policies.Warn,
			obj: stored(withoutVCT("content"), withVCTSize(0, "0")), old: stored(withVCTSize(0, "0")),
			warned:   []wantErr{{required, vctsPath, "content-storage"}},
			existing: []wantErr{{invalid, sizePath(0), "storage-size"}},
			warnings: [][]string{{"storage-size"}, {"content-storage: " + vctsPath + ": ", "denied under deny"}}},
		{name: "label removed: unmanaged, allowed", op: update,
			obj: sts(withoutLabel(policies.LabelServer), withVCTs()), old: stored()},
		{name: "label with an empty value is managed",
			obj:  stored(withLabel(policies.LabelServer, ""), withoutVCT("metadata")),
			errs: []wantErr{{required, vctsPath, "metadata-storage"}}},
		{name: "CONNECT", op: "CONNECT", obj: sts(withVCTs())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := policies.Request{Operation: orCreate(tc.op), Object: view(t, tc.obj), OldObject: view(t, tc.old)}
			v := policies.Validate(req, withAction(tc.action))
			checkErrs(t, "Errs", v.Errs, tc.errs)
			checkErrs(t, "Warned", v.Warned, tc.warned)
			checkErrs(t, "Existing", v.Existing, tc.existing)
			checkWarnings(t, v.Warnings, tc.warnings)
			if v.Allowed() != (len(tc.errs) == 0) {
				t.Errorf("Allowed() = %v with errors %v", v.Allowed(), v.Errs)
			}
			// Each violation stands alone: its detail starts with its rule ID,
			// and its message is in the style of Kubernetes' validation errors.
			for _, e := range append(append(append(field.ErrorList{}, v.Errs...), v.Warned...), v.Existing...) {
				if !strings.HasPrefix(e.Detail, policies.RuleOf(e)+": ") {
					t.Errorf("detail %q does not start with its rule", e.Detail)
				}
				if want := e.Field + ": " + e.Type.String(); !strings.HasPrefix(e.Error(), want) {
					t.Errorf("%q does not start with %q", e.Error(), want)
				}
			}
		})
	}
}

// TestValidateCacheAdvice: a missing cache template on CREATE means the
// mutating webhook did not run; on UPDATE the StatefulSet must be recreated;
// each missing template says what to add.
func TestValidateCacheAdvice(t *testing.T) {
	create := policies.ValidateStatefulSet(view(t, sts()), nil)
	if len(create) != 1 || !strings.Contains(create[0].Detail, "mutating webhook") ||
		strings.Contains(create[0].Detail, "--cascade=orphan") {
		t.Errorf("CREATE: %v", create)
	}
	update := policies.ValidateStatefulSetUpdate(view(t, sts()), nil)
	if len(update) != 1 ||
		!strings.Contains(update[0].Detail, "kubectl delete statefulset dittofs-a --cascade=orphan -n storage") {
		t.Errorf("UPDATE: %v", update)
	}
	names := map[string]string{"metadata-storage": "metadata", "content-storage": "content", "cache-storage": "cache"}
	for _, e := range policies.ValidateStatefulSet(view(t, sts(withVCTs())), nil) {
		if name := names[policies.RuleOf(e)]; name == "" || !strings.Contains(e.Detail, `"`+name+`"`) {
			t.Errorf("%v does not name its template", e)
		}
	}
}

// TestValidateFieldPathPrefix: the exported validators take a parent path, in
// the manner of Kubernetes' Validate* functions.
func TestValidateFieldPathPrefix(t *testing.T) {
	items := field.NewPath("items").Index(3)
	errs := policies.ValidateStatefulSet(view(t, stored(withVCTSize(0, "0"), withRetention(del, retain))), items)
	checkErrs(t, "errs", errs, []wantErr{
		{invalid, "items[3]." + sizePath(0), "storage-size"},
		{invalid, "items[3]." + deleted, "retention-policy"},
	})
	warnings := policies.ShadowedVolumeWarnings(view(t, stored(withVolumes(emptyDir("metadata")))), items)
	checkWarnings(t, warnings, [][]string{{"items[3].spec.template.spec.volumes[0]: "}})
}

// TestRuleOf: the rule ID travels in the error's Origin, never in its text.
func TestRuleOf(t *testing.T) {
	x := field.NewPath("x")
	for err, want := range map[*field.Error]string{
		field.Required(x, "add it").WithOrigin(policies.RuleMetadataStorage):   policies.RuleMetadataStorage,
		field.Invalid(x, "0", "positive").WithOrigin(policies.RuleStorageSize): policies.RuleStorageSize,
		field.Required(x, "retention-policy: x"):                               "",
		field.Required(x, "x").WithOrigin("maxItems"):                          "",
	} {
		if got := policies.RuleOf(err); got != want {
			t.Errorf("RuleOf(%v) = %q, want %q", err, got, want)
		}
	}
}
