package admission_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// TestReviewIsWhatEncodingJSONWrites: the response marshalled with JSON v2 holds
// what encoding/json writes for the admission.k8s.io/v1 types, without HTML escaping.
func TestReviewIsWhatEncodingJSONWrites(t *testing.T) {
	errs := field.ErrorList{field.Required(field.NewPath("spec", "volumeClaimTemplates"),
		"metadata-storage: add it <now> & \u2028")}
	add := jsonpatch.NewOperation("add", "/spec/a~1b", map[string]any{"x": 1})
	for name, r := range map[string]admission.Response{
		"allowed": admission.Allowed(),
		"patched": admission.Patched([]jsonpatch.Operation{add}).WithWarnings("w1", "w2").
			WithAudit(map[string]string{"b": "2", "a": "1"}),
		"invalid": admission.Invalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "fs", errs).
			WithAudit(map[string]string{"violations": "metadata-storage"}),
		"errored":  admission.Errored(400, "the object is v1 Pod, not an apps/v1 StatefulSet"),
		"no patch": admission.Patched(nil),
	} {
		got, err := r.Review("uid-1")
		if err != nil {
			t.Fatal(err)
		}
		resp := &admissionv1.AdmissionResponse{UID: "uid-1", Allowed: r.Allowed, Result: r.Result,
			Warnings: r.Warnings, AuditAnnotations: r.AuditAnnotations}
		if len(r.Patch) > 0 {
			resp.Patch, _ = json.Marshal(r.Patch)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		want, _ := json.Marshal(&admissionv1.AdmissionReview{Response: resp,
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}})
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) || bytes.Contains(got, []byte(`\u003c`)) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

// TestPatchAppliesWithoutSpec: an object sent without a spec, or with a null
// one (never by the apiserver, which defaults it), still gets a patch that
// applies, through the review and through eval's path.
func TestPatchAppliesWithoutSpec(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	for _, obj := range []string{
		`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":""}}}`,
		`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":""}},"spec":null}`,
	} {
		fromReview, err := admission.DecodeReview(tests.NewReview("u", "CREATE", []byte(obj), nil))
		if err != nil {
			t.Fatal(err)
		}
		fromEval, err := admission.NewRequest("CREATE", []byte(obj), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range []*admission.Request{fromReview, fromEval} {
			resp := a.Mutate(req)
			out, err := admission.ApplyPatch([]byte(obj), resp.Patch)
			if err != nil || !bytes.Contains(out, []byte(`"name":"cache"`)) {
				t.Errorf("%s: patch does not apply (%v): %s", obj, err, out)
			}
		}
	}
}

func TestEvaluateErrors(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	sts := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":""}}}`
	for _, tc := range []struct {
		name, op, object, old, want string
	}{
		{"object does not decode", "CREATE", `{"metadata":{"labels":[]}}`, "", "does not decode"},
		{"old object does not decode", "UPDATE", sts, `{"spec":{"volumeClaimTemplates":{}}}`, "does not decode"},
		{"update without old object", "UPDATE", sts, "", "needs the old object"},
		{"not a StatefulSet", "CREATE", `{"apiVersion":"v1","kind":"Service","metadata":{"labels":{"dittofs.com/server":""}}}`,
			"", "not an apps/v1 StatefulSet"},
	} {
		var old []byte
		if tc.old != "" {
			old = []byte(tc.old)
		}
		if _, err := a.Evaluate(tc.op, []byte(tc.object), old); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
