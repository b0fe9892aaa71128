package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// chartFacts is a rendering of the chart with its objects decoded, for the
// value cases to read.
type chartFacts struct {
	r         *rendering
	dep       *appsv1.Deployment
	container *corev1.Container
	flags     map[string]string
	mwc       *admissionregistrationv1.MutatingWebhookConfiguration
	vwc       *admissionregistrationv1.ValidatingWebhookConfiguration
}

func loadChartFacts(t *testing.T, r *rendering) *chartFacts {
	t.Helper()
	f := &chartFacts{
		r:   r,
		dep: decode[appsv1.Deployment](t, r.only(t, "Deployment")),
		mwc: decode[admissionregistrationv1.MutatingWebhookConfiguration](t, r.only(t, "MutatingWebhookConfiguration")),
		vwc: decode[admissionregistrationv1.ValidatingWebhookConfiguration](t, r.only(t, "ValidatingWebhookConfiguration")),
	}
	f.container = &f.dep.Spec.Template.Spec.Containers[0]
	var problems []string
	f.flags, problems = parseServeArgs(f.container.Args)
	for _, p := range problems {
		t.Errorf("container args: %s", p)
	}
	return f
}

// webhookFields returns, for both webhook configurations, what the chart's
// webhook values set.
func (f *chartFacts) webhookFields() map[string][]any {
	m, v := f.mwc.Webhooks[0], f.vwc.Webhooks[0]
	return map[string][]any{
		"failurePolicy":     {show(m.FailurePolicy), show(v.FailurePolicy)},
		"timeoutSeconds":    {show(m.TimeoutSeconds), show(v.TimeoutSeconds)},
		"namespaceSelector": {metav1.FormatLabelSelector(m.NamespaceSelector), metav1.FormatLabelSelector(v.NamespaceSelector)},
	}
}

// helmValueCase is a set of non-default values and what it must render.
type helmValueCase struct {
	name   string
	values string // YAML
	check  func(t *testing.T, f *chartFacts)
}

var helmValueCases = []helmValueCase{
	{"image from a private registry", `
image: {repository: registry.example/dittofs-webhook, tag: v1.2.3, pullPolicy: IfNotPresent, pullSecrets: [{name: regcred}]}`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "image", f.container.Image, "registry.example/dittofs-webhook:v1.2.3")
			expect(t, "imagePullPolicy", f.container.ImagePullPolicy, corev1.PullIfNotPresent)
			expect(t, "imagePullSecrets", f.dep.Spec.Template.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}})
			expect(t, "app.kubernetes.io/version label", f.dep.Labels["app.kubernetes.io/version"], "v1.2.3")
		}},
	{"image by digest", `
image: {tag: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "image", f.container.Image, "ghcr.io/dittofs/dittofs-webhook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
			expect(t, "imagePullPolicy", f.container.ImagePullPolicy, corev1.PullPolicy(""))
		}},
	{"3 replicas", `replicas: 3`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "replicas", show(f.dep.Spec.Replicas), "3")
			f.r.only(t, "PodDisruptionBudget")
		}},
	{"1 replica: no PodDisruptionBudget, which would block every drain", `replicas: 1`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "replicas", show(f.dep.Spec.Replicas), "1")
			expect(t, "PodDisruptionBudgets", len(f.r.ofKind("PodDisruptionBudget")), 0)
		}},
	{"resources", `
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "2", memory: 512Mi}}`,
		func(t *testing.T, f *chartFacts) {
			r := f.container.Resources
			expect(t, "resources", []string{r.Requests.Cpu().String(), r.Requests.Memory().String(), r.Limits.Cpu().String(), r.Limits.Memory().String()},
				[]string{"100m", "128Mi", "2", "512Mi"})
		}},
	{"scheduling: nodeSelector, tolerations, affinity and spread replace the defaults", `
nodeSelector: {node-role.kubernetes.io/control-plane: ""}
tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]}]}}}
topologySpreadConstraints: [{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]`,
		func(t *testing.T, f *chartFacts) {
			pod := f.dep.Spec.Template.Spec
			expect(t, "nodeSelector", pod.NodeSelector, map[string]string{"node-role.kubernetes.io/control-plane": ""})
			expect(t, "tolerations", pod.Tolerations, []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}})
			if pod.Affinity == nil || pod.Affinity.NodeAffinity == nil || pod.Affinity.PodAntiAffinity != nil {
				t.Errorf("affinity = %+v, want the nodeAffinity given, instead of the default podAntiAffinity", pod.Affinity)
			}
			if len(pod.TopologySpreadConstraints) != 1 || pod.TopologySpreadConstraints[0].MaxSkew != 2 {
				t.Errorf("topologySpreadConstraints = %+v, want the one given", pod.TopologySpreadConstraints)
			}
		}},
	{"webhooks: failurePolicy, timeout, excluded namespaces", `
webhooks: {failurePolicy: Ignore, timeoutSeconds: 10, excludedNamespaces: [flux-system, monitoring, kube-system]}`,
		func(t *testing.T, f *chartFacts) {
			// kube-system is excluded once, whoever names it.
			sel := "kubernetes.io/metadata.name notin (dittofs-webhook,flux-system,kube-system,monitoring)"
			expect(t, "webhook fields (mutating, validating)", f.webhookFields(), map[string][]any{
				"failurePolicy":     {"Ignore", "Ignore"},
				"timeoutSeconds":    {"10", "10"},
				"namespaceSelector": {sel, sel},
			})
		}},
	{"server flags", `
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, logFormat: text, logLevel: debug, validationAction: warn}`,
		func(t *testing.T, f *chartFacts) {
			for flag, want := range map[string]string{
				"default-cache-size": "20Gi", "cache-mount-path": "/var/cache/dittofs",
				"log-format": "text", "log-level": "debug", "validation-action": "warn",
			} {
				expect(t, "--"+flag, f.flags[flag], want)
			}
		}},
	{"an existing ClusterIssuer instead of the chart's CA", `
certManager: {issuer: {name: corp-ca, kind: ClusterIssuer}}`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "Issuers", len(f.r.ofKind("Issuer")), 0)
			c := decode[cmapi.Certificate](t, f.r.only(t, "Certificate"))
			expect(t, "serving Certificate issuerRef", c.Spec.IssuerRef, cmmeta.IssuerReference{Name: "corp-ca", Kind: "ClusterIssuer", Group: "cert-manager.io"})
			expect(t, "inject-ca-from", f.mwc.Annotations[injectCAFrom], c.Namespace+"/"+c.Name)
			expect(t, "serving Certificate secretName", c.Spec.SecretName, f.dep.Spec.Template.Spec.Volumes[0].Secret.SecretName)
		}},
	{"an existing Issuer of another group", `
certManager: {issuer: {name: vault, kind: Issuer, group: cert-manager.example}}`,
		func(t *testing.T, f *chartFacts) {
			expect(t, "Issuers", len(f.r.ofKind("Issuer")), 0)
			c := decode[cmapi.Certificate](t, f.r.only(t, "Certificate"))
			expect(t, "serving Certificate issuerRef", c.Spec.IssuerRef, cmmeta.IssuerReference{Name: "vault", Kind: "Issuer", Group: "cert-manager.example"})
		}},
	{"monitoring with the labels a Prometheus and a Grafana select by", `
monitoring:
  serviceMonitor: {enabled: true, interval: 1m, labels: {release: kube-prometheus-stack}}
  prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
  dashboard: {enabled: true, namespace: grafana, labels: {team: storage}, annotations: {grafana_folder: DittoFS}}`,
		func(t *testing.T, f *chartFacts) {
			sm := decode[monitoringv1.ServiceMonitor](t, f.r.only(t, "ServiceMonitor"))
			expect(t, "ServiceMonitor release label", sm.Labels["release"], "kube-prometheus-stack")
			expect(t, "ServiceMonitor interval", sm.Spec.Endpoints[0].Interval, monitoringv1.Duration("1m"))
			pr := decode[monitoringv1.PrometheusRule](t, f.r.only(t, "PrometheusRule"))
			expect(t, "PrometheusRule release label", pr.Labels["release"], "kube-prometheus-stack")
			cm := decode[corev1.ConfigMap](t, f.r.only(t, "ConfigMap"))
			expect(t, "dashboard namespace", cm.Namespace, "grafana")
			expect(t, "dashboard labels grafana_dashboard, team", []string{cm.Labels["grafana_dashboard"], cm.Labels["team"]}, []string{"1", "storage"})
			expect(t, "dashboard annotations", cm.Annotations, map[string]string{"grafana_folder": "DittoFS"})
		}},
	{"monitoring off (the default)", ``,
		func(t *testing.T, f *chartFacts) {
			for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"} {
				expect(t, kind+" objects", len(f.r.ofKind(kind)), 0)
			}
		}},
	{"fullnameOverride names every object", `fullnameOverride: dfs-admission`,
		func(t *testing.T, f *chartFacts) {
			for _, o := range f.r.objs {
				if !strings.HasPrefix(o.Name, "dfs-admission") {
					t.Errorf("%s: name does not start with the fullnameOverride", o)
				}
			}
			expect(t, "webhook service", f.mwc.Webhooks[0].ClientConfig.Service.Name, "dfs-admission")
			c, _ := f.r.find("Certificate", installNamespace, "dfs-admission-serving-cert")
			expect(t, "serving Certificate dnsNames", decode[cmapi.Certificate](t, c).Spec.DNSNames,
				serviceDNSNames("dfs-admission", installNamespace))
		}},
}

func TestHelmValues(t *testing.T) {
	for _, c := range helmValueCases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, loadChartFacts(t, renderHelm(t, defaultRelease.with(c.values))))
		})
	}
}

// TestHelmSchemaRejectsTypos: values.schema.json fails `helm template` (and
// so `helm install`) on a misspelled key or a bad value, and names where.
func TestHelmSchemaRejectsTypos(t *testing.T) {
	for _, c := range []struct {
		values string
		at     string // the JSON pointer the error must name
	}{
		{`replica: 2`, ""},
		{`image: {tga: v1.2.3}`, "/image"},
		{`image: {pullPolicy: Sometimes}`, "/image/pullPolicy"},
		{`image: {pullSecrets: [regcred]}`, "/image/pullSecrets/0"},
		{`replicas: "2"`, "/replicas"},
		{`replicas: 0`, "/replicas"},
		{`resources: {limit: {cpu: "1"}}`, "/resources"},
		{`resources: {requests: {cpus: 1}}`, "/resources/requests"},
		{`tolerations: [{key: a, operater: Exists}]`, "/tolerations/0"},
		{`affinity: {podAntiAfinity: {}}`, "/affinity"},
		{`webhooks: {failurePolicy: fail}`, "/webhooks/failurePolicy"},
		{`webhooks: {timeoutSeconds: 60}`, "/webhooks/timeoutSeconds"},
		{`webhooks: {excludedNamespace: [monitoring]}`, "/webhooks"},
		{`webhooks: {excludedNamespaces: [Monitoring]}`, "/webhooks/excludedNamespaces/0"},
		{`server: {validationAction: audit}`, "/server/validationAction"},
		{`server: {validation-action: warn}`, "/server"},
		{`server: {defaultCacheSize: 0Gi}`, "/server/defaultCacheSize"},
		{`server: {defaultCacheSize: 5}`, "/server/defaultCacheSize"},
		{`server: {cacheMountPath: data/cache}`, "/server/cacheMountPath"},
		{`server: {logLevel: verbose}`, "/server/logLevel"},
		{`certManager: {issuer: {kind: Vault}}`, "/certManager/issuer/kind"},
		{`certManager: {issuerRef: {name: x}}`, "/certManager"},
		{`monitoring: {serviceMonitor: {enable: true}}`, "/monitoring/serviceMonitor"},
		{`monitoring: {dashboard: {enabled: "yes"}}`, "/monitoring/dashboard/enabled"},
		{`monitoring: {serviceMonitor: {interval: 30}}`, "/monitoring/serviceMonitor/interval"},
		{`monitoring: {grafana: {enabled: true}}`, "/monitoring"},
	} {
		t.Run(c.values, func(t *testing.T) {
			_, stderr, err := helmTemplate(t, defaultRelease.with(c.values))
			if err == nil {
				t.Fatalf("helm template accepted values %s", c.values)
			}
			// The validator's errors read "at '/json/pointer': ...".
			if !strings.Contains(stderr, "schema") || !strings.Contains(stderr, "at '"+c.at+"'") {
				t.Errorf("helm template failed, but not by the schema at %q:\n%s", c.at, stderr)
			}
		})
	}
}

// TestHelmValuesDocumented: every value of values.yaml is in the schema (the
// defaults validate: TestHelmLint) and in the values table of
// docs/install-helm.md, and every key the schema accepts is in values.yaml,
// which so shows every setting.
func TestHelmValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	var schema jsonSchema
	raw, err = os.ReadFile(filepath.Join(repoRoot, chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "install-helm.md"))
	if err != nil {
		t.Fatal(err)
	}

	valuePaths := leafPaths("", values)
	for _, p := range valuePaths {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/install-helm.md does not document the value `%s`", p)
		}
	}
	// "global" is Helm's, for parent charts.
	for _, p := range schema.paths("") {
		shown := func(v string) bool { return v == p || strings.HasPrefix(v, p+".") || strings.HasPrefix(p, v+".") }
		if p != "global" && !slices.ContainsFunc(valuePaths, shown) {
			t.Errorf("the schema accepts %s, which values.yaml does not show", p)
		}
	}
}

// leafPaths returns the dotted paths of the values that are not maps with
// keys; resources is one value (its requests and limits are Kubernetes').
func leafPaths(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || prefix == "resources" {
		return []string{prefix}
	}
	var out []string
	for k, c := range m {
		out = append(out, leafPaths(strings.TrimPrefix(prefix+"."+k, "."), c)...)
	}
	sort.Strings(out)
	return out
}

// jsonSchema is the part of a JSON schema the test walks.
type jsonSchema struct {
	Schema               string                 `json:"$schema"`
	Ref                  string                 `json:"$ref"`
	Title                string                 `json:"title"`
	Description          string                 `json:"description"`
	Type                 any                    `json:"type"`
	Properties           map[string]*jsonSchema `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	Required             []string               `json:"required"`
	Items                *jsonSchema            `json:"items"`
	Enum                 []any                  `json:"enum"`
	Const                any                    `json:"const"`
	AnyOf                []*jsonSchema          `json:"anyOf"`
	Pattern              string                 `json:"pattern"`
	PropertyNames        *jsonSchema            `json:"propertyNames"`
	PatternProperties    map[string]*jsonSchema `json:"patternProperties"`
	MinLength            *int                   `json:"minLength"`
	MaxLength            *int                   `json:"maxLength"`
	Minimum              *float64               `json:"minimum"`
	Maximum              *float64               `json:"maximum"`
	UniqueItems          bool                   `json:"uniqueItems"`
	Definitions          map[string]*jsonSchema `json:"definitions"`
}

// paths returns the dotted paths of the properties s declares, nested.
func (s *jsonSchema) paths(prefix string) []string {
	var out []string
	for k, p := range s.Properties {
		path := strings.TrimPrefix(prefix+"."+k, ".")
		out = append(out, path)
		out = append(out, p.paths(path)...)
	}
	return out
}
