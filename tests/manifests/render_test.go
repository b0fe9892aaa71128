package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repoRoot is the repository root, relative to this package's directory
// (where `go test` runs the tests).
const repoRoot = "../.."

// The contract (SPEC §1, §2, §3, §5, §6) the manifests must honour.
const (
	installNamespace = "dittofs-webhook"
	sampleNamespace  = "dittofs-sample" // of the sample deploy/default installs
	namePrefix       = "dittofs-webhook"
	serverLabel      = "dittofs.com/server"
	tlsMountPath     = "/etc/dittofs-webhook/tls"
	mutatePath       = "/mutate-apps-v1-statefulset"
	validatePath     = "/validate-apps-v1-statefulset"
	injectCAFrom     = "cert-manager.io/inject-ca-from"
	nonRootID        = int64(65532)
)

// object is one rendered manifest, kept as JSON for decoding.
type object struct {
	APIVersion, Kind, Namespace, Name string
	raw                               []byte
}

func (o object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// rendering is the output of one kustomization, as `kubectl kustomize DIR`,
// or of one `helm template` of the chart (helm_test.go).
type rendering struct {
	dir  string // what was rendered, for messages
	objs []object
}

// render builds the kustomization in dir (relative to the repository root)
// in memory with kustomize's krusty, the engine inside `kubectl apply -k`.
func render(t *testing.T, dir string) *rendering {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendering{dir: dir}
	for _, res := range m.Resources() {
		raw, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: marshal %s/%s: %v", dir, res.GetKind(), res.GetName(), err)
		}
		r.add(t, raw)
	}
	if len(r.objs) == 0 {
		t.Fatalf("kustomize build %s rendered nothing", dir)
	}
	return r
}

// add appends the object whose JSON is raw.
func (r *rendering) add(t *testing.T, raw []byte) {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatalf("%s: an object does not decode: %v\n%s", r.dir, err, raw)
	}
	r.objs = append(r.objs, object{
		APIVersion: head.APIVersion,
		Kind:       head.Kind,
		Namespace:  head.Metadata.Namespace,
		Name:       head.Metadata.Name,
		raw:        raw,
	})
}

func (r *rendering) ofKind(kind string) []object {
	var out []object
	for _, o := range r.objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the single object of kind, failing the test if there is not
// exactly one.
func (r *rendering) only(t *testing.T, kind string) object {
	t.Helper()
	objs := r.ofKind(kind)
	if len(objs) != 1 {
		t.Fatalf("%s renders %d %s objects, want exactly 1: %v", r.dir, len(objs), kind, objs)
	}
	return objs[0]
}

// split parts r into the objects of namespace ns (the Namespace itself and
// everything in it) and the rest.
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

// find returns the object of kind in namespace with name.
func (r *rendering) find(kind, namespace, name string) (object, bool) {
	for _, o := range r.objs {
		if o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// decode decodes o into a T, rejecting unknown fields: a misspelled or
// misplaced field in a manifest is an error here, as with
// `kubectl apply --validate=strict`.
func decode[T any](t *testing.T, o object) *T {
	t.Helper()
	v := new(T)
	if err := decodeStrict(o.raw, v); err != nil {
		t.Fatalf("%s does not decode into %T: %v", o, v, err)
	}
	return v
}

// It uses the kube-apiserver's own JSON decoder, which (unlike
// encoding/json) matches field names case-sensitively.
func decodeStrict(raw []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// knownKinds maps every kind the manifests may contain to its apiVersion and
// to the type it decodes into: the projects' own API types (k8s.io/api,
// cert-manager's and the Prometheus Operator's), so a field they do not know
// fails the strict decode. (That the CRDs' schemas, enums included, accept
// the objects is the e2e's server-side dry run, tests/e2e TestInstallManifests.)
var knownKinds = map[string]struct {
	apiVersion string
	newObj     func() any
}{
	"Namespace":                      {"v1", func() any { return &corev1.Namespace{} }},
	"ServiceAccount":                 {"v1", func() any { return &corev1.ServiceAccount{} }},
	"Service":                        {"v1", func() any { return &corev1.Service{} }},
	"Deployment":                     {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"StatefulSet":                    {"apps/v1", func() any { return &appsv1.StatefulSet{} }},
	"PodDisruptionBudget":            {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"NetworkPolicy":                  {"networking.k8s.io/v1", func() any { return &networkingv1.NetworkPolicy{} }},
	"MutatingWebhookConfiguration":   {"admissionregistration.k8s.io/v1", func() any { return &admissionregistrationv1.MutatingWebhookConfiguration{} }},
	"ValidatingWebhookConfiguration": {"admissionregistration.k8s.io/v1", func() any { return &admissionregistrationv1.ValidatingWebhookConfiguration{} }},
	"ConfigMap":                      {"v1", func() any { return &corev1.ConfigMap{} }},
	"Certificate":                    {"cert-manager.io/v1", func() any { return &cmapi.Certificate{} }},
	"Issuer":                         {"cert-manager.io/v1", func() any { return &cmapi.Issuer{} }},
	"ServiceMonitor":                 {"monitoring.coreos.com/v1", func() any { return &monitoringv1.ServiceMonitor{} }},
	"PrometheusRule":                 {"monitoring.coreos.com/v1", func() any { return &monitoringv1.PrometheusRule{} }},
}

// clusterScoped kinds have no namespace.
var clusterScoped = map[string]bool{
	"Namespace":                      true,
	"MutatingWebhookConfiguration":   true,
	"ValidatingWebhookConfiguration": true,
}

// checkKnownAndStrict checks that every object of r is of a known kind and
// apiVersion and decodes strictly into its type.
func checkKnownAndStrict(t *testing.T, r *rendering) {
	t.Helper()
	for _, o := range r.objs {
		k, ok := knownKinds[o.Kind]
		if !ok {
			t.Errorf("%s: unexpected kind %s (apiVersion %s)", r.dir, o, o.APIVersion)
			continue
		}
		if o.APIVersion != k.apiVersion {
			t.Errorf("%s: %s has apiVersion %q, want %q", r.dir, o, o.APIVersion, k.apiVersion)
		}
		if err := decodeStrict(o.raw, k.newObj()); err != nil {
			t.Errorf("%s: %s has a field its schema does not know: %v", r.dir, o, err)
		}
	}
}

// selects reports whether sel selects an object with labels set.
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

// containerPort resolves a port reference (a number or a port name, as in a
// probe or a Service targetPort) against the ports c declares.
func containerPort(c *corev1.Container, ref intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if (ref.Type == intstr.String && p.Name == ref.StrVal) ||
			(ref.Type == intstr.Int && p.ContainerPort == ref.IntVal) {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// listenPort returns the port of a Go listen address such as ":9443".
func listenPort(addr string) (int32, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	return int32(n), nil
}
