package offline

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// RecreateFile is what the printed steps call the manifests `eval
// --recreate` prints: the user saves stdout under that name.
const RecreateFile = "recreate.yaml"

// serverSetFields are the members of metadata the apiserver sets, which a
// create must not carry; status goes too.
var serverSetFields = []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}

// RecreateResult is what `eval --recreate` found: the notes of every
// StatefulSet, and for each managed one without a cache template either the
// manifest that creates it again (Recreate) or why it cannot be (Refused).
type RecreateResult struct {
	*EvalResult
	// Recreate are the StatefulSets to recreate, in order; each
	// Evaluation's Object is the manifest (server-set fields removed, the
	// mutation applied: what the cluster will store).
	Recreate []*Outcome
	// Refused are those the webhooks would deny when created again: the
	// steps would leave them deleted and not created again.
	Refused []*Outcome
}

// ExitCode is 1 when a StatefulSet cannot be recreated as it is or the
// strict check denies, else 0.
func (r *RecreateResult) ExitCode() int {
	if len(r.Refused) > 0 {
		return 1
	}
	return r.EvalResult.ExitCode()
}

// Recreations are the procedures of the StatefulSets to recreate.
func (r *RecreateResult) Recreations() []policies.Recreation {
	rs := make([]policies.Recreation, len(r.Recreate))
	for i, o := range r.Recreate {
		rs[i] = o.Recreation()
	}
	return rs
}

// Recreate evaluates, for each managed StatefulSet without a cache template,
// the CREATE of its manifest without the server-set fields.
func Recreate(in *Input, a *admission.Admitter, validate Validation) *RecreateResult {
	r := &RecreateResult{EvalResult: judge(in, validate, true)}
	for _, o := range r.Outcomes {
		if !o.Managed() || policies.HasCacheTemplate(o.View) {
			continue
		}
		clean, err := withoutServerFields(o.json)
		if err == nil {
			o.Evaluation, err = a.Evaluate("CREATE", clean, nil)
		}
		if o.Err = err; o.Denied() {
			r.Refused = append(r.Refused, o)
			continue
		}
		r.Recreate = append(r.Recreate, o)
	}
	return r
}

// unmanaged counts the StatefulSets of the input that are not managed.
func (r *EvalResult) unmanaged() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.View != nil && !policies.IsManaged(o.View) {
			n++
		}
	}
	return n
}

// withoutServerFields removes status and the server-set metadata of a stored
// object, keeping every other member as it is.
func withoutServerFields(object []byte) ([]byte, error) {
	var obj map[string]jsontext.Value
	if err := jsonv2.Unmarshal(object, &obj); err != nil {
		return nil, err
	}
	delete(obj, "status")
	if raw, ok := obj["metadata"]; ok {
		var meta map[string]jsontext.Value
		if err := jsonv2.Unmarshal(raw, &meta); err != nil {
			return nil, err
		}
		for _, f := range serverSetFields {
			delete(meta, f)
		}
		b, err := marshalJSON(meta)
		if err != nil {
			return nil, err
		}
		obj["metadata"] = b
	}
	return marshalJSON(obj)
}
