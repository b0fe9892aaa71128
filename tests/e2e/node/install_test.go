package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	// serviceDNSName is what the kube-apiserver verifies the served certificate against (clientConfig.service).
	serviceDNSName  = serviceName + "." + installNamespace + ".svc"
	webhookSelector = "app.kubernetes.io/name=dittofs-webhook,app.kubernetes.io/component=webhook"
)

// install installs as an operator does once cert-manager runs: `kubectl apply -k` of an overlay of deploy/default
// whose only change is the image make image built (imported into the node's containerd); then waits until the
// Deployment's two replicas run on the node, and prints them.
func (h *harness) install() error {
	overlay := filepath.Join(h.artifacts, "install")
	base, err := filepath.Rel(overlay, filepath.Join(h.repoRoot, "deploy", "default"))
	if err == nil {
		err = os.MkdirAll(overlay, 0o755)
	}
	name, tag, _ := strings.Cut(h.image, ":")
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [%s]
images:
  - {name: ghcr.io/dittofs/dittofs-webhook, newName: %s, newTag: %q}
`, base, name, tag)
	if err == nil {
		err = os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644)
	}
	var r result
	// kubectl's discovery can lag cert-manager's new CRDs: retry.
	if err == nil {
		err = framework.Poll(time.Minute, nil, func() (bool, string) {
			r = runKubectl("", "apply", "-k", overlay)
			return r.OK(), r.String()
		})
	}
	if err != nil {
		return fmt.Errorf("installing: %w", err)
	}
	fmt.Printf("e2e: kubectl apply -k %s (deploy/default, images: %s)\n%s", overlay, h.image, r.Stdout)
	if r := runKubectl("", "-n", installNamespace, "rollout", "status", "deployment/"+deploymentName, "--timeout=3m"); !r.OK() {
		return fmt.Errorf("the Deployment did not become available: %s", r)
	}
	return h.printWebhookPods()
}

// printWebhookPods prints the Deployment's pods, and checks that each container runs the image make image built.
func (h *harness) printWebhookPods() error {
	r := runKubectl("", "get", "-n", installNamespace, "pods,endpointslices", "-o", "wide")
	fmt.Printf("e2e: the webhook's pods and EndpointSlice:\n%s", r.Stdout)
	pods, err := h.Client.CoreV1().Pods(installNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: webhookSelector})
	if err != nil {
		return err
	}
	// The kubelet reports the image's repo digest (NAME@manifest digest) or its ID (podman's image ID).
	listed, err := h.node.Ctr("images", "list", "name=="+h.image)
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			fmt.Printf("e2e: pod %s on node %s, IP %s: container %s image %s, imageID %s (make image: ID %s)\n",
				p.Name, p.Spec.NodeName, p.Status.PodIP, c.Name, c.Image, c.ImageID, h.imageID)
			_, digest, _ := strings.Cut(c.ImageID, "@")
			if c.ImageID != h.imageID && (digest == "" || !strings.Contains(listed, digest)) {
				return fmt.Errorf("pod %s runs image %s, not %s (make image, ID %s): %v\n%s",
					p.Name, c.ImageID, h.image, h.imageID, err, listed)
			}
		}
	}
	return nil
}

// TestCertManagerInstall drives the install that TestMain applied with cert-manager running, through kubectl, in
// order: issuance and CA injection, a labelled StatefulSet through the Service, then a renewal of the CA followed
// by one of the serving certificate under steady admission traffic (no failed admission allowed), with cainjector
// merging the new CA into caBundle (v1.19 and later: the bundle trusts both across the change) and replacing it
// (before v1.19, or CAInjectorMerging=false: only the install keeps served certificate and bundle in step).
func TestCertManagerInstall(t *testing.T) {
	framework.Steps{
		{"issued and injected", testIssuedAndInjected},
		{"statefulset through the Service", testThroughService},
		{"CA renewal then serving certificate renewal", testCARenewal},
		{"CA renewal then serving certificate renewal, cainjector replacing caBundle", func(t *testing.T) {
			env.restartCertManager(t, "--feature-gates=CAInjectorMerging=false")
			testCARenewal(t)
		}},
	}.Run(t)
}

// testIssuedAndInjected checks what cert-manager must do with the install: both Certificates Ready, the CA in both
// webhook configurations, and a serving certificate the apiserver accepts for the Service's name, served by each
// replica from the Secret volume the kubelet mounted.
func testIssuedAndInjected(t *testing.T) {
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "--timeout=2m",
		"certificate/"+caCertificate, "certificate/"+servingCertificate)
	bundle := waitInjected(t, secretData(t, servingSecret)["ca.crt"])
	for _, ip := range webhookPodIPs(t) {
		leaf, err := framework.ServedCertificate(net.JoinHostPort(ip, "9443"), serviceDNSName, framework.CertPool(t, bundle))
		if err != nil {
			t.Fatalf("the certificate served at %s does not verify for %s against the injected caBundle: %v", ip, serviceDNSName, err)
		}
		t.Logf("%s serves %s (serial %x, until %s), issued by %q",
			ip, leaf.DNSNames, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339), leaf.Issuer.CommonName)
	}
}

// testThroughService creates labelled StatefulSets with kubectl: the apiserver resolves the Service to the pods
// and calls both webhooks there, over TLS verified with the injected CA.
func testThroughService(t *testing.T) {
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
	// Re-applying the install now sends its labelled sample through the webhooks too (on the first apply they did
	// not exist yet): unchanged, silent.
	generation := []string{"-n", "dittofs-sample", "get", "statefulset", "dittofs-sample", "-o",
		"jsonpath={.metadata.generation}"}
	gen0 := mustKubectl(t, "", generation...).Stdout
	re := mustKubectl(t, "", "apply", "-k", filepath.Join(env.artifacts, "install"))
	if strings.Contains(re.Stderr, "Warning") {
		t.Errorf("re-applying the install warned:\n%s", re)
	}
	if gen := mustKubectl(t, "", generation...).Stdout; gen != gen0 {
		t.Errorf("re-applying the install changed the sample StatefulSet: generation %s, was %s", gen, gen0)
	}
}

// statefulSet is cacheStatefulSet(true) named name with no replicas (stored and admitted only), without its content
// storage unless withContent.
func statefulSet(name string, withContent bool) string {
	s := strings.Replace(cacheStatefulSet(true), "\n  name: fs\n", "\n  name: "+name+"\n", 1)
	s = strings.Replace(s, "\n  replicas: 2\n", "\n  replicas: 0\n", 1)
	if !withContent {
		s = strings.Replace(s, "\n        - {name: content, mountPath: /data/content}", "", 1)
		s = strings.Replace(s, "\n  - metadata: {name: content}\n    spec: {accessModes: [ReadWriteOnce], "+
			"resources: {requests: {storage: 10Gi}}}", "", 1)
	}
	return s
}

// testCARenewal renews the CA, then the serving certificate, under steady traffic through both webhooks, until
// both replicas serve the new serving certificate and both configurations carry its CA, and a few seconds more.
// Not one admission may fail.
func testCARenewal(t *testing.T) {
	ensureNamespace(t, loadNamespace)
	oldCA, oldServing := secretData(t, caSecret), secretData(t, servingSecret)
	l := startRunningLoad(t, env.Kubeconfig)
	defer func() {
		l.Stop()
		t.Logf("admissions across the renewal: %s", l)
		if f := l.Failures(); len(f) > 0 {
			t.Errorf("%d of %d admissions failed across the renewal:\n%s", len(f), l.Count(), strings.Join(f, "\n"))
		}
	}()
	renew(t, caCertificate, caSecret)
	renew(t, servingCertificate, servingSecret)
	after := secretData(t, servingSecret)
	newLeaf := leafOf(t, after["tls.crt"])
	bundle := waitInjected(t, after["ca.crt"])
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
	if !l.RunFor(l.Count()+10, 5*time.Second, time.Minute) {
		t.Fatalf("the load stopped early: %s", l)
	}
	requireCAsInStep(t, oldCA, secretData(t, caSecret), oldServing["tls.crt"], after["tls.crt"])
}

// renew does what `cmctl renew` does (it adds the Issuing condition to the Certificate's status) and waits until
// cert-manager has written a new certificate into its Secret.
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

// requireCAsInStep checks what makes a CA renewal safe whatever the order in which the caBundle and the served
// certificate change: the renewed CA keeps its key and name, so the serving certificate signed before the renewal
// (oldLeaf) verifies against the new CA certificate, and the one signed after it (newLeaf) against the old.
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
	// The files changing first (the new leaf against a caBundle of the old CA alone), and caBundle changing first
	// and replacing the old CA (the old leaf against the new CA).
	verify := func(issued, against string, leaf, ca []byte) {
		opts := x509.VerifyOptions{DNSName: serviceDNSName, Roots: framework.CertPool(t, ca)}
		if _, err := leafOf(t, leaf).Verify(opts); err != nil {
			t.Errorf("the serving certificate issued %s the CA renewal, against the %s CA: %v", issued, against, err)
		}
	}
	verify("after", "old", newLeaf, oldCA["tls.crt"])
	verify("before", "new", oldLeaf, newCA["tls.crt"])
}

// waitInjected waits until the caBundle of every webhook of both configurations holds the certificates of want
// (the serving Secret's ca.crt), and returns that bundle.
func waitInjected(t *testing.T, want []byte) []byte {
	t.Helper()
	ctx, arv1 := context.Background(), env.Client.AdmissionregistrationV1()
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
			return injected, fmt.Sprintf("want %d certificates in each of 2 bundles, have %d bundles:\n%s",
				len(certificates(want)), len(bundles), bytes.Join(bundles, []byte("---\n")))
		})
	return bundles[0]
}

// secretData is the data of a Secret in the install's namespace.
func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s := env.Client.CoreV1().Secrets(installNamespace)
	return tests.Must(s.Get(context.Background(), name, metav1.GetOptions{}))(t).Data
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := framework.ParseCertificate(certPEM)
	if err != nil {
		t.Fatalf("%v in %q", err, certPEM)
	}
	return c
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

// holds reports whether every certificate of want is in bundle.
func holds(bundle, want []byte) bool {
	have := certificates(bundle)
	for _, c := range certificates(want) {
		if !slices.ContainsFunc(have, c.Equal) {
			return false
		}
	}
	return len(want) > 0
}

// certificates parses the certificates of a PEM bundle, skipping what does not parse.
func certificates(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for block, rest := pem.Decode(bundle); block != nil; block, rest = pem.Decode(rest) {
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
	return out
}
