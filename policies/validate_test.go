package policies_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
)

const (
	vctsPath   = "spec.volumeClaimTemplates"
	deleted    = "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"
	scaled     = "spec.persistentVolumeClaimRetentionPolicy.whenScaled"
	required   = field.ErrorTypeRequired
	invalid    = field.ErrorTypeInvalid
	sizeSuffix = ".spec.resources.requests[storage]"
)

func sizePath(i int) string {
	return field.NewPath("spec", "volumeClaimTemplates").Index(i).String() + sizeSuffix
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       policies.Operation // CREATE when empty
		obj      *appsv1.StatefulSet
		old      *appsv1.StatefulSet
		errs     []wantErr
		existing []wantErr
		warnings [][]string
	}{
		{name: "valid", obj: stored()},
		{name: "valid update", op: policies.Update, obj: stored(), old: stored()},

		// Each rule alone.
		{
			name: "metadata-storage",
			obj:  stored(withoutVCT("metadata")),
			errs: []wantErr{{required, vctsPath, policies.RuleMetadataStorage}},
		},
		{
			name: "content-storage",
			obj:  stored(withoutVCT("content")),
			errs: []wantErr{{required, vctsPath, policies.RuleContentStorage}},
		},
		{
			name: "cache-storage",
			obj:  sts(cacheMount),
			errs: []wantErr{{required, vctsPath, policies.RuleCacheStorage}},
		},
		{
			name: "retention-policy whenDeleted Delete",
			obj:  stored(withRetention(del, retain)),
			errs: []wantErr{{invalid, deleted, policies.RuleRetentionPolicy}},
		},
		{
			name: "retention-policy whenScaled Delete",
			obj:  stored(withRetention(retain, del)),
			errs: []wantErr{{invalid, scaled, policies.RuleRetentionPolicy}},
		},
		{
			name: "retention-policy nil",
			obj:  stored(withoutRetention),
			errs: []wantErr{{required, deleted, policies.RuleRetentionPolicy}, {required, scaled, policies.RuleRetentionPolicy}},
		},
		{
			name: "retention-policy partial",
			obj:  stored(withRetention(retain, "")),
			errs: []wantErr{{required, scaled, policies.RuleRetentionPolicy}},
		},
		{
			name: "retention-policy unknown value",
			obj:  stored(withRetention("Recycle", retain)),
			errs: []wantErr{{invalid, deleted, policies.RuleRetentionPolicy}},
		},
		{
			name: "storage-size metadata missing",
			obj:  stored(withVCTSize(0, "")),
			errs: []wantErr{{required, sizePath(0), policies.RuleStorageSize}},
		},
		{
			name: "storage-size content zero",
			obj:  stored(withVCTSize(1, "0")),
			errs: []wantErr{{invalid, sizePath(1), policies.RuleStorageSize}},
		},
		{
			name: "storage-size cache zero",
			obj:  stored(withVCTSize(2, "0Gi")),
			errs: []wantErr{{invalid, sizePath(2), policies.RuleStorageSize}},
		},
		{
			name: "storage-size cache negative",
			obj:  stored(withVCTSize(2, "-1Gi")),
			errs: []wantErr{{invalid, sizePath(2), policies.RuleStorageSize}},
		},
		{
			name: "storage-size each DittoFS template, others ignored",
			obj:  stored(withVCTSize(0, ""), withVCTSize(1, "0"), withVCTSize(2, ""), appendVCT(vct("scratch", ""))),
			errs: []wantErr{{required, sizePath(0), policies.RuleStorageSize}, {invalid, sizePath(1), policies.RuleStorageSize}, {required, sizePath(2), policies.RuleStorageSize}},
		},
		{
			name: "storage-size follows the template's index",
			obj:  stored(insertVCT(0, vct("scratch", "")), withVCTSize(3, "0")),
			errs: []wantErr{{invalid, sizePath(3), policies.RuleStorageSize}},
		},

		// All at once.
		{
			name: "all templates missing and both retention fields bad",
			obj:  sts(withVCTs(), withRetention(del, "")),
			errs: []wantErr{
				{required, vctsPath, policies.RuleMetadataStorage},
				{required, vctsPath, policies.RuleContentStorage},
				{required, vctsPath, policies.RuleCacheStorage},
				{invalid, deleted, policies.RuleRetentionPolicy},
				{required, scaled, policies.RuleRetentionPolicy},
			},
		},
		{
			name: "every rule that can hold together",
			obj:  sts(withVCTs(vct("content", "0")), withoutRetention),
			errs: []wantErr{
				{required, vctsPath, policies.RuleMetadataStorage},
				{invalid, sizePath(0), policies.RuleStorageSize},
				{required, vctsPath, policies.RuleCacheStorage},
				{required, deleted, policies.RuleRetentionPolicy},
				{required, scaled, policies.RuleRetentionPolicy},
			},
		},

		// Shadowed volumes.
		{
			name:     "pod volumes named metadata and content are shadowed: warnings",
			obj:      stored(withVolumes(configMap("config"), emptyDir("metadata"), configMap("content"))),
			warnings: [][]string{{"spec.template.spec.volumes[1]", `"metadata"`, "shadowed"}, {"spec.template.spec.volumes[2]", `"content"`, "shadowed"}},
		},
		{
			name:     "a pod volume named content without the template: warning and denial",
			obj:      stored(withoutVCT("content"), withVolumes(emptyDir("content"))),
			errs:     []wantErr{{required, vctsPath, policies.RuleContentStorage}},
			warnings: [][]string{{"spec.template.spec.volumes[0]", "not DittoFS storage"}},
		},

		// Existing violations.
		{
			name:     "existing violation (same rule, same field) allowed with a warning",
			op:       policies.Update,
			obj:      stored(withoutVCT("content"), func(s *appsv1.StatefulSet) { r := int32(2); s.Spec.Replicas = &r }),
			old:      stored(withoutVCT("content")),
			existing: []wantErr{{required, vctsPath, policies.RuleContentStorage}},
			warnings: [][]string{{policies.RuleContentStorage, vctsPath}},
		},
		{
			name:     "U3: old managed without cache: allowed with a warning repeating the advice",
			op:       policies.Update,
			obj:      sts(),
			old:      sts(),
			existing: []wantErr{{required, vctsPath, policies.RuleCacheStorage}},
			warnings: [][]string{{policies.RuleCacheStorage, "--cascade=orphan"}},
		},
		{
			name:     "a violation the update introduces is denied, the existing one warned",
			op:       policies.Update,
			obj:      stored(withoutVCT("content"), withRetention(retain, del)),
			old:      stored(withoutVCT("content")),
			errs:     []wantErr{{invalid, scaled, policies.RuleRetentionPolicy}},
			existing: []wantErr{{required, vctsPath, policies.RuleContentStorage}},
			warnings: [][]string{{policies.RuleContentStorage}},
		},
		{
			name:     "same rule, other field: new",
			op:       policies.Update,
			obj:      stored(withRetention(retain, del)),
			old:      stored(withRetention(del, retain)),
			errs:     []wantErr{{invalid, scaled, policies.RuleRetentionPolicy}},
			existing: nil,
		},
		{
			name:     "same field, other rule: new",
			op:       policies.Update,
			obj:      stored(withoutVCT("metadata")),
			old:      stored(withoutVCT("content")),
			errs:     []wantErr{{required, vctsPath, policies.RuleMetadataStorage}},
			existing: nil,
		},
		{
			name:     "existing storage-size violation at the same index",
			op:       policies.Update,
			obj:      stored(withVCTSize(1, "0")),
			old:      stored(withVCTSize(1, "0")),
			existing: []wantErr{{invalid, sizePath(1), policies.RuleStorageSize}},
			warnings: [][]string{{policies.RuleStorageSize}},
		},
		{
			name: "U3: label being added without cache: denied, the advice repeated",
			op:   policies.Update,
			obj:  sts(),
			old:  sts(withoutLabel(policies.LabelServer)),
			errs: []wantErr{{required, vctsPath, policies.RuleCacheStorage}},
		},
		{
			name: "label being added without content: denied",
			op:   policies.Update,
			obj:  stored(withoutVCT("content")),
			old:  stored(withoutVCT("content"), withoutLabel(policies.LabelServer)),
			errs: []wantErr{{required, vctsPath, policies.RuleContentStorage}},
		},
		{
			name: "label removed: unmanaged, allowed",
			op:   policies.Update,
			obj:  sts(withoutLabel(policies.LabelServer), withVCTs()),
			old:  stored(),
		},

		// Not ours.
		{name: "unmanaged", obj: sts(withoutLabel(policies.LabelServer), withVCTs(), withRetention(del, del), withVolumes(emptyDir("metadata")))},
		{name: "label with an empty value is managed", obj: stored(withLabel(policies.LabelServer, ""), withoutVCT("metadata")), errs: []wantErr{{required, vctsPath, policies.RuleMetadataStorage}}},
		{name: "DELETE", op: "DELETE", obj: sts(withVCTs()), old: sts(withVCTs())},
		{name: "CONNECT", op: "CONNECT", obj: sts(withVCTs())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := tc.op
			if op == "" {
				op = policies.Create
			}
			req := policies.Request{Operation: op, Object: view(t, tc.obj), OldObject: view(t, tc.old)}
			v := policies.Validate(req, policies.DefaultOptions())
			checkErrs(t, "Errs", v.Errs, tc.errs)
			checkErrs(t, "Existing", v.Existing, tc.existing)
			checkWarnings(t, v.Warnings, tc.warnings)
			if v.Allowed() != (len(tc.errs) == 0) {
				t.Errorf("Allowed() = %v with errors %v", v.Allowed(), v.Errs)
			}
			// Each violation stands alone: its detail starts with its rule ID,
			// and its message is in the style of Kubernetes' validation errors.
			for _, e := range append(append(field.ErrorList{}, v.Errs...), v.Existing...) {
				if !strings.HasPrefix(e.Detail, policies.RuleOf(e)+": ") {
					t.Errorf("detail %q does not start with its rule", e.Detail)
				}
				want := e.Field + ": " + map[field.ErrorType]string{required: "Required value", invalid: "Invalid value"}[e.Type]
				if !strings.HasPrefix(e.Error(), want) {
					t.Errorf("%q does not start with %q", e.Error(), want)
				}
			}
		})
	}
}

// TestValidateCacheAdvice: a missing cache template on CREATE means the
// mutating webhook did not run; on UPDATE the StatefulSet must be recreated.
func TestValidateCacheAdvice(t *testing.T) {
	create := policies.ValidateStatefulSet(view(t, sts()), nil)
	if len(create) != 1 || !strings.Contains(create[0].Detail, "mutating webhook") || strings.Contains(create[0].Detail, "--cascade=orphan") {
		t.Errorf("CREATE: %v", create)
	}
	update := policies.ValidateStatefulSetUpdate(view(t, sts()), nil)
	if len(update) != 1 || !strings.Contains(update[0].Detail, "kubectl delete statefulset dittofs-a --cascade=orphan -n storage") {
		t.Errorf("UPDATE: %v", update)
	}
	// Each missing template says what to add.
	for _, e := range policies.ValidateStatefulSet(view(t, sts(withVCTs())), nil) {
		name := map[string]string{policies.RuleMetadataStorage: "metadata", policies.RuleContentStorage: "content", policies.RuleCacheStorage: "cache"}[policies.RuleOf(e)]
		if name == "" || !strings.Contains(e.Detail, `"`+name+`"`) {
			t.Errorf("%v does not name its template", e)
		}
	}
}

// TestValidateFieldPathPrefix: the exported validators take a parent path, in
// the manner of Kubernetes' Validate* functions.
func TestValidateFieldPathPrefix(t *testing.T) {
	errs := policies.ValidateStatefulSet(view(t, stored(withVCTSize(0, "0"), withRetention(del, retain))), field.NewPath("items").Index(3))
	want := []wantErr{
		{invalid, "items[3]." + sizePath(0), policies.RuleStorageSize},
		{invalid, "items[3]." + deleted, policies.RuleRetentionPolicy},
	}
	checkErrs(t, "errs", errs, want)
	warnings := policies.ShadowedVolumeWarnings(view(t, stored(withVolumes(emptyDir("metadata")))), field.NewPath("items").Index(3))
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "items[3].spec.template.spec.volumes[0]: ") {
		t.Errorf("warnings %q", warnings)
	}
}

// TestRuleOf: the rule ID travels in the error's Origin, never in its text.
func TestRuleOf(t *testing.T) {
	for _, tc := range []struct {
		err  *field.Error
		want string
	}{
		{field.Required(field.NewPath("x"), "add it").WithOrigin(policies.RuleMetadataStorage), policies.RuleMetadataStorage},
		{field.Invalid(field.NewPath("x"), "0", "positive").WithOrigin(policies.RuleStorageSize), policies.RuleStorageSize},
		{field.Required(field.NewPath("x"), "retention-policy: x"), ""},
		{field.Required(field.NewPath("x"), "x").WithOrigin("maxItems"), ""},
		{field.Required(field.NewPath("x"), ""), ""},
	} {
		if got := policies.RuleOf(tc.err); got != tc.want {
			t.Errorf("RuleOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	for _, e := range policies.ValidateStatefulSet(view(t, sts(withVCTs(), withoutRetention)), nil) {
		if policies.RuleOf(e) == "" || !strings.HasPrefix(e.Detail, policies.RuleOf(e)+": ") {
			t.Errorf("%v: rule %q", e, policies.RuleOf(e))
		}
	}
}

// TestValidateWarnAction: under the warn action every violation that would be
// denied is allowed, with a warning that starts with its rule ID; existing
// violations stay existing ones (they are allowed under deny too).
func TestValidateWarnAction(t *testing.T) {
	warn := policies.DefaultOptions()
	warn.Action = policies.Warn
	for _, tc := range []struct {
		name     string
		op       policies.Operation
		obj, old *appsv1.StatefulSet
		warned   []wantErr
		existing []wantErr
	}{
		{name: "valid: nothing", obj: stored()},
		{
			name:   "CREATE without content and with Delete",
			obj:    stored(withoutVCT("content"), withRetention(del, retain)),
			warned: []wantErr{{required, vctsPath, policies.RuleContentStorage}, {invalid, deleted, policies.RuleRetentionPolicy}},
		},
		{
			name:     "UPDATE: a new violation is warned, an existing one stays existing",
			op:       policies.Update,
			obj:      stored(withoutVCT("content"), withVCTSize(0, "0")),
			old:      stored(withVCTSize(0, "0")),
			warned:   []wantErr{{required, vctsPath, policies.RuleContentStorage}},
			existing: []wantErr{{invalid, sizePath(0), policies.RuleStorageSize}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := tc.op
			if op == "" {
				op = policies.Create
			}
			v := policies.Validate(policies.Request{Operation: op, Object: view(t, tc.obj), OldObject: view(t, tc.old)}, warn)
			if !v.Allowed() || len(v.Errs) > 0 {
				t.Fatalf("denied under warn: %v", v.Errs)
			}
			checkErrs(t, "Warned", v.Warned, tc.warned)
			checkErrs(t, "Existing", v.Existing, tc.existing)
			var ruled int
			for _, w := range v.Warnings {
				for _, e := range v.Warned {
					if strings.HasPrefix(w, e.Origin+": "+e.Field+": ") && strings.Contains(w, "denied under deny") {
						ruled++
						break
					}
				}
			}
			if ruled != len(v.Warned) {
				t.Errorf("%d of %d warned violations have a warning starting with the rule ID: %q", ruled, len(v.Warned), v.Warnings)
			}
		})
	}
}
