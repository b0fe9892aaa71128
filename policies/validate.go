package policies

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation is the outcome of Validate.
type Validation struct {
	// Errs are the violations that deny the request.
	Errs field.ErrorList
	// Warned are the violations that would deny it but are allowed with a
	// warning, as the options' Action is warn.
	Warned field.ErrorList
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
// (Kyverno's allowExistingViolations); one the update introduces is denied,
// or allowed with a warning under the warn action.
func Validate(req Request, opts Options) Validation {
	var v Validation
	sts := req.Object
	if !IsManaged(sts) || (req.Operation != Create && req.Operation != Update) {
		return v
	}
	v.Warnings = ShadowedVolumeWarnings(sts, nil)
	var errs field.ErrorList
	switch {
	case req.Operation == Create:
		errs = ValidateStatefulSet(sts, nil)
	case !IsManaged(req.OldObject):
		errs = ValidateStatefulSetUpdate(sts, nil)
	default:
		had := map[[2]string]bool{}
		for _, e := range ValidateStatefulSetUpdate(req.OldObject, nil) {
			had[[2]string{e.Origin, e.Field}] = true
		}
		for _, e := range ValidateStatefulSetUpdate(sts, nil) {
			if !had[[2]string{e.Origin, e.Field}] {
				errs = append(errs, e)
				continue
			}
			v.Existing = append(v.Existing, e)
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s: existing violation of rule %s allowed on update; fix it: %s", e.Field, e.Origin, e.ErrorBody()))
		}
	}
	if !opts.warnOnly() {
		v.Errs = errs
		return v
	}
	v.Warned = errs
	for _, e := range errs {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%s: %s (allowed: --validation-action is warn; it will be denied under deny)", e.Origin, e.Error()))
	}
	return v
}

// ValidateStatefulSet returns every DittoFS storage violation of a StatefulSet
// being created. A missing cache template there means the mutating webhook,
// which adds it, did not run.
func ValidateStatefulSet(sts *StatefulSet, fldPath *field.Path) field.ErrorList {
	return validateStatefulSet(sts, fldPath, "the mutating webhook of dittofs-webhook, which adds it, did not run: check its MutatingWebhookConfiguration and that the server is reachable, or add the template yourself")
}

// ValidateStatefulSetUpdate returns the violations of an updated StatefulSet.
// A missing cache template cannot be added in place, so the advice is to
// recreate the StatefulSet.
func ValidateStatefulSetUpdate(sts *StatefulSet, fldPath *field.Path) field.ErrorList {
	return validateStatefulSet(sts, fldPath, "Kubernetes cannot add one to an existing StatefulSet; "+RecreateAdvice(sts))
}

func validateStatefulSet(sts *StatefulSet, fldPath *field.Path, cacheAdvice string) field.ErrorList {
	specPath := fldPath.Child("spec")
	allErrs := ValidateVolumeClaimTemplates(sts.Spec.VolumeClaimTemplates, specPath.Child("volumeClaimTemplates"), cacheAdvice)
	return append(allErrs, ValidateRetentionPolicy(sts.Spec.RetentionPolicy, specPath.Child("persistentVolumeClaimRetentionPolicy"))...)
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
func ValidateVolumeClaimTemplates(vcts []ClaimTemplate, fldPath *field.Path, cacheAdvice string) field.ErrorList {
	var allErrs field.ErrorList
	for _, st := range storageTemplates {
		i := -1
		for j := range vcts {
			if vcts[j].Name() == st.name {
				i = j
				break
			}
		}
		if i < 0 {
			advice := fmt.Sprintf("add a volumeClaimTemplate named %q for %s", st.name, st.role)
			if st.name == CacheVolume {
				advice = fmt.Sprintf("no volumeClaimTemplate named %q for %s: %s", st.name, st.role, cacheAdvice)
			}
			allErrs = append(allErrs, violation(field.Required(fldPath, ""), st.rule, advice))
			continue
		}
		allErrs = append(allErrs, validateStorageSize(&vcts[i], fldPath.Index(i))...)
	}
	return allErrs
}

func validateStorageSize(vct *ClaimTemplate, fldPath *field.Path) field.ErrorList {
	// The path is spelt out only for a violation: every request checks three
	// templates, and almost none violates.
	p := func() *field.Path {
		return fldPath.Child("spec", "resources", "requests").Key("storage")
	}
	q, ok := vct.Spec.Resources.Requests["storage"]
	if !ok {
		return field.ErrorList{violation(field.Required(p(), ""), RuleStorageSize, fmt.Sprintf("the %q volumeClaimTemplate must request a storage size, e.g. 10Gi", vct.Name()))}
	}
	if q.Sign() <= 0 {
		return field.ErrorList{violation(field.Invalid(p(), q.String(), ""), RuleStorageSize, fmt.Sprintf("the %q volumeClaimTemplate must request a positive storage size, e.g. 10Gi", vct.Name()))}
	}
	return nil
}

// ValidateRetentionPolicy checks that PVCs are retained both when the
// StatefulSet is deleted and when it is scaled down (retention-policy).
func ValidateRetentionPolicy(rp *RetentionPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	var deleted, scaled string
	if rp != nil {
		deleted, scaled = rp.WhenDeleted, rp.WhenScaled
	}
	const advice = "must be Retain: DittoFS volumes hold the file system's data (the mutating webhook sets it; did it run?)"
	for _, f := range []struct{ name, value string }{{"whenDeleted", deleted}, {"whenScaled", scaled}} {
		switch f.value {
		case Retain:
		case "":
			allErrs = append(allErrs, violation(field.Required(fldPath.Child(f.name), ""), RuleRetentionPolicy, advice))
		default:
			allErrs = append(allErrs, violation(field.Invalid(fldPath.Child(f.name), f.value, ""), RuleRetentionPolicy, advice))
		}
	}
	return allErrs
}

// ShadowedVolumeWarnings warns about pod-template volumes named metadata or
// content: the StatefulSet controller mounts the claim of the template of that
// name instead, so the volume is dead weight or a mistake — but not a denial.
func ShadowedVolumeWarnings(sts *StatefulSet, fldPath *field.Path) []string {
	var warnings []string
	for i, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name != MetadataVolume && vol.Name != ContentVolume {
			continue
		}
		msg := fmt.Sprintf("volume %q is shadowed by the volumeClaimTemplate of that name: pods mount the claim, not this volume; remove it", vol.Name)
		if claimTemplateIndex(sts, vol.Name) < 0 {
			msg = fmt.Sprintf("volume %q is not DittoFS storage: the %s store must be a volumeClaimTemplate named %q; remove this volume", vol.Name, vol.Name, vol.Name)
		}
		warnings = append(warnings, fldPath.Child("spec", "template", "spec", "volumes").Index(i).String()+": "+msg)
	}
	return warnings
}

// violation makes e a violation of rule: the rule ID travels as the error's
// Origin, and the detail starts with it, since kubectl prints only the causes
// of a 422 and each must name its rule and stand alone.
func violation(e *field.Error, rule, detail string) *field.Error {
	e.Detail = rule + ": " + detail
	return e.WithOrigin(rule)
}

// RuleOf returns the rule ID of a violation returned by this package, or "".
func RuleOf(e *field.Error) string {
	for _, r := range Rules {
		if e.Origin == r {
			return r
		}
	}
	return ""
}
