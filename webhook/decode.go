package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/policies"
)

// Request is an admission request as the policies need it: the StatefulSets
// are decoded once, together with the review, into typed objects that hold the
// fields the policies read (see statefulSetJSON).
type Request struct {
	UID         types.UID
	Kind        metav1.GroupVersionKind
	Resource    metav1.GroupVersionResource
	SubResource string
	Name        string
	Namespace   string
	Operation   string
	DryRun      bool

	Object    *appsv1.StatefulSet
	OldObject *appsv1.StatefulSet
	// OldCacheTemplate is the old object's cache volumeClaimTemplate as sent.
	OldCacheTemplate json.RawMessage
	// ObjectErr is set when object or oldObject is not a StatefulSet.
	ObjectErr error
	// objectHasSpec tells whether Object had a spec member at all.
	objectHasSpec bool
}

// reviewJSON is the part of an admission.k8s.io/v1 AdmissionReview the server
// reads; everything else (userInfo, options, ...) is skipped. decodeFast fills
// these types; their json tags define the meaning decodeFast must have, and a
// fuzz test holds it to encoding/json decoding them.
type reviewJSON struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Request    *requestJSON `json:"request"`
}

type requestJSON struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   string                      `json:"operation"`
	DryRun      *bool                       `json:"dryRun"`
	Object      *statefulSetJSON            `json:"object"`
	OldObject   *statefulSetJSON            `json:"oldObject"`
}

// statefulSetJSON is the projection of an apps/v1 StatefulSet onto the fields
// the policies read. Decoding the whole typed object — every container's env,
// probes and resource quantities, managedFields timestamps — costs many times
// more than the policies and the rest of the request together; what is not
// declared here is only validated. A test runs the policies on both this
// projection and the full typed object of every fixture and requires the same
// outcome, so a policy that starts reading another field fails loudly.
type statefulSetJSON struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   metadataJSON `json:"metadata"`
	// Spec is a pointer to tell an object without a spec: a patch must create
	// /spec before adding under it.
	Spec *specJSON `json:"spec"`
}

type metadataJSON struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

type specJSON struct {
	Template                             templateJSON        `json:"template"`
	VolumeClaimTemplates                 []claimTemplateJSON `json:"volumeClaimTemplates"`
	PersistentVolumeClaimRetentionPolicy *retentionJSON      `json:"persistentVolumeClaimRetentionPolicy"`
}

type templateJSON struct {
	Spec podSpecJSON `json:"spec"`
}

type podSpecJSON struct {
	Volumes    []volumeJSON    `json:"volumes"`
	Containers []containerJSON `json:"containers"`
}

// volumeJSON: the policies ask of a pod volume its name and whether it is an
// emptyDir.
type volumeJSON struct {
	Name     string    `json:"name"`
	EmptyDir *struct{} `json:"emptyDir"`
}

type containerJSON struct {
	Name         string            `json:"name"`
	VolumeMounts []volumeMountJSON `json:"volumeMounts"`
}

type volumeMountJSON struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

type retentionJSON struct {
	WhenDeleted string `json:"whenDeleted"`
	WhenScaled  string `json:"whenScaled"`
}

// claimTemplateJSON keeps a volumeClaimTemplate's bytes next to what the
// policies read of it: a carried-over template must be sent back verbatim.
type claimTemplateJSON struct {
	raw      json.RawMessage
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		StorageClassName *string `json:"storageClassName"`
		Resources        struct {
			Requests map[corev1.ResourceName]resource.Quantity `json:"requests"`
		} `json:"resources"`
	} `json:"spec"`
	err error
}

// err returns the first volumeClaimTemplate that did not decode.
func (s *statefulSetJSON) err(field string) error {
	if s.Spec == nil {
		return nil
	}
	for i := range s.Spec.VolumeClaimTemplates {
		if err := s.Spec.VolumeClaimTemplates[i].err; err != nil {
			return fmt.Errorf("%s.spec.volumeClaimTemplates[%d]: %w", field, i, err)
		}
	}
	return nil
}

// typed builds the StatefulSet the policies read, in a (nil: allocated).
func (s *statefulSetJSON) typed(a *arena) *appsv1.StatefulSet {
	sts := a.statefulSet()
	sts.APIVersion, sts.Kind = s.APIVersion, s.Kind
	m := &s.Metadata
	sts.Name, sts.GenerateName, sts.Namespace, sts.Labels, sts.Annotations = m.Name, m.GenerateName, m.Namespace, m.Labels, m.Annotations
	if s.Spec == nil {
		return sts
	}
	if rp := s.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil {
		sts.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.PersistentVolumeClaimRetentionPolicyType(rp.WhenDeleted),
			WhenScaled:  appsv1.PersistentVolumeClaimRetentionPolicyType(rp.WhenScaled),
		}
	}
	pod := &s.Spec.Template.Spec
	if pod.Volumes != nil {
		vols := a.volumeSlice(len(pod.Volumes))
		for i, v := range pod.Volumes {
			vols[i].Name = v.Name
			if v.EmptyDir != nil {
				vols[i].EmptyDir = &corev1.EmptyDirVolumeSource{}
			}
		}
		sts.Spec.Template.Spec.Volumes = vols
	}
	if pod.Containers != nil {
		cs := a.containerSlice(len(pod.Containers))
		for i, c := range pod.Containers {
			cs[i].Name = c.Name
			if c.VolumeMounts != nil {
				cs[i].VolumeMounts = a.mountSlice(len(c.VolumeMounts))
				for j, m := range c.VolumeMounts {
					cs[i].VolumeMounts[j] = corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath}
				}
			}
		}
		sts.Spec.Template.Spec.Containers = cs
	}
	if s.Spec.VolumeClaimTemplates != nil {
		vcts := a.claimSlice(len(s.Spec.VolumeClaimTemplates))
		for i := range s.Spec.VolumeClaimTemplates {
			c := &s.Spec.VolumeClaimTemplates[i]
			vcts[i].Name = c.Metadata.Name
			vcts[i].Spec.StorageClassName = c.Spec.StorageClassName
			if c.Spec.Resources.Requests != nil {
				vcts[i].Spec.Resources.Requests = corev1.ResourceList(c.Spec.Resources.Requests)
			}
		}
		sts.Spec.VolumeClaimTemplates = vcts
	}
	return sts
}

// cacheTemplate returns the raw cache volumeClaimTemplate, or nil.
func (s *statefulSetJSON) cacheTemplate() json.RawMessage {
	if s.Spec == nil {
		return nil
	}
	for i := range s.Spec.VolumeClaimTemplates {
		if s.Spec.VolumeClaimTemplates[i].Metadata.Name == policies.CacheVolume {
			return s.Spec.VolumeClaimTemplates[i].raw
		}
	}
	return nil
}

// errNotReview is returned for a body that is not an AdmissionReview.
var errNotReview = errors.New("not an admission.k8s.io/v1 AdmissionReview")

// decodeReviewIn decodes an admission.k8s.io/v1 AdmissionReview, building
// its typed objects in a (nil: allocated; they live until a is released). A
// body that is not one with a request is an error (HTTP 400). An object that
// is not a StatefulSet is not: the request is decoded all the same, so the
// answer can carry its uid, and Request.ObjectErr says what was wrong.
func decodeReviewIn(body []byte, a *arena) (*Request, error) {
	rv, err := decodeFast(body)
	return requestFromReview(rv, err, a)
}

// requestFromReview builds the Request from a decoded review and the decoding
// error: a value of the wrong type inside the object is the object's fault
// (answered with the uid), any other error the review's.
func requestFromReview(rv *reviewJSON, err error, a *arena) (*Request, error) {
	var objErr error
	if err != nil {
		if !isObjectError(err) {
			return nil, fmt.Errorf("%w: %s", errNotReview, oneLine(err.Error()))
		}
		objErr = err
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: got apiVersion %q, kind %q", errNotReview, rv.APIVersion, rv.Kind)
	}
	r := rv.Request
	if r == nil {
		return nil, fmt.Errorf("%w: no request", errNotReview)
	}
	req := &Request{
		UID: r.UID, Kind: r.Kind, Resource: r.Resource, SubResource: r.SubResource,
		Name: r.Name, Namespace: r.Namespace, Operation: r.Operation,
		DryRun: r.DryRun != nil && *r.DryRun, ObjectErr: objErr,
	}
	if r.Object != nil {
		req.Object = r.Object.typed(a)
		req.objectHasSpec = r.Object.Spec != nil
		if req.ObjectErr == nil {
			req.ObjectErr = r.Object.err("request.object")
		}
	}
	if r.OldObject != nil {
		req.OldObject = r.OldObject.typed(a)
		req.OldCacheTemplate = r.OldObject.cacheTemplate()
		if req.ObjectErr == nil {
			req.ObjectErr = r.OldObject.err("request.oldObject")
		}
	}
	return req, nil
}

// NewRequest builds the request the apiserver would send for writing object
// (JSON) with operation "CREATE" or "UPDATE" (oldObject then holds the stored
// object), decoding both exactly as the server does. eval uses it.
func NewRequest(operation string, object, oldObject []byte) (*Request, error) {
	req := &Request{
		Operation: operation,
		Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
	}
	s, err := decodeStatefulSetFast(object)
	if err != nil {
		return nil, err
	}
	if err := s.err("object"); err != nil {
		return nil, err
	}
	req.Object, req.objectHasSpec = s.typed(nil), s.Spec != nil
	req.Name, req.Namespace = req.Object.Name, req.Object.Namespace
	if oldObject != nil {
		o, err := decodeStatefulSetFast(oldObject)
		if err != nil {
			return nil, fmt.Errorf("oldObject: %w", err)
		}
		if err := o.err("oldObject"); err != nil {
			return nil, err
		}
		req.OldObject, req.OldCacheTemplate = o.typed(nil), o.cacheTemplate()
	}
	return req, nil
}

// isObjectError reports whether a decoding error is a type error inside the
// request's object or oldObject (decodeFast's, or encoding/json's in tests).
func isObjectError(err error) bool {
	var field string
	var te *typeError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		field = te.Field
	case errors.As(err, &ute):
		field = ute.Field
	default:
		return false
	}
	return strings.HasPrefix(field, "request.object") || strings.HasPrefix(field, "request.oldObject")
}

func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
