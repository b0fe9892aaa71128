package policies

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation is the outcome of Validate.
type Validation struct {
	// Errs are the violations that deny the request, each detail starting with
	// its rule ID.
	Errs field.ErrorList
	// Existing are violations the stored object already had on UPDATE: allowed,
	// with a warning, so an old StatefulSet can still be scaled or fixed.
	Existing field.ErrorList
	// Warnings are shown to the user whether or not the request is denied.
	Warnings []string
}

// Allowed reports whether the request may proceed.
func (v *Validation) Allowed() bool { return len(v.Errs) == 0 }

// Validate checks a managed StatefulSet on CREATE and UPDATE (SPEC §3). All
// violations are reported at once. On UPDATE a violation the old managed object
// already had — same rule, same field — is allowed with a warning instead
// (Kyverno's allowExistingViolations); one the update introduces is denied.
func Validate(req Request) Validation {
	var v Validation
	sts := req.Object
	if !IsManaged(sts) || (req.Operation != Create && req.Operation != Update) {
		return v
	}
	v.Warnings = ShadowedVolumeWarnings(sts, nil)
	if req.Operation == Create {
		v.Errs = ValidateStatefulSet(sts, nil)
		return v
	}
	errs := ValidateStatefulSetUpdate(sts, nil)
	if !IsManaged(req.OldObject) {
		v.Errs = errs
		return v
	}
	had := map[string]bool{}
	for _, e := range ValidateStatefulSetUpdate(req.OldObject, nil) {
		had[violationKey(e)] = true
	}
	for _, e := range errs {
		if had[violationKey(e)] {
			v.Existing = append(v.Existing, e)
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s: existing violation of rule %s allowed on update; fix it: %s", e.Field, RuleOf(e), e.ErrorBody()))
		} else {
			v.Errs = append(v.Errs, e)
		}
	}
	return v
}

func violationKey(e *field.Error) string { return RuleOf(e) + "\x00" + e.Field }

// ValidateStatefulSet returns every DittoFS storage violation of a StatefulSet
// being created. A missing cache template there means the mutating webhook,
// which adds it, did not run.
func ValidateStatefulSet(sts *appsv1.StatefulSet, fldPath *field.Path) field.ErrorList {
	return validateStatefulSet(sts, fldPath, "the mutating webhook of dittofs-webhook, which adds it, did not run: check its MutatingWebhookConfiguration and that the server is reachable, or add the template yourself")
}

// ValidateStatefulSetUpdate returns the violations of an updated StatefulSet.
// A missing cache template cannot be added in place, so the advice is to
// recreate the StatefulSet.
func ValidateStatefulSetUpdate(sts *appsv1.StatefulSet, fldPath *field.Path) field.ErrorList {
	return validateStatefulSet(sts, fldPath, "Kubernetes cannot add one to an existing StatefulSet; recreate it: "+orphanDeleteCommand(sts)+", then apply it again")
}

func validateStatefulSet(sts *appsv1.StatefulSet, fldPath *field.Path, cacheAdvice string) field.ErrorList {
	specPath := fldPath.Child("spec")
	allErrs := ValidateVolumeClaimTemplates(sts.Spec.VolumeClaimTemplates, specPath.Child("volumeClaimTemplates"), cacheAdvice)
	allErrs = append(allErrs, ValidateRetentionPolicy(sts.Spec.PersistentVolumeClaimRetentionPolicy, specPath.Child("persistentVolumeClaimRetentionPolicy"))...)
	return allErrs
}

// storageTemplates are the volumeClaimTemplates DittoFS needs, in the order
// their violations are reported.
var storageTemplates = []struct {
	name, rule, role string
}{
	{MetadataVolume, RuleMetadataStorage, "the DittoFS metadata store"},
	{ContentVolume, RuleContentStorage, "the DittoFS content store"},
	{CacheVolume, RuleCacheStorage, "the DittoFS write-ahead-log cache"},
}

// ValidateVolumeClaimTemplates checks that the metadata, content and cache
// templates exist (metadata-storage, content-storage, cache-storage) and each
// requests a positive storage size (storage-size). cacheAdvice says what to do
// about a missing cache template.
func ValidateVolumeClaimTemplates(vcts []corev1.PersistentVolumeClaim, fldPath *field.Path, cacheAdvice string) field.ErrorList {
	var allErrs field.ErrorList
	for _, st := range storageTemplates {
		i := -1
		for j := range vcts {
			if vcts[j].Name == st.name {
				i = j
				break
			}
		}
		if i < 0 {
			advice := fmt.Sprintf("add a volumeClaimTemplate named %q for %s", st.name, st.role)
			if st.name == CacheVolume {
				advice = fmt.Sprintf("no volumeClaimTemplate named %q for %s: %s", st.name, st.role, cacheAdvice)
			}
			allErrs = append(allErrs, field.Required(fldPath, violation(st.rule, advice)))
			continue
		}
		allErrs = append(allErrs, validateStorageSize(&vcts[i], fldPath.Index(i))...)
	}
	return allErrs
}

func validateStorageSize(vct *corev1.PersistentVolumeClaim, fldPath *field.Path) field.ErrorList {
	// The path is spelt out only for a violation: every request checks three
	// templates, and almost none violates.
	p := func() *field.Path {
		return fldPath.Child("spec").Child("resources").Child("requests").Key(string(corev1.ResourceStorage))
	}
	q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return field.ErrorList{field.Required(p(), violation(RuleStorageSize, fmt.Sprintf("the %q volumeClaimTemplate must request a storage size, e.g. 10Gi", vct.Name)))}
	}
	if q.Sign() <= 0 {
		return field.ErrorList{field.Invalid(p(), q.String(), violation(RuleStorageSize, fmt.Sprintf("the %q volumeClaimTemplate must request a positive storage size, e.g. 10Gi", vct.Name)))}
	}
	return nil
}

// ValidateRetentionPolicy checks that PVCs are retained both when the
// StatefulSet is deleted and when it is scaled down (retention-policy).
func ValidateRetentionPolicy(rp *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	var deleted, scaled appsv1.PersistentVolumeClaimRetentionPolicyType
	if rp != nil {
		deleted, scaled = rp.WhenDeleted, rp.WhenScaled
	}
	for _, f := range []struct {
		name  string
		value appsv1.PersistentVolumeClaimRetentionPolicyType
	}{{"whenDeleted", deleted}, {"whenScaled", scaled}} {
		const advice = "must be Retain: DittoFS volumes hold the file system's data (the mutating webhook sets it; did it run?)"
		switch f.value {
		case appsv1.RetainPersistentVolumeClaimRetentionPolicyType:
		case "":
			allErrs = append(allErrs, field.Required(fldPath.Child(f.name), violation(RuleRetentionPolicy, advice)))
		default:
			allErrs = append(allErrs, field.Invalid(fldPath.Child(f.name), string(f.value), violation(RuleRetentionPolicy, advice)))
		}
	}
	return allErrs
}

// ShadowedVolumeWarnings warns about pod-template volumes named metadata or
// content: the StatefulSet controller mounts the claim of the template of that
// name instead, so the volume is dead weight or a mistake — but not a denial.
func ShadowedVolumeWarnings(sts *appsv1.StatefulSet, fldPath *field.Path) []string {
	var warnings []string
	var p *field.Path // spelt out for the first warning
	for i, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name != MetadataVolume && vol.Name != ContentVolume {
			continue
		}
		if p == nil {
			p = fldPath.Child("spec").Child("template").Child("spec").Child("volumes")
		}
		msg := fmt.Sprintf("volume %q is shadowed by the volumeClaimTemplate of that name: pods mount the claim, not this volume; remove it", vol.Name)
		if claimTemplateIndex(sts, vol.Name) < 0 {
			msg = fmt.Sprintf("volume %q is not DittoFS storage: the %s store must be a volumeClaimTemplate named %q; remove this volume", vol.Name, vol.Name, vol.Name)
		}
		warnings = append(warnings, p.Index(i).String()+": "+msg)
	}
	return warnings
}

// violation prefixes a detail with its rule ID: kubectl prints only the causes
// of a 422, so each must name its rule and stand alone.
func violation(rule, detail string) string { return rule + ": " + detail }

// RuleOf returns the rule ID of a violation returned by this package, or "".
func RuleOf(e *field.Error) string {
	rule, _, ok := strings.Cut(e.Detail, ": ")
	if !ok {
		return ""
	}
	switch rule {
	case RuleMetadataStorage, RuleContentStorage, RuleCacheStorage, RuleRetentionPolicy, RuleStorageSize:
		return rule
	}
	return ""
}
