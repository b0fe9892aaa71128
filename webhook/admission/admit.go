package admission

import (
	"fmt"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
)

// statefulSetGK names the kind in denial statuses (`StatefulSet.apps "x" is invalid`).
var statefulSetGK = schema.GroupKind{Group: "apps", Kind: "StatefulSet"}

// Admitter applies the policies to decoded requests. The HTTP handlers and the
// eval command both use it, so they cannot disagree.
type Admitter struct {
	Policy policies.Options
}

// Mutate answers the mutating webhook (SPEC §2).
func (a *Admitter) Mutate(req *Request) Response {
	preq, resp, done := screen(req)
	if done {
		return resp
	}
	m := policies.Mutate(preq, a.Policy)
	if len(m.Errs) > 0 {
		return Invalid(statefulSetGK, req.ObjectName(), m.Errs).WithWarnings(m.Warnings...)
	}
	patch := m.Patch
	if len(patch) > 0 && !req.hasSpec() {
		// Every path of the patch is under /spec: an object sent without one
		// (never by the apiserver, which defaults it) needs it created first.
		patch = append([]jsonpatch.Operation{jsonpatch.NewOperation("add", "/spec", map[string]any{})}, patch...)
	}
	resp = Patched(patch).WithWarnings(m.Warnings...).WithAudit(m.Audit)
	resp.Mutations = m.Applied
	return resp
}

// Validate answers the validating webhook (SPEC §3).
func (a *Admitter) Validate(req *Request) Response {
	preq, resp, done := screen(req)
	if done {
		return resp
	}
	v := policies.Validate(preq, a.Policy)
	audit := map[string]string{}
	if len(v.Existing) > 0 {
		audit["existing-violations"] = joinRules(v.Existing)
	}
	resp = Allowed()
	if !v.Allowed() {
		resp = Invalid(statefulSetGK, req.ObjectName(), v.Errs)
		audit["violations"] = joinRules(v.Errs)
	}
	if len(v.Warned) > 0 {
		audit["warned-violations"] = joinRules(v.Warned)
	}
	for _, e := range v.Errs {
		resp.Violations = append(resp.Violations, Violation{Rule: e.Origin, Action: string(policies.Deny)})
	}
	for _, e := range v.Warned {
		resp.Violations = append(resp.Violations, Violation{Rule: e.Origin, Action: string(policies.Warn)})
	}
	return resp.WithWarnings(v.Warnings...).WithAudit(audit)
}

// screen answers what needs no policy: other operations and subresources are
// allowed before anything else is looked at (SPEC §2 "Always"); another kind,
// or an object that is not a StatefulSet, is a misconfiguration refused loudly
// (code 400); an unmanaged StatefulSet is allowed untouched.
func screen(req *Request) (policies.Request, Response, bool) {
	op := policies.Operation(req.Operation)
	if (op != policies.Create && op != policies.Update) || req.SubResource != "" {
		return policies.Request{}, Allowed(), true
	}
	if req.Kind.Group != "apps" || req.Kind.Version != "v1" || req.Kind.Kind != "StatefulSet" {
		resp := Errored(400, fmt.Sprintf("dittofs-webhook handles apps/v1 StatefulSet, got a request for %s (resource %s): check the webhook configuration's rules",
			gvkString(req.Kind.Group, req.Kind.Version, req.Kind.Kind), gvkString(req.Resource.Group, req.Resource.Version, req.Resource.Resource)))
		resp.BadReason = "wrong_kind"
		return policies.Request{}, resp, true
	}
	switch {
	case req.ObjectErr != nil:
		return badObject(fmt.Sprintf("the %s object does not decode as an apps/v1 StatefulSet: %s", req.Operation, req.ObjectErr))
	case req.Object == nil:
		return badObject(fmt.Sprintf("the %s request has no object", req.Operation))
	case op == policies.Update && req.OldObject == nil:
		return badObject("the UPDATE request has no oldObject")
	}
	if k := req.Object; (k.APIVersion != "" && k.APIVersion != "apps/v1") || (k.Kind != "" && k.Kind != "StatefulSet") {
		return badObject(fmt.Sprintf("the object is %s %s, not an apps/v1 StatefulSet", k.APIVersion, k.Kind))
	}
	if !policies.IsManaged(req.Object) {
		return policies.Request{}, Allowed(), true
	}
	return policies.Request{Operation: op, Object: req.Object, OldObject: req.OldObject}, Response{}, false
}

func badObject(msg string) (policies.Request, Response, bool) {
	resp := Errored(400, msg)
	resp.BadReason = "bad_object"
	return policies.Request{}, resp, true
}

func gvkString(group, version, kind string) string {
	if group == "" {
		return version + " " + kind
	}
	return group + "/" + version + " " + kind
}

// ObjectName names the request's object in denials and logs: its name, else
// its generateName, else the request's name.
func (req *Request) ObjectName() string {
	if o := req.Object; o != nil {
		if o.Metadata.Name != "" {
			return o.Metadata.Name
		}
		if o.Metadata.GenerateName != "" {
			return o.Metadata.GenerateName
		}
	}
	return req.Name
}

// joinRules lists the distinct rules of errs, sorted, for audit annotations.
func joinRules(errs field.ErrorList) string {
	rs := make([]string, 0, len(errs))
	for _, e := range errs {
		rs = append(rs, e.Origin)
	}
	slices.Sort(rs)
	return strings.Join(slices.Compact(rs), ",")
}
