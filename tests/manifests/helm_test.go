package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart (SPEC §6), relative to the repository root.
const chartDir = "deploy/helm/dittofs-webhook"

// helmRelease is one `helm template` of the chart.
type helmRelease struct {
	name, namespace string
	values          string // YAML given with -f; empty for the chart's defaults
	// apiVersions are the APIs the cluster serves beyond Helm's defaults
	// (--api-versions), as .Capabilities.APIVersions sees them.
	apiVersions []string
}

func (h helmRelease) String() string {
	return fmt.Sprintf("helm template %s %s -n %s", h.name, chartDir, h.namespace)
}

// with returns h with values (YAML) instead of its own.
func (h helmRelease) with(values string) helmRelease {
	h.values = values
	return h
}

// defaultRelease is the install docs/install-helm.md shows: release and
// namespace dittofs-webhook, which gives every object the name it has in
// deploy/default.
var defaultRelease = helmRelease{name: "dittofs-webhook", namespace: installNamespace}

// monitoringValues turns on everything the chart has for monitoring.
const monitoringValues = `
monitoring:
  serviceMonitor: {enabled: true}
  prometheusRule: {enabled: true}
  dashboard: {enabled: true}
`

// helmInstall is an installation of the chart that must pass every
// installCheck, as the kustomize overlays do.
type helmInstall struct {
	name       string
	release    helmRelease
	namePrefix string // the chart's object names: the release name, or RELEASE-dittofs-webhook
}

func (h helmInstall) layout() layout {
	return layout{namespace: h.release.namespace, namePrefix: h.namePrefix}
}

// helmMonitoringInstall has everything on, under another release name and
// namespace than deploy/monitoring, whose alerts name its own.
var helmMonitoringInstall = helmInstall{"monitoring, another release name and namespace",
	helmRelease{name: "dfs", namespace: "dittofs-system", values: monitoringValues}, "dfs-dittofs-webhook"}

var helmInstalls = []helmInstall{
	{"defaults", defaultRelease, "dittofs-webhook"},
	helmMonitoringInstall,
	{"warn mode, 3 replicas, other server flags", defaultRelease.with(`
replicas: 3
server: {validationAction: warn, defaultCacheSize: 20Gi, cacheMountPath: /var/cache/dittofs, logFormat: text, logLevel: debug}
webhooks: {excludedNamespaces: [flux-system]}
`), "dittofs-webhook"},
}

// The helm CLI, built once per test binary by tests/tools/build-helm.sh
// (which does nothing when the binary of the pinned version exists).
var helmCLI struct {
	once sync.Once
	path string
	err  error
}

func helmPath(t *testing.T) string {
	t.Helper()
	helmCLI.once.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot, "tests", "tools", "build-helm.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmCLI.err = fmt.Errorf("tests/tools/build-helm.sh: %v\n%s", err, stderr.String())
			return
		}
		helmCLI.path = strings.TrimSpace(string(out))
	})
	if helmCLI.err != nil {
		t.Fatal(helmCLI.err)
	}
	return helmCLI.path
}

// runHelm runs the helm CLI with its state in a temporary directory, and with
// a proxy that refuses every connection: nothing here may reach the network
// (a schema $ref to a URL, a chart dependency), and if anything tried, the
// test would fail instead of downloading.
func runHelm(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmPath(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "no_proxy=",
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// runHelmOn runs a helm command on the chart for h, its values (if any)
// given on stdin: -f takes a comma-separated list, so no file name is safe
// that a test name made.
func runHelmOn(t *testing.T, h helmRelease, cmd ...string) (stdout, stderr string, err error) {
	t.Helper()
	args := append(cmd, filepath.Join(repoRoot, chartDir), "--namespace", h.namespace)
	if h.values != "" {
		args = append(args, "--values", "-")
	}
	for _, v := range h.apiVersions {
		args = append(args, "--api-versions", v)
	}
	return runHelm(t, h.values, args...)
}

// helmTemplate runs helm template for h and returns its output.
func helmTemplate(t *testing.T, h helmRelease) (stdout, stderr string, err error) {
	t.Helper()
	return runHelmOn(t, h, "template", h.name)
}

// renderHelm renders the chart as `helm install` would install it.
func renderHelm(t *testing.T, h helmRelease) *rendering {
	t.Helper()
	out, stderr, err := helmTemplate(t, h)
	if err != nil {
		t.Fatalf("%s: %v\n%s", h, err, stderr)
	}
	r := &rendering{dir: h.String()}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: reading its output: %v", h, err)
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%s: a document is not YAML: %v\n%s", h, err, doc)
		}
		if s := string(bytes.TrimSpace(raw)); s == "null" || s == "" {
			continue // a template that rendered nothing, or only comments
		}
		r.add(t, raw)
	}
	if len(r.objs) == 0 {
		t.Fatalf("%s rendered nothing", h)
	}
	return r
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
		out, stderr, err := runHelmOn(t, h, "lint", "--strict")
		if err != nil {
			t.Errorf("helm lint --strict with values %q: %v\n%s%s", h.values, err, out, stderr)
		}
	}
}

// TestHelmRendersTheKustomizeInstall checks that the chart, with default
// values, installs the objects deploy/default installs, and with the values
// that match, those of deploy/monitoring and deploy/rollout-warn: the same
// objects, field for field, minus the sample and the Namespace (which
// kustomize renders and Helm cannot), Helm's labels added. So the chart
// inherits every property the kustomize tree is checked for, and drifts from
// it in no field (a fix made in deploy/base must be made in the chart too).
func TestHelmRendersTheKustomizeInstall(t *testing.T) {
	for _, c := range []struct {
		overlay string
		values  string
	}{
		{"deploy/default", ""},
		{"deploy/monitoring", monitoringValues},
		{"deploy/rollout-warn", "server: {validationAction: warn}"},
	} {
		t.Run(c.overlay, func(t *testing.T) {
			_, kust := render(t, c.overlay).split(sampleNamespace)
			chart := renderHelm(t, defaultRelease.with(c.values))
			compareRenderings(t, kust, chart)
		})
	}
}

// chartOnlyLabels are the labels the chart sets that the kustomize tree does
// not (Helm's conventions), and kustomizeOnlyLabels the reverse.
var (
	chartOnlyLabels = map[string]bool{
		"helm.sh/chart": true, "app.kubernetes.io/instance": true, "app.kubernetes.io/version": true,
		"app.kubernetes.io/managed-by": true, "app.kubernetes.io/name": true, "app.kubernetes.io/component": true,
	}
	kustomizeOnlyLabels = map[string]bool{"app.kubernetes.io/managed-by": true}
)

// compareRenderings checks that chart has the objects of kust, minus its
// Namespace, and that they are the same but for labels: every label of kust
// but kustomizeOnlyLabels is on the chart's object with the same value, and
// the chart adds only chartOnlyLabels. In selectors (matchLabels, a
// Service's selector) the chart may add app.kubernetes.io/instance, which
// keeps two releases' pods apart.
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
		kv, klabels := splitLabels(t, k)
		cv, clabels := splitLabels(t, o)
		if d := cmp.Diff(kv, cv); d != "" {
			t.Errorf("%s differs between %s and the chart (-kustomize +chart):\n%s", o, kust.dir, d)
		}
		for path, kl := range klabels {
			cl := clabels[path]
			for name, v := range kl {
				if !kustomizeOnlyLabels[name] && cl[name] != v {
					t.Errorf("%s: %s[%q] = %v in the chart, %v in %s", o, path, name, cl[name], v, kust.dir)
				}
			}
		}
		for path, cl := range clabels {
			for name, v := range cl {
				if _, inKust := klabels[path][name]; !inKust && !chartOnlyLabels[name] {
					t.Errorf("%s: the chart adds label %s[%q] = %v, which %s does not have", o, path, name, v, kust.dir)
				}
			}
		}
		if cl := clabels["metadata.labels"]; cl["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s: the chart's object is not labelled app.kubernetes.io/managed-by: Helm (labels %v)", o, cl)
		}
	}
	for name := range want {
		t.Errorf("the chart does not render %s, which %s does", name, kust.dir)
	}
}

// splitLabels decodes o and takes out every metadata.labels (the object's,
// its pod template's), returned by path; from every other map it drops
// app.kubernetes.io/instance, a selector label only the chart has.
func splitLabels(t *testing.T, o object) (any, map[string]map[string]any) {
	t.Helper()
	var v any
	if err := decodeStrict(o.raw, &v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	labels := map[string]map[string]any{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if strings.HasSuffix(path, "metadata") || path == "metadata" {
				if l, ok := x["labels"].(map[string]any); ok {
					labels[strings.TrimPrefix(path+".labels", ".")] = l
					delete(x, "labels")
				}
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
