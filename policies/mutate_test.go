package policies_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// mutateCase is one mutation: the request, and what the object must look like
// after its patch is applied (want: tweaks of the request object; nil means
// no patch at all).
type mutateCase struct {
	name     string
	op       policies.Operation // CREATE when empty
	opts     *policies.Options  // DefaultOptions when nil
	obj      *appsv1.StatefulSet
	old      *appsv1.StatefulSet
	want     []tweak
	applied  []string
	warnings [][]string // per warning, substrings it must hold
	errs     []wantErr
	audit    map[string]string // a subset of the audit annotations
}

const cacheMountPath = "/data/cache"

var (
	cacheMount = appendMount(0, "cache", cacheMountPath)
	cache5Gi   = appendVCT(vct("cache", "5Gi"))
)

func TestMutateCreate(t *testing.T) {
	annotationPath := "metadata.annotations[" + policies.AnnotationCacheSize + "]"
	custom := policies.Options{DefaultCacheSize: resource.MustParse("8Gi"), CacheMountPath: "/var/lib/dittofs/wal"}
	for _, tc := range []mutateCase{
		// M1
		{
			name:    "M1 default size, no class, M4 mount",
			obj:     sts(),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"cache-size": "5Gi", "mutations": "cache-vct,cache-mount"},
		},
		{
			name:    "M1 size from the annotation",
			obj:     sts(withAnnotation(policies.AnnotationCacheSize, "20Gi")),
			want:    []tweak{appendVCT(vct("cache", "20Gi")), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"cache-size": "20Gi"},
		},
		{
			name:    "M1 class from the annotation wins over metadata's",
			obj:     sts(withAnnotation(policies.AnnotationCacheStorageClass, "fast-nvme"), withVCTs(vct("metadata", "1Gi", "standard"), vct("content", "50Gi"))),
			want:    []tweak{appendVCT(vct("cache", "5Gi", "fast-nvme")), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"cache-storage-class": "fast-nvme"},
		},
		{
			name:    "M1 class inherited from the metadata template",
			obj:     sts(withVCTs(vct("metadata", "1Gi", "ssd"), vct("content", "50Gi", "bulk"))),
			want:    []tweak{appendVCT(vct("cache", "5Gi", "ssd")), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"cache-storage-class": "ssd"},
		},
		{
			name:    "M1 no class when metadata has none, whatever content has",
			obj:     sts(withVCTs(vct("metadata", "1Gi"), vct("content", "50Gi", "bulk"))),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 without a metadata template: no class",
			obj:     sts(withVCTs(vct("content", "50Gi", "bulk"))),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 empty class annotation is set: storageClassName \"\"",
			obj:     sts(withAnnotation(policies.AnnotationCacheStorageClass, ""), withVCTs(vct("metadata", "1Gi", "ssd"), vct("content", "50Gi"))),
			want:    []tweak{appendVCT(vct("cache", "5Gi", "")), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 user-provided cache template never changed, annotations ignored",
			obj:     sts(withAnnotation(policies.AnnotationCacheSize, "50Gi"), withAnnotation(policies.AnnotationCacheStorageClass, "other"), insertVCT(1, vct("cache", "2Gi", "local"))),
			want:    []tweak{cacheMount},
			applied: []string{policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 invalid size annotation ignored when the user provides the cache",
			obj:     sts(withAnnotation(policies.AnnotationCacheSize, "lots"), appendVCT(vct("cache", "3Gi"))),
			want:    []tweak{cacheMount},
			applied: []string{policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 no volumeClaimTemplates at all: the array is created",
			obj:     sts(withVCTs()),
			want:    []tweak{withVCTs(vct("cache", "5Gi")), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M1 and M4 follow the server options",
			opts:    &custom,
			obj:     sts(),
			want:    []tweak{appendVCT(vct("cache", "8Gi")), appendMount(0, "cache", "/var/lib/dittofs/wal")},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"cache-size": "8Gi"},
		},
		{
			name: "M1 size annotation not a quantity: denied",
			obj:  sts(withAnnotation(policies.AnnotationCacheSize, "lots")),
			errs: []wantErr{{field.ErrorTypeInvalid, annotationPath, ""}},
		},
		{
			name: "M1 size annotation zero: denied",
			obj:  sts(withAnnotation(policies.AnnotationCacheSize, "0")),
			errs: []wantErr{{field.ErrorTypeInvalid, annotationPath, ""}},
		},
		{
			name: "M1 size annotation negative: denied",
			obj:  sts(withAnnotation(policies.AnnotationCacheSize, "-5Gi")),
			errs: []wantErr{{field.ErrorTypeInvalid, annotationPath, ""}},
		},
		{
			name: "M1 size annotation empty: denied",
			obj:  sts(withAnnotation(policies.AnnotationCacheSize, "")),
			errs: []wantErr{{field.ErrorTypeInvalid, annotationPath, ""}},
		},
		{
			name:     "M1 denial keeps the other warnings and drops the patch",
			obj:      sts(withAnnotation(policies.AnnotationCacheSize, "0"), withRetention(del, retain)),
			errs:     []wantErr{{field.ErrorTypeInvalid, annotationPath, ""}},
			warnings: [][]string{{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"}},
		},

		// M2
		{
			name:    "M2 missing policy added silently",
			obj:     sts(cache5Gi, cacheMount, withoutRetention),
			want:    []tweak{withRetention(retain, retain)},
			applied: []string{policies.MutationRetentionPolicy},
			audit:   map[string]string{"mutations": "retention-policy"},
		},
		{
			name:    "M2 whenScaled missing added silently",
			obj:     sts(cache5Gi, cacheMount, withRetention(retain, "")),
			want:    []tweak{withRetention(retain, retain)},
			applied: []string{policies.MutationRetentionPolicy},
		},
		{
			name:    "M2 whenDeleted missing added silently",
			obj:     sts(cache5Gi, cacheMount, withRetention("", retain)),
			want:    []tweak{withRetention(retain, retain)},
			applied: []string{policies.MutationRetentionPolicy},
		},
		{
			name:     "M2 whenDeleted Delete replaced with a warning naming the field",
			obj:      sts(cache5Gi, cacheMount, withRetention(del, retain)),
			want:     []tweak{withRetention(retain, retain)},
			applied:  []string{policies.MutationRetentionPolicy},
			warnings: [][]string{{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted", "Delete", "Retain"}},
		},
		{
			name:     "M2 whenScaled Delete replaced with a warning naming the field",
			obj:      sts(cache5Gi, cacheMount, withRetention(retain, del)),
			want:     []tweak{withRetention(retain, retain)},
			applied:  []string{policies.MutationRetentionPolicy},
			warnings: [][]string{{"spec.persistentVolumeClaimRetentionPolicy.whenScaled", "Delete"}},
		},
		{
			name:    "M2 both Delete: two warnings",
			obj:     sts(cache5Gi, cacheMount, withRetention(del, del)),
			want:    []tweak{withRetention(retain, retain)},
			applied: []string{policies.MutationRetentionPolicy},
			warnings: [][]string{
				{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"},
				{"spec.persistentVolumeClaimRetentionPolicy.whenScaled"},
			},
		},
		{
			name:     "M2 Delete and a missing field: replaced with a warning, added silently",
			obj:      sts(cache5Gi, cacheMount, withRetention(del, "")),
			want:     []tweak{withRetention(retain, retain)},
			applied:  []string{policies.MutationRetentionPolicy},
			warnings: [][]string{{"whenDeleted"}},
		},
		{
			name:    "M1 M2 M4 together",
			obj:     sts(withoutRetention),
			want:    []tweak{cache5Gi, withRetention(retain, retain), cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationRetentionPolicy, policies.MutationCacheVolumeMount},
			audit:   map[string]string{"mutations": "cache-vct,retention-policy,cache-mount"},
		},

		// M3
		{
			name:     "M3 emptyDir cache removed with a warning; the existing mount now uses the claim",
			obj:      sts(cacheMount, withVolumes(configMap("config"), emptyDir("cache"))),
			want:     []tweak{cache5Gi, withVolumes(configMap("config"))},
			applied:  []string{policies.MutationCacheTemplate, policies.MutationEmptyDirRemoved},
			warnings: [][]string{{"spec.template.spec.volumes[1]", "emptyDir"}},
		},
		{
			name:     "M3 emptyDir cache removed, mount added",
			obj:      sts(withVolumes(emptyDir("cache"))),
			want:     []tweak{cache5Gi, withVolumes(), cacheMount},
			applied:  []string{policies.MutationCacheTemplate, policies.MutationEmptyDirRemoved, policies.MutationCacheVolumeMount},
			warnings: [][]string{{"spec.template.spec.volumes[0]"}},
		},
		{
			name: "M3 hostPath cache volume denied",
			obj:  sts(withVolumes(configMap("config"), hostPath("cache", "/mnt"))),
			errs: []wantErr{{field.ErrorTypeInvalid, "spec.template.spec.volumes[1].name", ""}},
		},
		{
			name:     "M3 two emptyDir cache volumes: both removed, a warning each",
			obj:      sts(cacheMount, withVolumes(emptyDir("cache"), configMap("config"), emptyDir("cache"))),
			want:     []tweak{cache5Gi, withVolumes(configMap("config"))},
			applied:  []string{policies.MutationCacheTemplate, policies.MutationEmptyDirRemoved},
			warnings: [][]string{{"spec.template.spec.volumes[2]"}, {"spec.template.spec.volumes[0]"}},
		},
		{
			name:     "M3 an emptyDir and a configMap named cache: the configMap denied",
			obj:      sts(withVolumes(emptyDir("cache"), configMap("cache"))),
			errs:     []wantErr{{field.ErrorTypeInvalid, "spec.template.spec.volumes[1].name", ""}},
			warnings: [][]string{{"spec.template.spec.volumes[0]"}},
		},
		{
			name:    "M3 a volume named cache-old is not the cache",
			obj:     sts(withVolumes(hostPath("cache-old", "/mnt"))),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},

		// M4
		{
			name:    "M4 container named by the annotation",
			obj:     sts(withAnnotation(policies.AnnotationContainer, "server"), withContainers(container("dittofs"), container("server", "metadata=/m"))),
			want:    []tweak{cache5Gi, appendMount(1, "cache", cacheMountPath)},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:     "M4 annotation naming a missing container: warning, no fallback",
			obj:      sts(withAnnotation(policies.AnnotationContainer, "dittofs-server")),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheTemplate},
			warnings: [][]string{{policies.AnnotationContainer, `"dittofs-server"`}},
		},
		{
			name:    "M4 container named dittofs among others",
			obj:     sts(withContainers(container("log-shipper", "logs=/var/log"), container("dittofs", "metadata=/m"))),
			want:    []tweak{cache5Gi, appendMount(1, "cache", cacheMountPath)},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M4 the only container",
			obj:     sts(withContainers(container("nfs-server", "metadata=/m"))),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:     "M4 ambiguous containers: warning, no mount",
			obj:      sts(withContainers(container("nfs"), container("smb"))),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheTemplate},
			warnings: [][]string{{"spec.template.spec.containers", policies.AnnotationContainer}},
		},
		{
			name:     "M4 no containers: warning",
			obj:      sts(withContainers()),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheTemplate},
			warnings: [][]string{{"no containers"}},
		},
		{
			name:    "M4 container already mounts cache elsewhere: nothing",
			obj:     sts(appendMount(0, "cache", "/var/cache/dittofs")),
			want:    []tweak{cache5Gi},
			applied: []string{policies.MutationCacheTemplate},
		},
		{
			name:     "M4 another volume at the mount path: warning naming it",
			obj:      sts(appendMount(0, "scratch", "/data/cache")),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheTemplate},
			warnings: [][]string{{"spec.template.spec.containers[0].volumeMounts", `"scratch"`, "/data/cache"}},
		},
		{
			name:     "M4 another volume at the same directory written differently",
			obj:      sts(appendMount(0, "scratch", "/data//cache/")),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheTemplate},
			warnings: [][]string{{`"scratch"`}},
		},
		{
			name:    "M4 a volume below the mount path does not block it",
			obj:     sts(appendMount(0, "scratch", "/data/cache/tmp")),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name:    "M4 volumeMounts absent: the array is created",
			obj:     sts(withContainers(container("dittofs"))),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},

		// Always
		{
			name: "unmanaged: nothing, whatever it holds",
			obj:  sts(withoutLabel(policies.LabelServer), withRetention(del, del), withVolumes(hostPath("cache", "/x")), withAnnotation(policies.AnnotationCacheSize, "lots")),
		},
		{
			name:    "label with an empty value is managed",
			obj:     sts(withLabel(policies.LabelServer, "")),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
		{
			name: "nothing to do: no patch, no audit",
			obj:  stored(),
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runMutateCase(t, tc) })
	}
}

func TestMutateUpdate(t *testing.T) {
	for _, tc := range []mutateCase{
		// U1
		{
			name:    "U1 re-applied manifest: cache template carried over at the end, silently",
			op:      policies.Update,
			obj:     stored(withoutVCT("cache")),
			old:     stored(),
			want:    []tweak{cache5Gi},
			applied: []string{policies.MutationCacheCarryOver},
			audit:   map[string]string{"mutations": "cache-vct-carry-over"},
		},
		{
			name:    "U1 carried over at index 0",
			op:      policies.Update,
			obj:     sts(cacheMount),
			old:     sts(insertVCT(0, vct("cache", "7Gi", "x")), cacheMount),
			want:    []tweak{insertVCT(0, vct("cache", "7Gi", "x"))},
			applied: []string{policies.MutationCacheCarryOver},
		},
		{
			name:    "U1 carried over at index 1",
			op:      policies.Update,
			obj:     sts(cacheMount),
			old:     sts(insertVCT(1, vct("cache", "7Gi")), cacheMount),
			want:    []tweak{insertVCT(1, vct("cache", "7Gi"))},
			applied: []string{policies.MutationCacheCarryOver},
		},
		{
			name:    "U1 no templates left in the new object: the array is created",
			op:      policies.Update,
			obj:     sts(withVCTs(), cacheMount),
			old:     sts(withVCTs(vct("cache", "5Gi")), cacheMount),
			want:    []tweak{withVCTs(vct("cache", "5Gi"))},
			applied: []string{policies.MutationCacheCarryOver},
		},
		{
			name:    "U1 the old template is carried over even with a different size annotation",
			op:      policies.Update,
			obj:     stored(withoutVCT("cache"), withAnnotation(policies.AnnotationCacheSize, "99Gi")),
			old:     stored(),
			want:    []tweak{cache5Gi},
			applied: []string{policies.MutationCacheCarryOver},
		},
		{
			name:    "U1 the old template is carried over even with an invalid size annotation",
			op:      policies.Update,
			obj:     stored(withoutVCT("cache"), withAnnotation(policies.AnnotationCacheSize, "lots")),
			old:     stored(),
			want:    []tweak{cache5Gi},
			applied: []string{policies.MutationCacheCarryOver},
		},
		// U2
		{
			name:    "U2 re-apply restores the mount silently",
			op:      policies.Update,
			obj:     sts(),
			old:     stored(),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheCarryOver, policies.MutationCacheVolumeMount},
		},
		{
			name:    "U2 re-apply removes the emptyDir silently",
			op:      policies.Update,
			obj:     stored(withoutVCT("cache"), withVolumes(emptyDir("cache"))),
			old:     stored(),
			want:    []tweak{cache5Gi, withVolumes()},
			applied: []string{policies.MutationCacheCarryOver, policies.MutationEmptyDirRemoved},
		},
		{
			name:    "U2 re-apply of a partial policy restores it silently",
			op:      policies.Update,
			obj:     stored(withRetention(retain, "")),
			old:     stored(),
			want:    []tweak{withRetention(retain, retain)},
			applied: []string{policies.MutationRetentionPolicy},
		},
		{
			name:     "U2 an explicit Delete warns every time",
			op:       policies.Update,
			obj:      stored(withoutVCT("cache"), withRetention(del, retain)),
			old:      stored(),
			want:     []tweak{cache5Gi, withRetention(retain, retain)},
			applied:  []string{policies.MutationCacheCarryOver, policies.MutationRetentionPolicy},
			warnings: [][]string{{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"}},
		},
		{
			name:     "U2 an M4 failure warns every time",
			op:       policies.Update,
			obj:      sts(withContainers(container("nfs"), container("smb"))),
			old:      sts(cache5Gi, withContainers(container("nfs"), container("smb"))),
			want:     []tweak{cache5Gi},
			applied:  []string{policies.MutationCacheCarryOver},
			warnings: [][]string{{policies.AnnotationContainer}},
		},
		{
			name:     "U2 an M4 failure warns even with nothing to patch",
			op:       policies.Update,
			obj:      sts(cache5Gi, withAnnotation(policies.AnnotationContainer, "gone")),
			old:      sts(cache5Gi, withAnnotation(policies.AnnotationContainer, "gone")),
			warnings: [][]string{{`"gone"`}},
		},
		{
			name:     "U2 an emptyDir the stored object also had warns",
			op:       policies.Update,
			obj:      stored(withVolumes(emptyDir("cache"))),
			old:      stored(withVolumes(emptyDir("cache"))),
			want:     []tweak{withVolumes()},
			applied:  []string{policies.MutationEmptyDirRemoved},
			warnings: [][]string{{"emptyDir"}},
		},
		{
			name: "U2 a non-emptyDir cache volume is denied on update too",
			op:   policies.Update,
			obj:  stored(withVolumes(hostPath("cache", "/mnt"))),
			old:  stored(),
			errs: []wantErr{{field.ErrorTypeInvalid, "spec.template.spec.volumes[0].name", ""}},
		},
		{
			name: "U2 update with its cache: nothing",
			op:   policies.Update,
			obj:  stored(func(s *appsv1.StatefulSet) { r := int32(3); s.Spec.Replicas = &r }),
			old:  stored(),
		},
		// U3
		{
			name:     "U3 old without cache: no injection, M3 and M4 skipped, warning with --cascade=orphan",
			op:       policies.Update,
			obj:      sts(withVolumes(emptyDir("cache"))),
			old:      sts(withVolumes(emptyDir("cache"))),
			warnings: [][]string{{"spec.volumeClaimTemplates", "kubectl delete statefulset dittofs-a --cascade=orphan -n storage"}},
		},
		{
			name:     "U3 M2 still applies",
			op:       policies.Update,
			obj:      sts(withRetention(del, "")),
			old:      sts(withRetention(del, "")),
			want:     []tweak{withRetention(retain, retain)},
			applied:  []string{policies.MutationRetentionPolicy},
			warnings: [][]string{{"--cascade=orphan"}, {"whenDeleted"}},
		},
		{
			name:     "U3 label being added: no injection",
			op:       policies.Update,
			obj:      sts(),
			old:      sts(withoutLabel(policies.LabelServer)),
			warnings: [][]string{{"--cascade=orphan"}},
		},
		{
			name:     "U3 advice without a namespace",
			op:       policies.Update,
			obj:      sts(withNamespace("")),
			old:      sts(withNamespace("")),
			warnings: [][]string{{"kubectl delete statefulset dittofs-a --cascade=orphan"}},
		},
		{
			name: "label removed on update: unmanaged, nothing carried over",
			op:   policies.Update,
			obj:  stored(withoutLabel(policies.LabelServer), withoutVCT("cache")),
			old:  stored(),
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runMutateCase(t, tc) })
	}
}

func TestMutateOtherOperations(t *testing.T) {
	// An object that would get every mutation on CREATE.
	obj := sts(withoutRetention, withVolumes(emptyDir("cache")))
	for _, op := range []policies.Operation{"DELETE", "CONNECT", "", "create", "update"} {
		m := policies.Mutate(policies.Request{Operation: op, Object: view(t, obj), OldObject: view(t, obj)}, policies.DefaultOptions())
		if m.Changed() || len(m.Warnings) > 0 || len(m.Errs) > 0 || len(m.Applied) > 0 || m.Audit != nil {
			t.Errorf("operation %q: %+v", op, m)
		}
	}
}

var allowedPatchPath = regexp.MustCompile(`^/spec/(volumeClaimTemplates(/(\d+|-))?|persistentVolumeClaimRetentionPolicy(/whenDeleted|/whenScaled)?|template/spec/volumes/\d+|template/spec/containers/\d+/volumeMounts(/-)?)$`)

// serverRequest decodes object and oldObject (JSON; nil on CREATE) the way the
// server decodes an AdmissionReview, into the policies' request.
func serverRequest(t *testing.T, op policies.Operation, object, oldObject []byte) policies.Request {
	t.Helper()
	r, err := admission.NewRequest(string(op), object, oldObject)
	if err != nil {
		t.Fatal(err)
	}
	return policies.Request{Operation: op, Object: r.Object, OldObject: r.OldObject}
}

func runMutateCase(t *testing.T, tc mutateCase) {
	t.Helper()
	opts := policies.DefaultOptions()
	if tc.opts != nil {
		opts = *tc.opts
	}
	op := tc.op
	if op == "" {
		op = policies.Create
	}
	doc := mustJSON(t, tc.obj)
	var oldDoc []byte
	if tc.old != nil {
		oldDoc = mustJSON(t, tc.old)
	}
	req := serverRequest(t, op, doc, oldDoc)
	m := policies.Mutate(req, opts)

	checkErrs(t, "Errs", m.Errs, tc.errs)
	checkWarnings(t, m.Warnings, tc.warnings)
	if !slices.Equal(m.Applied, tc.applied) {
		t.Errorf("Applied = %q, want %q", m.Applied, tc.applied)
	}
	for k, v := range tc.audit {
		if m.Audit[k] != v {
			t.Errorf("audit %q = %q, want %q (all: %v)", k, m.Audit[k], v, m.Audit)
		}
	}
	if len(tc.errs) > 0 || tc.want == nil {
		if m.Changed() || len(m.Patch) > 0 || m.Audit != nil {
			t.Errorf("want no patch and no audit, got patch %s, audit %v", mustJSON(t, m.Patch), m.Audit)
		}
		return
	}
	if !m.Changed() {
		t.Fatalf("want a patch, got none")
	}
	for _, o := range m.Patch {
		if !allowedPatchPath.MatchString(o.Path) || (o.Operation != "add" && o.Operation != "remove" && o.Operation != "replace") {
			t.Errorf("patch %s %s: not an operation SPEC §2 allows", o.Operation, o.Path)
		}
	}
	out, err := admission.ApplyPatch(doc, m.Patch)
	if err != nil {
		t.Fatalf("applying %s: %v", mustJSON(t, m.Patch), err)
	}
	var got appsv1.StatefulSet
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := tc.obj.DeepCopy()
	for _, tw := range tc.want {
		tw(want)
	}
	if g, w := mustJSON(t, &got), mustJSON(t, want); !bytes.Equal(g, w) {
		t.Errorf("patched object differs\npatch: %s\ngot:  %s\nwant: %s", mustJSON(t, m.Patch), indentJSON(g), indentJSON(w))
	}

	// Idempotence: the mutator run on its own output returns no patch, and
	// the same warnings.
	again := policies.Mutate(serverRequest(t, op, out, oldDoc), opts)
	if again.Changed() || len(again.Errs) > 0 || len(again.Applied) > 0 {
		t.Errorf("not idempotent: the second run gives patch %s, errors %v", mustJSON(t, again.Patch), again.Errs)
	}
}

// TestMutateCarryOverVerbatim: U1 copies the stored template's bytes, so
// fields this build does not know survive, in metadata, spec and status.
func TestMutateCarryOverVerbatim(t *testing.T) {
	rawCache := `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"cache","futureMeta":"x","labels":{"a":"b"}},` +
		`"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"5Gi"}},"volumeMode":"Filesystem","futureClaimField":{"tier":"wal","n":3}},` +
		`"status":{"phase":"Pending","futureStatus":[1,2]}}`
	oldDoc := []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":"a"}},` +
		`"spec":{"template":{"spec":{"containers":[{"name":"dittofs","volumeMounts":[{"name":"cache","mountPath":"/data/cache"}]}]}},` +
		`"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},` + rawCache + `,` +
		`{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}}],` +
		`"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}`)
	newDoc := []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a","labels":{"dittofs.com/server":"a"}},` +
		`"spec":{"template":{"spec":{"containers":[{"name":"dittofs","volumeMounts":[{"name":"cache","mountPath":"/data/cache"}]}]}},` +
		`"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},` +
		`{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}}],` +
		`"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"}}}`)
	req := serverRequest(t, policies.Update, newDoc, oldDoc)
	m := policies.Mutate(req, policies.DefaultOptions())
	if len(m.Warnings) > 0 || len(m.Errs) > 0 {
		t.Fatalf("warnings %q, errors %v", m.Warnings, m.Errs)
	}
	out, err := admission.ApplyPatch(newDoc, m.Patch)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(oldDoc, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the re-applied object is not the stored one:\ngot  %s\nwant %s", out, oldDoc)
	}

	// Without the raw bytes (a view built by hand, not decoded) the view's
	// own fields are used.
	for i := range req.OldObject.Spec.VolumeClaimTemplates {
		req.OldObject.Spec.VolumeClaimTemplates[i].Raw = nil
	}
	m = policies.Mutate(req, policies.DefaultOptions())
	out, err = admission.ApplyPatch(newDoc, m.Patch)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"storage":"5Gi"`) || strings.Contains(string(out), "futureClaimField") {
		t.Errorf("carry-over of a hand-built view: %s", out)
	}
}

// TestMutateEmptyArrays: an empty JSON array (not a missing one) is appended to.
func TestMutateEmptyArrays(t *testing.T) {
	doc := []byte(`{"metadata":{"name":"a","labels":{"dittofs.com/server":""}},"spec":{"template":{"spec":{"volumes":[],` +
		`"containers":[{"name":"dittofs","volumeMounts":[]}]}},"volumeClaimTemplates":[],"persistentVolumeClaimRetentionPolicy":{}}}`)
	m := policies.Mutate(serverRequest(t, policies.Create, doc, nil), policies.DefaultOptions())
	if len(m.Warnings) > 0 || len(m.Errs) > 0 {
		t.Fatalf("warnings %q, errors %v", m.Warnings, m.Errs)
	}
	out, err := admission.ApplyPatch(doc, m.Patch)
	if err != nil {
		t.Fatalf("%v (patch %s)", err, mustJSON(t, m.Patch))
	}
	want := `{"metadata":{"labels":{"dittofs.com/server":""},"name":"a"},"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"},` +
		`"template":{"spec":{"containers":[{"name":"dittofs","volumeMounts":[{"mountPath":"/data/cache","name":"cache"}]}],"volumes":[]}},` +
		`"volumeClaimTemplates":[{"metadata":{"name":"cache"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"5Gi"}}}}]}}`
	var g, w any
	_ = json.Unmarshal(out, &g)
	_ = json.Unmarshal([]byte(want), &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

// TestMutateDenialNamesAnnotationAndValue: the denial of a bad cache-size
// names the annotation and the value, as kubectl prints it.
func TestMutateDenialNamesAnnotationAndValue(t *testing.T) {
	for _, v := range []string{"lots", "0", "-1Gi", "5 Gi"} {
		m := policies.Mutate(policies.Request{Operation: policies.Create, Object: view(t, sts(withAnnotation(policies.AnnotationCacheSize, v)))}, policies.DefaultOptions())
		if len(m.Errs) != 1 {
			t.Fatalf("%q: errors %v", v, m.Errs)
		}
		e := m.Errs[0]
		if e.BadValue != v || !strings.Contains(e.Error(), policies.AnnotationCacheSize) || !strings.Contains(e.Error(), `"`+v+`"`) {
			t.Errorf("%q: %v (bad value %v)", v, e, e.BadValue)
		}
	}
}

func TestMutateNilAndUnmanaged(t *testing.T) {
	for name, req := range map[string]policies.Request{
		"nil object":       {Operation: policies.Create},
		"no labels":        {Operation: policies.Create, Object: view(t, sts(func(s *appsv1.StatefulSet) { s.Labels = nil }))},
		"label on the pod": {Operation: policies.Create, Object: view(t, sts(withoutLabel(policies.LabelServer), func(s *appsv1.StatefulSet) { s.Spec.Template.Labels[policies.LabelServer] = "x" }))},
	} {
		m := policies.Mutate(req, policies.DefaultOptions())
		if m.Changed() || len(m.Warnings) > 0 || len(m.Errs) > 0 || m.Audit != nil {
			t.Errorf("%s: %+v", name, m)
		}
	}
}

func TestOptions(t *testing.T) {
	d := policies.DefaultOptions()
	if d.DefaultCacheSize.String() != "5Gi" || d.CacheMountPath != "/data/cache" {
		t.Errorf("DefaultOptions() = %v %q", d.DefaultCacheSize.String(), d.CacheMountPath)
	}
	if err := d.Validate(); err != nil {
		t.Error(err)
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

func TestIsManaged(t *testing.T) {
	if policies.IsManaged(nil) {
		t.Error("nil is managed")
	}
	if !policies.IsManaged(view(t, sts(withLabel(policies.LabelServer, "")))) {
		t.Error("an empty value is not managed")
	}
	if policies.IsManaged(view(t, sts(withoutLabel(policies.LabelServer)))) {
		t.Error("no label is managed")
	}
}

// TestMutateWarnAction: under the warn action what the mutating webhook would
// deny is a warning, no cache is injected where it would have been denied,
// and the rest of the mutation applies; without a denial, warn mutates as
// deny does.
func TestMutateWarnAction(t *testing.T) {
	warn := policies.DefaultOptions()
	warn.Action = policies.Warn
	for _, tc := range []mutateCase{
		{
			name:     "bad cache-size: warning, no cache, retention still fixed",
			opts:     &warn,
			obj:      sts(withAnnotation(policies.AnnotationCacheSize, "lots"), withRetention(del, retain)),
			want:     []tweak{withRetention(retain, retain)},
			applied:  []string{policies.MutationRetentionPolicy},
			warnings: [][]string{{policies.AnnotationCacheSize, `"lots"`, "denied under deny"}, {"whenDeleted"}},
		},
		{
			name:     "reserved cache volume: warning, no cache",
			opts:     &warn,
			obj:      sts(withVolumes(hostPath("cache", "/mnt"))),
			warnings: [][]string{{"spec.template.spec.volumes[0].name", "denied under deny"}},
		},
		{
			name:    "nothing to deny: the same as deny",
			opts:    &warn,
			obj:     sts(),
			want:    []tweak{cache5Gi, cacheMount},
			applied: []string{policies.MutationCacheTemplate, policies.MutationCacheVolumeMount},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runMutateCase(t, tc) })
	}
}

// TestManagePatch applies the patch ManagePatch returns and checks the
// object it makes: labelled with its name, every other label kept.
func TestManagePatch(t *testing.T) {
	long := strings.Repeat("a", 64) // a valid object name, too long for a label value
	cases := []struct {
		name      string
		obj       *appsv1.StatefulSet
		wantPatch bool
		wantValue string
	}{
		{"other labels kept", sts(withoutLabel(policies.LabelServer)), true, "dittofs-a"},
		{"no labels at all", sts(func(s *appsv1.StatefulSet) { s.Labels = nil }), true, "dittofs-a"},
		{"name too long for a label value", sts(withoutLabel(policies.LabelServer), func(s *appsv1.StatefulSet) { s.Name = long }), true, ""},
		{"already managed", sts(withLabel(policies.LabelServer, "other")), false, "other"},
		{"already managed, empty value", sts(withLabel(policies.LabelServer, "")), false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.obj.DeepCopy()
			patch := policies.ManagePatch(view(t, tc.obj))
			if (len(patch) > 0) != tc.wantPatch {
				t.Fatalf("patch = %v, want a patch: %v", patch, tc.wantPatch)
			}
			out, err := admission.ApplyPatch(mustJSON(t, tc.obj), patch)
			if err != nil {
				t.Fatalf("the patch %v does not apply: %v", patch, err)
			}
			var got appsv1.StatefulSet
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if v, ok := got.Labels[policies.LabelServer]; !ok || v != tc.wantValue {
				t.Errorf("label %s = %q (present: %v), want %q", policies.LabelServer, v, ok, tc.wantValue)
			}
			for k, v := range before.Labels {
				if k != policies.LabelServer && got.Labels[k] != v {
					t.Errorf("label %s = %q, want %q kept", k, got.Labels[k], v)
				}
			}
			if len(got.Labels) != len(before.Labels)+btoi(tc.wantPatch) {
				t.Errorf("labels = %v, from %v", got.Labels, before.Labels)
			}
			if policies.ManagePatch(view(t, &got)) != nil {
				t.Error("ManagePatch of its own result is not nil")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
