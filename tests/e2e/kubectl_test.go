package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

type result = framework.Result

// kubectl is framework.Kubectl.T: its exit status is the caller's to judge.
func kubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return env.Kubectl.T(t, stdin, args...)
}

// mustKubectl is kubectl for a command that must succeed.
func mustKubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return env.Kubectl.Must(t, stdin, args...)
}

// kubectlRetryConflict is kubectl for a replace: kubectl replace sends the
// resourceVersion it has just read, so a status write of the StatefulSet
// controller in between is a Conflict, which the user answers by running the
// command again, as its message says.
func kubectlRetryConflict(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	r := kubectl(t, stdin, args...)
	for try := 1; try < 5 && !r.OK() && strings.Contains(r.Stderr, "Error from server (Conflict)"); try++ {
		r = kubectl(t, stdin, args...)
	}
	return r
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// newNamespace creates a namespace of its own for the test, named after it,
// never deleted: no namespace controller would finish it, and etcd goes at the end.
func newNamespace(t testing.TB) string {
	t.Helper()
	slug := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(slug) > 48 {
		slug = strings.TrimRight(slug[:48], "-")
	}
	ns, err := env.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + slug + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

func getSTS(ns, name string) (*appsv1.StatefulSet, error) {
	return env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// mustGetSTS returns the stored StatefulSet.
func mustGetSTS(t testing.TB, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	sts, err := getSTS(ns, name)
	if err != nil {
		t.Fatalf("reading statefulset %s/%s: %v", ns, name, err)
	}
	return sts
}

// getRaw returns an object as stored, as generic JSON (with any field the typed API does not know).
func getRaw(t testing.TB, kind, ns, name string) map[string]any {
	t.Helper()
	var obj map[string]any
	mustDecode(t, mustKubectl(t, "", "get", kind, name, "-n", ns, "-o", "json"), &obj)
	return obj
}

// mustDecode decodes what kubectl printed as JSON into v.
func mustDecode(t testing.TB, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		t.Fatalf("kubectl's output is not a %T: %v\n%s", v, err, r)
	}
}

// hasCache reports whether r printed a StatefulSet with a cache claim (a dry run's mutated object).
func hasCache(r result) bool {
	var sts appsv1.StatefulSet
	return r.OK() && json.Unmarshal([]byte(r.Stdout), &sts) == nil && vct(&sts, "cache") != nil
}

// decodeDocs splits YAML or JSON with any number of documents into objects.
func decodeDocs(data string) ([]map[string]any, error) {
	var docs []map[string]any
	for dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(data), 4096); ; {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		} else if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// installWebhooks creates the two webhook configurations deploy/default
// renders, each webhook's clientConfig pointed at the server on loopback (same
// path, the dev CA as caBundle); names, rules, selectors, policies as shipped.
func (h *harness) installWebhooks() error {
	r := env.Kubectl.Run("", "kustomize", filepath.Join(h.repoRoot, "deploy", "default"))
	docs, err := decodeDocs(r.Stdout)
	if !r.OK() || err != nil {
		return fmt.Errorf("rendering deploy/default: %v\n%s", err, r)
	}
	// A configuration or a path missing: the probes of waitWebhooks fail.
	var keep []string
	for _, doc := range docs {
		if kind := doc["kind"]; kind != "MutatingWebhookConfiguration" && kind != "ValidatingWebhookConfiguration" {
			continue
		}
		webhooks, _ := doc["webhooks"].([]any)
		for _, w := range webhooks {
			w := w.(map[string]any)
			path, _, _ := unstructured.NestedString(w, "clientConfig", "service", "path")
			url := "https://" + h.server.listen + path
			w["clientConfig"] = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: h.caPEM}
		}
		keep = append(keep, toYAML(doc))
	}
	h.webhooks = []byte(strings.Join(keep, "---\n"))
	for _, r := range []result{env.Kubectl.Run(string(h.webhooks), "create", "-f", "-"),
		env.Kubectl.Run("", "create", "namespace", probeNamespace)} {
		if !r.OK() {
			return fmt.Errorf("installing the webhooks:\n%s", r)
		}
	}
	return h.waitWebhooks(true, time.Minute)
}

// waitWebhooks waits until the apiserver calls both webhooks (effective) or
// neither (configurations take effect asynchronously), asking with dry-run
// creates: a labelled StatefulSet without cache must come back with one, and
// one without metadata storage must be denied.
func (h *harness) waitWebhooks(effective bool, timeout time.Duration) error {
	mutateProbe := stsManifest{name: "probe", managed: true, vcts: userVCTs()}.yaml()
	validateProbe := stsManifest{name: "probe-invalid", managed: true, vcts: []vctSpec{{name: "content", size: "1Gi"}}}.yaml()
	err := framework.Poll(timeout, nil, func() (bool, string) {
		m := env.Kubectl.Run(mutateProbe, "create", "--dry-run=server", "-o", "json", "-n", probeNamespace, "-f", "-")
		v := env.Kubectl.Run(validateProbe, "create", "--dry-run=server", "-o", "json", "-n", probeNamespace, "-f", "-")
		mutated, denied := hasCache(m), !v.OK() && strings.Contains(v.Stderr, "metadata-storage")
		if effective {
			return mutated && denied, m.String() + "\n" + v.String()
		}
		return m.OK() && !mutated && v.OK(), m.String() + "\n" + v.String()
	})
	if err != nil {
		return fmt.Errorf("webhooks not %s: %w", map[bool]string{true: "effective", false: "gone"}[effective], err)
	}
	return nil
}

// withoutWebhooks deletes the webhook configurations until the restore it returns (webhooksBack's).
func withoutWebhooks(t *testing.T) (restore func()) {
	t.Helper()
	mustKubectl(t, string(env.webhooks), "delete", "-f", "-")
	restore = webhooksBack(t, "create")
	if err := env.waitWebhooks(false, time.Minute); err != nil {
		t.Fatal(err)
	}
	return restore
}

// webhooksBack returns a function that puts the harness's webhook
// configurations back (`kubectl verb`) and waits until they act; it runs at
// the test's end if not before, so a failure leaves them for the next test.
// A sync.Once, not sync.OnceFunc: OnceFunc turns the t.Fatal inside into a
// panic that would end the test binary before its teardown.
func webhooksBack(t *testing.T, verb string) func() {
	var once sync.Once
	back := func() {
		once.Do(func() {
			mustKubectl(t, string(env.webhooks), verb, "-f", "-")
			if err := env.waitWebhooks(true, time.Minute); err != nil {
				t.Fatalf("restoring the webhooks: %v", err)
			}
		})
	}
	t.Cleanup(back)
	return back
}

// toYAML is for failure messages.
func toYAML(v any) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(out)
}
