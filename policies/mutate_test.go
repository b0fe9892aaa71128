package policies_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

var (
	cacheMount = appendMount(0, "cache", "/data/cache")
	cache5Gi   = appendVCT(vct("cache", "5Gi"))
	// injected is M1 and M4 on the base object: the mutation IDs and the tweaks.
	injected, injects = []string{"cache-vct", "cache-mount"}, []tweak{cache5Gi, cacheMount}
)

// TestMutate runs the mutator on tweaks of the base object and compares the
// object its patch makes (want: tweaks of the request object; nil means no
// patch at all), the mutation IDs (also the "mutations" audit annotation),
// warnings and errors. The cases of SPEC §2 that a fixture of tests/fixtures
// proves through the server (m*-*, u*-*, always-*, warn-*) are not repeated here.
func TestMutate(t *testing.T) {
	size, container := policies.AnnotationCacheSize, policies.AnnotationContainer
	badSize := []wantErr{{field.ErrorTypeInvalid, "metadata.annotations[" + size + "]", ""}}
	update, volumes0 := policies.Update, "spec.template.spec.volumes[0]"
	noContainers := func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers = nil }
	for _, tc := range []struct {
		name     string
		op       policies.Operation // CREATE when empty
		action   policies.Action    // DefaultOptions' when empty
		obj, old *appsv1.StatefulSet
		want     []tweak
		applied  []string
		warnings [][]string // per warning, substrings it must hold
		errs     []wantErr
	}{
		{name: "M1 without a metadata template: no class", obj: sts(withVCTs(vct("content", "50Gi", "bulk"))),
			want: injects, applied: injected},
		{name: "M1 empty class annotation is set: storageClassName \"\"",
			obj: sts(withAnnotation(policies.AnnotationCacheStorageClass, ""),
				withVCTs(vct("metadata", "1Gi", "ssd"), vct("content", "50Gi"))),
			want: []tweak{appendVCT(vct("cache", "5Gi", "")), cacheMount}, applied: injected},
		{name: "M1 size annotation empty: denied", obj: sts(withAnnotation(size, "")), errs: badSize},
		{name: "M1 size annotation with a space: denied", obj: sts(withAnnotation(size, "5 Gi")), errs: badSize},
		{name: "M1 denial keeps the other warnings and drops the patch",
			obj:  sts(withAnnotation(size, "0"), withRetention(del, retain)),
			errs: badSize, warnings: [][]string{{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"}}},
		{name: "M2 whenDeleted missing added silently", obj: stored(withRetention("", retain)),
			want: []tweak{withRetention(retain, retain)}, applied: []string{"retention-policy"}},
		{name: "M2 Delete and a missing field: replaced with a warning, added silently",
			obj: stored(withRetention(del, "")), want: []tweak{withRetention(retain, retain)},
			applied:  []string{"retention-policy"},
			warnings: [][]string{{"whenDeleted", "Delete", "Retain"}}},
		{name: "M1 M2 M4 together, in order", obj: sts(withoutRetention),
			want:    []tweak{cache5Gi, withRetention(retain, retain), cacheMount},
			applied: []string{"cache-vct", "retention-policy", "cache-mount"}},
		{name: "M3 emptyDir cache removed, mount added", obj: sts(withVolumes(emptyDir("cache"))),
			want:     []tweak{cache5Gi, withVolumes(), cacheMount},
			applied:  []string{"cache-vct", "cache-emptydir-removed", "cache-mount"},
			warnings: [][]string{{volumes0}}},
		{name: "M3 an emptyDir and a configMap named cache: the configMap denied",
			obj:      sts(withVolumes(emptyDir("cache"), configMap("cache"))),
			errs:     []wantErr{{field.ErrorTypeInvalid, "spec.template.spec.volumes[1].name", ""}},
			warnings: [][]string{{volumes0}}},
		{name: "M3 a volume named cache-old is not the cache", obj: sts(withVolumes(hostPath("cache-old", "/mnt"))),
			want: injects, applied: injected},
		{name: "M4 no containers: warning", obj: sts(noContainers),
			want: []tweak{cache5Gi}, applied: []string{"cache-vct"}, warnings: [][]string{{"no containers"}}},
		{name: "M4 another volume at the same directory written differently",
			obj:  sts(appendMount(0, "scratch", "/data//cache/")),
			want: []tweak{cache5Gi}, applied: []string{"cache-vct"},
			warnings: [][]string{{"spec.template.spec.containers[0].volumeMounts", `"scratch"`}}},
		{name: "M4 a volume below the mount path does not block it",
			obj: sts(appendMount(0, "scratch", "/data/cache/tmp")), want: injects, applied: injected},
		{name: "nothing to do: no patch, no audit", obj: stored()},
		{name: "U1 carried over at index 1", op: update,
			obj: sts(cacheMount), old: sts(insertVCT(1, vct("cache", "7Gi")), cacheMount),
			want: []tweak{insertVCT(1, vct("cache", "7Gi"))}, applied: []string{"cache-vct-carry-over"}},
		{name: "U1 no templates left in the new object: the array is created", op: update,
			obj: sts(withVCTs(), cacheMount), old: sts(withVCTs(vct("cache", "5Gi")), cacheMount),
			want: []tweak{withVCTs(vct("cache", "5Gi"))}, applied: []string{"cache-vct-carry-over"}},
		{name: "U1 the old template is carried over even with an invalid size annotation", op: update,
			obj: stored(withoutVCT("cache"), withAnnotation(size, "lots")), old: stored(),
			want: []tweak{cache5Gi}, applied: []string{"cache-vct-carry-over"}},
		{name: "U2 an M4 failure warns even with nothing to patch", op: update,
			obj:      sts(cache5Gi, withAnnotation(container, "gone")),
			old:      sts(cache5Gi, withAnnotation(container, "gone")),
			warnings: [][]string{{container, `"gone"`}}},
		{name: "U2 an emptyDir the stored object also had warns", op: update,
			obj: stored(withVolumes(emptyDir("cache"))), old: stored(withVolumes(emptyDir("cache"))),
			want: []tweak{withVolumes()}, applied: []string{"cache-emptydir-removed"},
			warnings: [][]string{{"emptyDir"}}},
		{name: "U2 a non-emptyDir cache volume is denied on update too", op: update,
			obj: stored(withVolumes(hostPath("cache", "/mnt"))), old: stored(),
			errs: []wantErr{{field.ErrorTypeInvalid, volumes0 + ".name", ""}}},
		{name: "U3 advice without a namespace", op: update,
			obj: sts(withNamespace("")), old: sts(withNamespace("")),
			warnings: [][]string{{"kubectl delete statefulset dittofs-a --cascade=orphan"}}},
		{name: "warn: a reserved cache volume is a warning, no cache", action: policies.Warn,
			obj:      sts(withVolumes(hostPath("cache", "/mnt"))),
			warnings: [][]string{{volumes0 + ".name", "denied under deny"}}},
		{name: "warn: nothing to deny, as under deny", action: policies.Warn, obj: sts(),
			want: injects, applied: injected},
		{name: "unmanaged: nothing, whatever it holds",
			obj: sts(withoutLabel(policies.LabelServer), withRetention(del, del),
				withVolumes(hostPath("cache", "/x")), withAnnotation(size, "lots"))},
		{name: "no labels at all", obj: sts(func(s *appsv1.StatefulSet) { s.Labels = nil })},
		{name: "DELETE", op: "DELETE", obj: sts(withoutRetention), old: sts(withoutRetention)},
		{name: "CONNECT", op: "CONNECT", obj: sts(withoutRetention)},
		{name: "an operation in lower case", op: "create", obj: sts(withoutRetention)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, op := withAction(tc.action), orCreate(tc.op)
			doc, oldDoc := mustJSON(t, tc.obj), mustJSON(t, tc.old)
			m := policies.Mutate(serverRequest(t, op, doc, oldDoc), opts)
			checkErrs(t, "Errs", m.Errs, tc.errs)
			checkWarnings(t, m.Warnings, tc.warnings)
			if !slices.Equal(m.Applied, tc.applied) {
				t.Errorf("Applied = %q, want %q", m.Applied, tc.applied)
			}
			if got, want := m.Audit["mutations"], strings.Join(tc.applied, ","); got != want {
				t.Errorf("audit mutations = %q, want %q (all: %v)", got, want, m.Audit)
			}
			if tc.want == nil {
				if m.Changed() || m.Audit != nil {
					t.Errorf("want no patch and no audit, got patch %s, audit %v", mustJSON(t, m.Patch), m.Audit)
				}
				return
			}
			out, got := applyPatch(t, doc, m.Patch)
			for _, p := range tests.CheckPatchScope(doc, out, m.Patch) {
				t.Error(p)
			}
			if d := cmp.Diff(tweaked(tc.obj, tc.want...), got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("patched object (-want +got), patch %s:\n%s", mustJSON(t, m.Patch), d)
			}
			// Idempotence: the mutator run on its own output returns no patch.
			again := policies.Mutate(serverRequest(t, op, out, oldDoc), opts)
			if again.Changed() || len(again.Errs) > 0 || len(again.Applied) > 0 {
				t.Errorf("not idempotent: the second run gives patch %s, errors %v",
					mustJSON(t, again.Patch), again.Errs)
			}
		})
	}
}

// applyPatch applies patch to doc and decodes the object it makes.
func applyPatch(t *testing.T, doc []byte, patch []jsonpatch.Operation) ([]byte, *appsv1.StatefulSet) {
	t.Helper()
	out, err := admission.ApplyPatch(doc, patch)
	if err != nil {
		t.Fatalf("applying %s: %v", mustJSON(t, patch), err)
	}
	var got appsv1.StatefulSet
	must(t, json.Unmarshal(out, &got))
	return out, &got
}

// serverRequest decodes object and oldObject (JSON; nil on CREATE) the way the
// server decodes an AdmissionReview, into the policies' request.
func serverRequest(t *testing.T, op policies.Operation, object, oldObject []byte) policies.Request {
	t.Helper()
	r, err := admission.NewRequest(string(op), object, oldObject)
	must(t, err)
	return policies.Request{Operation: op, Object: r.Object, OldObject: r.OldObject}
}

// TestMutateRawJSON covers what the typed base cannot write: empty arrays and
// an empty retention policy (appended to and filled in), and a carry-over
// from a view built by hand, without the stored template's raw bytes (the
// view's own fields are used; u1-carry-over-verbatim-unknown-fields proves
// the bytes are kept when they are there).
func TestMutateRawJSON(t *testing.T) {
	doc := []byte(`{"metadata":{"name":"a","labels":{"dittofs.com/server":""}},"spec":{"template":{"spec":{"volumes":[],` +
		`"containers":[{"name":"dittofs","volumeMounts":[]}]}},"volumeClaimTemplates":[],"persistentVolumeClaimRetentionPolicy":{}}}`)
	m := policies.Mutate(serverRequest(t, policies.Create, doc, nil), policies.DefaultOptions())
	out, err := admission.ApplyPatch(doc, m.Patch)
	if err != nil || len(m.Warnings) > 0 || len(m.Errs) > 0 {
		t.Fatalf("%v, warnings %q, errors %v (patch %s)", err, m.Warnings, m.Errs, mustJSON(t, m.Patch))
	}
	want := `{"metadata":{"labels":{"dittofs.com/server":""},"name":"a"},"spec":{"persistentVolumeClaimRetentionPolicy":` +
		`{"whenDeleted":"Retain","whenScaled":"Retain"},"template":{"spec":{"containers":[{"name":"dittofs",` +
		`"volumeMounts":[{"mountPath":"/data/cache","name":"cache"}]}],"volumes":[]}},"volumeClaimTemplates":` +
		`[{"metadata":{"name":"cache"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"5Gi"}}}}]}}`
	if d := cmp.Diff(decode(t, []byte(want)), decode(t, out)); d != "" {
		t.Errorf("empty arrays (-want +got):\n%s", d)
	}

	req := serverRequest(t, policies.Update, mustJSON(t, stored(withoutVCT("cache"))), mustJSON(t, stored()))
	for i := range req.OldObject.Spec.VolumeClaimTemplates {
		req.OldObject.Spec.VolumeClaimTemplates[i].Raw = nil
	}
	m = policies.Mutate(req, policies.DefaultOptions())
	if !slices.Equal(m.Applied, []string{"cache-vct-carry-over"}) ||
		!strings.Contains(string(mustJSON(t, m.Patch)), `"5Gi"`) {
		t.Errorf("carry-over of a hand-built view: applied %q, patch %s", m.Applied, mustJSON(t, m.Patch))
	}
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

func TestMutateNilObject(t *testing.T) {
	if m := policies.Mutate(policies.Request{Operation: policies.Create}, policies.DefaultOptions()); m.Changed() ||
		len(m.Warnings) > 0 || len(m.Errs) > 0 || m.Audit != nil || policies.IsManaged(nil) {
		t.Errorf("nil object: %+v", m)
	}
}

func TestOptions(t *testing.T) {
	if d := policies.DefaultOptions(); d.DefaultCacheSize.String() != "5Gi" || d.CacheMountPath != "/data/cache" ||
		d.Validate() != nil {
		t.Errorf("DefaultOptions() = %v %q: %v", d.DefaultCacheSize.String(), d.CacheMountPath, d.Validate())
	}
	for name, o := range map[string]policies.Options{
		"zero size":     {DefaultCacheSize: resource.MustParse("0"), CacheMountPath: "/c"},
		"negative size": {DefaultCacheSize: resource.MustParse("-1Gi"), CacheMountPath: "/c"},
		"relative path": {DefaultCacheSize: resource.MustParse("1Gi"), CacheMountPath: "data/cache"},
		"empty path":    {DefaultCacheSize: resource.MustParse("1Gi")},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
}

// TestManagePatch applies the patch ManagePatch returns and checks the
// object it makes: labelled with its name, every other label kept.
func TestManagePatch(t *testing.T) {
	long := strings.Repeat("a", 64) // a valid object name, too long for a label value
	withName := func(name string) tweak { return func(s *appsv1.StatefulSet) { s.Name = name } }
	for _, tc := range []struct {
		name      string
		obj       *appsv1.StatefulSet
		wantValue string // the label's value; a patch only when the object lacks it
	}{
		{"other labels kept", sts(withoutLabel(policies.LabelServer)), "dittofs-a"},
		{"no labels at all", sts(func(s *appsv1.StatefulSet) { s.Labels = nil }), "dittofs-a"},
		{"name too long for a label value", sts(withoutLabel(policies.LabelServer), withName(long)), ""},
		{"already managed", sts(withLabel(policies.LabelServer, "other")), "other"},
		{"already managed, empty value", sts(withLabel(policies.LabelServer, "")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch := policies.ManagePatch(view(t, tc.obj))
			if _, managed := tc.obj.Labels[policies.LabelServer]; (patch == nil) != managed {
				t.Fatalf("patch = %v for an object labelled %v", patch, tc.obj.Labels)
			}
			_, got := applyPatch(t, mustJSON(t, tc.obj), patch)
			want := tweaked(tc.obj, withLabel(policies.LabelServer, tc.wantValue))
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("labelled object (-want +got):\n%s", d)
			}
			if policies.ManagePatch(view(t, got)) != nil {
				t.Error("ManagePatch of its own result is not nil")
			}
		})
	}
}
