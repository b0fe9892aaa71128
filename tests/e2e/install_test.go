package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// Where the CRDs the install needs come from: the projects' own Go modules,
// the one registry reachable here. cert-manager's deploy/crds holds the CRDs
// as plain YAML (the same specs as its Helm chart's templated crd-*.yaml,
// without the chart's labels); prometheus-operator's example/
// prometheus-operator-crd holds its CRDs as plain YAML too. v0.85.0 is the
// newest prometheus-operator root-module version the Go module proxy serves.
const (
	certManagerModule   = "github.com/cert-manager/cert-manager@v1.21.2"
	certManagerCRDDir   = "deploy/crds"
	promOperatorModule  = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	promOperatorCRDDir  = "example/prometheus-operator-crd"
	installNamespace    = "dittofs-webhook"
	sampleNamespace     = "dittofs-sample" // of the sample deploy/default installs
	serverDryRunSuffix  = "(server dry run)"
	crdEstablishTimeout = "60s"
)

// 9. `kubectl apply --server-side --dry-run=server -k` of deploy/default and
// deploy/monitoring: every object is accepted by the real schemas — the
// built-in ones of kube-apiserver v1.37 and the CRDs of cert-manager v1.21
// and the Prometheus Operator.
func TestInstallManifests(t *testing.T) {
	prepareDryRun(t, installNamespace, sampleNamespace)
	t.Run("deploy/default", func(t *testing.T) {
		serverDryRun(t, "default")
	})
	t.Run("deploy/monitoring", func(t *testing.T) {
		installPromOperatorCRDs(t)
		serverDryRun(t, "monitoring")
	})
}

// prepareDryRun readies the apiserver for a server-side dry run of an
// install into namespaces: cert-manager's CRDs, the namespaces, and the
// harness's webhook configurations out of the way.
func prepareDryRun(t *testing.T, namespaces ...string) {
	t.Helper()
	cm, err := framework.GoModDir(certManagerModule)
	if err != nil {
		t.Fatalf("cert-manager's CRDs: %v", err)
	}
	installCRDs(t, filepath.Join(cm, certManagerCRDDir))

	// A server dry run does not create the Namespaces, so the namespaced
	// objects of the same apply would fail with "namespace not found": the
	// namespaces (the webhook's and its sample's) are really created first,
	// as they are on a second install. (Created plainly, not with a
	// client-side apply, whose last-applied annotation would make kubectl
	// warn that it cannot migrate it to server-side apply in a dry run.)
	for _, ns := range namespaces {
		if r := mustKubectl(t, "", "get", "namespace", ns, "--ignore-not-found", "-o", "name"); r.Stdout == "" {
			mustKubectl(t, "", "create", "namespace", ns)
		}
	}
	// The shipped webhook configurations have the names of the ones the
	// harness installed with another clientConfig: a dry-run apply over
	// those would merge the two clientConfigs. Take them away meanwhile.
	withoutWebhooks(t)
}

// installPromOperatorCRDs installs the ServiceMonitor and PrometheusRule
// CRDs, skipping the test where they cannot be had.
func installPromOperatorCRDs(t *testing.T) {
	t.Helper()
	po, err := framework.GoModDir(promOperatorModule)
	if err != nil {
		t.Skipf("the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) are not obtainable here: %v", err)
	}
	installCRDs(t, filepath.Join(po, promOperatorCRDDir), "servicemonitors", "prometheusrules")
}

// serverDryRun applies deploy/OVERLAY server-side in dry-run mode and checks
// that every rendered object was accepted, without warnings.
func serverDryRun(t *testing.T, overlay string) {
	t.Helper()
	dir := filepath.Join(env.repoRoot, "deploy", overlay)
	rendered := mustKubectl(t, "", "kustomize", dir)
	serverDryRunOf(t, "deploy/"+overlay, rendered.Stdout, "", "-k", dir)
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
				strings.HasSuffix(l, serverDryRunSuffix)
		}) {
			t.Errorf("%s %s of %s was not reported accepted:\n%s", u.GetKind(), u.GetName(), what, r)
		}
	}
	if len(lines) != len(docs) {
		t.Errorf("%s renders %d objects, kubectl reported %d:\n%s", what, len(docs), len(lines), r)
	}
	t.Logf("%s: %d objects accepted", what, len(docs))
}

// installCRDs applies the CRDs in dir (all, or those whose file name contains
// one of only) and waits until they are established.
func installCRDs(t *testing.T, dir string, only ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading the CRDs: %v", err)
	}
	var args []string
	for _, e := range entries {
		name := e.Name()
		wanted := len(only) == 0 || slices.ContainsFunc(only, func(p string) bool { return strings.Contains(name, p) })
		if e.IsDir() || !strings.HasSuffix(name, ".yaml") || !wanted {
			continue
		}
		args = append(args, "-f", filepath.Join(dir, name))
	}
	if len(args) == 0 {
		t.Fatalf("no CRD file in %s matches %q", dir, only)
	}
	// Server-side: some CRDs are too large for the last-applied annotation
	// of a client-side apply.
	mustKubectl(t, "", append([]string{"apply", "--server-side"}, args...)...)
	mustKubectl(t, "", append([]string{"wait", "--for=condition=Established", "--timeout=" + crdEstablishTimeout}, args...)...)
}
