// Package tests holds the admission-review fixture suite (tests/fixtures, one
// YAML case per file; README.md documents the format), run against the real
// server over TLS by fixtures_test.go. The loader and the checks are exported
// for the eval command's tests and the fuzz targets that take the fixtures as
// seeds.
package tests

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
)

// The two webhooks a fixture can be sent to.
const (
	WebhookMutate   = "mutate"
	WebhookValidate = "validate"
)

// Fixture is one case of the suite, as read from its YAML file; README.md
// documents the keys.
type Fixture struct {
	Name string `json:"-"` // the file name without its extension
	Path string `json:"-"`

	Description string         `json:"description"`
	Webhook     string         `json:"webhook"`           // WebhookMutate or WebhookValidate
	Options     *ServerOptions `json:"options,omitempty"` // nil: the documented defaults

	// The case, which the loader wraps in the AdmissionReview the
	// kube-apiserver sends (see envelope); the objects are sent as written.
	Operation   string                       `json:"operation,omitempty"`
	Object      json.RawMessage              `json:"object,omitempty"`
	OldObject   json.RawMessage              `json:"oldObject,omitempty"`
	DryRun      bool                         `json:"dryRun,omitempty"`
	SubResource string                       `json:"subResource,omitempty"`
	Kind        *metav1.GroupVersionKind     `json:"kind,omitempty"`     // apps/v1 StatefulSet when unset
	Resource    *metav1.GroupVersionResource `json:"resource,omitempty"` // statefulsets when unset

	// Review is the AdmissionReview sent: the loader's, or the file's for the
	// cases recorded verbatim and the protocol cases that send a wrong one.
	Review json.RawMessage `json:"review,omitempty"`
	Raw    *Raw            `json:"raw,omitempty"` // the HTTP request of protocol cases
	Expect Expect          `json:"expect"`
}

// ServerOptions are the policy flags of `serve` a fixture runs with.
type ServerOptions struct {
	DefaultCacheSize string `json:"defaultCacheSize,omitempty"`
	CacheMountPath   string `json:"cacheMountPath,omitempty"`
	ValidationAction string `json:"validationAction,omitempty"` // deny (the default) or warn
}

// Raw is an HTTP request that is not (only) an AdmissionReview.
type Raw struct {
	Method      string  `json:"method,omitempty"`      // POST when unset
	ContentType string  `json:"contentType,omitempty"` // application/json when unset
	Body        *string `json:"body,omitempty"`        // replaces the review
	BodySize    int     `json:"bodySize,omitempty"`    // padded with spaces to this size
	Chunked     bool    `json:"chunked,omitempty"`     // no Content-Length
}

// Expect is what the server must answer; unset fields are not checked.
// README.md's "expect" table says what each key checks.
type Expect struct {
	HTTPStatus   int                `json:"httpStatus,omitempty"` // 200 when unset
	Body         []string           `json:"body,omitempty"`
	Allowed      *bool              `json:"allowed,omitempty"` // required for an HTTP 200 answer
	Code         int32              `json:"code,omitempty"`
	Reason       string             `json:"reason,omitempty"`
	Message      []string           `json:"message,omitempty"`
	Causes       []Cause            `json:"causes,omitempty"` // exactly these, in any order; empty: none
	Warnings     []string           `json:"warnings,omitempty"`
	NoWarnings   bool               `json:"noWarnings,omitempty"`
	WarningCount *int               `json:"warningCount,omitempty"`
	Patch        string             `json:"patch,omitempty"` // "none" or "some"
	Object       *ObjectExpect      `json:"object,omitempty"`
	Audit        map[string]string  `json:"audit,omitempty"`
	Metrics      map[string]float64 `json:"metrics,omitempty"` // a series selector: its increase
	// ThenValidate checks the validating webhook's answer to the mutated
	// object, as the apiserver sends it next. Only for mutate fixtures.
	ThenValidate *Expect `json:"thenValidate,omitempty"`
}

// Cause is an expected status cause; Rule is read from the cause's message.
type Cause struct {
	Field string `json:"field"`
	Rule  string `json:"rule,omitempty"`
	Type  string `json:"type,omitempty"`
}

// ObjectExpect are facts about the object after the patch.
type ObjectExpect struct {
	EqualsOldObject bool        `json:"equalsOldObject,omitempty"` // a re-applied manifest changes nothing
	Has             []PathValue `json:"has,omitempty"`
	Absent          []string    `json:"absent,omitempty"` // JSON pointers
}

// PathValue is a JSON pointer into the object and its value, length or, with neither, anything.
type PathValue struct {
	Path   string          `json:"path"`
	Value  json.RawMessage `json:"value,omitempty"`
	Length *int            `json:"length,omitempty"`
}

// ReviewRequest is what tests read of a fixture's request, the objects raw JSON.
type ReviewRequest struct {
	UID         string                  `json:"uid"`
	Kind        metav1.GroupVersionKind `json:"kind"`
	SubResource string                  `json:"subResource"`
	Name        string                  `json:"name"`
	Namespace   string                  `json:"namespace"`
	Operation   string                  `json:"operation"`
	DryRun      *bool                   `json:"dryRun"`
	Object      json.RawMessage         `json:"object"`
	OldObject   json.RawMessage         `json:"oldObject"`
}

// LoadFixtures reads every *.yaml fixture of dir, sorted by name; a file that does
// not parse, has an unknown key or an impossible expectation is an error.
func LoadFixtures(dir string) ([]Fixture, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml")) // sorted
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.yaml fixtures in %s", dir)
	}
	out := make([]Fixture, 0, len(paths))
	var errs []error
	for _, p := range paths {
		if f, err := LoadFixture(p); err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, f)
		}
	}
	return out, errors.Join(errs...)
}

// LoadFixture reads one fixture file.
func LoadFixture(path string) (Fixture, error) {
	var f Fixture
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil { // a duplicate or unknown key is an error
		return f, fmt.Errorf("%s: %w", path, err)
	}
	f.Path = path
	f.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if f.Operation != "" {
		if len(f.Review) > 0 {
			return f, fmt.Errorf("%s: review and operation are exclusive: "+
				"a fixture writes the whole review or only its case", path)
		}
		if f.Review, err = f.envelope(fixtureUID(f.Name)); err != nil {
			return f, fmt.Errorf("%s: %w", path, err)
		}
	} else if len(f.Object) > 0 || len(f.OldObject) > 0 || f.DryRun || f.SubResource != "" || f.Kind != nil ||
		f.Resource != nil {
		return f, fmt.Errorf("%s: object, oldObject, dryRun, subResource, kind and resource need an operation", path)
	}
	if err := f.check(); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func (f *Fixture) check() error {
	if strings.TrimSpace(f.Description) == "" {
		return errors.New("no description")
	}
	if f.Webhook != WebhookMutate && f.Webhook != WebhookValidate {
		return fmt.Errorf("webhook must be %q or %q, got %q", WebhookMutate, WebhookValidate, f.Webhook)
	}
	if len(f.Review) == 0 && (f.Raw == nil || f.Raw.Body == nil) {
		return errors.New("neither operation, review nor raw.body")
	}
	if req, err := f.Request(); f.Expect.Status() == 200 && (err != nil || req == nil) {
		return fmt.Errorf("an HTTP 200 answer needs a review with a request (%v)", err)
	}
	if _, err := f.PolicyOptions(); err != nil {
		return err
	}
	return f.Expect.check(f.Webhook, false)
}

func (e *Expect) check(webhook string, nested bool) error {
	tv, review := e.ThenValidate, e.Allowed != nil || e.Patch != "" || e.Object != nil || len(e.Causes) > 0 ||
		len(e.Warnings) > 0
	for _, c := range []struct {
		bad bool
		err string
	}{
		{!slices.Contains([]string{"", "none", "some"}, e.Patch), "expect.patch must be none or some"},
		{e.Status() == 200 && e.Allowed == nil, "expect.allowed is required for an HTTP 200 answer"},
		{e.Status() != 200 && review, "a non-200 answer has no AdmissionReview: expect only httpStatus, body, metrics"},
		{tv != nil && (webhook != WebhookMutate || nested), "expect.thenValidate is only for mutate fixtures"},
		{tv != nil && (e.Allowed == nil || !*e.Allowed), "expect.thenValidate needs an allowed mutation"},
		{tv != nil && (len(tv.Metrics) > 0 || tv.HTTPStatus != 0), "expect.thenValidate checks the answer only"},
	} {
		if c.bad {
			return errors.New(c.err)
		}
	}
	for sel := range e.Metrics {
		if _, _, err := parseSelector(sel); err != nil {
			return fmt.Errorf("expect.metrics: %w", err)
		}
	}
	if tv != nil {
		return tv.check(WebhookValidate, true)
	}
	return nil
}

// Status is the expected HTTP status (200 unless set).
func (e *Expect) Status() int {
	if e.HTTPStatus == 0 {
		return 200
	}
	return e.HTTPStatus
}

// Request decodes the fixture's review request, nil without one; a protocol
// fixture's review may be deliberately wrong, and then not decode.
func (f *Fixture) Request() (*ReviewRequest, error) {
	if len(f.Review) == 0 {
		return nil, nil
	}
	var rv struct {
		Request *ReviewRequest `json:"request"`
	}
	if err := json.Unmarshal(f.Review, &rv); err != nil {
		return nil, err
	}
	return rv.Request, nil
}

// Body is the HTTP body the fixture sends.
func (f *Fixture) Body() []byte {
	b := slices.Clone([]byte(f.Review))
	if f.Raw != nil && f.Raw.Body != nil {
		b = []byte(*f.Raw.Body)
	}
	if f.Raw != nil && f.Raw.BodySize > len(b) {
		b = append(b, bytes.Repeat([]byte{' '}, f.Raw.BodySize-len(b))...)
	}
	return b
}

// PolicyOptions are the policy options the fixture runs with.
func (f *Fixture) PolicyOptions() (policies.Options, error) {
	o, so := policies.DefaultOptions(), cmp.Or(f.Options, &ServerOptions{})
	if s := so.DefaultCacheSize; s != "" {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return o, fmt.Errorf("options.defaultCacheSize: %w", err)
		}
		o.DefaultCacheSize = q
	}
	o.CacheMountPath = cmp.Or(so.CacheMountPath, o.CacheMountPath)
	o.Action = cmp.Or(policies.Action(so.ValidationAction), o.Action)
	return o, o.Validate()
}

// WithObject returns the fixture's review with request.object obj (and uid,
// when not empty): what the apiserver sends reinvoking the webhook on it.
func (f *Fixture) WithObject(obj []byte, uid string) ([]byte, error) {
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(f.Review, &rv); err != nil {
		return nil, err
	}
	if rv.Request == nil {
		return nil, errors.New("the review has no request")
	}
	rv.Request.Object.Raw = obj
	if uid != "" {
		rv.Request.UID = types.UID(uid)
	}
	return json.Marshal(rv)
}

// Defaults of the envelope the loader wraps a fixture's case in; the user is
// kubeadm's admin, as kubectl run with admin.conf authenticates.
var (
	statefulSetKind     = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	statefulSetResource = metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	fixtureUser         = authenticationv1.UserInfo{
		Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"},
	}
)

// NewReview is the AdmissionReview a kube-apiserver sends for op of an apps/v1
// StatefulSet, as the loader wraps a fixture, for tests that build requests in Go.
func NewReview(uid, op string, object, oldObject json.RawMessage) []byte {
	b, err := (&Fixture{Operation: op, Object: object, OldObject: oldObject}).envelope(uid)
	if err != nil {
		panic(err)
	}
	return b
}

// ManagedStatefulSet is a managed StatefulSet that needs every mutation: no
// cache template, no mount, an emptyDir cache volume, no retention policy.
const ManagedStatefulSet = `{"apiVersion":"apps/v1","kind":"StatefulSet",` +
	`"metadata":{"name":"fs","namespace":"default","labels":{"dittofs.com/server":"fs"}},` +
	`"spec":{"serviceName":"fs","template":{"spec":{"containers":[{"name":"dittofs","image":"d"}],` +
	`"volumes":[{"name":"cache","emptyDir":{}}]}},"volumeClaimTemplates":[` +
	`{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},` +
	`{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}}]}}`

// envelope wraps the fixture's case in the AdmissionReview a kube-apiserver
// sends for it: the name and namespace of the object (of the old object on
// DELETE), and the options the apiserver fills in for kubectl's request.
func (f *Fixture) envelope(uid string) ([]byte, error) {
	kind, res := *cmp.Or(f.Kind, &statefulSetKind), *cmp.Or(f.Resource, &statefulSetResource)
	var opts runtime.Object // CONNECT has none: null
	tm := func(kind string) metav1.TypeMeta { return metav1.TypeMeta{Kind: kind, APIVersion: "meta.k8s.io/v1"} }
	switch f.Operation {
	case "CREATE":
		opts = &metav1.CreateOptions{TypeMeta: tm("CreateOptions"), FieldManager: "kubectl", FieldValidation: "Strict"}
	case "UPDATE":
		opts = &metav1.UpdateOptions{TypeMeta: tm("UpdateOptions"), FieldManager: "kubectl", FieldValidation: "Strict"}
	case "DELETE":
		background := metav1.DeletePropagationBackground
		opts = &metav1.DeleteOptions{TypeMeta: tm("DeleteOptions"), PropagationPolicy: &background}
	case "CONNECT":
	default:
		return nil, fmt.Errorf("operation must be CREATE, UPDATE, DELETE or CONNECT, got %q", f.Operation)
	}
	var meta struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	named := f.Object
	if len(named) == 0 || isNull(named) {
		named = f.OldObject
	}
	_ = json.Unmarshal(named, &meta) // an object that does not decode is itself a case (always-undecodable-*)
	dryRun := f.DryRun
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:                types.UID(uid),
			Kind:               kind,
			Resource:           res,
			SubResource:        f.SubResource,
			RequestKind:        &kind,
			RequestResource:    &res,
			RequestSubResource: f.SubResource,
			Name:               meta.Metadata.Name,
			Namespace:          meta.Metadata.Namespace,
			Operation:          admissionv1.Operation(f.Operation),
			UserInfo:           fixtureUser,
			Object:             runtime.RawExtension{Raw: f.Object}, // nil (absent) marshals as null
			OldObject:          runtime.RawExtension{Raw: f.OldObject},
			DryRun:             &dryRun,
			Options:            runtime.RawExtension{Object: opts}, // marshalled as Object when Raw is nil
		},
	})
}

// fixtureUID is a name-based (version 5, RFC 9562, in the URL namespace of
// its Appendix A) UUID of the fixture's name: stable, and unique in the suite.
func fixtureUID(name string) string {
	ns := [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	h := sha1.Sum(append(ns[:], "github.com/dittofs/dittofs-webhook/tests/fixtures/"+name...))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
