package admission

import (
	"net/http"

	"github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Response is the answer to one admission request, before it is encoded.
type Response struct {
	Allowed bool
	// Result explains a denial (code, reason, causes); nil when allowed.
	Result *metav1.Status
	// Patch is the JSON patch of an allowed mutation; empty means no patch
	// and no patchType.
	Patch            []jsonpatch.Operation
	Warnings         []string
	AuditAnnotations map[string]string

	// For metrics: the mutations in the patch, the rules violated and what
	// was done about each, and why a request was refused as misdirected.
	Mutations  []string
	Violations []Violation
	BadReason  string
}

// Violation is one rule violation and the action taken: policies.Deny or
// policies.Warn.
type Violation struct {
	Rule, Action string
}

// Allowed lets the request through unchanged.
func Allowed() Response { return Response{Allowed: true} }

// Patched lets the request through with the given JSON patch.
func Patched(ops []jsonpatch.Operation) Response {
	return Response{Allowed: true, Patch: ops}
}

// Denied refuses the request with the given status.
func Denied(status *metav1.Status) Response {
	return Response{Allowed: false, Result: status}
}

// Invalid refuses an object with a 422 Invalid status carrying one cause per
// field error, exactly as the apiserver's own validation does, so kubectl
// prints each cause.
func Invalid(gk schema.GroupKind, name string, errs field.ErrorList) Response {
	st := apierrors.NewInvalid(gk, name, errs).Status()
	return Denied(&st)
}

// Errored refuses a request the webhook cannot judge (for example a request
// for a kind it does not handle) with the given HTTP-style code.
func Errored(code int32, msg string) Response {
	reason := metav1.StatusReasonUnknown
	if code == http.StatusBadRequest {
		reason = metav1.StatusReasonBadRequest
	}
	return Denied(&metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg})
}

// WithWarnings returns r with warnings appended.
func (r Response) WithWarnings(warnings ...string) Response {
	r.Warnings = append(r.Warnings, warnings...)
	return r
}

// WithAudit returns r with audit annotations added.
func (r Response) WithAudit(annotations map[string]string) Response {
	if len(annotations) == 0 {
		return r
	}
	if r.AuditAnnotations == nil {
		r.AuditAnnotations = make(map[string]string, len(annotations))
	}
	for k, v := range annotations {
		r.AuditAnnotations[k] = v
	}
	return r
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

// Review encodes r as the admission.k8s.io/v1 AdmissionReview answering the
// request uid.
func (r *Response) Review(uid types.UID) ([]byte, error) {
	resp := &admissionv1.AdmissionResponse{
		UID:              uid,
		Allowed:          r.Allowed,
		Result:           r.Result,
		AuditAnnotations: r.AuditAnnotations,
		Warnings:         r.Warnings,
	}
	if len(r.Patch) > 0 {
		patch, err := json.Marshal(r.Patch)
		if err != nil {
			return nil, err
		}
		resp.Patch, resp.PatchType = patch, &jsonPatchType
	}
	// The k8s.io/api types' omitempty means what encoding/json made it mean
	// (a zero retryAfterSeconds is left out).
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}, json.Deterministic(true), jsonv1.OmitEmptyWithLegacySemantics(true))
}
