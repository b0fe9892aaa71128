package admission

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/policies"
)

// Request is an admission request as the policies need it.
type Request struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   string                      `json:"operation"`
	DryRun      *bool                       `json:"dryRun"`
	// Object and OldObject are what the policies read of the objects (nil
	// when absent or null).
	Object    *policies.StatefulSet `json:"object"`
	OldObject *policies.StatefulSet `json:"oldObject"`
	// ObjectErr is set when object or oldObject does not decode into the
	// view: a value of the wrong JSON type in a field the policies read.
	ObjectErr error `json:"-"`

	// rawObject and rawOldObject are the objects as sent, kept only where
	// they were had anyway; body is the review otherwise (hasSpec, oldRaw).
	rawObject, rawOldObject jsontext.Value
	body                    []byte
}

// review is the part of an admission.k8s.io/v1 AdmissionReview the server
// reads; every other member (userInfo, options, ...) is skipped, though still
// checked for syntax, UTF-8 and duplicate names.
type review struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Request    *Request `json:"request"`
}

// rawReview is review with the objects left as JSON: the library stops at
// the first value of a wrong type, so a bad object is decoded apart, to
// answer with the request's uid whatever the order of its members.
type rawReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		Request
		Object    jsontext.Value `json:"object"`
		OldObject jsontext.Value `json:"oldObject"`
	} `json:"request"`
}

// ErrNotReview is returned for a body that is not an AdmissionReview (HTTP 400).
var ErrNotReview = errors.New("not an admission.k8s.io/v1 AdmissionReview")

// DecodeReview decodes an admission.k8s.io/v1 AdmissionReview in one pass. A
// body that is not one with a request — invalid JSON included: a syntax
// error, invalid UTF-8, a duplicate member name — is an error (HTTP 400). An
// object that does not decode into the policies' view is not: the request is
// decoded all the same, so the answer carries its uid, and Request.ObjectErr
// says why.
func DecodeReview(body []byte) (*Request, error) {
	var rv review
	err := json.Unmarshal(body, &rv)
	var req *Request
	if se := (*json.SemanticError)(nil); errors.As(err, &se) && (se.JSONPointer == "/request/object" || se.JSONPointer == "/request/oldObject" ||
		strings.HasPrefix(string(se.JSONPointer), "/request/object/") || strings.HasPrefix(string(se.JSONPointer), "/request/oldObject/")) {
		var raw rawReview
		if err = json.Unmarshal(body, &raw); err == nil && raw.Request != nil {
			req = &raw.Request.Request
			req.rawObject, req.rawOldObject = raw.Request.Object, raw.Request.OldObject
			req.Object, req.ObjectErr = DecodeStatefulSet(req.rawObject, "request.object")
			if req.ObjectErr == nil {
				req.OldObject, req.ObjectErr = DecodeStatefulSet(req.rawOldObject, "request.oldObject")
			}
		}
		rv.APIVersion, rv.Kind = raw.APIVersion, raw.Kind
	} else {
		req = rv.Request
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotReview, describe(err, ""))
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: got apiVersion %q, kind %q", ErrNotReview, rv.APIVersion, rv.Kind)
	}
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrNotReview)
	}
	req.body = body
	return req, req.fillOldRaw()
}

// NewRequest builds the request the apiserver would send for writing object
// (JSON) with operation "CREATE" or "UPDATE" (oldObject then holds the stored
// object), decoding both as DecodeReview does. eval and the tests use it.
func NewRequest(operation string, object, oldObject []byte) (*Request, error) {
	req := &Request{
		Operation:    operation,
		Kind:         metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		Resource:     metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
		rawObject:    object,
		rawOldObject: oldObject,
	}
	var err error
	if req.Object, err = DecodeStatefulSet(object, ""); err != nil {
		return nil, err
	}
	if req.Object == nil {
		return nil, errors.New("no object")
	}
	if req.OldObject, err = DecodeStatefulSet(oldObject, "oldObject"); err != nil {
		return nil, err
	}
	req.Name, req.Namespace = req.Object.Metadata.Name, req.Object.Metadata.Namespace
	return req, req.fillOldRaw()
}

// DecodeStatefulSet decodes a StatefulSet (JSON) into the policies' view;
// errors name the field under prefix. Nil or null is no object.
func DecodeStatefulSet(object jsontext.Value, prefix string) (*policies.StatefulSet, error) {
	if len(object) == 0 || object.Kind() == 'n' {
		return nil, nil
	}
	sts := new(policies.StatefulSet)
	if err := json.Unmarshal(object, sts); err != nil {
		return nil, errors.New(describe(err, prefix))
	}
	return sts, nil
}

// templates is where the raw volumeClaimTemplates of an object are.
type templates struct {
	Spec struct {
		VolumeClaimTemplates []jsontext.Value `json:"volumeClaimTemplates"`
	} `json:"spec"`
}

// fillOldRaw gives the old object's volumeClaimTemplates their bytes as sent,
// for a verbatim carry-over (U1). Only an UPDATE pays for this decode.
func (req *Request) fillOldRaw() error {
	old := req.OldObject
	if old == nil || len(old.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	var t templates
	var err error
	if req.rawOldObject != nil {
		err = json.Unmarshal(req.rawOldObject, &t)
	} else {
		var rv struct {
			Request struct {
				OldObject templates `json:"oldObject"`
			} `json:"request"`
		}
		err = json.Unmarshal(req.body, &rv)
		t = rv.Request.OldObject
	}
	if err != nil || len(t.Spec.VolumeClaimTemplates) != len(old.Spec.VolumeClaimTemplates) {
		return fmt.Errorf("%w: the oldObject's volumeClaimTemplates do not decode twice alike: %v", ErrNotReview, err)
	}
	for i, raw := range t.Spec.VolumeClaimTemplates {
		old.Spec.VolumeClaimTemplates[i].Raw = bytes.Clone(raw)
	}
	return nil
}

// specProbe finds whether an object has a spec member at all.
type specProbe struct {
	Spec jsontext.Value `json:"spec"`
}

// hasSpec reports whether the object has a spec member. A spec holds
// containers, so only an object whose view has none is decoded again.
func (req *Request) hasSpec() bool {
	s := &req.Object.Spec
	if len(s.Template.Spec.Containers) > 0 || s.VolumeClaimTemplates != nil || s.RetentionPolicy != nil || s.Template.Spec.Volumes != nil {
		return true
	}
	var p specProbe
	present := func(v jsontext.Value) bool { return len(v) > 0 && v.Kind() != 'n' } // "spec": null is none
	if req.rawObject != nil {
		return json.Unmarshal(req.rawObject, &p) == nil && present(p.Spec)
	}
	var rv struct {
		Request struct {
			Object specProbe `json:"object"`
		} `json:"request"`
	}
	return json.Unmarshal(req.body, &rv) == nil && present(rv.Request.Object.Spec)
}

// describe turns a decoding error into one line naming the field the way a
// manifest reads (spec.volumeClaimTemplates[1]) and what was wrong.
func describe(err error, prefix string) string {
	var se *json.SemanticError
	var sy *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		where := fieldPath(prefix, se.JSONPointer)
		if se.Err != nil && se.JSONKind == 0 {
			return where + ": " + oneLine(se.Err.Error())
		}
		msg := fmt.Sprintf("%s: %s where %s is expected", where, kindName(se.JSONKind), expected(se.GoType.String()))
		if se.Err != nil && !errors.Is(se.Err, json.ErrUnknownName) {
			msg += ": " + oneLine(se.Err.Error())
		}
		return msg
	case errors.As(err, &sy):
		msg := strings.TrimPrefix(oneLine(sy.Err.Error()), "jsontext: ")
		if p := sy.JSONPointer; p != "" {
			return fmt.Sprintf("invalid JSON at %s (byte %d): %s", fieldPath(prefix, p), sy.ByteOffset, msg)
		}
		return fmt.Sprintf("invalid JSON at byte %d: %s", sy.ByteOffset, msg)
	}
	return oneLine(err.Error())
}

// fieldPath writes a JSON pointer as a field path: /spec/volumeClaimTemplates/1
// is spec.volumeClaimTemplates[1], and a key such as an annotation's is
// bracketed.
func fieldPath(prefix string, p jsontext.Pointer) string {
	var b strings.Builder
	b.WriteString(prefix)
	for tok := range p.Tokens() {
		switch _, err := strconv.Atoi(tok); {
		case err == nil:
			b.WriteString("[" + tok + "]")
		case strings.ContainsAny(tok, "./[]") || tok == "":
			b.WriteString("[" + tok + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		}
	}
	if b.Len() == 0 {
		return "the document"
	}
	return b.String()
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "a value"
}

// expected says what JSON a Go type of the view takes.
func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case goType == "string" || strings.HasSuffix(goType, ".UID"):
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasSuffix(goType, "resource.Quantity"):
		return "a quantity (a string such as 5Gi)"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "an object"
}

func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
