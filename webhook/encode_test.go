package webhook

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// reviewOut and responseOut declare the response as the apiserver's
// admission/v1 types do; encoding/json marshalling them is the reference
// appendReview must reproduce byte for byte.
type reviewOut struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Response   responseOut `json:"response"`
}

type responseOut struct {
	UID              types.UID         `json:"uid"`
	Allowed          bool              `json:"allowed"`
	Status           *metav1.Status    `json:"status,omitempty"`
	Patch            []byte            `json:"patch,omitempty"`
	PatchType        string            `json:"patchType,omitempty"`
	AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
	Warnings         []string          `json:"warnings,omitempty"`
}

func referenceReview(t testing.TB, r *Response, uid types.UID) []byte {
	t.Helper()
	out := reviewOut{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: responseOut{
		UID: uid, Allowed: r.Allowed, Status: r.Result, AuditAnnotations: r.AuditAnnotations, Warnings: r.Warnings,
	}}
	if len(r.Patch) > 0 {
		p, err := json.Marshal(r.Patch) // each jsonpatch.Operation's own MarshalJSON
		if err != nil {
			t.Fatal(err)
		}
		out.Response.Patch, out.Response.PatchType = p, "JSONPatch"
	}
	b, err := json.Marshal(&out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkEncoding fails unless appendReview writes exactly the reference bytes.
func checkEncoding(t testing.TB, r *Response, uid types.UID) {
	t.Helper()
	want := referenceReview(t, r, uid)
	got, err := r.appendReview([]byte("prefix"), uid)
	if err != nil {
		t.Fatalf("appendReview: %v", err)
	}
	if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("appendReview differs from encoding/json:\n got %s\nwant %s", got[min(len(got), len("prefix")):], want)
	}
}

func TestAppendReview(t *testing.T) {
	class := "fast<&>"
	tricky := "quote \" backslash \\ html <b>&amp; tab\t newline\n nul \x00 del \x7f é \u2028 \u2029 bad \xff\xfe end"
	cases := map[string]Response{
		"allowed":    Allowed(),
		"empty uid":  {Allowed: true},
		"denied 422": Invalid(statefulSetGK, "web", field.ErrorList{field.Required(field.NewPath("spec", "volumeClaimTemplates"), "metadata-storage: add one <now>"), field.Invalid(field.NewPath("metadata", "annotations").Key("dittofs.com/cache-size"), "-1", tricky)}),
		"errored":    Errored(400, "got "+tricky),
		"patched": Patched([]jsonpatch.Operation{
			jsonpatch.NewOperation("add", "/spec/volumeClaimTemplates/-", cacheTemplateForTest(&class)),
			jsonpatch.NewOperation("add", "/spec/persistentVolumeClaimRetentionPolicy", appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Retain", WhenScaled: "Retain"}),
			jsonpatch.NewOperation("replace", "/spec/persistentVolumeClaimRetentionPolicy/whenScaled", appsv1.RetainPersistentVolumeClaimRetentionPolicyType),
			jsonpatch.NewOperation("remove", "/spec/template/spec/volumes/1", nil),
			jsonpatch.NewOperation("add", "/spec/template/spec/containers/0/volumeMounts", []any{corev1.VolumeMount{Name: "cache", MountPath: "/data/cache"}}),
			jsonpatch.NewOperation("add", "/metadata/annotations/a~1b~0c", nil),
			jsonpatch.NewOperation("replace", "/x", nil),
			jsonpatch.NewOperation("add", "/spec/volumeClaimTemplates/2", json.RawMessage(" {\"metadata\" : {\"name\":\"cache\", \"x\":\"<&>\"}}\n")),
		}).WithWarnings("spec.x: "+tricky, "plain").WithAudit(map[string]string{"z": "1", "cache-size": "5Gi", "a<": tricky}),
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			for _, uid := range []types.UID{"", "705ab4f5-6393-11e8-b7cc-42010a800002", types.UID(tricky)} {
				checkEncoding(t, &r, uid)
			}
		})
	}
}

func cacheTemplateForTest(class *string) any {
	return map[string]any{"metadata": map[string]any{"name": "cache"}, "spec": corev1.PersistentVolumeClaimSpec{StorageClassName: class}}
}

// FuzzAppendReview holds appendReview to encoding/json on arbitrary strings
// (escapes, HTML characters, invalid UTF-8) wherever a response carries one.
func FuzzAppendReview(f *testing.F) {
	f.Add("uid", "warning <&>", "key", "value \u2028", "/spec/a~1b", "message \xff")
	f.Add("", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, uid, warning, key, value, path, message string) {
		allowed := Patched([]jsonpatch.Operation{
			jsonpatch.NewOperation("add", path, map[string]string{key: value}),
			jsonpatch.NewOperation("remove", path, nil),
			jsonpatch.NewOperation(value, path, nil),
		}).WithWarnings(warning, message).WithAudit(map[string]string{key: value, "mutations": message})
		checkEncoding(t, &allowed, types.UID(uid))
		denied := Errored(400, message).WithWarnings(warning)
		checkEncoding(t, &denied, types.UID(uid))
		if utf8.ValidString(value) {
			raw := Patched([]jsonpatch.Operation{jsonpatch.NewOperation("add", path, json.RawMessage(mustJSON(t, value)))})
			checkEncoding(t, &raw, types.UID(uid))
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
