package offline

import (
	"fmt"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Validation is what eval does with the strict check's findings
// (--validate).
type Validation string

// The --validate values.
const (
	// ValidateStrict reports the findings and denies (exit 1).
	ValidateStrict Validation = "strict"
	// ValidateWarn reports them only.
	ValidateWarn Validation = "warn"
	// ValidateFalse skips the check.
	ValidateFalse Validation = "false"
)

// Outcome is what eval makes of one StatefulSet: its notes (strict check,
// management, what is at risk) and, once evaluated, both webhooks' answers.
type Outcome struct {
	*StatefulSet
	// Problems are the strict check's findings that are reported (none
	// under ValidateFalse).
	Problems []string
	// Management says how an unlabelled StatefulSet comes under management,
	// "" when there is nothing to say.
	Management string
	// Risks are what a stored managed StatefulSet puts at risk.
	Risks []string
	// Evaluation is both webhooks' answer; nil when Err is set or the
	// StatefulSet was not evaluated.
	Evaluation *admission.Evaluation
	// Err is why it could not be evaluated: it does not decode, or its
	// stored object does not.
	Err error
}

// Denied reports whether the webhooks deny it, or it could not be
// evaluated.
func (o *Outcome) Denied() bool {
	return o.Err != nil || o.Evaluation != nil && !o.Evaluation.Allowed()
}

// EvalResult is what `eval` found: one Outcome per StatefulSet of the input,
// in order. The renderers print it; ExitCode is computed from it.
type EvalResult struct {
	Input    *Input
	Validate Validation
	Outcomes []*Outcome
	byDoc    map[*Document]*Outcome
}

// ExitCode is 0 when every StatefulSet is allowed, 1 when any is denied
// (the strict check's findings deny under ValidateStrict).
func (r *EvalResult) ExitCode() int {
	for _, o := range r.Outcomes {
		if o.Denied() || len(o.Problems) > 0 && r.Validate == ValidateStrict {
			return 1
		}
	}
	return 0
}

// Eval runs the mutating and then the validating webhook on every
// StatefulSet of the input, as a CREATE, or as an UPDATE of its stored
// object, as the apiserver calls them.
func Eval(in *Input, a *admission.Admitter, validate Validation) *EvalResult {
	r := judge(in, validate, false)
	for _, o := range r.Outcomes {
		op, old := "CREATE", []byte(nil)
		if o.Old != nil {
			op, old = "UPDATE", o.Old.json
		}
		switch {
		case o.DecodeErr != nil:
			o.Err = fmt.Errorf("%s: does not decode as an apps/v1 StatefulSet: %v", o.Where(), o.DecodeErr)
		case o.Old != nil && o.Old.DecodeErr != nil:
			o.Err = fmt.Errorf("--old %s: the stored object does not decode as an apps/v1 StatefulSet: %v", o.Old.Where(), o.Old.DecodeErr)
		default:
			o.Evaluation, o.Err = a.Evaluate(op, o.json, old)
		}
	}
	return r
}

// judge makes the outcomes with their notes, before any evaluation.
// recreating is --recreate, where management is said for manifests too.
func judge(in *Input, validate Validation, recreating bool) *EvalResult {
	r := &EvalResult{Input: in, Validate: validate, byDoc: map[*Document]*Outcome{}}
	for _, s := range in.StatefulSets {
		o := &Outcome{StatefulSet: s, Management: management(s, recreating), Risks: atRisk(s)}
		if validate != ValidateFalse {
			o.Problems = s.Problems
		}
		r.Outcomes = append(r.Outcomes, o)
		r.byDoc[s.doc] = o
	}
	return r
}

// management says how an unlabelled StatefulSet comes under management: in
// the at-risk report of stored objects and under --recreate, as both are
// where a user looks for what the webhooks do not cover; "" for the rest,
// and for an UPDATE (--old), which is judged as the webhooks judge it.
func management(s *StatefulSet, recreating bool) string {
	if s.View == nil || s.Old != nil || !(s.Stored() || recreating) {
		return ""
	}
	if s.Labelled != nil {
		label := fmt.Sprintf("%s=%s", policies.LabelServer, s.View.Metadata.Labels[policies.LabelServer])
		if policies.HasCacheTemplate(s.View) && s.Stored() {
			return fmt.Sprintf("labelled %s (--manage); %s", label, labelInPlace(s, label))
		}
		return fmt.Sprintf("labelled %s (--manage)", label)
	}
	if policies.IsManaged(s.View) {
		return ""
	}
	n := fmt.Sprintf("not managed: no %s label, so the webhooks neither give it a persistent cache nor check its storage; ", policies.LabelServer)
	if policies.HasCacheTemplate(s.View) {
		return n + labelInPlace(s, fmt.Sprintf("%s=%s", policies.LabelServer, s.View.Metadata.Name))
	}
	return n + fmt.Sprintf("it has no cache template, so labelling it in place is denied (an update cannot add the cache): add the label to its manifest and run eval --recreate on that, or run eval --recreate --manage on this input, which adds the label (%s=NAME) to the manifest it prints", policies.LabelServer)
}

// labelInPlace is the advice for a StatefulSet with a cache template and
// without the label.
func labelInPlace(s *StatefulSet, label string) string {
	ns := ""
	if s.View.Metadata.Namespace != "" {
		ns = " -n " + s.View.Metadata.Namespace
	}
	return fmt.Sprintf("it has a cache template, so it can be labelled in place: kubectl label statefulset %s %s%s", s.View.Metadata.Name, label, ns)
}

// atRisk says what a stored managed StatefulSet (one the apiserver returned)
// puts at risk.
func atRisk(s *StatefulSet) []string {
	if !s.Managed() || !s.Stored() {
		return nil
	}
	var risks []string
	if !policies.HasCacheTemplate(s.View) {
		risks = append(risks, fmt.Sprintf("no persistent cache: no %q volumeClaimTemplate, so the write-ahead log is lost whenever a pod restarts; it cannot be added in place: `dittofs-webhook eval --recreate` prints the steps to recreate the StatefulSet without losing data", policies.CacheVolume))
	}
	for _, f := range retention(s.View) {
		if f.value != policies.Retain {
			risks = append(risks, fmt.Sprintf("persistentVolumeClaimRetentionPolicy.%s is %s: %s; any update through the webhook sets it to Retain", f.name, f.value, f.what))
		}
	}
	return risks
}

// retentionField is one field of the PVC retention policy as stored.
type retentionField struct{ name, value, what string }

// retention returns both retention fields as the API stores them: a missing
// one is defaulted to Retain.
func retention(sts *policies.StatefulSet) []retentionField {
	rp := sts.Spec.RetentionPolicy
	if rp == nil {
		rp = &policies.RetentionPolicy{}
	}
	orRetain := func(v string) string {
		if v == "" {
			return policies.Retain
		}
		return v
	}
	return []retentionField{
		{"whenDeleted", orRetain(rp.WhenDeleted), "deleting the StatefulSet deletes its PVCs and their data"},
		{"whenScaled", orRetain(rp.WhenScaled), "scaling it down deletes the PVCs of the removed pods"},
	}
}
