package manifests

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const monitoringValues = "monitoring: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}, dashboard: {enabled: true}}"

// helmInstall is an installation of the chart that must pass every installCheck.
type helmInstall struct {
	name       string
	release    helmRelease
	namePrefix string // the chart's object names: the release name, or RELEASE-dittofs-webhook
}

func (h helmInstall) load(t *testing.T) *install {
	t.Helper()
	return loadInstallAs(t, renderHelm(t, h.release), h.release.namespace, h.namePrefix, false)
}

// helmMonitoringInstall: another release name and namespace than the alerts'.
var helmMonitoringInstall = helmInstall{"monitoring, another release name and namespace",
	helmRelease{name: "dfs", namespace: "dittofs-system", values: monitoringValues}, "dfs-dittofs-webhook"}

var helmInstalls = []helmInstall{
	helmMonitoringInstall,
	{"warn mode, 3 replicas, other server flags", defaultRelease.with(`replicas: 3
server: {validationAction: warn, defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, logFormat: text, logLevel: debug}
webhooks: {excludedNamespaces: [flux-system]}`), "dittofs-webhook"},
}

func TestHelmLint(t *testing.T) {
	releases := []helmRelease{defaultRelease}
	for _, h := range helmInstalls {
		releases = append(releases, h.release)
	}
	for _, c := range helmValueCases {
		releases = append(releases, defaultRelease.with(c.values))
	}
	for _, h := range releases {
		// --strict: a warning (an unknown value, a deprecated API) fails too.
		if out, stderr, err := helm(h, "lint", "--strict"); err != nil {
			t.Errorf("helm lint --strict with values %q: %v\n%s%s", h.values, err, out, stderr)
		}
	}
}

// TestHelmRendersTheKustomizeInstall: the chart installs the overlays' objects
// field for field, so it has every property they are checked for.
func TestHelmRendersTheKustomizeInstall(t *testing.T) {
	for overlay, values := range map[string]string{
		"deploy/default": "", "deploy/monitoring": monitoringValues, "deploy/rollout-warn": "server: {validationAction: warn}",
	} {
		t.Run(overlay, func(t *testing.T) {
			_, kust := render(t, overlay).split(sampleNamespace)
			compareRenderings(t, kust, renderHelm(t, defaultRelease.with(values)))
		})
	}
}

// chartOnlyLabels may be added by the chart (Helm's), kustomizeOnlyLabels the reverse.
var (
	chartOnlyLabels = map[string]bool{
		"helm.sh/chart": true, "app.kubernetes.io/instance": true, "app.kubernetes.io/version": true,
		"app.kubernetes.io/managed-by": true, "app.kubernetes.io/name": true, "app.kubernetes.io/component": true,
	}
	kustomizeOnlyLabels = map[string]bool{"app.kubernetes.io/managed-by": true}
)

// compareRenderings: chart has kust's objects (but its Namespace) but for labels.
func compareRenderings(t *testing.T, kust, chart *rendering) {
	t.Helper()
	want := map[string]object{}
	for _, o := range kust.objs {
		if o.Kind != "Namespace" {
			want[o.String()] = o
		}
	}
	for _, o := range chart.objs {
		k, ok := want[o.String()]
		if !ok {
			t.Errorf("the chart renders %s, which %s does not", o, kust.dir)
			continue
		}
		delete(want, o.String())
		kv, kl := withoutLabels(t, k, func(_, name string) bool { return kustomizeOnlyLabels[name] })
		cv, _ := withoutLabels(t, o, func(path, name string) bool {
			_, inKust := kl[path][name]
			return chartOnlyLabels[name] && !inKust
		})
		if d := cmp.Diff(kv, cv); d != "" {
			t.Errorf("%s differs between %s and the chart (-kustomize +chart):\n%s", o, kust.dir, d)
		}
		if l := o.obj.(metav1.Object).GetLabels(); l["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s: the chart's object is not labelled app.kubernetes.io/managed-by: Helm (labels %v)", o, l)
		}
	}
	for name := range want {
		t.Errorf("the chart does not render %s, which %s does", name, kust.dir)
	}
}

// withoutLabels drops labels from metadata.labels, and the instance selector label.
func withoutLabels(t *testing.T, o object, drop func(path, name string) bool) (any, map[string]map[string]any) {
	t.Helper()
	var v any
	fatalIf(t, decodeStrict(o.raw, &v))
	labels := map[string]map[string]any{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if strings.HasSuffix(path, ".metadata.labels") {
				maps.DeleteFunc(x, func(name string, _ any) bool { return drop(path, name) })
				labels[path] = x
			} else {
				delete(x, "app.kubernetes.io/instance")
			}
			for k, c := range x {
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("", v)
	return v, labels
}

type chartView struct {
	t   *testing.T
	r   *rendering
	dep *appsv1.Deployment
	pod *corev1.PodSpec
	c   *corev1.Container
}

func (v chartView) mwc() *admissionregistrationv1.MutatingWebhookConfiguration {
	return one[admissionregistrationv1.MutatingWebhookConfiguration](v.t, v.r)
}

// helmValueCases: got picks fields from the rendering, want is what they must be.
var helmValueCases = []struct {
	name, values string // YAML
	got          func(v chartView) any
	want         any
}{
	{"image from a private registry", `
image: {repository: registry.example/dittofs-webhook, tag: v1.2.3, pullPolicy: IfNotPresent, pullSecrets: [{name: regcred}]}`,
		func(v chartView) any {
			return []any{v.c.Image, v.c.ImagePullPolicy, v.pod.ImagePullSecrets, v.dep.Labels["app.kubernetes.io/version"]}
		}, []any{"registry.example/dittofs-webhook:v1.2.3", corev1.PullIfNotPresent,
			[]corev1.LocalObjectReference{{Name: "regcred"}}, "v1.2.3"}},
	{"image by digest", `image: {tag: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`,
		func(v chartView) any { return []any{v.c.Image, v.c.ImagePullPolicy} },
		[]any{"ghcr.io/dittofs/dittofs-webhook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			corev1.PullPolicy("")}},
	{"3 replicas", `replicas: 3`, replicasAndPDBs, []any{ptr.To[int32](3), 1}},
	{"1 replica: no PodDisruptionBudget, which would block every drain", `replicas: 1`, replicasAndPDBs,
		[]any{ptr.To[int32](1), 0}},
	{"resources", `resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "2", memory: 512Mi}}`,
		func(v chartView) any {
			res := v.c.Resources
			return []string{res.Requests.Cpu().String(), res.Requests.Memory().String(), res.Limits.Cpu().String(),
				res.Limits.Memory().String()}
		}, []string{"100m", "128Mi", "2", "512Mi"}},
	{"scheduling: nodeSelector, tolerations, affinity and spread replace the defaults", `
nodeSelector: {node-role.kubernetes.io/control-plane: ""}
tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]}]}}}
topologySpreadConstraints: [{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]`,
		func(v chartView) any {
			return []any{v.pod.NodeSelector, v.pod.Tolerations, v.pod.Affinity, v.pod.TopologySpreadConstraints}
		}, []any{
			map[string]string{"node-role.kubernetes.io/control-plane": ""},
			[]corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoSchedule}},
			&corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}}}}}}},
			[]corev1.TopologySpreadConstraint{{MaxSkew: 2, TopologyKey: "topology.kubernetes.io/zone",
				WhenUnsatisfiable: corev1.DoNotSchedule}},
		}},
	{"webhooks: failurePolicy, timeout, excluded namespaces", `
webhooks: {failurePolicy: Ignore, timeoutSeconds: 10, excludedNamespaces: [flux-system, monitoring, kube-system]}`,
		func(v chartView) any {
			m, w := v.mwc().Webhooks[0], one[admissionregistrationv1.ValidatingWebhookConfiguration](v.t, v.r).Webhooks[0]
			return []any{m.FailurePolicy, w.FailurePolicy, m.TimeoutSeconds, w.TimeoutSeconds,
				metav1.FormatLabelSelector(m.NamespaceSelector), metav1.FormatLabelSelector(w.NamespaceSelector)}
		}, []any{ptr.To(admissionregistrationv1.Ignore), ptr.To(admissionregistrationv1.Ignore), ptr.To[int32](10),
			ptr.To[int32](10), excludingSelector, excludingSelector}},
	{"server flags", `
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, logFormat: text, logLevel: debug, validationAction: warn}`,
		func(v chartView) any {
			flags, _ := parseServeArgs(v.c.Args)
			return []string{flags["default-cache-size"], flags["cache-mount-path"], flags["log-format"], flags["log-level"],
				flags["validation-action"]}
		}, []string{"20Gi", "/var/cache/dittofs", "text", "debug", "warn"}},
	{"an existing ClusterIssuer instead of the chart's CA", `certManager: {issuer: {name: corp-ca, kind: ClusterIssuer}}`,
		func(v chartView) any {
			cert := one[cmapi.Certificate](v.t, v.r)
			return []any{len(all[cmapi.Issuer](v.r)), cert.Spec.IssuerRef, cert.Namespace + "/" + cert.Name,
				v.mwc().Annotations[injectCAFrom], cert.Spec.SecretName, v.pod.Volumes[0].Secret.SecretName}
		}, []any{0, cmmeta.IssuerReference{Name: "corp-ca", Kind: "ClusterIssuer", Group: "cert-manager.io"},
			// The serving Certificate: the one inject-ca-from names, its Secret the one mounted.
			installNamespace + "/dittofs-webhook-serving-cert", installNamespace + "/dittofs-webhook-serving-cert",
			"dittofs-webhook-tls", "dittofs-webhook-tls"}},
	{"an existing Issuer of another group", `certManager: {issuer: {name: vault, kind: Issuer, group: cert-manager.example}}`,
		func(v chartView) any {
			return []any{len(all[cmapi.Issuer](v.r)), one[cmapi.Certificate](v.t, v.r).Spec.IssuerRef}
		},
		[]any{0, cmmeta.IssuerReference{Name: "vault", Kind: "Issuer", Group: "cert-manager.example"}}},
	{"monitoring with the labels a Prometheus and a Grafana select by", `
monitoring:
  serviceMonitor: {enabled: true, interval: 1m, labels: {release: kube-prometheus-stack}}
  prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
  dashboard: {enabled: true, namespace: grafana, labels: {team: storage}, annotations: {grafana_folder: DittoFS}}`,
		func(v chartView) any {
			sm, pr := one[monitoringv1.ServiceMonitor](v.t, v.r), one[monitoringv1.PrometheusRule](v.t, v.r)
			cm := one[corev1.ConfigMap](v.t, v.r)
			return []any{sm.Labels["release"], sm.Spec.Endpoints[0].Interval, pr.Labels["release"],
				cm.Namespace, cm.Labels["grafana_dashboard"], cm.Labels["team"], cm.Annotations}
		}, []any{"kube-prometheus-stack", monitoringv1.Duration("1m"), "kube-prometheus-stack",
			"grafana", "1", "storage", map[string]string{"grafana_folder": "DittoFS"}}},
	{"fullnameOverride names every object", `fullnameOverride: dfs-admission`,
		func(v chartView) any {
			var names []string
			for _, o := range v.r.objs {
				if !strings.HasPrefix(o.Name, "dfs-admission") {
					names = append(names, o.String())
				}
			}
			return []any{names, v.mwc().Webhooks[0].ClientConfig.Service.Name,
				named[cmapi.Certificate](v.r, installNamespace, "dfs-admission-serving-cert").Spec.DNSNames}
		}, []any{[]string(nil), "dfs-admission",
			[]string{"dfs-admission." + installNamespace + ".svc", "dfs-admission." + installNamespace + ".svc.cluster.local"}}},
}

// excludingSelector has kube-system once, whoever names it.
const excludingSelector = "kubernetes.io/metadata.name notin (dittofs-webhook,flux-system,kube-system,monitoring)"

func replicasAndPDBs(v chartView) any {
	return []any{v.dep.Spec.Replicas, len(all[policyv1.PodDisruptionBudget](v.r))}
}

func TestHelmValues(t *testing.T) {
	for _, c := range helmValueCases {
		t.Run(c.name, func(t *testing.T) {
			r := renderHelm(t, defaultRelease.with(c.values))
			dep := one[appsv1.Deployment](t, r)
			pod := &dep.Spec.Template.Spec
			if _, problems := parseServeArgs(pod.Containers[0].Args); len(problems) > 0 {
				t.Errorf("container args: %q", problems)
			}
			diff(t, c.name, c.want, c.got(chartView{t, r, dep, pod, &pod.Containers[0]}))
		})
	}
}

// TestHelmSchemaRejectsTypos: a misspelled key or bad value fails, at its pointer.
func TestHelmSchemaRejectsTypos(t *testing.T) {
	for values, at := range map[string]string{
		`replica: 2`:                                   "",
		`image: {tga: v1.2.3}`:                         "/image",
		`image: {pullPolicy: Sometimes}`:               "/image/pullPolicy",
		`image: {pullSecrets: [regcred]}`:              "/image/pullSecrets/0",
		`replicas: "2"`:                                "/replicas",
		`replicas: 0`:                                  "/replicas",
		`resources: {limit: {cpu: "1"}}`:               "/resources",
		`resources: {requests: {cpus: 1}}`:             "/resources/requests",
		`tolerations: [{key: a, operater: Exists}]`:    "/tolerations/0",
		`affinity: {podAntiAfinity: {}}`:               "/affinity",
		`webhooks: {failurePolicy: fail}`:              "/webhooks/failurePolicy",
		`webhooks: {timeoutSeconds: 60}`:               "/webhooks/timeoutSeconds",
		`webhooks: {excludedNamespace: [monitoring]}`:  "/webhooks",
		`webhooks: {excludedNamespaces: [Monitoring]}`: "/webhooks/excludedNamespaces/0",
		`server: {validationAction: audit}`:            "/server/validationAction",
		`server: {validation-action: warn}`:            "/server",
		`server: {defaultCacheSize: 0Gi}`:              "/server/defaultCacheSize",
		`server: {defaultCacheSize: 5}`:                "/server/defaultCacheSize",
		`server: {cacheMountPath: data/cache}`:         "/server/cacheMountPath",
		`server: {logLevel: verbose}`:                  "/server/logLevel",
		`certManager: {issuer: {kind: Vault}}`:         "/certManager/issuer/kind",
		`certManager: {issuerRef: {name: x}}`:          "/certManager",
		`monitoring: {serviceMonitor: {enable: true}}`: "/monitoring/serviceMonitor",
		`monitoring: {grafana: {enabled: true}}`:       "/monitoring",
		`monitoring: {dashboard: {enabled: "yes"}}`:    "/monitoring/dashboard/enabled",
		`monitoring: {serviceMonitor: {interval: 30}}`: "/monitoring/serviceMonitor/interval",
	} {
		t.Run(values, func(t *testing.T) {
			_, stderr, err := helm(defaultRelease.with(values), "template", defaultRelease.name)
			// The validator's errors read "at '/json/pointer': ...".
			if err == nil || !strings.Contains(stderr, "schema") || !strings.Contains(stderr, "at '"+at+"'") {
				t.Errorf("helm template (err %v) did not fail by the schema at %q:\n%s", err, at, stderr)
			}
		})
	}
}

// TestHelmValuesDocumented: docs/install-helm.md ⊇ values.yaml ⊇ the schema's keys.
func TestHelmValuesDocumented(t *testing.T) {
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(repoRoot, name))
		fatalIf(t, err)
		return raw
	}
	var values map[string]any
	var schema jsonSchema
	fatalIf(t, yaml.Unmarshal(read(chartDir+"/values.yaml"), &values))
	fatalIf(t, decodeStrict(read(chartDir+"/values.schema.json"), &schema))
	doc := string(read("docs/install-helm.md"))
	valuePaths := leafPaths("", values)
	for _, p := range valuePaths {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("docs/install-helm.md does not document the value `%s`", p)
		}
	}
	for _, p := range schema.paths("") {
		shown := func(v string) bool { return v == p || strings.HasPrefix(v, p+".") || strings.HasPrefix(p, v+".") }
		if p != "global" && !slices.ContainsFunc(valuePaths, shown) { // global is Helm's, for parent charts
			t.Errorf("the schema accepts %s, which values.yaml does not show", p)
		}
	}
}

// leafPaths are the dotted paths of the values but maps (resources is one value).
func leafPaths(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || prefix == "resources" {
		return []string{prefix}
	}
	var out []string
	for k, c := range m {
		out = append(out, leafPaths(strings.TrimPrefix(prefix+"."+k, "."), c)...)
	}
	return out
}

// jsonSchema decodes strictly: a misspelled keyword (which validators ignore) fails.
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
	PatternProperties    map[string]*jsonSchema `json:"patternProperties"`
	MinLength            *int                   `json:"minLength"`
	MaxLength            *int                   `json:"maxLength"`
	Minimum              *float64               `json:"minimum"`
	Maximum              *float64               `json:"maximum"`
	UniqueItems          bool                   `json:"uniqueItems"`
	Definitions          map[string]*jsonSchema `json:"definitions"`
}

func (s *jsonSchema) paths(prefix string) []string {
	var out []string
	for k, p := range s.Properties {
		path := strings.TrimPrefix(prefix+"."+k, ".")
		out = append(out, path)
		out = append(out, p.paths(path)...)
	}
	return out
}
