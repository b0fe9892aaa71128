package manifests

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// mapAPI must be in .Capabilities.APIVersions for the chart's inTree mode.
const mapAPI = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

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
	p := inTreePolicies{one[admissionregistrationv1.MutatingAdmissionPolicy](t, r),
		one[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, r),
		one[admissionregistrationv1.ValidatingAdmissionPolicy](t, r),
		one[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r)}
	if p.mutatingB.Spec.PolicyName != p.mutating.Name || p.validatingB.Spec.PolicyName != p.validating.Name {
		t.Errorf("%s: a binding names another policy", r.dir)
	}
	return p
}

// inTreeSettings: the two policy flags (the first two variables, which
// docs/in-tree.md patches by index), excluded namespaces, validation actions.
type inTreeSettings struct {
	Size, Mount string
	Excluded    []string
	Actions     []admissionregistrationv1.ValidationAction
}

// TestInTree: the in-tree installs render the two policies with their settings,
// selecting what the webhooks select (SPEC §7); the chart's defaults render
// deploy/in-tree, and it refuses a cluster without MutatingAdmissionPolicy.
func TestInTree(t *testing.T) {
	wh := one[admissionregistrationv1.MutatingWebhookConfiguration](t, render(t, "deploy/default")).Webhooks[0]
	deny := []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	warn := []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn, admissionregistrationv1.Audit}
	excluded := []string{"kube-system", installNamespace}
	inTree := helmRelease{name: "dittofs-webhook", namespace: installNamespace, values: "mode: inTree\n", apiVersions: []string{mapAPI}}
	for _, c := range []struct {
		r    *rendering
		want inTreeSettings
	}{
		{render(t, "deploy/in-tree"), inTreeSettings{"5Gi", "/data/cache", excluded, deny}},
		{render(t, "deploy/in-tree-warn"), inTreeSettings{"5Gi", "/data/cache", excluded, warn}},
		{renderHelm(t, inTree.with(`mode: inTree
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/lib/dittofs/cache, validationAction: warn}
webhooks: {excludedNamespaces: [legacy]}`)), inTreeSettings{"20Gi", "/var/lib/dittofs/cache", append(excluded, "legacy"), warn}},
	} {
		t.Run(c.r.dir, func(t *testing.T) {
			p := decodeInTree(t, c.r)
			vars, mc := p.mutating.Spec.Variables, p.mutating.Spec.MatchConstraints
			if len(vars) < 2 || vars[0].Name != "defaultCacheSize" || vars[1].Name != "cacheMountPath" {
				t.Fatalf("the MutatingAdmissionPolicy's first two variables must be defaultCacheSize and cacheMountPath")
			}
			if mc == nil || mc.NamespaceSelector == nil || len(mc.NamespaceSelector.MatchExpressions) != 1 {
				t.Fatalf("the MutatingAdmissionPolicy has no namespaceSelector")
			}
			diff(t, "settings", c.want, inTreeSettings{strings.Trim(vars[0].Expression, "'"), strings.Trim(vars[1].Expression, "'"),
				mc.NamespaceSelector.MatchExpressions[0].Values, p.validatingB.Spec.ValidationActions})
			diff(t, "the two policies' matchConstraints (mutating, validating)", mc, p.validating.Spec.MatchConstraints)
			nsSel := wh.NamespaceSelector.DeepCopy()
			nsSel.MatchExpressions[0].Values = c.want.Excluded
			diff(t, "objectSelector, namespaceSelector (the webhooks', with the excluded namespaces)",
				[]any{wh.ObjectSelector, nsSel}, []any{mc.ObjectSelector, mc.NamespaceSelector})
			if len(mc.ResourceRules) != 1 || !slices.Equal(mc.ResourceRules[0].Resources, wh.Rules[0].Resources) ||
				!slices.Equal(mc.ResourceRules[0].Operations, wh.Rules[0].Operations) {
				t.Errorf("resource rules %+v differ from the webhooks' %+v", mc.ResourceRules, wh.Rules)
			}
			if p.mutating.Spec.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Errorf("the MutatingAdmissionPolicy must be reinvoked IfNeeded, as the mutating webhook is")
			}
		})
	}
	diff(t, "the chart's inTree mode and deploy/in-tree (kustomize: want)", decodeInTree(t, render(t, "deploy/in-tree")),
		decodeInTree(t, renderHelm(t, inTree)), cmp.AllowUnexported(inTreePolicies{}))

	refused := inTree
	refused.apiVersions = nil
	if _, stderr, err := helm(refused, "template", refused.name); err == nil || !strings.Contains(stderr, "MutatingAdmissionPolicy") {
		t.Errorf("mode=inTree on a cluster without %s: err %v, want a refusal naming the API\n%s", mapAPI, err, stderr)
	}
	if r := renderHelm(t, defaultRelease); len(all[admissionregistrationv1.MutatingAdmissionPolicy](r))+
		len(all[admissionregistrationv1.ValidatingAdmissionPolicy](r)) > 0 {
		t.Errorf("mode webhook renders an admission policy")
	}
}
