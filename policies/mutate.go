package policies

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
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
	// Errs is non-empty when the object must be denied (422 Invalid). Under
	// the warn action they are warnings instead, and Errs stays empty.
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
	podSpec := specPath.Child("template", "spec")
	hasCache := HasCacheTemplate(sts)
	var size resource.Quantity
	if !hasCache && req.Operation == Create {
		size = m.cacheSize(sts, opts)
	}
	if hasCache || req.Operation == Create || HasCacheTemplate(req.OldObject) {
		// M3 applies: the result has a cache template.
		m.reservedCacheVolumes(sts, podSpec)
	}
	denied := len(m.Errs) > 0
	if denied && opts.warnOnly() {
		// Warn-only: what would be denied is said, and no cache is injected
		// where it would have been denied.
		for _, e := range m.Errs {
			m.Warnings = append(m.Warnings, e.Error()+" (allowed: --validation-action is warn; denied under deny, and no cache was injected)")
		}
		m.Errs = nil
	}
	if !hasCache {
		switch {
		case req.Operation == Update:
			hasCache = m.carryOverCache(req, specPath)
		case !denied:
			m.injectCache(sts, size, specPath)
			hasCache = true
		default:
			// Denied: the other rules still run, for their warnings.
			hasCache = !opts.warnOnly()
		}
	}
	m.retainClaims(sts, specPath)
	if hasCache {
		m.removeEmptyDirCache(req, podSpec)
		m.mountCache(req, opts, podSpec)
	}
	if len(m.Errs) > 0 {
		return Mutation{Errs: m.Errs, Warnings: m.Warnings}
	}
	if len(m.Applied) > 0 {
		m.audit("mutations", strings.Join(m.Applied, ","))
	}
	return m
}

// cacheSize is the size M1 gives the cache: the cache-size annotation, which
// must be a positive quantity, else the default.
func (m *Mutation) cacheSize(sts *StatefulSet, opts Options) resource.Quantity {
	v, ok := sts.Metadata.Annotations[AnnotationCacheSize]
	if !ok {
		return opts.DefaultCacheSize
	}
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() <= 0 {
		m.Errs = append(m.Errs, field.Invalid(
			field.NewPath("metadata", "annotations").Key(AnnotationCacheSize), v,
			fmt.Sprintf("annotation %s must be a positive quantity such as 5Gi (the size of the cache volumeClaimTemplate)", AnnotationCacheSize)))
	}
	return q
}

// reservedCacheVolumes is M3's denial: a pod volume named cache that is not
// an emptyDir; the name is reserved for the persistent cache.
func (m *Mutation) reservedCacheVolumes(sts *StatefulSet, podSpec *field.Path) {
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == CacheVolume && v.EmptyDir == nil {
			m.Errs = append(m.Errs, field.Invalid(podSpec.Child("volumes").Index(i).Child("name"), CacheVolume,
				fmt.Sprintf("the volume name %q is reserved for the persistent DittoFS cache volumeClaimTemplate: rename this volume", CacheVolume)))
		}
	}
}

// injectCache is M1: append a cache volumeClaimTemplate of the given size, of
// the class of the cache-storage-class annotation, else of the metadata
// template.
func (m *Mutation) injectCache(sts *StatefulSet, size resource.Quantity, specPath *field.Path) {
	var class *string
	if v, ok := sts.Metadata.Annotations[AnnotationCacheStorageClass]; ok {
		class = &v
	} else if i := claimTemplateIndex(sts, MetadataVolume); i >= 0 {
		class = sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName
	}
	tmpl := cacheClaimTemplate{Metadata: claimMeta{Name: CacheVolume}, Spec: claimSpec{
		AccessModes:      []string{"ReadWriteOnce"},
		Resources:        claimResources{Requests: map[string]resource.Quantity{"storage": size}},
		StorageClassName: class,
	}}
	m.appendTo(specPath.Child("volumeClaimTemplates"), sts.Spec.VolumeClaimTemplates == nil, tmpl)
	m.Applied = append(m.Applied, MutationCacheTemplate)
	m.audit("cache-size", size.String())
	if class != nil {
		m.audit("cache-storage-class", *class)
	}
}

// cacheClaimTemplate is the injected volumeClaimTemplate as JSON, with only the
// fields M1 sets (a typed PersistentVolumeClaim would also write an empty status).
type cacheClaimTemplate struct {
	Metadata claimMeta `json:"metadata"`
	Spec     claimSpec `json:"spec"`
}

type claimMeta struct {
	Name string `json:"name"`
}

type claimSpec struct {
	AccessModes      []string       `json:"accessModes"`
	Resources        claimResources `json:"resources"`
	StorageClassName *string        `json:"storageClassName,omitempty"`
}

type claimResources struct {
	Requests map[string]resource.Quantity `json:"requests"`
}

// carryOverCache is U1/U3: a cache template is never invented on UPDATE, but the
// stored one is put back, verbatim and at its old position, when the new object
// lacks it — what re-applying the original manifest sends.
func (m *Mutation) carryOverCache(req Request, specPath *field.Path) bool {
	old := req.OldObject
	oi := claimTemplateIndex(old, CacheVolume)
	if oi < 0 {
		m.warn(specPath.Child("volumeClaimTemplates"), fmt.Sprintf(
			"no %q volumeClaimTemplate, and Kubernetes cannot add one to an existing StatefulSet, so DittoFS has no persistent cache; %s",
			CacheVolume, RecreateAdvice(req.Object)))
		return false
	}
	var value any = json.RawMessage(old.Spec.VolumeClaimTemplates[oi].Raw)
	if len(old.Spec.VolumeClaimTemplates[oi].Raw) == 0 {
		value = old.Spec.VolumeClaimTemplates[oi] // a view built by hand: its fields only
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

// retainClaims is M2: both retention fields end up Retain. Adding a missing
// field is silent; overriding an explicit value warns every time.
func (m *Mutation) retainClaims(sts *StatefulSet, specPath *field.Path) {
	p := specPath.Child("persistentVolumeClaimRetentionPolicy")
	rp := sts.Spec.RetentionPolicy
	if rp == nil {
		m.add(p, RetentionPolicy{WhenDeleted: Retain, WhenScaled: Retain})
		m.Applied = append(m.Applied, MutationRetentionPolicy)
		return
	}
	changed := false
	for _, f := range []struct{ name, value string }{{"whenDeleted", rp.WhenDeleted}, {"whenScaled", rp.WhenScaled}} {
		fp := p.Child(f.name)
		switch f.value {
		case Retain:
			continue
		case "":
			m.add(fp, Retain)
		default:
			m.Patch = append(m.Patch, jsonpatch.NewOperation("replace", pointer(fp), Retain))
			m.warn(fp, fmt.Sprintf("%q replaced by %q: DittoFS volumes hold the file system's data, so their PVCs are always retained", f.value, Retain))
		}
		changed = true
	}
	if changed {
		m.Applied = append(m.Applied, MutationRetentionPolicy)
	}
}

// removeEmptyDirCache is M3: a pod-template emptyDir named cache would lose the
// write-ahead log on restart; the persistent template replaces it.
func (m *Mutation) removeEmptyDirCache(req Request, podSpec *field.Path) {
	vols := req.Object.Spec.Template.Spec.Volumes
	p := podSpec.Child("volumes")
	removed := false
	for i := len(vols) - 1; i >= 0; i-- { // backwards, so earlier indexes stay valid
		if vols[i].Name != CacheVolume || vols[i].EmptyDir == nil {
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
	for _, vm := range c.VolumeMounts {
		if vm.Name == CacheVolume {
			return
		}
	}
	want := path.Clean(opts.CacheMountPath)
	cp := podSpec.Child("containers").Index(ci)
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == want {
			m.warn(cp.Child("volumeMounts"), fmt.Sprintf("no cache volumeMount added to container %q: volume %q is already mounted at %s", c.Name, vm.Name, vm.MountPath))
			return
		}
	}
	m.appendTo(cp.Child("volumeMounts"), c.VolumeMounts == nil, VolumeMount{Name: CacheVolume, MountPath: opts.CacheMountPath})
	m.Applied = append(m.Applied, MutationCacheVolumeMount)
}

// dittofsContainer picks the container that runs DittoFS: the one the
// annotation names (no fallback when it names none), else the one named
// dittofs, else the only one. It returns -1 and the reason when none fits.
func dittofsContainer(sts *StatefulSet) (int, string) {
	cs := sts.Spec.Template.Spec.Containers
	find := func(name string) int {
		for i := range cs {
			if cs[i].Name == name {
				return i
			}
		}
		return -1
	}
	if name, ok := sts.Metadata.Annotations[AnnotationContainer]; ok {
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
