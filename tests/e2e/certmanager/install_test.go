package certmanager

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	servingCertificate = "dittofs-webhook-serving-cert"
	caCertificate      = "dittofs-webhook-ca"
	webhookConfigName  = "dittofs-webhook" // both configurations
	userNamespace      = "dittofs-e2e"
	loadNamespace      = "dittofs-e2e-load"
)

// TestCertManagerInstall installs deploy/default with cert-manager running
// and drives it through kubectl, in order: issuance and CA injection, a
// labelled StatefulSet through the Service, a renewal of the serving
// certificate, a renewal of the CA then of the serving certificate (each
// under steady admission traffic, with no failed admission allowed), and the
// README's uninstall.
func TestCertManagerInstall(t *testing.T) {
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
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
		{"rolling update under admission traffic", func(t *testing.T) { testRollingUpdate(t, env.kubeconfig, true) }},
		{"rolling update under admission traffic, WebhookRoundTripLoadBalancing=false", testRollingUpdateWithoutRoundTripLoadBalancing},
		{"a replica killed (SIGKILL) under admission traffic", testReplicaKilled},
		{"uninstall as the README says", testUninstall},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("%q failed: the later steps depend on it", s.name)
		}
	}
}

// testIssuedAndInjected applies the install as a user does, then checks what
// cert-manager must do with it: both Certificates Ready, the CA in both
// webhook configurations, and a serving certificate the apiserver accepts for
// the Service's name — as served by `dittofs-webhook serve` from the files a
// Secret volume would hold.
func testIssuedAndInjected(t *testing.T) {
	t0 := time.Now()
	// kubectl's discovery can lag cert-manager's new CRDs: retry until it
	// knows them.
	eventually(t, time.Minute, "", "apply", "-k", "deploy/default")
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "--timeout=2m",
		"certificate/"+caCertificate, "certificate/"+servingCertificate)
	t.Logf("Certificates Ready %s after the apply", time.Since(t0).Round(time.Millisecond))
	bundle := waitInjected(t, secretData(t, servingSecret)["ca.crt"])
	t.Logf("CA injected into both configurations %s after the apply", time.Since(t0).Round(time.Millisecond))

	var err error
	if env.pod, err = env.renderedPodSpec(); err != nil {
		t.Fatal(err)
	}
	if env.volume, err = startSecretVolume(env.client, installNamespace, servingSecret, filepath.Join(env.artifacts, "tls"), env.pod.tlsMode, env.pod.fsGroup); err != nil {
		t.Fatal(err)
	}
	for env.volume.current() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if env.server, err = env.startReplica(env.host, env.volume.dir); err != nil {
		t.Fatal(err)
	}
	leaf, err := env.servedCertificate(pool(t, bundle))
	if err != nil {
		t.Fatalf("the served certificate does not verify for %s against the injected caBundle: %v", serviceDNSName, err)
	}
	t.Logf("serving %s (serial %x, until %s), issued by %q", leaf.DNSNames, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339), leaf.Issuer.CommonName)
}

// testThroughService creates labelled StatefulSets with kubectl: the
// apiserver resolves the Service to the test host and calls both webhooks
// there, over TLS verified with the injected CA.
func testThroughService(t *testing.T) {
	rx0 := rxPackets(t)
	served0 := admissions(t)
	mustKubectl(t, "", "create", "namespace", userNamespace)
	r := mustKubectl(t, statefulSet("through-service", true), "-n", userNamespace, "apply", "-f", "-")
	if !strings.Contains(r.stderr, `emptyDir volume "cache" removed`) {
		t.Errorf("the mutating webhook's warning is missing:\n%s", r.stderr)
	}
	got := mustKubectl(t, "", "-n", userNamespace, "get", "statefulset", "through-service", "-o",
		"jsonpath={.spec.volumeClaimTemplates[*].metadata.name} {.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}/{.spec.persistentVolumeClaimRetentionPolicy.whenScaled}")
	if want := "metadata content cache Retain/Retain"; got.stdout != want {
		t.Errorf("stored: %q, want %q (mutated through the Service)", got.stdout, want)
	}
	denied := runKubectl(statefulSet("no-content", false), "-n", userNamespace, "create", "-f", "-")
	if denied.ok() || !strings.Contains(denied.stderr, "content-storage") {
		t.Errorf("a StatefulSet without content storage was not denied by the validating webhook:\n%s", denied)
	}
	if r := runKubectl("", "-n", userNamespace, "get", "statefulset", "no-content"); r.ok() {
		t.Errorf("the denied StatefulSet was stored")
	}
	// Re-applying the install now sends its labelled sample through the
	// webhooks too (on the first apply they did not exist yet): unchanged,
	// silent.
	generation := func() string {
		return mustKubectl(t, "", "-n", "dittofs-sample", "get", "statefulset", "dittofs-sample", "-o", "jsonpath={.metadata.generation}").stdout
	}
	gen0 := generation()
	re := mustKubectl(t, "", "apply", "-k", "deploy/default")
	if strings.Contains(re.stderr, "Warning") {
		t.Errorf("re-applying deploy/default warned:\n%s", re)
	}
	if gen := generation(); gen != gen0 {
		t.Errorf("re-applying deploy/default changed the sample StatefulSet: generation %s, was %s", gen, gen0)
	}
	if served := admissions(t) - served0; served < 3 {
		t.Errorf("the server counted %v admission requests, want at least 3 (mutate and validate of the create, the denial)", served)
	}
	if rx := rxPackets(t) - rx0; rx == 0 {
		t.Errorf("no packet went through the veth pair")
	}
	if err := env.host.checkLocal(); err != nil {
		t.Error(err)
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
	if r := runKubectl("", "get", "namespace", loadNamespace); !r.ok() {
		mustKubectl(t, "", "create", "namespace", loadNamespace)
	}
	before := secretData(t, servingSecret)
	l := startLoad(env.kubeconfig, loadNamespace)
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
	var served time.Time
	for deadline := time.Now().Add(time.Minute); served.IsZero(); {
		if leaf, err := env.servedCertificate(pool(t, bundle)); err == nil && leaf.SerialNumber.Cmp(newLeaf.SerialNumber) == 0 {
			served = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatalf("the server did not serve the renewed certificate within a minute (last: %v)", err)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !l.RunFor(l.Count()+10, 5*time.Second, time.Minute) {
		t.Fatalf("the load stopped early: %s", l)
	}
	t.Logf("renewed: Secret %s, caBundle %s, served %s after the trigger (volume written %s)",
		issued.Sub(t0).Round(time.Millisecond), injected.Sub(t0).Round(time.Millisecond),
		served.Sub(t0).Round(time.Millisecond), env.volume.lastWrite().Sub(t0).Round(time.Millisecond))
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
	for deadline := time.Now().Add(time.Minute); bytes.Equal(secretData(t, secret)["tls.crt"], before); {
		if time.Now().After(deadline) {
			t.Fatalf("cert-manager did not renew %s within a minute", certificate)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
		if _, err := leafOf(t, c.leaf).Verify(x509.VerifyOptions{DNSName: serviceDNSName, Roots: pool(t, c.ca)}); err != nil {
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
	arv1 := env.client.AdmissionregistrationV1()
	for deadline := time.Now().Add(time.Minute); ; {
		var bundles [][]byte
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
		if injected {
			return bundles[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("cainjector did not put the serving Secret's ca.crt (%s) into both webhook configurations within a minute: %s",
				describe(want), strings.Join(mapSlice(bundles, describe), "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testUninstall checks the README's uninstall against this cluster: the
// reason for its order (configurations left without their server block
// labelled StatefulSets), then its commands.
func testUninstall(t *testing.T) {
	// The pods go away (here: the server stops) while the configurations
	// are still there: failurePolicy Fail blocks labelled StatefulSets.
	if err := env.stopReplica(env.server, nil); err != nil {
		t.Errorf("dittofs-webhook serve did not stop cleanly: %v", err)
	}
	blocked := runKubectl(statefulSet("while-down", true), "-n", userNamespace, "create", "-f", "-")
	if blocked.ok() || !strings.Contains(blocked.stderr, "failed calling webhook") {
		t.Errorf("with the configurations left and no server, a labelled StatefulSet was not refused:\n%s", blocked)
	}
	t.Logf("with the server gone and the configurations left, kubectl create: %s", strings.TrimSpace(blocked.stderr))
	// The README: configurations first, then the rest. (--wait=false: no
	// namespace controller runs here to finish deleting the namespaces.)
	mustKubectl(t, "", "delete", "mutatingwebhookconfiguration", webhookConfigName)
	mustKubectl(t, "", "delete", "validatingwebhookconfiguration", webhookConfigName)
	mustKubectl(t, statefulSet("after-uninstall", true), "-n", userNamespace, "create", "-f", "-")
	mustKubectl(t, "", "delete", "-k", "deploy/default", "--ignore-not-found", "--wait=false")
	for _, kind := range []string{"certificate/" + servingCertificate, "certificate/" + caCertificate, "issuer/dittofs-webhook-ca", "issuer/dittofs-webhook-selfsigned", "service/" + serviceName, "deployment/dittofs-webhook"} {
		if r := runKubectl("", "-n", installNamespace, "get", kind, "--ignore-not-found", "-o", "name"); !r.ok() || r.stdout != "" {
			t.Errorf("%s is still there after the uninstall: %s", kind, r)
		}
	}
	// The user's StatefulSet created through the webhook stays as it was.
	got := mustKubectl(t, "", "-n", userNamespace, "get", "statefulset", "through-service", "-o",
		"jsonpath={.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}/{.spec.persistentVolumeClaimRetentionPolicy.whenScaled}")
	if got.stdout != "Retain/Retain" {
		t.Errorf("the user's StatefulSet after the uninstall: retention %q", got.stdout)
	}
}

// secretData is the data of a Secret in the install's namespace.
func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s, err := env.client.CoreV1().Secrets(installNamespace).Get(context.Background(), name, metav1.GetOptions{})
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
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no PEM certificate in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(t *testing.T, pemCerts []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemCerts) {
		t.Fatalf("no certificate in the bundle %q", pemCerts)
	}
	return p
}

// admissions is the server's count of admission requests (all webhooks and
// outcomes), from its metrics.
func admissions(t *testing.T) float64 {
	t.Helper()
	return admissionsAt(t, env.host)
}

// admissionsAt is the admission counter of the replica in host.
func admissionsAt(t *testing.T, host *testHost) float64 {
	t.Helper()
	resp, err := http.Get("http://" + net.JoinHostPort(host.podIP.String(), "8080") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _, err := sumMetric(resp.Body, "dittofs_webhook_admission_requests_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rxPackets(t *testing.T) uint64 {
	t.Helper()
	n, err := env.host.rxPackets()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// describe names the certificates of a PEM bundle, for messages.
func describe(bundle []byte) string {
	var names []string
	for _, c := range certificates(bundle) {
		names = append(names, fmt.Sprintf("%s #%x", c.Subject.CommonName, c.SerialNumber.Bytes()[:4]))
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
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
