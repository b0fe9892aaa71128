package manifests

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// mapAPI is what .Capabilities.APIVersions must hold for the chart's inTree
// mode: admissionregistration.k8s.io/v1 MutatingAdmissionPolicy (1.36+).
const mapAPI = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

// inTreePolicies is the in-tree install decoded: what deploy/in-tree and the
// chart's inTree mode must render, and nothing else (SPEC §7).
type inTreePolicies struct {
	mutating    *admissionregistrationv1.MutatingAdmissionPolicy
	mutatingB   *admissionregistrationv1.MutatingAdmissionPolicyBinding
	validating  *admissionregistrationv1.ValidatingAdmissionPolicy
	validatingB *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

func decodeInTree(t *testing.T, r *rendering) inTreePolicies {
	t.Helper()
	if len(r.objs) != 4 {
		t.Fatalf("%s renders %v; the in-tree install is exactly the two policies and their bindings (no server, no certificates)", r.dir, r.objs)
	}
	p := inTreePolicies{
		mutating:    one[admissionregistrationv1.MutatingAdmissionPolicy](t, r),
		mutatingB:   one[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, r),
		validating:  one[admissionregistrationv1.ValidatingAdmissionPolicy](t, r),
		validatingB: one[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r),
	}
	if p.mutatingB.Spec.PolicyName != p.mutating.Name || p.validatingB.Spec.PolicyName != p.validating.Name {
		t.Errorf("%s: a binding names another policy", r.dir)
	}
	return p
}

// settings are what the install sets: the server's two policy flags (the
// MutatingAdmissionPolicy's first two variables, which docs/in-tree.md
// patches by index), the excluded namespaces and the validation actions.
func (p inTreePolicies) settings(t *testing.T) (size, mount string, excluded []string, actions []admissionregistrationv1.ValidationAction) {
	t.Helper()
	vars := p.mutating.Spec.Variables
	if len(vars) < 2 || vars[0].Name != "defaultCacheSize" || vars[1].Name != "cacheMountPath" {
		t.Fatalf("the MutatingAdmissionPolicy's first two variables must be defaultCacheSize and cacheMountPath (docs/in-tree.md patches them by index)")
	}
	for _, mc := range []*admissionregistrationv1.MatchResources{p.mutating.Spec.MatchConstraints, p.validating.Spec.MatchConstraints} {
		if mc == nil || mc.NamespaceSelector == nil || len(mc.NamespaceSelector.MatchExpressions) != 1 {
			t.Fatalf("a policy has no namespaceSelector")
		}
	}
	if d := cmp.Diff(p.mutating.Spec.MatchConstraints, p.validating.Spec.MatchConstraints); d != "" {
		t.Errorf("the two policies select different requests (-mutating +validating):\n%s", d)
	}
	return strings.Trim(vars[0].Expression, "'"), strings.Trim(vars[1].Expression, "'"),
		p.mutating.Spec.MatchConstraints.NamespaceSelector.MatchExpressions[0].Values, p.validatingB.Spec.ValidationActions
}

// The in-tree policies select what the webhooks select (SPEC §7): the same
// label, the same namespace exclusions, the same rules and operations.
func TestInTreeKustomize(t *testing.T) {
	wh := one[admissionregistrationv1.MutatingWebhookConfiguration](t, render(t, "deploy/default")).Webhooks[0]

	p := decodeInTree(t, render(t, "deploy/in-tree"))
	mc := p.mutating.Spec.MatchConstraints
	diff(t, "in-tree objectSelector, namespaceSelector (the webhooks')", []any{wh.ObjectSelector, wh.NamespaceSelector},
		[]any{mc.ObjectSelector, mc.NamespaceSelector})
	if len(mc.ResourceRules) != 1 || !slices.Equal(mc.ResourceRules[0].Resources, wh.Rules[0].Resources) ||
		!slices.Equal(mc.ResourceRules[0].Operations, wh.Rules[0].Operations) {
		t.Errorf("resource rules %+v differ from the webhooks' %+v", mc.ResourceRules, wh.Rules)
	}
	if p.mutating.Spec.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("the MutatingAdmissionPolicy must be reinvoked IfNeeded, as the mutating webhook is")
	}
	size, mount, _, actions := p.settings(t)
	if size != "5Gi" || mount != "/data/cache" {
		t.Errorf("defaults %q, %q; want the server's 5Gi and /data/cache", size, mount)
	}
	if !slices.Equal(actions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
		t.Errorf("deploy/in-tree's validationActions = %v, want [Deny]", actions)
	}

	warn := decodeInTree(t, render(t, "deploy/in-tree-warn"))
	if _, _, _, actions := warn.settings(t); !slices.Equal(actions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn, admissionregistrationv1.Audit}) {
		t.Errorf("deploy/in-tree-warn's validationActions = %v, want [Warn Audit]", actions)
	}
}

// The chart's inTree mode renders the same policies with its values put in,
// and refuses a cluster that does not serve MutatingAdmissionPolicy. With
// the default values, in the default namespace, it renders what
// deploy/in-tree does: the policies are one pair of files, in the chart,
// which deploy/in-tree takes as a kustomize directory.
func TestHelmInTreeMode(t *testing.T) {
	inTree := helmRelease{name: "dittofs-webhook", namespace: installNamespace, values: "mode: inTree\n", apiVersions: []string{mapAPI}}
	p := decodeInTree(t, renderHelm(t, inTree))
	k := decodeInTree(t, render(t, "deploy/in-tree"))
	diff(t, "the chart's inTree mode and deploy/in-tree (kustomize: want)", k, p, cmp.AllowUnexported(inTreePolicies{}))
	size, mount, excluded, actions := p.settings(t)
	if size != "5Gi" || mount != "/data/cache" || !slices.Equal(excluded, []string{"kube-system", installNamespace}) ||
		!slices.Equal(actions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
		t.Errorf("defaults: size %q, mount %q, excluded %v, actions %v", size, mount, excluded, actions)
	}

	custom := inTree.with(`
mode: inTree
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/lib/dittofs/cache, validationAction: warn}
webhooks: {excludedNamespaces: [legacy]}
`)
	size, mount, excluded, actions = decodeInTree(t, renderHelm(t, custom)).settings(t)
	if size != "20Gi" || mount != "/var/lib/dittofs/cache" || !slices.Equal(excluded, []string{"kube-system", installNamespace, "legacy"}) ||
		!slices.Equal(actions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn, admissionregistrationv1.Audit}) {
		t.Errorf("values not applied: size %q, mount %q, excluded %v, actions %v", size, mount, excluded, actions)
	}

	refused := inTree
	refused.apiVersions = nil
	if _, stderr, err := helm(refused, "template", refused.name); err == nil || !strings.Contains(stderr, "MutatingAdmissionPolicy") {
		t.Errorf("mode=inTree on a cluster without %s: err %v, want a refusal naming the API\n%s", mapAPI, err, stderr)
	}

	// The default mode renders no policy.
	if r := renderHelm(t, defaultRelease); len(all[admissionregistrationv1.MutatingAdmissionPolicy](r))+
		len(all[admissionregistrationv1.ValidatingAdmissionPolicy](r)) > 0 {
		t.Errorf("mode webhook renders an admission policy")
	}
}
