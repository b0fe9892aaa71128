package e2e

import (
	"cmp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	newImage          = "registry.example/dittofs/dittofs:1.1.0"
	defaultCacheSize  = "5Gi"
	defaultCacheMount = "/data/cache"
)

// stsManifest is a StatefulSet as a user writes it by hand, rendered as YAML
// by yaml(): the text that goes to `kubectl apply -f -`.
type stsManifest struct {
	name     string
	managed  bool      // carries the dittofs.com/server label
	server   string    // the label's value
	image    string    // default registry.example/dittofs/dittofs:1.0.0
	replicas int       // default 1
	vcts     []vctSpec // in this order
	// emptyDirCache adds the pod-template volume {name: cache, emptyDir: {}}, the old way to a cache.
	emptyDirCache bool
	retention     string // "WHENDELETED/WHENSCALED", e.g. "Delete/Retain"; empty leaves the field out
}

type vctSpec struct {
	name, class, size string
}

// userVCTs are the two claims a user must write: metadata (storage class
// fast, which the cache inherits) and content.
func userVCTs() []vctSpec {
	return []vctSpec{{name: "metadata", class: "fast", size: "1Gi"}, {name: "content", size: "10Gi"}}
}

// dittofs is the usual managed StatefulSet: metadata and content storage,
// no cache, container "dittofs".
func dittofs(name string) stsManifest {
	return stsManifest{name: name, managed: true, server: name, vcts: userVCTs()}
}

func (m stsManifest) yaml() string {
	labels := func() map[string]string {
		return map[string]string{"app.kubernetes.io/name": "dittofs", "app.kubernetes.io/instance": m.name}
	}
	meta := metav1.ObjectMeta{Name: m.name, Labels: labels()}
	if m.managed {
		meta.Labels["dittofs.com/server"] = m.server // what the webhook keys on (SPEC §1)
	}
	c := corev1.Container{Name: "dittofs", Image: cmp.Or(m.image, "registry.example/dittofs/dittofs:1.0.0"),
		Ports: []corev1.ContainerPort{{Name: "nfs", ContainerPort: 2049}}}
	spec := appsv1.StatefulSetSpec{
		ServiceName: m.name,
		Replicas:    ptr.To(int32(cmp.Or(m.replicas, 1))),
		Selector:    &metav1.LabelSelector{MatchLabels: labels()},
	}
	if m.retention != "" {
		deleted, scaled, _ := strings.Cut(m.retention, "/")
		spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.PersistentVolumeClaimRetentionPolicyType(deleted),
			WhenScaled:  appsv1.PersistentVolumeClaimRetentionPolicyType(scaled),
		}
	}
	for _, v := range m.vcts {
		if v.name == "metadata" || v.name == "content" {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.name, MountPath: "/data/" + v.name})
		}
		pvc := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: v.name}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(v.size)},
			},
		}}
		if v.class != "" {
			pvc.Spec.StorageClassName = &v.class
		}
		spec.VolumeClaimTemplates = append(spec.VolumeClaimTemplates, pvc)
	}
	spec.Template = corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels()},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
	if m.emptyDirCache {
		empty := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		spec.Template.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: empty}}
	}
	// Without status, which a user does not write.
	return toYAML(map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec})
}

// named is the item of items called name, or nil.
func named[T any](items []T, name string, nameOf func(*T) string) *T {
	for i := range items {
		if nameOf(&items[i]) == name {
			return &items[i]
		}
	}
	return nil
}

func vct(sts *appsv1.StatefulSet, name string) *corev1.PersistentVolumeClaim {
	return named(sts.Spec.VolumeClaimTemplates, name, func(c *corev1.PersistentVolumeClaim) string { return c.Name })
}

func volume(sts *appsv1.StatefulSet, name string) *corev1.Volume {
	return named(sts.Spec.Template.Spec.Volumes, name, func(v *corev1.Volume) string { return v.Name })
}

func container(sts *appsv1.StatefulSet, name string) *corev1.Container {
	return named(sts.Spec.Template.Spec.Containers, name, func(c *corev1.Container) string { return c.Name })
}

func vctNames(sts *appsv1.StatefulSet) []string {
	var names []string
	for _, v := range sts.Spec.VolumeClaimTemplates {
		names = append(names, v.Name)
	}
	return names
}

func retention(sts *appsv1.StatefulSet) string {
	p := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if p == nil {
		return "(unset)"
	}
	return string(p.WhenDeleted) + "/" + string(p.WhenScaled)
}

// storage is what the webhook is about in a stored StatefulSet, as YAML for failure messages.
func storage(sts *appsv1.StatefulSet) string {
	if sts == nil {
		return "(not stored)\n"
	}
	return toYAML(map[string]any{"labels": sts.Labels, "generation": sts.Generation, "spec": sts.Spec})
}
