package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Answer is the server's answer to one fixture, decoded.
type Answer struct {
	HTTPStatus int
	Body       []byte
	Review     *admissionv1.AdmissionReview // of a 200 answer
	Patch      []jsonpatch.Operation        // response.patch decoded
	Object     []byte                       // request.object patched; nil without an object
}

// Response is the admission response of the answer, or nil.
func (a *Answer) Response() *admissionv1.AdmissionResponse {
	if a.Review == nil {
		return nil
	}
	return a.Review.Response
}

// ParseAnswer decodes an HTTP answer to req and applies its patch to
// req.Object with admission.ApplyPatch. Errors are problems of the answer.
func ParseAnswer(req *ReviewRequest, status int, body []byte) (*Answer, error) {
	a := &Answer{HTTPStatus: status, Body: body}
	if status != 200 {
		return a, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var rv admissionv1.AdmissionReview
	if err := dec.Decode(&rv); err != nil {
		return a, fmt.Errorf("the answer is not an AdmissionReview: %w", err)
	}
	a.Review = &rv
	if rv.Response == nil {
		return a, fmt.Errorf("the answer has no response")
	}
	if len(rv.Response.Patch) > 0 {
		if err := json.Unmarshal(rv.Response.Patch, &a.Patch); err != nil {
			return a, fmt.Errorf("response.patch is not a JSON patch: %w", err)
		}
	}
	if req != nil && len(req.Object) > 0 && !isNull(req.Object) {
		obj, err := admission.ApplyPatch(req.Object, a.Patch)
		if err != nil {
			return a, fmt.Errorf("applying the patch: %w", err)
		}
		a.Object = obj
	}
	return a, nil
}

func isNull(b json.RawMessage) bool { return string(bytes.TrimSpace(b)) == "null" }

// Check returns every way the answer a to req falls short of e (metrics aside),
// and of what holds for every answer: the AdmissionReview's apiVersion, kind
// and uid; no patch on a denial or from the validating webhook; a patch only
// of the paths SPEC §2 names that keeps every other field.
func (e *Expect) Check(webhookName string, req *ReviewRequest, a *Answer) []string {
	var p problems
	if a.HTTPStatus != e.Status() {
		p.add("HTTP status %d, want %d (body %q)", a.HTTPStatus, e.Status(), clip(a.Body))
		return p
	}
	if body := string(a.Body); e.Status() != 200 {
		p.addIf(strings.Contains(strings.TrimRight(body, "\n"), "\n"), "the reason is not one line: %q", body)
		for _, s := range e.Body {
			p.addIf(!strings.Contains(body, s), "body %q does not contain %q", body, s)
		}
		return p
	}
	rv := a.Review
	if rv == nil || rv.Response == nil {
		p.add("no AdmissionReview response in %q", clip(a.Body))
		return p
	}
	p.addIf(rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview",
		"answer is %s %s, want admission.k8s.io/v1 AdmissionReview", rv.APIVersion, rv.Kind)
	r := rv.Response
	if req != nil && string(r.UID) != req.UID {
		p.add("response.uid %q, want the request's %q", r.UID, req.UID)
	}
	if e.Allowed != nil && r.Allowed != *e.Allowed {
		p.add("allowed %v, want %v (status %s)", r.Allowed, *e.Allowed, statusString(r.Result))
	}
	p = append(p, checkStatus(e, r.Result)...)
	p = append(p, CheckWarnings(e, r.Warnings)...)
	hasPatch := len(r.Patch) > 0
	p.addIf(hasPatch != (r.PatchType != nil), "patch and patchType must come together: patch %q, patchType %v",
		r.Patch, r.PatchType)
	if r.PatchType != nil && *r.PatchType != admissionv1.PatchTypeJSONPatch {
		p.add("patchType %q, want JSONPatch", *r.PatchType)
	}
	p.addIf(hasPatch && !r.Allowed, "a denial carries a patch")
	p.addIf(hasPatch && webhookName == WebhookValidate, "the validating webhook patched: %s", r.Patch)
	p.addIf(e.Patch != "" && hasPatch != (e.Patch == "some"), "want patch: %s, got %q", e.Patch, r.Patch)
	if hasPatch && req != nil && len(req.Object) > 0 { // a fuzzed request may have none
		p = append(p, CheckPatchScope(req.Object, a.Object, a.Patch)...)
	}
	if e.Object != nil && req != nil {
		p = append(p, CheckObject(e.Object, a.Object, req.OldObject)...)
	}
	for k, v := range e.Audit {
		got, ok := r.AuditAnnotations[k]
		p.addIf(!ok || got != v, "audit annotation %q = %q, want %q (annotations %v)", k, got, v, r.AuditAnnotations)
	}
	return p
}

func checkStatus(e *Expect, st *metav1.Status) []string {
	var p problems
	switch {
	case e.Code == 0 && e.Reason == "" && len(e.Message) == 0 && e.Causes == nil:
		return nil
	case st == nil:
		p.add("no response.status, want code %d %s", e.Code, e.Reason)
		return p
	}
	p.addIf(e.Code != 0 && st.Code != e.Code, "status.code %d, want %d (%s)", st.Code, e.Code, st.Message)
	p.addIf(e.Reason != "" && string(st.Reason) != e.Reason, "status.reason %q, want %q", st.Reason, e.Reason)
	for _, s := range e.Message {
		p.addIf(!strings.Contains(st.Message, s), "status.message %q does not contain %q", st.Message, s)
	}
	if e.Causes != nil {
		var causes []metav1.StatusCause
		if st.Details != nil {
			causes = st.Details.Causes
		}
		p = append(p, CheckCauses(e.Causes, causes)...)
	}
	return p
}

// CheckCauses requires exactly the wanted causes, in any order. A cause's
// rule is read from its message, which must start (after the field error's
// type and value) with the rule ID, so that it stands alone in kubectl.
func CheckCauses(want []Cause, got []metav1.StatusCause) []string {
	var p problems
	left := slices.Clone(got)
	for _, w := range want {
		i := slices.IndexFunc(left, func(g metav1.StatusCause) bool {
			return g.Field == w.Field && (w.Rule == "" || CauseRule(g) == w.Rule) && (w.Type == "" || string(g.Type) == w.Type)
		})
		if i < 0 {
			p.add("no cause %+v", w)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	for _, g := range left {
		p.add("unexpected cause field=%s rule=%s type=%s: %s", g.Field, CauseRule(g), g.Type, g.Message)
	}
	return p
}

// causeBody matches a field error's body: its type, optionally a value, then
// the detail ("Required value: DETAIL", `Invalid value: "0": DETAIL`).
var causeBody = regexp.MustCompile(`^(Required value|Invalid value: (?:"(?:[^"\\]|\\.)*"|[^:]*)): (.*)$`)

// CauseRule returns the rule ID a cause's detail starts with, or "".
func CauseRule(c metav1.StatusCause) string {
	m := causeBody.FindStringSubmatch(c.Message)
	if m == nil {
		return ""
	}
	for _, r := range policies.Rules {
		if strings.HasPrefix(m[2], r+": ") {
			return r
		}
	}
	return ""
}

// CheckWarnings checks the warnings against e's warnings, noWarnings and warningCount.
func CheckWarnings(e *Expect, warnings []string) []string {
	var p problems
	p.addIf(e.NoWarnings && len(warnings) > 0, "want no warning, got %q", warnings)
	if e.WarningCount != nil && len(warnings) != *e.WarningCount {
		p.add("%d warnings, want %d: %q", len(warnings), *e.WarningCount, warnings)
	}
	for _, s := range e.Warnings {
		p.addIf(!slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, s) }),
			"no warning contains %q (warnings %q)", s, warnings)
	}
	return p
}

// CheckObject checks the patched object against oe; old is the request's oldObject.
func CheckObject(oe *ObjectExpect, obj, old []byte) []string {
	var p problems
	doc, err := decodeJSON(obj)
	if err != nil {
		p.add("object: %v", err)
		return p
	}
	if oe.EqualsOldObject {
		w, err := decodeJSON(old)
		if err != nil {
			p.add("equalsOldObject: the request's oldObject: %v", err)
		} else if d := cmp.Diff(w, doc, ignorePointers("/metadata/managedFields")); d != "" {
			// A re-apply's managedFields entry has a new time, which the
			// apiserver drops when nothing else changed.
			p.add("object differs from the oldObject (-old +got):\n%s", d)
		}
	}
	for _, h := range oe.Has {
		v, ok := Lookup(doc, h.Path)
		if !ok {
			p.add("object has no %s", h.Path)
			continue
		}
		if w, err := decodeJSON(h.Value); len(h.Value) > 0 && (err != nil || !reflect.DeepEqual(w, v)) {
			p.add("%s = %s, want %s (%v)", h.Path, mustJSON(v), h.Value, err)
		}
		if h.Length != nil {
			n := -1
			if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map {
				n = rv.Len()
			}
			p.addIf(n != *h.Length, "%s has length %d, want %d: %s", h.Path, n, *h.Length, mustJSON(v))
		}
	}
	for _, a := range oe.Absent {
		if v, ok := Lookup(doc, a); ok {
			p.add("object has %s = %s, want it absent", a, mustJSON(v))
		}
	}
	return p
}

// mutationPaths are the JSON pointers (as regular expressions) each mutation
// of SPEC §2 patches, by mutation ID: the only paths the mutating webhook may
// touch (TestMutationPaths requires one for every mutation).
var mutationPaths = map[string]string{
	policies.MutationCacheTemplate:    `/spec/volumeClaimTemplates(/-)?`,
	policies.MutationCacheCarryOver:   `/spec/volumeClaimTemplates(/(\d+|-))?`,
	policies.MutationRetentionPolicy:  `/spec/persistentVolumeClaimRetentionPolicy(/whenDeleted|/whenScaled)?`,
	policies.MutationEmptyDirRemoved:  `/spec/template/spec/volumes/\d+`,
	policies.MutationCacheVolumeMount: `/spec/template/spec/containers/\d+/volumeMounts(/-)?`,
}

// allowedPatchPaths matches the paths of every mutation.
var allowedPatchPaths = func() *regexp.Regexp {
	alts := make([]string, 0, len(policies.Mutations))
	for _, m := range policies.Mutations {
		alts = append(alts, mutationPaths[m])
	}
	return regexp.MustCompile(`^(` + strings.Join(alts, "|") + `)$`)
}()

// CheckPatchScope checks that a patch uses add, remove and replace only, on
// the paths SPEC §2 names, and keeps everything else, unknown fields included:
// every volumeClaimTemplate in order, volumes but those named cache, the
// volumeMounts (only appended to), the rest equal.
func CheckPatchScope(before, after []byte, ops []jsonpatch.Operation) []string {
	var p problems
	for _, op := range ops {
		if op.Operation != "add" && op.Operation != "remove" && op.Operation != "replace" {
			p.add("patch operation %q at %s", op.Operation, op.Path)
		}
		p.addIf(!allowedPatchPaths.MatchString(op.Path), "patch touches %s, which SPEC §2 does not name", op.Path)
	}
	b, err1 := decodeJSON(before)
	a, err2 := decodeJSON(after)
	if err1 != nil || err2 != nil {
		p.add("objects do not decode: %v %v", err1, err2)
		return p
	}
	list := func(doc any, ptr string) []any {
		v, _ := Lookup(doc, ptr)
		l, _ := v.([]any)
		return l
	}
	// volumeClaimTemplates: the old ones, in order, with others between.
	if bv, av := list(b, "/spec/volumeClaimTemplates"), list(a, "/spec/volumeClaimTemplates"); !isSubsequence(bv, av) {
		p.add("volumeClaimTemplates were changed, not only added to:\n  before %s\n  after  %s",
			mustJSON(bv), mustJSON(av))
	}
	// volumes: some of those named cache removed, nothing else changed.
	bvol, avol := list(b, "/spec/template/spec/volumes"), list(a, "/spec/template/spec/volumes")
	isCache := func(v any) bool {
		m, ok := v.(map[string]any)
		return ok && m["name"] == policies.CacheVolume
	}
	d := cmp.Diff(slices.DeleteFunc(slices.Clone(bvol), isCache), slices.DeleteFunc(slices.Clone(avol), isCache),
		cmpopts.EquateEmpty())
	p.addIf(d != "" || !isSubsequence(avol, bvol), "volumes other than cache were changed (-before +after):\n%s", d)
	// volumeMounts: appended to only.
	bcs, acs := list(b, "/spec/template/spec/containers"), list(a, "/spec/template/spec/containers")
	if len(bcs) != len(acs) {
		p.add("containers: %d before, %d after", len(bcs), len(acs))
	} else {
		for i := range bcs {
			bl, al := list(bcs[i], "/volumeMounts"), list(acs[i], "/volumeMounts")
			if len(al) < len(bl) || !cmp.Equal(bl, al[:len(bl)], cmpopts.EquateEmpty()) {
				p.add("container %d: volumeMounts were changed, not only appended to", i)
			}
		}
	}
	// Everything else: equal.
	if d := cmp.Diff(b, a, ignorePointers(`/spec/(volumeClaimTemplates|persistentVolumeClaimRetentionPolicy|`+
		`template/spec/volumes|template/spec/containers/\d+/volumeMounts)`)); d != "" {
		p.add("the patch changed fields outside its paths (-before +after):\n%s", d)
	}
	return p
}

// ignorePointers ignores, in decoded JSON, the values at the JSON pointers re matches.
func ignorePointers(re string) cmp.Option {
	r := regexp.MustCompile(`^(?:` + re + `)$`)
	return cmp.FilterPath(func(path cmp.Path) bool {
		var ptr jsontext.Pointer // escapes "/" and "~" in keys (dittofs.com/server)
		for _, s := range path {
			switch s := s.(type) {
			case cmp.MapIndex:
				ptr = ptr.AppendToken(fmt.Sprint(s.Key()))
			case cmp.SliceIndex:
				ptr = ptr.AppendToken(strconv.Itoa(s.Key()))
			}
		}
		return r.MatchString(string(ptr))
	}, cmp.Ignore())
}

func isSubsequence(sub, seq []any) bool {
	i := 0
	for _, v := range seq {
		if i < len(sub) && reflect.DeepEqual(sub[i], v) {
			i++
		}
	}
	return i == len(sub)
}

// Lookup returns the value at an RFC 6901 JSON pointer in a decoded document.
func Lookup(doc any, ptr string) (any, bool) {
	p := jsontext.Pointer(ptr)
	if !p.IsValid() {
		return nil, false
	}
	cur := doc
	for seg := range p.Tokens() { // unescaped
		switch c := cur.(type) {
		case map[string]any:
			var ok bool
			if cur, ok = c[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func decodeJSON(b []byte) (any, error) {
	var v any
	err := json.Unmarshal(b, &v)
	return v, err
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func statusString(st *metav1.Status) string {
	if st == nil {
		return "none"
	}
	return fmt.Sprintf("%d %s: %s", st.Code, st.Reason, st.Message)
}

func clip(b []byte) string { return string(b[:min(len(b), 300)]) }

type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// addIf adds the problem when bad.
func (p *problems) addIf(bad bool, format string, args ...any) {
	if bad {
		p.add(format, args...)
	}
}
