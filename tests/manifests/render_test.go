package manifests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

const repoRoot = "../.."

// The contract (SPEC §1, §2, §3, §5, §6) the manifests must honour.
const (
	installNamespace = "dittofs-webhook"
	sampleNamespace  = "dittofs-sample" // of the sample deploy/default installs
	namePrefix       = "dittofs-webhook"
	serverLabel      = "dittofs.com/server"
	tlsMountPath     = "/etc/dittofs-webhook/tls"
	injectCAFrom     = "cert-manager.io/inject-ca-from"
	nonRootID        = int64(65532)
	chartDir         = "deploy/helm/dittofs-webhook"
)

// scheme holds the API types the manifests decode into (CRDs: tests/e2e).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, admissionregistrationv1.AddToScheme, cmapi.AddToScheme, monitoringv1.AddToScheme} {
		utilruntime.Must(add(s))
	}
	return s
}()

// allowedKinds: no RBAC kind, as the server talks to no Kubernetes API.
var allowedKinds = map[string]bool{
	"Namespace": true, "ServiceAccount": true, "Service": true, "Deployment": true, "StatefulSet": true,
	"PodDisruptionBudget": true, "NetworkPolicy": true, "ConfigMap": true, "MutatingWebhookConfiguration": true,
	"ValidatingWebhookConfiguration": true, "Certificate": true, "Issuer": true, "ServiceMonitor": true,
	"PrometheusRule": true, "MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

var clusterScoped = map[string]bool{"Namespace": true, "MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true}

type object struct {
	Kind, Namespace, Name string
	obj                   runtime.Object
	raw                   []byte
}

func (o object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

type rendering struct {
	dir  string // what was rendered, for messages
	objs []object
}

var renderings sync.Map

func cached(t *testing.T, key string, nodes func() ([]*kyaml.RNode, error)) *rendering {
	t.Helper()
	v, _ := renderings.LoadOrStore(key, sync.OnceValues(func() (*rendering, error) {
		ns, err := nodes()
		if err != nil {
			return nil, err
		}
		return newRendering(key, ns)
	}))
	r, err := v.(func() (*rendering, error))()
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return r
}

// render builds dir with krusty, the engine inside `kubectl apply -k`.
func render(t *testing.T, dir string) *rendering {
	t.Helper()
	return cached(t, dir, func() ([]*kyaml.RNode, error) {
		m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
		if err != nil {
			return nil, fmt.Errorf("kustomize build: %w", err)
		}
		return m.ToRNodeSlice(), nil
	})
}

// newRendering decodes every object strictly (`kubectl apply --validate=strict`).
func newRendering(dir string, nodes []*kyaml.RNode) (*rendering, error) {
	r := &rendering{dir: dir}
	for _, n := range nodes {
		raw, err := n.MarshalJSON()
		if err != nil {
			return nil, err
		}
		o := object{Kind: n.GetKind(), Namespace: n.GetNamespace(), Name: n.GetName(), raw: raw}
		obj, err := scheme.New(schema.FromAPIVersionAndKind(n.GetApiVersion(), o.Kind))
		if err != nil || !allowedKinds[o.Kind] {
			return nil, fmt.Errorf("unexpected kind %s (apiVersion %s)", o, n.GetApiVersion())
		}
		if err := decodeStrict(raw, obj); err != nil {
			return nil, fmt.Errorf("%s has a field its schema does not know: %w", o, err)
		}
		o.obj = obj
		r.objs = append(r.objs, o)
	}
	if len(r.objs) == 0 {
		return nil, errors.New("rendered nothing")
	}
	return r, nil
}

// decodeStrict is the kube-apiserver's decoder (case-sensitive, unlike encoding/json).
func decodeStrict(raw []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func all[T any](r *rendering) []*T {
	var out []*T
	for _, o := range r.objs {
		if v, ok := o.obj.(any).(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T any](t *testing.T, r *rendering) *T {
	t.Helper()
	objs := all[T](r)
	if len(objs) != 1 {
		t.Fatalf("%s renders %d %T objects, want exactly 1", r.dir, len(objs), new(T))
	}
	return objs[0]
}

func named[T any](r *rendering, namespace, name string) *T {
	for _, v := range all[T](r) {
		if m := any(v).(metav1.Object); m.GetNamespace() == namespace && m.GetName() == name {
			return v
		}
	}
	return nil
}

// split parts r into the objects of namespace ns (and the Namespace) and the rest.
func (r *rendering) split(ns string) (of, rest *rendering) {
	of = &rendering{dir: r.dir + " (namespace " + ns + ")"}
	rest = &rendering{dir: r.dir + " (without namespace " + ns + ")"}
	for _, o := range r.objs {
		if (o.Kind == "Namespace" && o.Name == ns) || (!clusterScoped[o.Kind] && o.Namespace == ns) {
			of.objs = append(of.objs, o)
		} else {
			rest.objs = append(rest.objs, o)
		}
	}
	return of, rest
}

type helmRelease struct {
	name, namespace string
	values          string   // YAML given with -f; empty for the chart's defaults
	apiVersions     []string // --api-versions: what the cluster serves beyond Helm's defaults
}

func (h helmRelease) with(values string) helmRelease {
	h.values = values
	return h
}

// defaultRelease (docs/install-helm.md's) names every object as deploy/default does.
var defaultRelease = helmRelease{name: "dittofs-webhook", namespace: installNamespace}

// helmPath is the helm CLI, built once by tests/tools/build-helm.sh.
var helmPath = sync.OnceValues(func() (string, error) {
	out, err := exec.Command(filepath.Join(repoRoot, "tests", "tools", "build-helm.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("tests/tools/build-helm.sh: %v\n%s", err, stderrOf(err))
	}
	return strings.TrimSpace(string(out)), nil
})

// helm runs `helm CMD... CHART` for h: its state in a temporary directory, the
// values on stdin (-f splits at commas), and a proxy refusing every connection.
func helm(h helmRelease, cmd ...string) (stdout, stderr string, err error) {
	bin, err := helmPath()
	if err != nil {
		return "", "", err
	}
	args := append(cmd, filepath.Join(repoRoot, chartDir), "--namespace", h.namespace)
	if h.values != "" {
		args = append(args, "--values", "-")
	}
	for _, v := range h.apiVersions {
		args = append(args, "--api-versions", v)
	}
	home, err := os.MkdirTemp("", "helm-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(home)
	c := exec.Command(bin, args...)
	c.Stdin = strings.NewReader(h.values)
	c.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "no_proxy=")
	out, err := c.Output()
	return string(out), string(stderrOf(err)), err
}

func renderHelm(t *testing.T, h helmRelease) *rendering {
	t.Helper()
	key := fmt.Sprintf("helm template %s %s -n %s --api-versions %q -f %q", h.name, chartDir, h.namespace, h.apiVersions, h.values)
	return cached(t, key, func() ([]*kyaml.RNode, error) {
		out, stderr, err := helm(h, "template", h.name)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, stderr)
		}
		return kio.FromBytes([]byte(out)) // empty documents skipped
	})
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("invalid label selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

func listenPort(addr string) (int32, error) {
	_, port, err := net.SplitHostPort(addr)
	n, err2 := strconv.ParseUint(port, 10, 16)
	return int32(n), errors.Join(err, err2)
}
