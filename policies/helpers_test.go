package policies_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// tweak changes a StatefulSet; test cases describe their objects as tweaks of
// a base, in the manner of Kubernetes' pkg/apis/apps/validation tests.
type tweak func(*appsv1.StatefulSet)

// sts is the base managed StatefulSet as a user writes it (after the
// apiserver defaulted the retention policy to Retain/Retain): metadata and
// content templates, one container named dittofs that mounts them; then tweaks.
func sts(tweaks ...tweak) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "dittofs-a",
			Namespace: "storage",
			Labels:    map[string]string{"app.kubernetes.io/name": "dittofs", policies.LabelServer: "dittofs-a"},
		},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "dittofs-a",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "dittofs"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "dittofs"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "dittofs",
						Image: "ghcr.io/marmos91/dittofs:0.9.2",
						VolumeMounts: []corev1.VolumeMount{
							{Name: "metadata", MountPath: "/data/metadata"},
							{Name: "content", MountPath: "/data/content"},
						},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{vct("metadata", "1Gi"), vct("content", "50Gi")},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
	return tweaked(s, tweaks...)
}

// tweaked is a copy of s with tweaks applied.
func tweaked(s *appsv1.StatefulSet, tweaks ...tweak) *appsv1.StatefulSet {
	s = s.DeepCopy()
	for _, tw := range tweaks {
		tw(s)
	}
	return s
}

// stored is the base as the webhook leaves it on CREATE: with the 5Gi cache
// template and the cache mount; then tweaks. It is the oldObject of updates.
func stored(tweaks ...tweak) *appsv1.StatefulSet {
	return sts(append([]tweak{appendVCT(vct("cache", "5Gi")), appendMount(0, "cache", "/data/cache")}, tweaks...)...)
}

// vct is a volumeClaimTemplate shaped like the one the mutator injects (name,
// ReadWriteOnce, a storage request when size is not empty).
func vct(name, size string, class ...string) corev1.PersistentVolumeClaim {
	v := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		},
	}
	if size != "" {
		v.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	if len(class) > 0 {
		v.Spec.StorageClassName = &class[0]
	}
	return v
}

func withAnnotation(k, v string) tweak {
	return func(s *appsv1.StatefulSet) { metav1.SetMetaDataAnnotation(&s.ObjectMeta, k, v) }
}

func withLabel(k, v string) tweak {
	return func(s *appsv1.StatefulSet) { metav1.SetMetaDataLabel(&s.ObjectMeta, k, v) }
}

func withoutLabel(k string) tweak   { return func(s *appsv1.StatefulSet) { delete(s.Labels, k) } }
func withNamespace(ns string) tweak { return func(s *appsv1.StatefulSet) { s.Namespace = ns } }

func withVCTs(vcts ...corev1.PersistentVolumeClaim) tweak {
	return func(s *appsv1.StatefulSet) { s.Spec.VolumeClaimTemplates = vcts }
}

func appendVCT(v corev1.PersistentVolumeClaim) tweak {
	return func(s *appsv1.StatefulSet) { s.Spec.VolumeClaimTemplates = append(s.Spec.VolumeClaimTemplates, v) }
}

func insertVCT(i int, v corev1.PersistentVolumeClaim) tweak {
	return func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates = slices.Insert(s.Spec.VolumeClaimTemplates, i, v)
	}
}

func withoutVCT(name string) tweak {
	return func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates = slices.DeleteFunc(s.Spec.VolumeClaimTemplates,
			func(v corev1.PersistentVolumeClaim) bool { return v.Name == name })
	}
}

func withVCTSize(i int, size string) tweak {
	return func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
	}
}

// withRetention sets the policy; "" leaves a field out.
func withRetention(whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) tweak {
	return func(s *appsv1.StatefulSet) {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: whenDeleted, WhenScaled: whenScaled}
	}
}

func withoutRetention(s *appsv1.StatefulSet) { s.Spec.PersistentVolumeClaimRetentionPolicy = nil }

const (
	retain = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	del    = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
)

func appendMount(i int, name, path string) tweak {
	return func(s *appsv1.StatefulSet) {
		c := &s.Spec.Template.Spec.Containers[i]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: path})
	}
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func hostPath(name, path string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
}

func configMap(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
}

func withVolumes(vs ...corev1.Volume) tweak {
	return func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Volumes = vs }
}

// wantErr is an expected field error: its type, field path and (for the
// validator) rule ID.
type wantErr struct {
	typ   field.ErrorType
	field string
	rule  string
}

func checkErrs(t *testing.T, what string, got field.ErrorList, want []wantErr) {
	t.Helper()
	var g []wantErr
	for _, e := range got {
		g = append(g, wantErr{e.Type, e.Field, policies.RuleOf(e)})
	}
	if d := cmp.Diff(want, g, cmp.AllowUnexported(wantErr{})); d != "" {
		t.Errorf("%s (-want +got):\n%s\nall: %v", what, d, got)
	}
}

// checkWarnings requires one warning per entry, in order, each holding every
// substring of its entry.
func checkWarnings(t *testing.T, got []string, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d warnings, want %d: %q", len(got), len(want), got)
		return
	}
	for i, subs := range want {
		for _, s := range subs {
			if !strings.Contains(got[i], s) {
				t.Errorf("warning %d %q does not contain %q", i, got[i], s)
			}
		}
	}
}

// must fails t on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return b
}

// view is what the policies read of s, decoded as the server decodes it.
func view(t *testing.T, s *appsv1.StatefulSet) *policies.StatefulSet {
	t.Helper()
	if s == nil {
		return nil
	}
	v, err := admission.DecodeStatefulSet(mustJSON(t, s), "")
	must(t, err)
	return v
}

// withAction is DefaultOptions with action, unless it is empty.
func withAction(action policies.Action) policies.Options {
	o := policies.DefaultOptions()
	if action != "" {
		o.Action = action
	}
	return o
}

// orCreate is op, CREATE when empty.
func orCreate(op policies.Operation) policies.Operation {
	if op == "" {
		return policies.Create
	}
	return op
}
