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
	// RawObject and RawOldObject are the objects as sent; Object and
	// OldObject their decoded views (nil when absent or null).
	RawObject    jsontext.Value        `json:"object"`
	RawOldObject jsontext.Value        `json:"oldObject"`
	Object       *policies.StatefulSet `json:"-"`
	OldObject    *policies.StatefulSet `json:"-"`
	// ObjectErr is set when object or oldObject does not decode into the
	// view: a value of the wrong JSON type in a field the policies read.
	ObjectErr error `json:"-"`
}

// review is the part of an admission.k8s.io/v1 AdmissionReview the server
// reads; every other member (userInfo, options, ...) is skipped, though still
// checked for syntax, UTF-8 and duplicate names.
type review struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Request    *Request `json:"request"`
}

// ErrNotReview is returned for a body that is not an AdmissionReview (HTTP 400).
var ErrNotReview = errors.New("not an admission.k8s.io/v1 AdmissionReview")

// DecodeReview decodes an admission.k8s.io/v1 AdmissionReview. A body that is
// not one with a request — invalid JSON included: a syntax error, invalid
// UTF-8, a duplicate member name — is an error (HTTP 400). An object that
// does not decode into the policies' view is not: the request is decoded all
// the same, so the answer carries its uid, and Request.ObjectErr says why.
func DecodeReview(body []byte) (*Request, error) {
	var rv review
	if err := json.Unmarshal(body, &rv); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotReview, describe(err, ""))
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: got apiVersion %q, kind %q", ErrNotReview, rv.APIVersion, rv.Kind)
	}
	req := rv.Request
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrNotReview)
	}
	req.Object, req.ObjectErr = decodeView(req.RawObject, "request.object")
	if req.ObjectErr == nil {
		req.OldObject, req.ObjectErr = decodeView(req.RawOldObject, "request.oldObject")
	}
	return req, nil
}

// NewRequest builds the request the apiserver would send for writing object
// (JSON) with operation "CREATE" or "UPDATE" (oldObject then holds the stored
// object), decoding both as DecodeReview does. eval and the tests use it.
func NewRequest(operation string, object, oldObject []byte) (*Request, error) {
	req := &Request{
		Operation:    operation,
		Kind:         metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		Resource:     metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
		RawObject:    object,
		RawOldObject: oldObject,
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
	return req, nil
}

// DecodeStatefulSet decodes a StatefulSet (JSON) into the policies' view;
// errors name the field under prefix. Nil or null is no object.
func DecodeStatefulSet(object []byte, prefix string) (*policies.StatefulSet, error) {
	return decodeView(object, prefix)
}

func decodeView(raw jsontext.Value, prefix string) (*policies.StatefulSet, error) {
	if len(raw) == 0 || raw.Kind() == 'n' {
		return nil, nil
	}
	sts := new(policies.StatefulSet)
	if err := json.Unmarshal(raw, sts, viewOptions); err != nil {
		return nil, errors.New(describe(err, prefix))
	}
	return sts, nil
}

// plainClaimTemplate decodes a template's fields without viewOptions'
// unmarshaler, which would call itself.
type plainClaimTemplate policies.ClaimTemplate

// viewOptions keeps each volumeClaimTemplate's bytes beside its decoded
// fields, for a verbatim carry-over (U1).
var viewOptions = json.WithUnmarshalers(json.UnmarshalFromFunc(func(dec *jsontext.Decoder, c *policies.ClaimTemplate) error {
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	at := dec.StackPointer() // of the value just read
	if err := json.Unmarshal(raw, (*plainClaimTemplate)(c)); err != nil {
		var se *json.SemanticError
		if errors.As(err, &se) {
			se.JSONPointer = at + se.JSONPointer
		}
		return err
	}
	c.Raw = bytes.Clone(raw)
	return nil
}))

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
