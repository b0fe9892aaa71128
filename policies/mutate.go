package policies

import (
	"fmt"
	"path"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Mutation is the outcome of Mutate: a JSON patch against the request object,
// or the reasons to deny it.
type Mutation struct {
	// Patch is the RFC 6902 patch, empty when nothing changes. It touches only
	// the paths SPEC §2 names, so fields this build does not know survive.
	Patch []jsonpatch.Operation
	// Warnings are shown to the user (kubectl prints them).
	Warnings []string
	// Applied lists the mutation IDs of the patch, in order.
	Applied []string
	// Audit holds audit annotations (the apiserver prefixes the webhook name).
	Audit map[string]string
	// Errs is non-empty when the object must be denied (422 Invalid).
	Errs field.ErrorList
}

// Changed reports whether the mutation patches the object.
func (m *Mutation) Changed() bool { return len(m.Patch) > 0 }

// Mutate gives a managed StatefulSet its persistent cache and the Retain/Retain
// retention policy (SPEC §2, M1–M4 on CREATE, U1–U3 on UPDATE). It is
// idempotent: run on its own output it returns no patch.
func Mutate(req Request, opts Options) Mutation {
	var m Mutation
	sts := req.Object
	if !IsManaged(sts) || (req.Operation != Create && req.Operation != Update) {
		return m
	}
	specPath := field.NewPath("spec")
	hasCache := hasCacheTemplate(sts)
	if !hasCache {
		if req.Operation == Update {
			hasCache = m.carryOverCache(req, specPath)
		} else {
			m.injectCache(sts, opts, specPath)
			hasCache = true
		}
	}
	m.retainClaims(sts, specPath)
	if hasCache {
		podSpec := specPath.Child("template").Child("spec")
		m.removeEmptyDirCache(req, podSpec)
		m.mountCache(req, opts, podSpec)
	}
	if len(m.Errs) > 0 {
		m.Patch, m.Applied, m.Audit = nil, nil, nil
		return m
	}
	if len(m.Applied) > 0 {
		m.audit("mutations", strings.Join(m.Applied, ","))
	}
	return m
}

// injectCache is M1: append a cache volumeClaimTemplate sized by the
// cache-size annotation or the default, of the class of the cache-storage-class
// annotation, else of the metadata template.
func (m *Mutation) injectCache(sts *appsv1.StatefulSet, opts Options, specPath *field.Path) {
	size := opts.DefaultCacheSize
	if v, ok := sts.Annotations[AnnotationCacheSize]; ok {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			m.Errs = append(m.Errs, field.Invalid(
				field.NewPath("metadata").Child("annotations").Key(AnnotationCacheSize), v,
				fmt.Sprintf("annotation %s must be a positive quantity such as 5Gi (the size of the cache volumeClaimTemplate)", AnnotationCacheSize)))
			return
		}
		size = q
	}
	var class *string
	if v, ok := sts.Annotations[AnnotationCacheStorageClass]; ok {
		class = &v
	} else if i := claimTemplateIndex(sts, MetadataVolume); i >= 0 && sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName != nil {
		c := *sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName
		class = &c
	}
	tmpl := cacheClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		StorageClassName: class,
	}}
	tmpl.Metadata.Name = CacheVolume
	m.appendTo(specPath.Child("volumeClaimTemplates"), sts.Spec.VolumeClaimTemplates == nil, tmpl)
	m.Applied = append(m.Applied, MutationCacheTemplate)
	m.audit("cache-size", size.String())
	if class != nil {
		m.audit("cache-storage-class", *class)
	}
}

// cacheClaimTemplate is the injected volumeClaimTemplate as JSON: a typed
// PersistentVolumeClaim would also write an empty status.
type cacheClaimTemplate struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec corev1.PersistentVolumeClaimSpec `json:"spec"`
}

// carryOverCache is U1/U3: a cache template is never invented on UPDATE, but the
// stored one is put back, verbatim and at its old position, when the new object
// lacks it — what re-applying the original manifest sends.
func (m *Mutation) carryOverCache(req Request, specPath *field.Path) bool {
	old := req.OldObject
	oi := claimTemplateIndex(old, CacheVolume)
	if oi < 0 {
		m.warn(specPath.Child("volumeClaimTemplates"), fmt.Sprintf(
			"no %q volumeClaimTemplate, and Kubernetes cannot add one to an existing StatefulSet, so DittoFS has no persistent cache; to get it, recreate the StatefulSet: %s, then apply it again",
			CacheVolume, orphanDeleteCommand(req.Object)))
		return false
	}
	var value any = old.Spec.VolumeClaimTemplates[oi]
	if len(req.OldCacheTemplate) > 0 {
		value = req.OldCacheTemplate
	}
	vcts := req.Object.Spec.VolumeClaimTemplates
	p := specPath.Child("volumeClaimTemplates")
	switch {
	case vcts == nil:
		m.add(p, []any{value})
	case oi >= len(vcts):
		m.add(p.Key("-"), value)
	default:
		m.add(p.Index(oi), value)
	}
	m.Applied = append(m.Applied, MutationCacheCarryOver)
	return true
}

// orphanDeleteCommand is the advice for a StatefulSet that cannot get a cache
// in place: deleting it with --cascade=orphan keeps its pods and PVCs.
func orphanDeleteCommand(sts *appsv1.StatefulSet) string {
	// The SPEC's own words first, then the namespace, so the advice reads as
	// `kubectl delete statefulset NAME --cascade=orphan` does.
	cmd := "kubectl delete statefulset " + sts.Name + " --cascade=orphan"
	if sts.Namespace != "" {
		cmd += " -n " + sts.Namespace
	}
	return cmd
}

// retainClaims is M2: both retention fields end up Retain. Adding a missing
// field is silent; overriding an explicit value warns every time.
func (m *Mutation) retainClaims(sts *appsv1.StatefulSet, specPath *field.Path) {
	p := specPath.Child("persistentVolumeClaimRetentionPolicy")
	rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil {
		m.add(p, appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		})
		m.Applied = append(m.Applied, MutationRetentionPolicy)
		return
	}
	changed := false
	for _, f := range []struct {
		name  string
		value appsv1.PersistentVolumeClaimRetentionPolicyType
	}{{"whenDeleted", rp.WhenDeleted}, {"whenScaled", rp.WhenScaled}} {
		fp := p.Child(f.name)
		switch f.value {
		case appsv1.RetainPersistentVolumeClaimRetentionPolicyType:
			continue
		case "":
			m.add(fp, appsv1.RetainPersistentVolumeClaimRetentionPolicyType)
		default:
			m.Patch = append(m.Patch, jsonpatch.NewOperation("replace", pointer(fp), appsv1.RetainPersistentVolumeClaimRetentionPolicyType))
			m.warn(fp, fmt.Sprintf("%q replaced by %q: DittoFS volumes hold the file system's data, so their PVCs are always retained", f.value, appsv1.RetainPersistentVolumeClaimRetentionPolicyType))
		}
		changed = true
	}
	if changed {
		m.Applied = append(m.Applied, MutationRetentionPolicy)
	}
}

// removeEmptyDirCache is M3: a pod-template emptyDir named cache would lose the
// write-ahead log on restart; the persistent template replaces it. Any other
// kind of volume of that name is denied: the name is reserved.
func (m *Mutation) removeEmptyDirCache(req Request, podSpec *field.Path) {
	vols := req.Object.Spec.Template.Spec.Volumes
	p := podSpec.Child("volumes")
	removed := false
	for i := len(vols) - 1; i >= 0; i-- { // backwards, so earlier indexes stay valid
		if vols[i].Name != CacheVolume {
			continue
		}
		if vols[i].EmptyDir == nil {
			m.Errs = append(m.Errs, field.Invalid(p.Index(i).Child("name"), CacheVolume,
				fmt.Sprintf("the volume name %q is reserved for the persistent DittoFS cache volumeClaimTemplate: rename this volume", CacheVolume)))
			continue
		}
		m.Patch = append(m.Patch, jsonpatch.NewOperation("remove", pointer(p.Index(i)), nil))
		removed = true
		// On UPDATE the stored object has no such volume (it was removed at
		// creation): removing it again only restores the stored state.
		if req.Operation != Update || hasEmptyDirCache(req.OldObject) {
			m.warn(p.Index(i), fmt.Sprintf("emptyDir volume %q removed: data in an emptyDir is lost on restart, the persistent %q volumeClaimTemplate replaces it", CacheVolume, CacheVolume))
		}
	}
	if removed {
		m.Applied = append(m.Applied, MutationEmptyDirRemoved)
	}
}

func hasEmptyDirCache(sts *appsv1.StatefulSet) bool {
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

// mountCache is M4: the DittoFS container mounts the cache at the configured
// path, unless it mounts cache already; when that cannot be done, a warning
// says why and nothing is added.
func (m *Mutation) mountCache(req Request, opts Options, podSpec *field.Path) {
	sts := req.Object
	ci, why := dittofsContainer(sts)
	if ci < 0 {
		m.warn(podSpec.Child("containers"), "no cache volumeMount added: "+why)
		return
	}
	c := &sts.Spec.Template.Spec.Containers[ci]
	if mountsVolume(c, CacheVolume) != nil {
		return
	}
	cp := podSpec.Child("containers").Index(ci)
	want := path.Clean(opts.CacheMountPath)
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == want {
			m.warn(cp.Child("volumeMounts"), fmt.Sprintf("no cache volumeMount added to container %q: volume %q is already mounted at %s", c.Name, vm.Name, vm.MountPath))
			return
		}
	}
	m.appendTo(cp.Child("volumeMounts"), c.VolumeMounts == nil, corev1.VolumeMount{Name: CacheVolume, MountPath: opts.CacheMountPath})
	m.Applied = append(m.Applied, MutationCacheVolumeMount)
}

// dittofsContainer picks the container that runs DittoFS: the one the
// annotation names (no fallback when it names none), else the one named
// dittofs, else the only one. It returns -1 and the reason when none fits.
func dittofsContainer(sts *appsv1.StatefulSet) (int, string) {
	cs := sts.Spec.Template.Spec.Containers
	find := func(name string) int {
		for i := range cs {
			if cs[i].Name == name {
				return i
			}
		}
		return -1
	}
	if name, ok := sts.Annotations[AnnotationContainer]; ok {
		if i := find(name); i >= 0 {
			return i, ""
		}
		return -1, fmt.Sprintf("annotation %s names container %q, which the pod template does not have", AnnotationContainer, name)
	}
	if i := find(DefaultContainer); i >= 0 {
		return i, ""
	}
	switch len(cs) {
	case 1:
		return 0, ""
	case 0:
		return -1, "the pod template has no containers"
	default:
		return -1, fmt.Sprintf("cannot tell which of the %d containers runs DittoFS: name it %q or set the annotation %s", len(cs), DefaultContainer, AnnotationContainer)
	}
}

// appendTo appends value to the array at p, creating the array when absent
// (an "add" of "/-" on a missing array fails).
func (m *Mutation) appendTo(p *field.Path, absent bool, value any) {
	if absent {
		m.add(p, []any{value})
		return
	}
	m.add(p.Key("-"), value)
}

func (m *Mutation) add(p *field.Path, value any) {
	m.Patch = append(m.Patch, jsonpatch.NewOperation("add", pointer(p), value))
}

func (m *Mutation) warn(p *field.Path, msg string) {
	m.Warnings = append(m.Warnings, p.String()+": "+msg)
}

func (m *Mutation) audit(key, value string) {
	if m.Audit == nil {
		m.Audit = map[string]string{}
	}
	m.Audit[key] = value
}
