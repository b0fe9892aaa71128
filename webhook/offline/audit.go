package offline

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Verdict is a rule's result for one StatefulSet, with OpenReports' names.
type Verdict string

// The verdicts audit gives: SPEC §5's result is pass or fail. A rule about
// the next update that has nothing to do there (cache-mount without a cache
// volumeClaimTemplate, which cache-storage reports) passes, its message says
// why.
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
)

// Severity says how much data a failing rule puts at risk, with OpenReports'
// names.
type Severity string

// The severities of the audited rules.
const (
	Critical Severity = "critical"
	High     Severity = "high"
	Medium   Severity = "medium"
	Low      Severity = "low"
)

// AuditRules are the rules audit judges, in the order it reports them: the
// validating webhook's (policies.Rules), then what the mutating webhook
// would do on the next update, each fixable without recreating the
// StatefulSet: deny it (a pod volume named cache that is not an emptyDir,
// M3), remove an emptyDir cache volume (M3), add the cache mount (M4). The
// retention policy (M2) is the validator's retention-policy.
var AuditRules = append(slices.Clip(policies.Rules), policies.RuleReservedCacheVolume, policies.MutationEmptyDirRemoved, policies.MutationCacheVolumeMount)

// severities rank the rules: without metadata or content storage there is no
// file system to keep; without a cache (or its mount) the write-ahead log is
// lost on every restart; Delete retention loses the data when the
// StatefulSet is deleted or scaled down; a denied update cannot even scale
// it; a missing size is refused by the apiserver on create, so only a
// hand-edited object has one; an emptyDir named cache is shadowed by the
// cache claim, so nothing is lost, but the next update changes the pod
// template (its pods restart).
var severities = map[string]Severity{
	policies.RuleMetadataStorage:      Critical,
	policies.RuleContentStorage:       Critical,
	policies.RuleCacheStorage:         High,
	policies.RuleRetentionPolicy:      High,
	policies.RuleStorageSize:          Medium,
	policies.RuleReservedCacheVolume:  High,
	policies.MutationEmptyDirRemoved:  Low,
	policies.MutationCacheVolumeMount: High,
}

// RuleResult is one rule's verdict on one StatefulSet.
type RuleResult struct {
	Rule     string
	Verdict  Verdict
	Severity Severity
	// Fields are the paths of the violations, for a fail.
	Fields []string
	// Message says what holds (pass) or what is wrong (fail, skip).
	Message string
	// Fix says what to do about a fail.
	Fix string
}

// Audited is one audited StatefulSet and the verdict of every rule.
type Audited struct {
	*StatefulSet
	Results []RuleResult
	// Note says how a StatefulSet --manage labelled comes under
	// management; "" for one that carries the label.
	Note string
}

// Failed returns the IDs of the rules it fails, in order.
func (a *Audited) Failed() []string {
	var ids []string
	for _, r := range a.Results {
		if r.Verdict == Fail {
			ids = append(ids, r.Rule)
		}
	}
	return ids
}

// Count is how many of its rules have the verdict v.
func (a *Audited) Count(v Verdict) int {
	n := 0
	for _, r := range a.Results {
		if r.Verdict == v {
			n++
		}
	}
	return n
}

// AuditResult is what `audit` found: every managed StatefulSet judged, and
// the unlabelled ones it skipped.
type AuditResult struct {
	Audited []*Audited
	// Skipped are the StatefulSets without the dittofs.com/server label
	// (none under --manage).
	Skipped []*StatefulSet
}

// ExitCode is 1 when any audited StatefulSet fails a rule, else 0.
func (r *AuditResult) ExitCode() int {
	for _, a := range r.Audited {
		if len(a.Failed()) > 0 {
			return 1
		}
	}
	return 0
}

// Audit judges every managed StatefulSet of the input as stored: the
// validating webhook's rules as an UPDATE sees them (a missing field of the
// retention policy is the API's default, Retain), and what the mutating
// webhook would change if the stored object were sent back unchanged — the
// next update of any kind. A StatefulSet that does not decode is an
// *InputError: audit cannot judge it.
func Audit(in *Input, a *admission.Admitter) (*AuditResult, error) {
	r := &AuditResult{}
	errs := &InputError{}
	for _, s := range in.StatefulSets {
		if s.DecodeErr != nil {
			errs.add("%s: statefulset %s does not decode as an apps/v1 StatefulSet: %v", s.Where(), s.Name, s.DecodeErr)
			continue
		}
		if !s.Managed() {
			r.Skipped = append(r.Skipped, s)
			continue
		}
		// The next update, whatever it changes, goes through the mutating
		// webhook: sending the stored object back shows what it does.
		next, err := a.Evaluate("UPDATE", s.json, s.json)
		if err != nil {
			errs.add("%s: statefulset %s: %v", s.Where(), s.Name, err)
			continue
		}
		au := &Audited{StatefulSet: s, Results: judgeStored(s, next)}
		if s.Labelled != nil {
			au.Note = management(s, false)
		}
		r.Audited = append(r.Audited, au)
	}
	if len(errs.Messages) > 0 {
		return nil, errs
	}
	return r, nil
}

// judgeStored gives every rule of AuditRules its verdict on s; next is what
// the webhooks make of the next update.
func judgeStored(s *StatefulSet, next *admission.Evaluation) []RuleResult {
	stored := *s.View
	rp := policies.RetentionPolicy{}
	for _, f := range retention(s.View) {
		if f.name == "whenDeleted" {
			rp.WhenDeleted = f.value
		} else {
			rp.WhenScaled = f.value
		}
	}
	stored.Spec.RetentionPolicy = &rp
	byRule := map[string]field.ErrorList{}
	for _, e := range policies.ValidateStatefulSetUpdate(&stored, nil) {
		byRule[e.Origin] = append(byRule[e.Origin], e)
	}
	rec := s.Recreation()
	var out []RuleResult
	for _, rule := range AuditRules {
		res := RuleResult{Rule: rule, Severity: severities[rule], Verdict: Pass}
		errs := byRule[rule]
		for _, e := range errs {
			res.Fields = append(res.Fields, e.Field)
		}
		if len(errs) > 0 {
			res.Verdict, res.Message = Fail, messages(errs)
		}
		switch rule {
		case policies.RuleMetadataStorage, policies.RuleContentStorage:
			name := policies.MetadataVolume
			if rule == policies.RuleContentStorage {
				name = policies.ContentVolume
			}
			if res.Verdict == Pass {
				res.Message = fmt.Sprintf("has a %q volumeClaimTemplate", name)
				break
			}
			res.Fix = fmt.Sprintf("add a %q volumeClaimTemplate to its manifest and recreate the StatefulSet (Kubernetes cannot add one in place): %s (pods and PVCs are kept), kubectl create -f the manifest, then restart its pods one by one, lowest ordinal first", name, rec.OrphanCommand())
		case policies.RuleCacheStorage:
			if res.Verdict == Pass {
				res.Message = fmt.Sprintf("has a %q volumeClaimTemplate: the write-ahead log survives pod restarts", policies.CacheVolume)
				break
			}
			res.Message = fmt.Sprintf("no %q volumeClaimTemplate: the write-ahead log is lost whenever a pod restarts", policies.CacheVolume)
			res.Fix = policies.RecreateAdvice(s.View)
		case policies.RuleRetentionPolicy:
			if res.Verdict == Pass {
				res.Message = "PVC retention is Retain/Retain"
				break
			}
			var what []string
			for _, f := range retention(s.View) {
				if f.value != policies.Retain {
					what = append(what, fmt.Sprintf("%s is %s: %s", f.name, f.value, f.what))
				}
			}
			res.Message = "persistentVolumeClaimRetentionPolicy." + strings.Join(what, "; ")
			res.Fix = rec.RetainCommand()
			if slices.Contains(next.Mutation.Mutations, policies.MutationRetentionPolicy) {
				res.Fix = "the next update through the mutating webhook sets Retain; to set it now: " + res.Fix
			}
		case policies.RuleStorageSize:
			if res.Verdict == Pass {
				res.Message = "every DittoFS volumeClaimTemplate requests a positive storage size"
				break
			}
			res.Fix = fmt.Sprintf("set a positive size in its manifest and recreate the StatefulSet (a volumeClaimTemplate cannot change in place): %s, kubectl create -f the manifest, then restart its pods one by one", rec.OrphanCommand())
		case policies.RuleReservedCacheVolume:
			res = judgeReserved(next, res)
		case policies.MutationEmptyDirRemoved:
			res = judgeEmptyDir(next, res)
		case policies.MutationCacheVolumeMount:
			res = judgeMount(s, next, rec, res)
		}
		out = append(out, res)
	}
	return out
}

// judgeMount is the cache-mount rule: with a cache volumeClaimTemplate, the
// DittoFS container mounts it, or the next update adds the mount (M4).
func judgeMount(s *StatefulSet, next *admission.Evaluation, rec policies.Recreation, res RuleResult) RuleResult {
	if !policies.HasCacheTemplate(s.View) {
		res.Message = fmt.Sprintf("nothing to mount: no %q volumeClaimTemplate (%s)", policies.CacheVolume, policies.RuleCacheStorage)
		return res
	}
	if slices.Contains(next.Mutation.Mutations, policies.MutationCacheVolumeMount) {
		res.Verdict = Fail
		res.Fields = []string{"spec.template.spec.containers"}
		res.Message = fmt.Sprintf("the DittoFS container does not mount the %q volume: the write-ahead log is not on the persistent volume", policies.CacheVolume)
		ns := ""
		if rec.Namespace != "" {
			ns = " -n " + rec.Namespace
		}
		res.Fix = fmt.Sprintf("the next update through the mutating webhook adds the mount; to roll it out now: kubectl rollout restart statefulset %s%s", rec.Name, ns)
		return res
	}
	for _, w := range next.Mutation.Warnings {
		// M4's warning when no mount can be added: no DittoFS container
		// can be chosen, or its mount path is taken.
		if strings.Contains(w, "no cache volumeMount added") {
			res.Verdict = Fail
			res.Fields = []string{"spec.template.spec.containers"}
			res.Message = w
			res.Fix = fmt.Sprintf("name the DittoFS container with the %s annotation or free the mount path, then apply the manifest", policies.AnnotationContainer)
			return res
		}
	}
	res.Message = fmt.Sprintf("the DittoFS container mounts the %q volume", policies.CacheVolume)
	return res
}

// judgeReserved is reserved-cache-volume: the mutating webhook denies every
// update of a StatefulSet with a cache volumeClaimTemplate and a pod volume
// named cache that is not an emptyDir (M3). On the UPDATE audit evaluates
// that is its only denial (the cache-size annotation counts only when a cache
// is injected, on CREATE).
func judgeReserved(next *admission.Evaluation, res RuleResult) RuleResult {
	st := next.Denial()
	if next.Mutation.Allowed || st == nil {
		res.Message = fmt.Sprintf("no pod volume takes the name %q: the next update is not denied", policies.CacheVolume)
		return res
	}
	res.Verdict = Fail
	var ms []string
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			res.Fields = append(res.Fields, c.Field)
			ms = append(ms, c.Field+": "+c.Message)
		}
	}
	if len(ms) == 0 {
		ms = []string{st.Message}
	}
	res.Message = "the mutating webhook denies every update (even a scale): " + strings.Join(ms, "; ")
	res.Fix = fmt.Sprintf("rename the pod volume in the manifest (the %q volumeClaimTemplate's claim is what pods mount), then apply it", policies.CacheVolume)
	return res
}

// judgeEmptyDir is cache-emptydir-removed: the next update removes a pod
// volume named cache that is an emptyDir (M3), a change of the pod template.
func judgeEmptyDir(next *admission.Evaluation, res RuleResult) RuleResult {
	if !slices.Contains(next.Mutation.Mutations, policies.MutationEmptyDirRemoved) {
		res.Message = fmt.Sprintf("no emptyDir volume named %q for the next update to remove", policies.CacheVolume)
		return res
	}
	res.Verdict = Fail
	for _, op := range next.Mutation.Patch {
		if i, ok := strings.CutPrefix(op.Path, "/spec/template/spec/volumes/"); ok && op.Operation == "remove" {
			res.Fields = append(res.Fields, "spec.template.spec.volumes["+i+"]")
		}
	}
	res.Message = fmt.Sprintf("an emptyDir volume named %q: the %q claim shadows it, but the next update through the mutating webhook removes it, a pod template change that restarts the pods", policies.CacheVolume, policies.CacheVolume)
	res.Fix = "remove the emptyDir volume from the manifest, then apply it when the pods may restart"
	return res
}

// messages joins violations as the validating webhook's causes read.
func messages(errs field.ErrorList) string {
	ms := make([]string, len(errs))
	for i, e := range errs {
		ms[i] = e.Error()
	}
	return strings.Join(ms, "; ")
}
