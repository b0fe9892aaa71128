package policies

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

// Rule IDs of the validating webhook (SPEC §3). Each field error the validator
// returns starts its detail with one of them; RuleOf reads it back.
const (
	RuleMetadataStorage = "metadata-storage"
	RuleContentStorage  = "content-storage"
	RuleCacheStorage    = "cache-storage"
	RuleRetentionPolicy = "retention-policy"
	RuleStorageSize     = "storage-size"
)

// Mutation IDs, reported in metrics and audit annotations.
const (
	MutationCacheTemplate    = "cache-vct"
	MutationCacheCarryOver   = "cache-vct-carry-over"
	MutationRetentionPolicy  = "retention-policy"
	MutationEmptyDirRemoved  = "cache-emptydir-removed"
	MutationCacheVolumeMount = "cache-mount"
)

// IsManaged reports whether sts carries the DittoFS server label. The value is
// not looked at: it usually names the server and may be empty.
func IsManaged(sts *appsv1.StatefulSet) bool {
	if sts == nil {
		return false
	}
	_, ok := sts.Labels[LabelServer]
	return ok
}

// claimTemplateIndex returns the index of the volumeClaimTemplate named name, or -1.
func claimTemplateIndex(sts *appsv1.StatefulSet, name string) int {
	if sts == nil {
		return -1
	}
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name == name {
			return i
		}
	}
	return -1
}

// hasCacheTemplate reports whether sts has a volumeClaimTemplate named cache.
func hasCacheTemplate(sts *appsv1.StatefulSet) bool {
	return claimTemplateIndex(sts, CacheVolume) >= 0
}

// mountsVolume returns the first mount of the volume named name, or nil.
func mountsVolume(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}
