package admission

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/go-json-experiment/json"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Evaluation is what the apiserver makes of one StatefulSet written with the
// two webhooks installed: the mutating webhook's answer, the object after its
// patch, and the validating webhook's answer on that object.
type Evaluation struct {
	// Mutation is the mutating webhook's answer.
	Mutation Response
	// Object is the object after Mutation's patch, as JSON; the input itself
	// when there is no patch or the mutating webhook denied it.
	Object []byte
	// Validation is the validating webhook's answer on Object; nil when the
	// mutating webhook denied the request, as the apiserver stops there.
	Validation *Response
}

// Allowed reports whether both webhooks let the object through.
func (e *Evaluation) Allowed() bool {
	return e.Mutation.Allowed && e.Validation != nil && e.Validation.Allowed
}

// Changed reports whether the mutating webhook patched the object.
func (e *Evaluation) Changed() bool { return e.Mutation.Allowed && len(e.Mutation.Patch) > 0 }

// Warnings returns the warnings of both webhooks, the mutating one's first,
// as kubectl prints them.
func (e *Evaluation) Warnings() []string {
	w := append([]string(nil), e.Mutation.Warnings...)
	if e.Validation != nil {
		w = append(w, e.Validation.Warnings...)
	}
	return w
}

// Denial returns the status of the webhook that denied the object, or nil.
func (e *Evaluation) Denial() *metav1.Status {
	switch {
	case !e.Mutation.Allowed:
		return e.Mutation.Result
	case e.Validation != nil && !e.Validation.Allowed:
		return e.Validation.Result
	}
	return nil
}

// Evaluate runs the mutating and then the validating webhook on one apps/v1
// StatefulSet, offline, exactly as the apiserver calls them in sequence:
// object (and, for an UPDATE, oldObject, the stored object) are decoded the way
// the server decodes an AdmissionReview, Mutate answers, its patch is applied
// to object with the apiserver's own patch library, and Validate answers on
// the result against the same oldObject. operation is "CREATE" or "UPDATE"
// (oldObject is ignored on CREATE and required on UPDATE).
//
// The error is for input the server would refuse as a misconfiguration (code
// 400: an object that does not decode or is not an apps/v1 StatefulSet) and for
// a patch that does not apply, which would be a bug.
func (a *Admitter) Evaluate(operation string, object, oldObject []byte) (*Evaluation, error) {
	req, err := evalRequest(operation, object, oldObject)
	if err != nil {
		return nil, err
	}
	ev := &Evaluation{Mutation: a.Mutate(req), Object: object}
	if err := refused(ev.Mutation); err != nil {
		return nil, err
	}
	if !ev.Mutation.Allowed {
		return ev, nil
	}
	if len(ev.Mutation.Patch) > 0 {
		patched, err := ApplyPatch(object, ev.Mutation.Patch)
		if err != nil {
			return nil, fmt.Errorf("applying the mutating webhook's patch: %w", err)
		}
		ev.Object = patched
		// The validating webhook sees the object after the patch.
		if req, err = evalRequest(operation, patched, oldObject); err != nil {
			return nil, fmt.Errorf("the patched object: %w", err)
		}
	}
	v := a.Validate(req)
	if err := refused(v); err != nil {
		return nil, err
	}
	ev.Validation = &v
	return ev, nil
}

// ApplyPatch applies a JSON patch to a JSON document with
// gopkg.in/evanphx/json-patch.v4, the library kube-apiserver applies webhook
// patches with, so what eval prints is what the cluster stores.
func ApplyPatch(doc []byte, ops []jsonpatch.Operation) ([]byte, error) {
	if len(ops) == 0 {
		return doc, nil
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchv4.DecodePatch(b)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

// evalRequest builds the request the apiserver would send for object.
func evalRequest(operation string, object, oldObject []byte) (*Request, error) {
	if operation == "UPDATE" && oldObject == nil {
		return nil, errors.New("an UPDATE needs the old object")
	}
	if operation != "UPDATE" {
		oldObject = nil
	}
	req, err := NewRequest(operation, object, oldObject)
	if err != nil {
		return nil, fmt.Errorf("does not decode as an apps/v1 StatefulSet: %s", oneLine(err.Error()))
	}
	req.UID = "dittofs-webhook-eval"
	return req, nil
}

// refused turns the answer the server gives a request it cannot judge (code
// 400, a misconfiguration) into an error: offline, it means unusable input.
func refused(r Response) error {
	if !r.Allowed && r.Result != nil && r.Result.Code == http.StatusBadRequest {
		return errors.New(r.Result.Message)
	}
	return nil
}
