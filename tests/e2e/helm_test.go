package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// chartDir is the Helm chart, relative to the repository root.
const chartDir = "deploy/helm/dittofs-webhook"

// 9b. Every object the Helm chart renders is accepted by a server-side dry
// run on kube-apiserver v1.37 with cert-manager's and the Prometheus
// Operator's CRDs: with every optional object on (monitoring), and with
// non-default values (warn mode, an existing ClusterIssuer, one replica, other
// webhook settings), under another release name and namespace. The webhook
// configurations reference a Service, so they are only ever dry-run here.
func TestHelmChartManifests(t *testing.T) {
	const otherNamespace = "dittofs-system"
	prepareDryRun(t, installNamespace, otherNamespace)
	installPromOperatorCRDs(t)
	// tests/tools/build-helm.sh builds helm unless `make manifests` has.
	helm, err := framework.BuildTool(env.repoRoot, "build-helm.sh")
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, release, namespace, values string
		args                             []string
	}{
		{"defaults and monitoring", "dittofs-webhook", installNamespace, `
monitoring:
  serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
  prometheusRule: {enabled: true}
  dashboard: {enabled: true, annotations: {grafana_folder: DittoFS}}
`, nil},
		{"non-default values", "dfs", otherNamespace, `
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
		// The in-tree policies compile on this apiserver as the chart writes
		// them, with its values put in.
		{"mode inTree", "dfs-in-tree", otherNamespace, `
mode: inTree
server: {defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, validationAction: warn}
webhooks: {excludedNamespaces: [flux-system]}
`, []string{"--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", c.release, filepath.Join(env.repoRoot, chartDir),
				"--namespace", c.namespace, "--values", "-"}, c.args...)
			cmd := exec.Command(helm, args...)
			cmd.Stdin = strings.NewReader(c.values)
			home := t.TempDir()
			// Helm's state in a temporary directory; no network (a proxy
			// that refuses every connection).
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home,
				"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr.String())
			}
			serverDryRunOf(t, "the chart ("+c.name+")", string(out), string(out), "-f", "-")
		})
	}
}
