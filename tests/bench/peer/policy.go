package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The DittoFS StatefulSet policy (SPEC §2–§3), written the way a kubebuilder
// project usually writes a webhook for a built-in type: an admission.Handler
// per webhook, the object decoded into a typed appsv1.StatefulSet by
// admission.Decoder, the mutation applied to a DeepCopy and turned into a JSON
// patch by admission.PatchResponseFromRaw, and a denial built from a
// field.ErrorList with apierrors.NewInvalid.

const (
	labelServer             = "dittofs.com/server"
	annotationCacheSize     = "dittofs.com/cache-size"
	annotationCacheClass    = "dittofs.com/cache-storage-class"
	annotationContainer     = "dittofs.com/container"
	volumeMetadata          = "metadata"
	volumeContent           = "content"
	volumeCache             = "cache"
	defaultDittoFSContainer = "dittofs"
)

var (
	statefulSetLog = logf.Log.WithName("statefulset-resource")
	statefulSetGK  = schema.GroupKind{Group: "apps", Kind: "StatefulSet"}
	retain         = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
)

// StatefulSetDefaulter is the mutating webhook.
type StatefulSetDefaulter struct {
	Decoder          admission.Decoder
	DefaultCacheSize resource.Quantity
	CacheMountPath   string
}

// StatefulSetValidator is the validating webhook.
type StatefulSetValidator struct {
	Decoder admission.Decoder
}

func isManaged(sts *appsv1.StatefulSet) bool {
	if sts == nil {
		return false
	}
	_, ok := sts.Labels[labelServer]
	return ok
}

// decode returns the new and old objects of a CREATE or UPDATE of a
// StatefulSet, or the response to send when the request is not one to look at.
func decode(d admission.Decoder, req admission.Request) (sts, old *appsv1.StatefulSet, resp *admission.Response) {
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.SubResource != "" {
		r := admission.Allowed("")
		return nil, nil, &r
	}
	if req.Kind.Group != "apps" || req.Kind.Version != "v1" || req.Kind.Kind != "StatefulSet" {
		r := admission.Errored(http.StatusBadRequest, fmt.Errorf("this webhook handles apps/v1 StatefulSet, got %s/%s %s", req.Kind.Group, req.Kind.Version, req.Kind.Kind))
		return nil, nil, &r
	}
	sts = &appsv1.StatefulSet{}
	if err := d.Decode(req, sts); err != nil {
		r := admission.Errored(http.StatusBadRequest, err)
		return nil, nil, &r
	}
	if req.Operation == admissionv1.Update {
		old = &appsv1.StatefulSet{}
		if err := d.DecodeRaw(req.OldObject, old); err != nil {
			r := admission.Errored(http.StatusBadRequest, err)
			return nil, nil, &r
		}
	}
	if !isManaged(sts) {
		r := admission.Allowed("")
		return nil, nil, &r
	}
	return sts, old, nil
}

func invalid(name string, errs field.ErrorList, warnings []string) admission.Response {
	status := apierrors.NewInvalid(statefulSetGK, name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed:  false,
		Result:   &status,
		Warnings: warnings,
	}}
}

// Handle implements admission.Handler.
func (d *StatefulSetDefaulter) Handle(ctx context.Context, req admission.Request) admission.Response {
	sts, old, resp := decode(d.Decoder, req)
	if resp != nil {
		return *resp
	}
	statefulSetLog.Info("defaulting", "name", sts.Name, "namespace", sts.Namespace, "operation", req.Operation, "uid", req.UID)

	mutated := sts.DeepCopy()
	warnings, errs := d.mutate(mutated, old)
	if len(errs) > 0 {
		return invalid(sts.Name, errs, warnings)
	}
	if equality.Semantic.DeepEqual(sts, mutated) {
		return admission.Allowed("").WithWarnings(warnings...)
	}
	marshalled, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, marshalled).WithWarnings(warnings...)
}

func claimIndex(sts *appsv1.StatefulSet, name string) int {
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name == name {
			return i
		}
	}
	return -1
}

// mutate applies M1–M4 (CREATE) or U1–U3 (UPDATE) to sts in place.
func (d *StatefulSetDefaulter) mutate(sts, old *appsv1.StatefulSet) (warnings []string, errs field.ErrorList) {
	spec := field.NewPath("spec")
	hasCache := claimIndex(sts, volumeCache) >= 0
	if !hasCache && old == nil { // M1
		size := d.DefaultCacheSize
		if v, ok := sts.Annotations[annotationCacheSize]; ok {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				return nil, field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations").Key(annotationCacheSize), v,
					"must be a positive quantity such as 5Gi")}
			}
			size = q
		}
		var class *string
		if v, ok := sts.Annotations[annotationCacheClass]; ok {
			class = &v
		} else if i := claimIndex(sts, volumeMetadata); i >= 0 && sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName != nil {
			c := *sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName
			class = &c
		}
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: volumeCache},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
				StorageClassName: class,
			},
		})
		hasCache = true
	} else if !hasCache { // U1 / U3
		if oi := claimIndex(old, volumeCache); oi >= 0 {
			vct := *old.Spec.VolumeClaimTemplates[oi].DeepCopy()
			vcts := sts.Spec.VolumeClaimTemplates
			if oi >= len(vcts) {
				vcts = append(vcts, vct)
			} else {
				vcts = append(vcts[:oi], append([]corev1.PersistentVolumeClaim{vct}, vcts[oi:]...)...)
			}
			sts.Spec.VolumeClaimTemplates = vcts
			hasCache = true
		} else {
			warnings = append(warnings, fmt.Sprintf("%s: no %q volumeClaimTemplate and Kubernetes cannot add one to an existing StatefulSet: recreate it (kubectl delete statefulset %s --cascade=orphan, then apply it again)",
				spec.Child("volumeClaimTemplates"), volumeCache, sts.Name))
		}
	}

	// M2
	rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil {
		rp = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
		sts.Spec.PersistentVolumeClaimRetentionPolicy = rp
	}
	rpPath := spec.Child("persistentVolumeClaimRetentionPolicy")
	for _, f := range []struct {
		name  string
		value *appsv1.PersistentVolumeClaimRetentionPolicyType
	}{{"whenDeleted", &rp.WhenDeleted}, {"whenScaled", &rp.WhenScaled}} {
		if *f.value != "" && *f.value != retain {
			warnings = append(warnings, fmt.Sprintf("%s: %q replaced by %q: DittoFS volumes hold the file system's data", rpPath.Child(f.name), *f.value, retain))
		}
		*f.value = retain
	}

	if !hasCache {
		return warnings, nil
	}
	podSpec := &sts.Spec.Template.Spec
	podPath := spec.Child("template", "spec")

	// M3
	oldHadEmptyDir := false
	if old != nil {
		for _, v := range old.Spec.Template.Spec.Volumes {
			oldHadEmptyDir = oldHadEmptyDir || (v.Name == volumeCache && v.EmptyDir != nil)
		}
	}
	kept := podSpec.Volumes[:0:0]
	for i, v := range podSpec.Volumes {
		if v.Name != volumeCache {
			kept = append(kept, v)
			continue
		}
		if v.EmptyDir == nil {
			errs = append(errs, field.Invalid(podPath.Child("volumes").Index(i).Child("name"), volumeCache,
				"the volume name \"cache\" is reserved for the persistent DittoFS cache volumeClaimTemplate: rename this volume"))
			kept = append(kept, v)
			continue
		}
		if old == nil || oldHadEmptyDir {
			warnings = append(warnings, fmt.Sprintf("%s: emptyDir volume %q removed: the persistent volumeClaimTemplate replaces it", podPath.Child("volumes").Index(i), volumeCache))
		}
	}
	if len(kept) != len(podSpec.Volumes) {
		if len(kept) == 0 {
			kept = nil
		}
		podSpec.Volumes = kept
	}
	if len(errs) > 0 {
		return warnings, errs
	}

	// M4
	ci, why := -1, ""
	find := func(name string) int {
		for i := range podSpec.Containers {
			if podSpec.Containers[i].Name == name {
				return i
			}
		}
		return -1
	}
	if name, ok := sts.Annotations[annotationContainer]; ok {
		if ci = find(name); ci < 0 {
			why = fmt.Sprintf("annotation %s names container %q, which the pod template does not have", annotationContainer, name)
		}
	} else if ci = find(defaultDittoFSContainer); ci < 0 {
		if len(podSpec.Containers) == 1 {
			ci = 0
		} else {
			why = "cannot tell which container runs DittoFS: name it \"dittofs\" or set the annotation " + annotationContainer
		}
	}
	if ci < 0 {
		return append(warnings, podPath.Child("containers").String()+": no cache volumeMount added: "+why), nil
	}
	c := &podSpec.Containers[ci]
	want := path.Clean(d.CacheMountPath)
	for _, vm := range c.VolumeMounts {
		if vm.Name == volumeCache {
			return warnings, nil
		}
	}
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == want {
			return append(warnings, fmt.Sprintf("%s: no cache volumeMount added to container %q: volume %q is already mounted at %s",
				podPath.Child("containers").Index(ci).Child("volumeMounts"), c.Name, vm.Name, vm.MountPath)), nil
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volumeCache, MountPath: d.CacheMountPath})
	return warnings, nil
}

// Handle implements admission.Handler.
func (v *StatefulSetValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	sts, old, resp := decode(v.Decoder, req)
	if resp != nil {
		return *resp
	}
	statefulSetLog.Info("validating", "name", sts.Name, "namespace", sts.Namespace, "operation", req.Operation, "uid", req.UID)

	var warnings []string
	for i, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name == volumeMetadata || vol.Name == volumeContent {
			warnings = append(warnings, fmt.Sprintf("spec.template.spec.volumes[%d]: volume %q is shadowed by the volumeClaimTemplate of that name", i, vol.Name))
		}
	}
	errs := validateStatefulSet(sts, old != nil)
	if old != nil && isManaged(old) {
		had := map[string]bool{}
		for _, e := range validateStatefulSet(old, true) {
			had[e.Field+"\x00"+e.Detail] = true
		}
		var introduced field.ErrorList
		for _, e := range errs {
			if had[e.Field+"\x00"+e.Detail] {
				warnings = append(warnings, "existing violation allowed on update: "+e.Error())
			} else {
				introduced = append(introduced, e)
			}
		}
		errs = introduced
	}
	if len(errs) > 0 {
		return invalid(sts.Name, errs, warnings)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

func validateStatefulSet(sts *appsv1.StatefulSet, update bool) field.ErrorList {
	var errs field.ErrorList
	vctPath := field.NewPath("spec", "volumeClaimTemplates")
	for _, st := range []struct{ name, rule string }{
		{volumeMetadata, "metadata-storage"}, {volumeContent, "content-storage"}, {volumeCache, "cache-storage"},
	} {
		i := claimIndex(sts, st.name)
		if i < 0 {
			msg := fmt.Sprintf("%s: add a volumeClaimTemplate named %q", st.rule, st.name)
			if st.name == volumeCache {
				if update {
					msg += fmt.Sprintf(": Kubernetes cannot add one to an existing StatefulSet; recreate it: kubectl delete statefulset %s --cascade=orphan, then apply it again", sts.Name)
				} else {
					msg += ": the mutating webhook, which adds it, did not run"
				}
			}
			errs = append(errs, field.Required(vctPath, msg))
			continue
		}
		p := vctPath.Index(i).Child("spec", "resources", "requests").Key(string(corev1.ResourceStorage))
		q, ok := sts.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage]
		switch {
		case !ok:
			errs = append(errs, field.Required(p, fmt.Sprintf("storage-size: the %q volumeClaimTemplate must request a storage size", st.name)))
		case q.Sign() <= 0:
			errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("storage-size: the %q volumeClaimTemplate must request a positive storage size", st.name)))
		}
	}
	rpPath := field.NewPath("spec", "persistentVolumeClaimRetentionPolicy")
	var deleted, scaled appsv1.PersistentVolumeClaimRetentionPolicyType
	if rp := sts.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil {
		deleted, scaled = rp.WhenDeleted, rp.WhenScaled
	}
	for _, f := range []struct {
		name  string
		value appsv1.PersistentVolumeClaimRetentionPolicyType
	}{{"whenDeleted", deleted}, {"whenScaled", scaled}} {
		const msg = "retention-policy: must be Retain: DittoFS volumes hold the file system's data"
		switch f.value {
		case retain:
		case "":
			errs = append(errs, field.Required(rpPath.Child(f.name), msg))
		default:
			errs = append(errs, field.Invalid(rpPath.Child(f.name), string(f.value), msg))
		}
	}
	return errs
}
