package policies

import (
	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Labels and annotations users put on a DittoFS StatefulSet.
const (
	// LabelServer marks a StatefulSet as a DittoFS server, whatever its value.
	LabelServer = "dittofs.com/server"
	// AnnotationCacheSize overrides the size of the injected cache volumeClaimTemplate.
	AnnotationCacheSize = "dittofs.com/cache-size"
	// AnnotationCacheStorageClass overrides the storage class of the injected cache volumeClaimTemplate.
	AnnotationCacheStorageClass = "dittofs.com/cache-storage-class"
	// AnnotationContainer names the container that runs DittoFS and gets the cache mount.
	AnnotationContainer = "dittofs.com/container"
)

// Names of the DittoFS volumeClaimTemplates and of the default DittoFS container.
const (
	MetadataVolume   = "metadata"
	ContentVolume    = "content"
	CacheVolume      = "cache"
	DefaultContainer = "dittofs"
)

// Retain is the only PVC retention policy DittoFS storage may have.
const Retain = "Retain"

// Rule IDs of the validating webhook (SPEC §3). Each violation carries its
// rule ID as the field.Error's Origin (RuleOf), and its detail starts with it
// for kubectl users, who see only the causes of a 422.
const (
	RuleMetadataStorage = "metadata-storage"
	RuleContentStorage  = "content-storage"
	RuleCacheStorage    = "cache-storage"
	RuleRetentionPolicy = "retention-policy"
	RuleStorageSize     = "storage-size"
)

// Rules lists every rule ID of the validating webhook, in SPEC §3's order.
var Rules = []string{RuleMetadataStorage, RuleContentStorage, RuleCacheStorage, RuleRetentionPolicy, RuleStorageSize}

// Rule IDs of the mutating webhook's two denials (SPEC §2): a cache-size
// annotation that is not a positive quantity (M1) and a pod volume named
// cache that is not an emptyDir (M3). The webhook's 422 names them by their
// field, as Kubernetes' own validation does; the in-tree
// ValidatingAdmissionPolicy, which denies them after the mutation, starts its
// message with the ID.
const (
	RuleCacheSize           = "cache-size"
	RuleReservedCacheVolume = "reserved-cache-volume"
)

// MutationRules lists the mutating webhook's rule IDs, in the order it checks
// them.
var MutationRules = []string{RuleCacheSize, RuleReservedCacheVolume}

// RuleOrder is every rule ID, the mutating webhook's first, in the order a
// request meets them: the mutating webhook's denials, then each storage
// template's presence, the templates' sizes and the retention policy. The
// in-tree ValidatingAdmissionPolicy's validations (deploy/in-tree) follow it,
// and it reports only the first that fails.
var RuleOrder = []string{RuleCacheSize, RuleReservedCacheVolume, RuleMetadataStorage, RuleContentStorage, RuleCacheStorage, RuleStorageSize, RuleRetentionPolicy}

// Mutation IDs, reported in metrics and audit annotations.
const (
	MutationCacheTemplate    = "cache-vct"
	MutationCacheCarryOver   = "cache-vct-carry-over"
	MutationRetentionPolicy  = "retention-policy"
	MutationEmptyDirRemoved  = "cache-emptydir-removed"
	MutationCacheVolumeMount = "cache-mount"
)

// Mutations lists every mutation ID.
var Mutations = []string{MutationCacheTemplate, MutationCacheCarryOver, MutationRetentionPolicy, MutationEmptyDirRemoved, MutationCacheVolumeMount}

// IsManaged reports whether sts carries the DittoFS server label. The value is
// not looked at: it usually names the server and may be empty.
func IsManaged(sts *StatefulSet) bool {
	if sts == nil {
		return false
	}
	_, ok := sts.Metadata.Labels[LabelServer]
	return ok
}

// ManagePatch returns the JSON patch that labels an unmanaged sts as a DittoFS
// server, the label's value being its name (empty when the name is not a valid
// label value, e.g. longer than 63 characters); nil when sts is already
// managed. It is what `eval --manage` adds to a manifest: an existing
// StatefulSet cannot be labelled in place when it has no cache (U3), so the
// label goes into the manifest it is recreated from.
func ManagePatch(sts *StatefulSet) []jsonpatch.Operation {
	if sts == nil || IsManaged(sts) {
		return nil
	}
	value := sts.Metadata.Name
	if len(validation.IsValidLabelValue(value)) > 0 {
		value = ""
	}
	labels := field.NewPath("metadata", "labels")
	if sts.Metadata.Labels == nil {
		return []jsonpatch.Operation{jsonpatch.NewOperation("add", pointer(labels), map[string]string{LabelServer: value})}
	}
	return []jsonpatch.Operation{jsonpatch.NewOperation("add", pointer(labels.Key(LabelServer)), value)}
}

// claimTemplateIndex returns the index of the volumeClaimTemplate named name, or -1.
func claimTemplateIndex(sts *StatefulSet, name string) int {
	if sts == nil {
		return -1
	}
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name() == name {
			return i
		}
	}
	return -1
}

// HasCacheTemplate reports whether sts has a volumeClaimTemplate named cache:
// without one, DittoFS has no persistent cache.
func HasCacheTemplate(sts *StatefulSet) bool {
	return claimTemplateIndex(sts, CacheVolume) >= 0
}

// hasEmptyDirCache reports whether sts has a pod volume named cache that is an emptyDir.
func hasEmptyDirCache(sts *StatefulSet) bool {
	if sts == nil {
		return false
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == CacheVolume && v.EmptyDir != nil {
			return true
		}
	}
	return false
}
