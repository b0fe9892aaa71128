package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// The CRDs the install needs come from the projects' own Go modules, as plain
// YAML (cert-manager's are its Helm chart's specs without the chart's labels).
// v0.85.0 is the newest prometheus-operator root module the proxy serves.
const (
	certManagerModule  = "github.com/cert-manager/cert-manager@v1.21.2"
	promOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	installNamespace   = "dittofs-webhook"
	sampleNamespace    = "dittofs-sample" // of the sample deploy/default installs
)

// 9, 9b. Server-side dry runs of deploy/default, deploy/monitoring and the
// Helm chart accept every object, without warnings (SPEC §6).
func TestInstallManifests(t *testing.T) {
	const otherNamespace = "dittofs-system"
	prepareDryRun(t, installNamespace, sampleNamespace, otherNamespace)
	dryRunOverlay := func(overlay string) {
		dir := filepath.Join(env.repoRoot, "deploy", overlay)
		serverDryRunOf(t, "deploy/"+overlay, mustKubectl(t, "", "kustomize", dir).Stdout, "", "-k", dir)
	}
	t.Run("deploy/default", func(t *testing.T) { dryRunOverlay("default") })
	po, err := framework.GoModDir(promOperatorModule)
	if err != nil {
		t.Skipf("the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) are not obtainable here: %v", err)
	}
	crds := filepath.Join(po, "example", "prometheus-operator-crd")
	installCRDs(t, filepath.Join(crds, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(crds, "monitoring.coreos.com_prometheusrules.yaml"))
	t.Run("deploy/monitoring", func(t *testing.T) { dryRunOverlay("monitoring") })

	// tests/tools/build-helm.sh builds helm unless `make manifests` has.
	helm, err := framework.BuildTool(env.repoRoot, "build-helm.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, release, namespace, values string
		args                             []string
	}{
		{"chart defaults and monitoring", "dittofs-webhook", installNamespace, `
monitoring:
  serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
  prometheusRule: {enabled: true}
  dashboard: {enabled: true, annotations: {grafana_folder: DittoFS}}
`, nil},
		{"chart non-default values", "dfs", otherNamespace, `
image: {repository: registry.example/dittofs-webhook, tag: v1.2.3, pullPolicy: IfNotPresent, pullSecrets: [{name: regcred}]}
replicas: 1
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "2", memory: 512Mi}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: storage, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]}]}}}
webhooks: {failurePolicy: Ignore, timeoutSeconds: 10, excludedNamespaces: [flux-system]}
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, logFormat: text, logLevel: debug, validationAction: warn}
certManager: {issuer: {name: corp-ca, kind: ClusterIssuer}}
`, nil},
		// The in-tree policies compile on this apiserver as the chart writes them, with its values put in.
		{"chart mode inTree", "dfs-in-tree", otherNamespace, `
mode: inTree
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, validationAction: warn}
webhooks: {excludedNamespaces: [flux-system]}
`, []string{"--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(helm, append([]string{"template", c.release, filepath.Join(env.repoRoot, "deploy", "helm", "dittofs-webhook"),
				"--namespace", c.namespace, "--values", "-"}, c.args...)...)
			cmd.Stdin = strings.NewReader(c.values)
			home := t.TempDir()
			// Helm's state in a temporary directory; no network (a proxy that refuses every connection).
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home,
				"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr.String())
			}
			serverDryRunOf(t, "the "+c.name, string(out), string(out), "-f", "-")
		})
	}
}

// prepareDryRun readies a server-side dry run of an install into namespaces:
// cert-manager's CRDs, the namespaces, the harness's webhooks out of the way.
func prepareDryRun(t *testing.T, namespaces ...string) {
	t.Helper()
	cm, err := framework.GoModDir(certManagerModule)
	if err != nil {
		t.Fatalf("cert-manager's CRDs: %v", err)
	}
	installCRDs(t, filepath.Join(cm, "deploy", "crds"))
	// A dry run does not create the Namespaces its objects need: created first, as on a second install (not
	// applied: kubectl would warn that a dry run cannot migrate the last-applied annotation).
	for _, ns := range namespaces {
		if r := mustKubectl(t, "", "get", "namespace", ns, "--ignore-not-found", "-o", "name"); r.Stdout == "" {
			mustKubectl(t, "", "create", "namespace", ns)
		}
	}
	// The shipped webhook configurations have the names of the harness's,
	// whose clientConfig a dry-run apply over them would merge.
	withoutWebhooks(t)
}

// serverDryRunOf runs `kubectl apply --server-side --dry-run=server` with
// source (-k DIR, or -f - reading stdin) and checks that every object of
// rendered, what source holds, was accepted, without warnings.
func serverDryRunOf(t *testing.T, what, rendered, stdin string, source ...string) {
	t.Helper()
	docs, err := decodeDocs(rendered)
	if err != nil {
		t.Fatalf("decoding %s: %v", what, err)
	}
	r := mustKubectl(t, stdin, append([]string{"apply", "--server-side", "--dry-run=server"}, source...)...)
	requireNoWarning(t, r)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	for _, doc := range docs {
		u := unstructured.Unstructured{Object: doc}
		if !slices.ContainsFunc(lines, func(l string) bool {
			return strings.HasPrefix(l, strings.ToLower(u.GetKind())) && strings.Contains(l, "/"+u.GetName()+" ") &&
				strings.HasSuffix(l, "(server dry run)")
		}) {
			t.Errorf("%s %s of %s was not reported accepted:\n%s", u.GetKind(), u.GetName(), what, r)
		}
	}
	if len(lines) != len(docs) {
		t.Errorf("%s renders %d objects, kubectl reported %d:\n%s", what, len(docs), len(lines), r)
	}
	t.Logf("%s: %d objects accepted", what, len(docs))
}

// installCRDs applies CRD files (or folders of them) and waits until they are established.
func installCRDs(t *testing.T, paths ...string) {
	t.Helper()
	var args []string
	for _, p := range paths {
		args = append(args, "-f", p)
	}
	// Server-side: some CRDs are too large for a client-side apply's last-applied annotation.
	mustKubectl(t, "", append([]string{"apply", "--server-side"}, args...)...)
	mustKubectl(t, "", append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, args...)...)
}
