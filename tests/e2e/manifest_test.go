package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The names the webhook keys on (SPEC §1, §2).
const (
	labelServer       = "dittofs.com/server"
	annCacheSize      = "dittofs.com/cache-size"
	annCacheClass     = "dittofs.com/cache-storage-class"
	defaultImage      = "registry.example/dittofs/dittofs:1.0.0"
	newImage          = "registry.example/dittofs/dittofs:1.1.0"
	defaultCacheSize  = "5Gi"
	defaultCacheMount = "/data/cache"
)

// stsManifest is a StatefulSet as a user writes it by hand, rendered as YAML
// by yaml(): the text that goes to `kubectl apply -f -`.
type stsManifest struct {
	name        string
	managed     bool   // carries the dittofs.com/server label
	server      string // the label's value
	annotations map[string]string
	image       string    // default defaultImage
	replicas    int       // default 1
	vcts        []vctSpec // in this order
	// emptyDirCache adds the pod-template volume {name: cache, emptyDir: {}},
	// the old way of giving DittoFS a cache.
	emptyDirCache bool
	// retention is "WHENDELETED/WHENSCALED", e.g. "Delete/Retain"; empty
	// leaves the field out.
	retention string
}

type vctSpec struct {
	name, class, size string
}

// userVCTs are the two claims a user must write: metadata (storage class
// fast, which the cache inherits) and content.
func userVCTs() []vctSpec {
	return []vctSpec{
		{name: "metadata", class: "fast", size: "1Gi"},
		{name: "content", size: "10Gi"},
	}
}

// dittofs is the usual managed StatefulSet: metadata and content storage,
// no cache, container "dittofs".
func dittofs(name string) stsManifest {
	return stsManifest{name: name, managed: true, server: name, vcts: userVCTs()}
}

func (m stsManifest) yaml() string {
	image := m.image
	if image == "" {
		image = defaultImage
	}
	replicas := m.replicas
	if replicas == 0 {
		replicas = 1
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("apiVersion: apps/v1")
	p("kind: StatefulSet")
	p("metadata:")
	p("  name: %s", m.name)
	p("  labels:")
	p("    app.kubernetes.io/name: dittofs")
	p("    app.kubernetes.io/instance: %s", m.name)
	if m.managed {
		p("    %s: %q", labelServer, m.server)
	}
	if len(m.annotations) > 0 {
		p("  annotations:")
		for _, k := range slices.Sorted(maps.Keys(m.annotations)) {
			p("    %s: %q", k, m.annotations[k])
		}
	}
	p("spec:")
	p("  serviceName: %s", m.name)
	p("  replicas: %d", replicas)
	p("  selector:")
	p("    matchLabels:")
	p("      app.kubernetes.io/name: dittofs")
	p("      app.kubernetes.io/instance: %s", m.name)
	if m.retention != "" {
		deleted, scaled, _ := strings.Cut(m.retention, "/")
		p("  persistentVolumeClaimRetentionPolicy:")
		p("    whenDeleted: %s", deleted)
		p("    whenScaled: %s", scaled)
	}
	p("  template:")
	p("    metadata:")
	p("      labels:")
	p("        app.kubernetes.io/name: dittofs")
	p("        app.kubernetes.io/instance: %s", m.name)
	p("    spec:")
	p("      containers:")
	p("        - name: dittofs")
	p("          image: %s", image)
	p("          ports:")
	p("            - name: nfs")
	p("              containerPort: 2049")
	var mounts []vctSpec
	for _, v := range m.vcts {
		if v.name == "metadata" || v.name == "content" {
			mounts = append(mounts, v)
		}
	}
	if len(mounts) > 0 {
		p("          volumeMounts:")
		for _, v := range mounts {
			p("            - name: %s", v.name)
			p("              mountPath: /data/%s", v.name)
		}
	}
	if m.emptyDirCache {
		p("      volumes:")
		p("        - name: cache")
		p("          emptyDir: {}")
	}
	if len(m.vcts) > 0 {
		p("  volumeClaimTemplates:")
		for _, v := range m.vcts {
			p("    - metadata:")
			p("        name: %s", v.name)
			p("      spec:")
			p("        accessModes: [ReadWriteOnce]")
			if v.class != "" {
				p("        storageClassName: %s", v.class)
			}
			p("        resources:")
			p("          requests:")
			p("            storage: %s", v.size)
		}
	}
	return b.String()
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

func vctNames(sts *appsv1.StatefulSet) []string {
	var names []string
	for _, v := range sts.Spec.VolumeClaimTemplates {
		names = append(names, v.Name)
	}
	return names
}

func volume(sts *appsv1.StatefulSet, name string) *corev1.Volume {
	return named(sts.Spec.Template.Spec.Volumes, name, func(v *corev1.Volume) string { return v.Name })
}

func container(sts *appsv1.StatefulSet, name string) *corev1.Container {
	return named(sts.Spec.Template.Spec.Containers, name, func(c *corev1.Container) string { return c.Name })
}

// mountOf returns the container's mount of the volume name, or nil.
func mountOf(c *corev1.Container, name string) *corev1.VolumeMount {
	if c == nil {
		return nil
	}
	return named(c.VolumeMounts, name, func(m *corev1.VolumeMount) string { return m.Name })
}

func retention(sts *appsv1.StatefulSet) string {
	p := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if p == nil {
		return "(unset)"
	}
	return string(p.WhenDeleted) + "/" + string(p.WhenScaled)
}

// storage is the fields of a stored StatefulSet the webhook is about, as YAML,
// for failure messages.
func storage(sts *appsv1.StatefulSet) string {
	if sts == nil {
		return "(not stored)\n"
	}
	type claim struct {
		Name         string   `json:"name"`
		StorageClass *string  `json:"storageClassName,omitempty"`
		AccessModes  []string `json:"accessModes,omitempty"`
		Storage      string   `json:"storage,omitempty"`
	}
	var claims []claim
	for _, v := range sts.Spec.VolumeClaimTemplates {
		c := claim{Name: v.Name, StorageClass: v.Spec.StorageClassName}
		for _, m := range v.Spec.AccessModes {
			c.AccessModes = append(c.AccessModes, string(m))
		}
		if q, ok := v.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			c.Storage = q.String()
		}
		claims = append(claims, c)
	}
	mounts := map[string]any{}
	for _, c := range sts.Spec.Template.Spec.Containers {
		mounts[c.Name] = c.VolumeMounts
	}
	annotations := maps.Clone(sts.Annotations)
	delete(annotations, "kubectl.kubernetes.io/last-applied-configuration")
	return toYAML(map[string]any{
		"metadata": map[string]any{
			"labels": sts.Labels, "annotations": annotations,
			"generation": sts.Generation,
		},
		"spec.volumeClaimTemplates":                    claims,
		"spec.persistentVolumeClaimRetentionPolicy":    sts.Spec.PersistentVolumeClaimRetentionPolicy,
		"spec.template.spec.volumes":                   sts.Spec.Template.Spec.Volumes,
		"spec.template.spec.containers[].volumeMounts": mounts,
	})
}
