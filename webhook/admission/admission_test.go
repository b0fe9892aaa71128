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
		got := tests.Must(r.Review("uid-1"))(t)
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

// TestPatchAppliesWithoutSpec: an object without a spec, or a null one (never
// from the apiserver), gets a patch that applies, through the review and eval.
func TestPatchAppliesWithoutSpec(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	for _, obj := range []string{
		`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":""}}}`,
		`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":""}},"spec":null}`,
	} {
		for _, req := range []*admission.Request{tests.Must(admission.DecodeReview(tests.NewReview("u", "CREATE",
			[]byte(obj), nil)))(t), tests.Must(admission.NewRequest("CREATE", []byte(obj), nil))(t)} {
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

// gen builds a StatefulSet from fuzz bytes, each picking one feature from small
// sets that hit every branch of the policies.
type gen struct {
	b []byte
	i int
}

func (g *gen) pick(n int) int {
	if g.i >= len(g.b) {
		return 0
	}
	v := int(g.b[g.i]) % n
	g.i++
	return v
}

// of returns one of vs, picked by the next byte.
func of[T any](g *gen, vs ...T) T { return vs[g.pick(len(vs))] }

func (g *gen) statefulSet() map[string]any {
	names := []string{"metadata", "content", "cache", "data", "cache"}
	sizes := []any{"1Gi", "0", "-1Gi", "5G", nil}
	classes := []any{"fast", "", nil}
	meta := map[string]any{"name": "fs", "namespace": "ns"}
	if g.pick(4) != 0 {
		meta["labels"] = map[string]any{"dittofs.com/server": of(g, "", "fs")}
	}
	switch g.pick(6) {
	case 1:
		meta["annotations"] = map[string]any{"dittofs.com/cache-size": of(g, "20Gi", "0", "lots", "", "1.5Ti")}
	case 2:
		meta["annotations"] = map[string]any{"dittofs.com/cache-storage-class": of(g, "slow", "")}
	case 3:
		meta["annotations"] = map[string]any{"dittofs.com/container": of(g, "dittofs", "sidecar", "missing")}
	}
	spec := map[string]any{"serviceName": "fs", "x-unknown-spec-field": map[string]any{"kept": true}}
	if n := g.pick(5); n > 0 || g.pick(2) == 0 {
		var vcts []any
		for j := 0; j < n; j++ {
			req := map[string]any{}
			if s := of(g, sizes...); s != nil {
				req["storage"] = s
			}
			vs := map[string]any{"accessModes": []any{"ReadWriteOnce"}, "resources": map[string]any{"requests": req}, "x-unknown-vct-field": 1}
			if c := of(g, classes...); c != nil {
				vs["storageClassName"] = c
			}
			vcts = append(vcts, map[string]any{"metadata": map[string]any{"name": of(g, names...)}, "spec": vs})
		}
		spec["volumeClaimTemplates"] = vcts
	}
	if r := []map[string]any{nil, {"whenDeleted": "Delete", "whenScaled": "Delete"}, {"whenScaled": "Retain"},
		{"whenDeleted": "Retain", "whenScaled": "Retain"}, {"whenDeleted": "Bogus"}}[g.pick(5)]; r != nil {
		spec["persistentVolumeClaimRetentionPolicy"] = r
	}
	pod := map[string]any{"x-unknown-pod-field": "kept"}
	var vols []any
	for j := g.pick(4); j > 0; j-- {
		v := map[string]any{"name": of(g, "cache", "config", "metadata")}
		if g.pick(3) == 0 {
			v["configMap"] = map[string]any{"name": "cm"}
		} else {
			v["emptyDir"] = map[string]any{}
		}
		vols = append(vols, v)
	}
	if vols != nil {
		pod["volumes"] = vols
	}
	var cs []any
	for j := g.pick(4); j > 0; j-- {
		c := map[string]any{"name": of(g, "dittofs", "sidecar", "other"), "image": "img"}
		if m := g.pick(4); m > 0 {
			var mounts []any
			for ; m > 0; m-- {
				mounts = append(mounts, map[string]any{"name": of(g, "cache", "metadata", "other"),
					"mountPath": of(g, "/data/cache", "/data/cache/", "/x")})
			}
			c["volumeMounts"] = mounts
		}
		cs = append(cs, c)
	}
	if cs != nil || g.pick(2) == 0 {
		pod["containers"] = cs
	}
	spec["template"] = map[string]any{"spec": pod}
	obj := map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta}
	if g.pick(8) != 0 {
		obj["spec"] = spec
	}
	return obj
}

// FuzzPolicies runs both policies, decoded as the server decodes, on generated
// StatefulSets (CREATE, and UPDATE of a generated stored one): no panic, the
// patch applies and is idempotent, unknown fields survive, and the validator
// accepts the mutator's output in warn mode or, on CREATE, with sized storage.
func FuzzPolicies(f *testing.F) {
	f.Add([]byte{1, 2, 0, 1, 2, 0, 1, 1, 3, 2, 1, 1, 1, 0, 0})
	f.Add([]byte{3, 1, 3, 0, 0, 0, 1, 0, 1, 0, 0, 2, 1, 0, 2, 0, 1, 2, 1, 2, 2})
	f.Add([]byte("\x01\x00\x03\x02\x00\x00\x00\x01\x00\x00\x00\x02\x02\x00\x00\x00\x03\x01\x00\x00\x01\x00\x02\x01\x00"))
	deny := &admission.Admitter{Policy: policies.DefaultOptions()}
	warnOpts := policies.DefaultOptions()
	warnOpts.Action = policies.Warn
	warn := &admission.Admitter{Policy: warnOpts}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{b: data}
		obj := g.statefulSet()
		old := g.statefulSet()
		objJSON, _ := json.Marshal(obj)
		oldJSON, _ := json.Marshal(old)
		for _, run := range []struct {
			op string
			a  *admission.Admitter
		}{{"CREATE", deny}, {"UPDATE", deny}, {"CREATE", warn}, {"UPDATE", warn}} {
			op, a := run.op, run.a
			var oldArg []byte
			if op == "UPDATE" {
				oldArg = oldJSON
			}
			req, err := admission.NewRequest(op, objJSON, oldArg)
			if err != nil {
				t.Fatalf("generated object does not decode: %v\n%s", err, objJSON)
			}
			resp := a.Mutate(req)
			checkReview(t, tests.WebhookMutate, &resp)
			if !resp.Allowed {
				if resp.Result == nil || resp.Result.Code != 422 || a == warn {
					t.Fatalf("%s denied without a 422: %+v", op, resp.Result)
				}
				continue
			}
			patched, err := admission.ApplyPatch(objJSON, resp.Patch)
			if err != nil {
				p, _ := json.Marshal(resp.Patch)
				t.Fatalf("%s patch does not apply: %v\nobject %s\npatch %s", op, err, objJSON, p)
			}
			again, err := admission.NewRequest(op, patched, oldArg)
			if err != nil {
				t.Fatalf("patched object does not decode: %v", err)
			}
			if r2 := a.Mutate(again); len(r2.Patch) > 0 {
				p1, _ := json.Marshal(resp.Patch)
				p2, _ := json.Marshal(r2.Patch)
				t.Fatalf("%s not idempotent:\nobject %s\nfirst %s\nsecond %s", op, objJSON, p1, p2)
			}
			// Only SPEC §2's paths change: unknown fields survive (a generated
			// object without a spec gets one added, outside those paths).
			if _, ok := obj["spec"]; ok {
				for _, p := range tests.CheckPatchScope(objJSON, patched, resp.Patch) {
					t.Fatalf("%s: %s\nobject %s", op, p, objJSON)
				}
			}
			v := a.Validate(again)
			checkReview(t, tests.WebhookValidate, &v)
			sized := op == "CREATE" && policies.IsManaged(req.Object) &&
				hasSizedStorage(req.Object.Spec.VolumeClaimTemplates)
			if !v.Allowed && (a == warn || sized) {
				t.Fatalf("the validator (warn mode: %v) denies the mutator's output: %s\nobject %s",
					a == warn, v.Result.Message, patched)
			}
		}
	})
}

// hasSizedStorage: metadata, content and any cache template, all sized.
func hasSizedStorage(vcts []policies.ClaimTemplate) bool {
	count := map[string]int{}
	for _, v := range vcts {
		count[v.Name()]++
		if v.Name() == "metadata" || v.Name() == "content" || v.Name() == "cache" { // a cache the user wrote is never changed
			q, ok := v.Spec.Resources.Requests["storage"]
			if !ok || q.Sign() <= 0 {
				return false
			}
		}
	}
	return count["metadata"] >= 1 && count["content"] >= 1
}

// checkReview encodes r as the server does and checks it as every fixture's
// answer is checked (tests.Expect.Check), the uid and allowed verdict too.
func checkReview(t *testing.T, webhook string, r *admission.Response) {
	t.Helper()
	b := tests.Must(r.Review("uid"))(t)
	req := &tests.ReviewRequest{UID: "uid"}
	a, err := tests.ParseAnswer(req, 200, b)
	problems := (&tests.Expect{Allowed: &r.Allowed}).Check(webhook, req, a)
	if err != nil || (len(a.Patch) > 0) != (len(r.Patch) > 0) || len(problems) > 0 {
		t.Fatalf("review %s is not the answer (%v): %q", b, err, problems)
	}
}
