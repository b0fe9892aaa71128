package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

const (
	servingCertificate = "dittofs-webhook-serving-cert"
	caCertificate      = "dittofs-webhook-ca"
	webhookConfigName  = "dittofs-webhook" // both configurations
	userNamespace      = "dittofs-e2e"
	loadNamespace      = "dittofs-e2e-load"
	installNamespace   = "dittofs-webhook"
	deploymentName     = "dittofs-webhook"
	serviceName        = "dittofs-webhook"
	servingSecret      = "dittofs-webhook-tls" // the serving Certificate's secretName
	caSecret           = "dittofs-webhook-ca"
	// serviceDNSName is the name the kube-apiserver verifies the served
	// certificate against (clientConfig.service: name.namespace.svc).
	serviceDNSName = serviceName + "." + installNamespace + ".svc"
	// webhookSelector selects the Deployment's pods.
	webhookSelector = "app.kubernetes.io/name=dittofs-webhook,app.kubernetes.io/component=webhook"
)

// install installs as an operator does once cert-manager runs: `kubectl
// apply -k` of an overlay of deploy/default whose only change is the image,
// the one make image built (imported into the node's containerd); then waits
// until the Deployment's two replicas run on the node, and prints them.
func (h *harness) install() error {
	overlay := filepath.Join(h.artifacts, "install")
	if err := writeOverlay(overlay, h.repoRoot, h.image, ""); err != nil {
		return err
	}
	t0 := time.Now()
	var r result
	// kubectl's discovery can lag cert-manager's new CRDs: retry.
	if err := framework.Poll(time.Minute, nil, func() (bool, string) {
		r = runKubectl("", "apply", "-k", overlay)
		return r.OK(), r.String()
	}); err != nil {
		return fmt.Errorf("installing: %w", err)
	}
	fmt.Printf("e2e: kubectl apply -k %s (deploy/default, images: %s)\n%s", overlay, h.image, r.Stdout)
	if r := runKubectl("", "-n", installNamespace, "rollout", "status", "deployment/"+deploymentName, "--timeout=3m"); !r.OK() {
		return fmt.Errorf("the Deployment did not become available: %s", r)
	}
	fmt.Printf("e2e: the Deployment available %s after the apply\n", time.Since(t0).Round(time.Millisecond))
	return h.printWebhookPods()
}

// writeOverlay writes a kustomization in dir that takes deploy/default and
// sets its image, and adds arg to the server's args when not empty.
func writeOverlay(dir, repoRoot, image, arg string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base, err := filepath.Rel(dir, filepath.Join(repoRoot, "deploy", "default"))
	if err != nil {
		return err
	}
	name, tag, _ := strings.Cut(image, ":")
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [%s]
images:
  - {name: ghcr.io/dittofs/dittofs-webhook, newName: %s, newTag: %q}
`, base, name, tag)
	if arg != "" {
		k += fmt.Sprintf(`patches:
  - target: {kind: Deployment, name: %s}
    patch: '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": %q}]'
`, deploymentName, arg)
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

// printWebhookPods prints the Deployment's pods, the node they run on, the
// image each container runs (its ID, which must be the one make image
// built) and the user its process runs as (from the node: the distroless
// image has no shell for kubectl exec).
func (h *harness) printWebhookPods() error {
	r := runKubectl("", "-n", installNamespace, "get", "pods,endpointslices", "-o", "wide")
	n := runKubectl("", "get", "nodes", "-o", "wide")
	fmt.Printf("e2e: the webhook's pods and EndpointSlice:\n%s%s", r.Stdout, n.Stdout)
	pods, err := h.Client.CoreV1().Pods(installNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: webhookSelector})
	if err != nil {
		return err
	}
	running := 0
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Running == nil {
				continue
			}
			running++
			user, err := h.node.ContainerUser(c.ContainerID)
			if err != nil {
				return err
			}
			fmt.Printf("e2e: pod %s on node %s, IP %s: container %s image %s, imageID %s (make image: ID %s), %s\n", p.Name, p.Spec.NodeName, p.Status.PodIP, c.Name, c.Image, c.ImageID, h.imageID, user)
			// The kubelet reports the image's repo digest (NAME@manifest
			// digest) or its ID (the config digest, podman's image ID).
			listed, err := h.node.Ctr("images", "list", "name=="+h.image)
			if err != nil {
				return err
			}
			_, digest, _ := strings.Cut(c.ImageID, "@")
			if c.ImageID != h.imageID && (digest == "" || !strings.Contains(listed, digest)) {
				return fmt.Errorf("pod %s runs image %s, not %s (make image, ID %s):\n%s", p.Name, c.ImageID, h.image, h.imageID, listed)
			}
			if !strings.Contains(user, "Uid 65532 65532 65532 65532") {
				return fmt.Errorf("pod %s's process does not run as 65532: %s", p.Name, user)
			}
		}
	}
	if running != 2 {
		return fmt.Errorf("%d webhook containers running, want the Deployment's 2", running)
	}
	return nil
}

// TestCertManagerInstall drives the install that TestMain applied with
// cert-manager running, through kubectl, in order: issuance and CA
// injection, a labelled StatefulSet through the Service, a renewal of the
// serving certificate, a renewal of the CA then of the serving certificate
// (each under steady admission traffic, with no failed admission allowed).
func TestCertManagerInstall(t *testing.T) {
	framework.Steps{
		{"issued and injected", testIssuedAndInjected},
		{"statefulset through the Service", testThroughService},
		{"serving certificate renewal", func(t *testing.T) {
			measureRenewal(t, func(t *testing.T) { renew(t, servingCertificate, servingSecret) })
		}},
		// cainjector v1.19 and later merges a new CA into caBundle, keeping
		// the old one until it expires: the bundle trusts both across the
		// change whatever the install does.
		{"CA renewal then serving certificate renewal", testCARenewal},
		// Before v1.19 (or with CAInjectorMerging=false) it replaces
		// caBundle: only the install keeps the served certificate and the
		// bundle in step.
		{"CA renewal then serving certificate renewal, cainjector replacing caBundle", func(t *testing.T) {
			env.restartCertManager(t, "--feature-gates=CAInjectorMerging=false")
			testCARenewal(t)
		}},
	}.Run(t)
}

// testIssuedAndInjected checks what cert-manager must do with the install:
// both Certificates Ready, the CA in both webhook configurations, and a
// serving certificate the apiserver accepts for the Service's name — served
// by each replica from the Secret volume the kubelet mounted.
func testIssuedAndInjected(t *testing.T) {
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "--timeout=2m",
		"certificate/"+caCertificate, "certificate/"+servingCertificate)
	bundle := waitInjected(t, secretData(t, servingSecret)["ca.crt"])
	for _, ip := range webhookPodIPs(t) {
		leaf, err := framework.ServedCertificate(net.JoinHostPort(ip, "9443"), serviceDNSName, framework.CertPool(t, bundle))
		if err != nil {
			t.Fatalf("the certificate served at %s does not verify for %s against the injected caBundle: %v", ip, serviceDNSName, err)
		}
		t.Logf("%s serves %s (serial %x, until %s), issued by %q", ip, leaf.DNSNames, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339), leaf.Issuer.CommonName)
	}
}

// testThroughService creates labelled StatefulSets with kubectl: the
// apiserver resolves the Service to the test host and calls both webhooks
// there, over TLS verified with the injected CA.
func testThroughService(t *testing.T) {
	served0 := admissions(t)
	mustKubectl(t, "", "create", "namespace", userNamespace)
	r := mustKubectl(t, statefulSet("through-service", true), "-n", userNamespace, "apply", "-f", "-")
	if !strings.Contains(r.Stderr, `emptyDir volume "cache" removed`) {
		t.Errorf("the mutating webhook's warning is missing:\n%s", r.Stderr)
	}
	// What the mutation stores through the Service: TestCacheOutlivesThePod.
	denied := runKubectl(statefulSet("no-content", false), "-n", userNamespace, "create", "-f", "-")
	if denied.OK() || !strings.Contains(denied.Stderr, "content-storage") {
		t.Errorf("a StatefulSet without content storage was not denied by the validating webhook:\n%s", denied)
	}
	if r := runKubectl("", "-n", userNamespace, "get", "statefulset", "no-content"); r.OK() {
		t.Errorf("the denied StatefulSet was stored")
	}
	// Re-applying the install now sends its labelled sample through the
	// webhooks too (on the first apply they did not exist yet): unchanged,
	// silent.
	generation := func() string {
		return mustKubectl(t, "", "-n", "dittofs-sample", "get", "statefulset", "dittofs-sample", "-o", "jsonpath={.metadata.generation}").Stdout
	}
	gen0 := generation()
	re := mustKubectl(t, "", "apply", "-k", filepath.Join(env.artifacts, "install"))
	if strings.Contains(re.Stderr, "Warning") {
		t.Errorf("re-applying the install warned:\n%s", re)
	}
	if gen := generation(); gen != gen0 {
		t.Errorf("re-applying the install changed the sample StatefulSet: generation %s, was %s", gen, gen0)
	}
	if served := admissions(t) - served0; served < 3 {
		t.Errorf("the server counted %v admission requests, want at least 3 (mutate and validate of the create, the denial)", served)
	}
}

// statefulSet is a labelled DittoFS StatefulSet as a user writes it, with an
// old-style emptyDir cache the mutating webhook removes.
func statefulSet(name string, withContent bool) string {
	content := ""
	if withContent {
		content = `
    - metadata: {name: content}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}`
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %s
  labels: {dittofs.com/server: %[1]s}
spec:
  replicas: 0 # stored and admitted only: its image is not on the node
  serviceName: %[1]s
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
        - name: dittofs
          image: registry.k8s.io/pause:3.10
          volumeMounts:
            - {name: metadata, mountPath: /data/metadata}
      volumes:
        - name: cache
          emptyDir: {}
  volumeClaimTemplates:
    - metadata: {name: metadata}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}%s
`, name, content)
}

// measureRenewal runs steady kubectl traffic through both webhooks while
// trigger renews certificates, until the server serves the new serving
// certificate and both configurations carry its CA, and a few seconds more.
// Not one admission may fail.
func measureRenewal(t *testing.T, trigger func(t *testing.T)) {
	if r := runKubectl("", "get", "namespace", loadNamespace); !r.OK() {
		mustKubectl(t, "", "create", "namespace", loadNamespace)
	}
	before := secretData(t, servingSecret)
	l := startLoad(env.Kubeconfig, loadNamespace)
	defer func() {
		l.Stop()
		t.Logf("admissions across the renewal: %s", l)
		if f := l.Failures(); len(f) > 0 {
			t.Errorf("%d of %d admissions failed across the renewal:\n%s", len(f), l.Count(), strings.Join(f, "\n"))
		}
	}()
	if !l.RunFor(5, 3*time.Second, time.Minute) {
		t.Fatalf("the load did not get going: %s", l)
	}
	t0 := time.Now()
	trigger(t)
	issued := time.Now()
	after := secretData(t, servingSecret)
	if bytes.Equal(after["tls.crt"], before["tls.crt"]) {
		t.Fatal("the serving Secret was not renewed")
	}
	newLeaf := leafOf(t, after["tls.crt"])
	bundle := waitInjected(t, after["ca.crt"])
	injected := time.Now()
	// The kubelet rewrites the Secret volume at its next sync of each pod.
	framework.Eventually(t, 2*time.Minute, "both replicas serve the renewed certificate", nil, func() (bool, string) {
		renewed, state := 0, ""
		for _, ip := range webhookPodIPs(t) {
			leaf, err := framework.ServedCertificate(net.JoinHostPort(ip, "9443"), serviceDNSName, framework.CertPool(t, bundle))
			if err == nil && leaf.SerialNumber.Cmp(newLeaf.SerialNumber) == 0 {
				renewed++
			}
			state = fmt.Sprintf("%d of 2 did; last: %v", renewed, err)
		}
		return renewed == 2, state
	})
	served := time.Now()
	if !l.RunFor(l.Count()+10, 5*time.Second, time.Minute) {
		t.Fatalf("the load stopped early: %s", l)
	}
	t.Logf("renewed: Secret %s, caBundle %s, served by every replica %s after the trigger (the kubelet updated the Secret volume)",
		issued.Sub(t0).Round(time.Millisecond), injected.Sub(t0).Round(time.Millisecond), served.Sub(t0).Round(time.Millisecond))
}

// testCARenewal renews the CA, then the serving certificate, under load.
func testCARenewal(t *testing.T) {
	oldCA, oldServing := secretData(t, caSecret), secretData(t, servingSecret)
	measureRenewal(t, func(t *testing.T) {
		renew(t, caCertificate, caSecret)
		renew(t, servingCertificate, servingSecret)
	})
	requireCAsInStep(t, oldCA, secretData(t, caSecret), oldServing["tls.crt"], secretData(t, servingSecret)["tls.crt"])
}

// renew does what `cmctl renew` does — it adds the Issuing condition to the
// Certificate's status — and waits until cert-manager has written a new
// certificate into its Secret.
func renew(t *testing.T, certificate, secret string) {
	t.Helper()
	before := secretData(t, secret)["tls.crt"]
	cond := fmt.Sprintf(`[{"op":"add","path":"/status/conditions/-","value":{"type":"Issuing","status":"True","reason":"ManuallyTriggered","message":"Certificate re-issuance manually triggered","lastTransitionTime":%q}}]`,
		time.Now().UTC().Format(time.RFC3339))
	mustKubectl(t, "", "-n", installNamespace, "patch", "certificate", certificate, "--subresource=status", "--type=json", "-p", cond)
	framework.Eventually(t, time.Minute, "cert-manager renewed "+certificate, env.ControllersAlive, func() (bool, string) {
		return !bytes.Equal(secretData(t, secret)["tls.crt"], before), "Secret " + secret + " unchanged"
	})
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "--timeout=1m", "certificate/"+certificate)
}

// requireCAsInStep checks what makes a CA renewal safe whatever the order in
// which the caBundle and the served certificate change: the renewed CA keeps
// its key and name, so the serving certificate signed before the renewal
// (oldLeaf) verifies against the new CA certificate, and the one signed after
// it (newLeaf) against the old.
func requireCAsInStep(t *testing.T, oldCA, newCA map[string][]byte, oldLeaf, newLeaf []byte) {
	t.Helper()
	if bytes.Equal(oldCA["tls.crt"], newCA["tls.crt"]) {
		t.Fatal("the CA certificate was not renewed")
	}
	if !bytes.Equal(oldCA["tls.key"], newCA["tls.key"]) {
		t.Errorf("the renewed CA has a new key: serving certificates signed by the old one no longer verify against it")
	}
	oldRoot, newRoot := leafOf(t, oldCA["tls.crt"]), leafOf(t, newCA["tls.crt"])
	if !bytes.Equal(oldRoot.RawSubject, newRoot.RawSubject) || !bytes.Equal(oldRoot.SubjectKeyId, newRoot.SubjectKeyId) {
		t.Errorf("the renewed CA changed its name or key id")
	}
	// What the apiserver does when the files change first (the new leaf
	// against a caBundle of the old CA alone), and when caBundle changes
	// first and replaces the old CA (the old leaf against the new CA).
	for _, c := range []struct {
		what string
		leaf []byte
		ca   []byte
	}{
		{"the serving certificate issued after the CA renewal, against the old CA", newLeaf, oldCA["tls.crt"]},
		{"the serving certificate issued before the CA renewal, against the new CA", oldLeaf, newCA["tls.crt"]},
	} {
		if _, err := leafOf(t, c.leaf).Verify(x509.VerifyOptions{DNSName: serviceDNSName, Roots: framework.CertPool(t, c.ca)}); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
}

// waitInjected waits until the caBundle of every webhook of both
// configurations holds the certificates of want (the serving Secret's
// ca.crt), and returns that bundle.
func waitInjected(t *testing.T, want []byte) []byte {
	t.Helper()
	ctx := context.Background()
	arv1 := env.Client.AdmissionregistrationV1()
	var bundles [][]byte
	framework.Eventually(t, time.Minute, "cainjector put the serving Secret's ca.crt into both webhook configurations",
		nil, func() (bool, string) {
			bundles = nil
			if m, err := arv1.MutatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{}); err == nil {
				for _, w := range m.Webhooks {
					bundles = append(bundles, w.ClientConfig.CABundle)
				}
			}
			if v, err := arv1.ValidatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{}); err == nil {
				for _, w := range v.Webhooks {
					bundles = append(bundles, w.ClientConfig.CABundle)
				}
			}
			injected := len(bundles) == 2
			for _, b := range bundles {
				injected = injected && bytes.Equal(b, bundles[0]) && holds(b, want)
			}
			have := make([]string, len(bundles))
			for i, b := range bundles {
				have[i] = describe(b)
			}
			return injected, fmt.Sprintf("want %s, have %s", describe(want), strings.Join(have, "; "))
		})
	return bundles[0]
}

// secretData is the data of a Secret in the install's namespace.
func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(installNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := framework.ParseCertificate(certPEM)
	if err != nil {
		t.Fatalf("%v in %q", err, certPEM)
	}
	return c
}

// admissions is the webhook's count of admission requests (all webhooks and
// outcomes), summed over its replicas' metrics.
func admissions(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, ip := range webhookPodIPs(t) {
		c, err := admissionsAt(ip)
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// admissionsAt is the admission counter of the replica at ip.
func admissionsAt(ip string) (float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, "8080") + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	samples, err := tests.ReadMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	return tests.SumMetric(samples, "dittofs_webhook_admission_requests_total")
}

// webhookPodIPs are the addresses of the Deployment's ready pods.
func webhookPodIPs(t *testing.T) []string {
	t.Helper()
	var ips []string
	for _, p := range webhookPods(t) {
		if p.DeletionTimestamp == nil && framework.PodReady(&p) {
			ips = append(ips, p.Status.PodIP)
		}
	}
	return ips
}

// describe names the certificates of a PEM bundle, for messages.
func describe(bundle []byte) string {
	var names []string
	for _, c := range certificates(bundle) {
		names = append(names, fmt.Sprintf("%s #%x", c.Subject.CommonName, c.SerialNumber.Bytes()[:4]))
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// holds reports whether every certificate of want is in bundle.
func holds(bundle, want []byte) bool {
	have := map[string]bool{}
	for _, c := range certificates(bundle) {
		have[string(c.Raw)] = true
	}
	for _, c := range certificates(want) {
		if !have[string(c.Raw)] {
			return false
		}
	}
	return len(want) > 0
}

// certificates parses the certificates of a PEM bundle, skipping what does
// not parse.
func certificates(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
