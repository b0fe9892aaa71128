package manifests

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// installOverlays install the webhook; each must satisfy every installCheck,
// as must the chart's installations (helmInstalls, helm_test.go).
var installOverlays = []string{"deploy/default", "deploy/monitoring", "deploy/rollout-warn"}

// layout is what a rendering holds besides the webhook's own objects, and
// where they are.
type layout struct {
	namespace  string // of the webhook's objects
	namePrefix string // of every object's name
	// createsNamespace: the rendering has the Namespace object. Kustomize's
	// does; Helm's cannot, as Helm stores the release in its namespace
	// before it creates anything.
	createsNamespace bool
	// sample: the rendering installs the sample StatefulSet in
	// sampleNamespace (deploy/default does; the chart does not).
	sample bool
}

// kustomizeLayout is the layout of every overlay under deploy/.
var kustomizeLayout = layout{namespace: installNamespace, namePrefix: namePrefix, createsNamespace: true, sample: true}

// install is an overlay's rendering, decoded into typed objects.
type install struct {
	layout
	all       *rendering        // everything the overlay renders
	r         *rendering        // the webhook's objects: all but the sample's namespace
	sample    *rendering        // the sample's namespace and what is in it
	ns        *corev1.Namespace // nil unless createsNamespace
	sa        *corev1.ServiceAccount
	dep       *appsv1.Deployment
	svc       *corev1.Service
	pdb       *policyv1.PodDisruptionBudget
	np        *networkingv1.NetworkPolicy
	mwc       *admissionregistrationv1.MutatingWebhookConfiguration
	vwc       *admissionregistrationv1.ValidatingWebhookConfiguration
	container *corev1.Container // the webhook server's container
	flags     map[string]string // its serve flags
	argErrs   []string          // problems with its args
}

// loadInstall loads the rendering of a kustomize overlay.
func loadInstall(t *testing.T, all *rendering) *install {
	t.Helper()
	return loadInstallAs(t, all, kustomizeLayout)
}

// loadInstallAs loads a rendering of the install laid out as l.
func loadInstallAs(t *testing.T, all *rendering, l layout) *install {
	t.Helper()
	sample, r := all.split(sampleNamespace)
	in := &install{
		layout: l,
		all:    all,
		r:      r,
		sample: sample,
		sa:     decode[corev1.ServiceAccount](t, r.only(t, "ServiceAccount")),
		dep:    decode[appsv1.Deployment](t, r.only(t, "Deployment")),
		svc:    decode[corev1.Service](t, r.only(t, "Service")),
		pdb:    decode[policyv1.PodDisruptionBudget](t, r.only(t, "PodDisruptionBudget")),
		np:     decode[networkingv1.NetworkPolicy](t, r.only(t, "NetworkPolicy")),
		mwc:    decode[admissionregistrationv1.MutatingWebhookConfiguration](t, r.only(t, "MutatingWebhookConfiguration")),
		vwc:    decode[admissionregistrationv1.ValidatingWebhookConfiguration](t, r.only(t, "ValidatingWebhookConfiguration")),
	}
	if l.createsNamespace {
		in.ns = decode[corev1.Namespace](t, r.only(t, "Namespace"))
	} else if ns := r.ofKind("Namespace"); len(ns) > 0 {
		t.Fatalf("%s renders %v: it cannot create the namespace it is installed in", r.dir, ns)
	}
	if n := len(in.dep.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s: the Deployment's pod has %d containers, want the webhook server's alone", r.dir, n)
	}
	in.container = &in.dep.Spec.Template.Spec.Containers[0]
	in.flags, in.argErrs = parseServeArgs(in.container.Args)
	return in
}

func (in *install) podLabels() map[string]string { return in.dep.Spec.Template.Labels }
func (in *install) pod() *corev1.PodSpec         { return &in.dep.Spec.Template.Spec }

// certificate returns the cert-manager Certificate namespace/name of the rendering.
func (in *install) certificate(t *testing.T, namespace, name string) (*cmapi.Certificate, bool) {
	o, ok := in.r.find("Certificate", namespace, name)
	if !ok {
		return nil, false
	}
	return decode[cmapi.Certificate](t, o), true
}

func (in *install) issuer(t *testing.T, namespace, name string) (*cmapi.Issuer, bool) {
	o, ok := in.r.find("Issuer", namespace, name)
	if !ok {
		return nil, false
	}
	return decode[cmapi.Issuer](t, o), true
}

// tlsSecret returns the name of the Secret volume mounted at tlsMountPath.
func (in *install) tlsSecret(t *testing.T) string {
	t.Helper()
	for _, m := range in.container.VolumeMounts {
		if m.MountPath != tlsMountPath {
			continue
		}
		for _, v := range in.pod().Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
		t.Fatalf("volume %q mounted at %s is not a Secret volume", m.Name, tlsMountPath)
	}
	t.Fatalf("container %q mounts nothing at %s", in.container.Name, tlsMountPath)
	return ""
}

// flagPort returns the port of the listen-address flag name.
func (in *install) flagPort(t *testing.T, name string) int32 {
	t.Helper()
	v, ok := in.flags[name]
	if !ok {
		t.Fatalf("container args %q lack --%s", in.container.Args, name)
	}
	p, err := listenPort(v)
	if err != nil {
		t.Fatalf("--%s=%s: %v", name, v, err)
	}
	return p
}

// webhook is what the checks read of one webhook of either configuration.
type webhook struct {
	config                  string // kind of the configuration
	annotations             map[string]string
	count                   int // webhooks in the configuration
	wantName, wantPath      string
	name                    string
	clientConfig            admissionregistrationv1.WebhookClientConfig
	rules                   []admissionregistrationv1.RuleWithOperations
	objectSelector          *metav1.LabelSelector
	namespaceSelector       *metav1.LabelSelector
	failurePolicy           *admissionregistrationv1.FailurePolicyType
	sideEffects             *admissionregistrationv1.SideEffectClass
	admissionReviewVersions []string
	timeoutSeconds          *int32
	matchPolicy             *admissionregistrationv1.MatchPolicyType
	reinvocationPolicy      *admissionregistrationv1.ReinvocationPolicyType // mutating only
}

func (in *install) webhooks() []webhook {
	m := webhook{config: "MutatingWebhookConfiguration", annotations: in.mwc.Annotations, count: len(in.mwc.Webhooks),
		wantName: "mutate.statefulsets.dittofs.com", wantPath: mutatePath}
	if len(in.mwc.Webhooks) > 0 {
		w := in.mwc.Webhooks[0]
		m.name, m.clientConfig, m.rules = w.Name, w.ClientConfig, w.Rules
		m.objectSelector, m.namespaceSelector = w.ObjectSelector, w.NamespaceSelector
		m.failurePolicy, m.sideEffects, m.admissionReviewVersions = w.FailurePolicy, w.SideEffects, w.AdmissionReviewVersions
		m.timeoutSeconds, m.matchPolicy, m.reinvocationPolicy = w.TimeoutSeconds, w.MatchPolicy, w.ReinvocationPolicy
	}
	v := webhook{config: "ValidatingWebhookConfiguration", annotations: in.vwc.Annotations, count: len(in.vwc.Webhooks),
		wantName: "validate.statefulsets.dittofs.com", wantPath: validatePath}
	if len(in.vwc.Webhooks) > 0 {
		w := in.vwc.Webhooks[0]
		v.name, v.clientConfig, v.rules = w.Name, w.ClientConfig, w.Rules
		v.objectSelector, v.namespaceSelector = w.ObjectSelector, w.NamespaceSelector
		v.failurePolicy, v.sideEffects, v.admissionReviewVersions = w.FailurePolicy, w.SideEffects, w.AdmissionReviewVersions
		v.timeoutSeconds, v.matchPolicy = w.TimeoutSeconds, w.MatchPolicy
	}
	return []webhook{m, v}
}

// show prints a pointer's value, or <unset>.
func show[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

// expect reports a mismatch between got and want, naming what was checked.
func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

type installCheck struct {
	name  string
	check func(t *testing.T, in *install)
}

var installChecks = []installCheck{
	{"every object is of a known kind and decodes strictly", func(t *testing.T, in *install) {
		checkKnownAndStrict(t, in.all)
	}},
	{"no RBAC object at all", func(t *testing.T, in *install) {
		for _, o := range in.all.objs {
			if strings.HasPrefix(o.APIVersion, "rbac.authorization.k8s.io/") ||
				slices.Contains([]string{"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}, o.Kind) {
				t.Errorf("%s: the server talks to no Kubernetes API and must be granted nothing", o)
			}
		}
	}},
	{"names and namespaces", func(t *testing.T, in *install) {
		if in.ns != nil {
			expect(t, "Namespace name", in.ns.Name, in.namespace)
		}
		for _, o := range in.r.objs {
			if !strings.HasPrefix(o.Name, in.namePrefix) {
				t.Errorf("%s: name does not start with %q", o, in.namePrefix)
			}
			switch {
			case clusterScoped[o.Kind] && o.Namespace != "":
				t.Errorf("%s: cluster-scoped kind with a namespace", o)
			case !clusterScoped[o.Kind] && o.Namespace != in.namespace:
				t.Errorf("%s: namespace %q, want %q", o, o.Namespace, in.namespace)
			}
		}
	}},
	{"no service account token", func(t *testing.T, in *install) {
		expect(t, "ServiceAccount automountServiceAccountToken", show(in.sa.AutomountServiceAccountToken), "false")
		expect(t, "pod automountServiceAccountToken", show(in.pod().AutomountServiceAccountToken), "false")
		expect(t, "pod serviceAccountName", in.pod().ServiceAccountName, in.sa.Name)
	}},
	{"webhook configurations", checkWebhooks},
	{"mutating and validating webhooks select the same requests", func(t *testing.T, in *install) {
		w := in.webhooks()
		if !reflect.DeepEqual(w[1].rules, w[0].rules) {
			t.Errorf("validating rules %s differ from mutating rules %s", describeRules(w[1].rules), describeRules(w[0].rules))
		}
		expect(t, "validating objectSelector (mutating's is the reference)",
			metav1.FormatLabelSelector(w[1].objectSelector), metav1.FormatLabelSelector(w[0].objectSelector))
		expect(t, "validating namespaceSelector (mutating's is the reference)",
			metav1.FormatLabelSelector(w[1].namespaceSelector), metav1.FormatLabelSelector(w[0].namespaceSelector))
		expect(t, "validating matchPolicy", show(w[1].matchPolicy), show(w[0].matchPolicy))
	}},
	{"serving certificate", checkServingCertificate},
	{"replicas, spread and disruption budget", checkAvailability},
	{"pod and container security", checkSecurity},
	{"resource requests and limits", func(t *testing.T, in *install) {
		for _, c := range slices.Concat(in.pod().InitContainers, in.pod().Containers) {
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[res]
				lim, hasLim := c.Resources.Limits[res]
				if !hasReq {
					t.Errorf("container %q: no %s request", c.Name, res)
				}
				if !hasLim {
					t.Errorf("container %q: no %s limit", c.Name, res)
				}
				if hasReq && hasLim && req.Cmp(lim) > 0 {
					t.Errorf("container %q: %s request %s exceeds its limit %s", c.Name, res, req.String(), lim.String())
				}
			}
		}
	}},
	{"serve args", checkArgs},
	{"probes on the metrics port", checkProbes},
	{"graceful shutdown", checkShutdown},
	{"service", checkService},
	{"network policy", checkNetworkPolicy},
	{"the installed sample, where there is one", func(t *testing.T, in *install) {
		if in.layout.sample {
			checkInstalledSample(t, in)
		} else if len(in.sample.objs)+len(in.all.ofKind("StatefulSet")) > 0 {
			t.Errorf("%s installs a sample: %v %v", in.all.dir, in.sample.objs, in.all.ofKind("StatefulSet"))
		}
	}},
}

// runInstallChecks runs every installCheck on in, each as a subtest.
func runInstallChecks(t *testing.T, in *install) {
	for _, c := range installChecks {
		t.Run(c.name, func(t *testing.T) { c.check(t, in) })
	}
}

func TestInstall(t *testing.T) {
	for _, dir := range installOverlays {
		t.Run(dir, func(t *testing.T) {
			runInstallChecks(t, loadInstall(t, render(t, dir)))
		})
	}
	for _, h := range helmInstalls {
		t.Run("helm "+h.name, func(t *testing.T) {
			runInstallChecks(t, loadInstallAs(t, renderHelm(t, h.release), h.layout()))
		})
	}
}

func checkWebhooks(t *testing.T, in *install) {
	webhookPort, ok := containerPort(in.container, intstr.FromString("webhook"))
	if !ok {
		t.Fatalf("container %q has no port named webhook", in.container.Name)
	}
	for _, w := range in.webhooks() {
		t.Run(w.config, func(t *testing.T) {
			if w.count != 1 {
				t.Fatalf("%s has %d webhooks, want 1", w.config, w.count)
			}
			expect(t, "name", w.name, w.wantName)

			// Where the kube-apiserver sends the requests.
			cc := w.clientConfig
			if cc.URL != nil {
				t.Errorf("clientConfig.url = %q: the webhook must be reached through its Service", *cc.URL)
			}
			if cc.Service == nil {
				t.Fatalf("clientConfig.service is unset")
			}
			expect(t, "clientConfig.service.path", show(cc.Service.Path), w.wantPath)
			expect(t, "clientConfig.service.port", show(cc.Service.Port), "443")
			if len(cc.CABundle) != 0 {
				t.Errorf("clientConfig.caBundle is set in the manifest; cert-manager's cainjector owns it")
			}
			if cc.Service.Name != in.svc.Name || cc.Service.Namespace != in.svc.Namespace {
				t.Errorf("clientConfig.service = %s/%s, but the Service is %s/%s",
					cc.Service.Namespace, cc.Service.Name, in.svc.Namespace, in.svc.Name)
			}
			if cc.Service.Port != nil {
				sp, ok := servicePort(in.svc, *cc.Service.Port)
				if !ok {
					t.Errorf("Service %s has no port %d", in.svc.Name, *cc.Service.Port)
				} else if cp, ok := containerPort(in.container, sp.TargetPort); !ok || cp != webhookPort {
					t.Errorf("Service port %d targets %s, which is not the container's webhook port %d",
						sp.Port, sp.TargetPort.String(), webhookPort.ContainerPort)
				}
			}
			expect(t, "container webhook port", webhookPort.ContainerPort, int32(9443))
			expect(t, "--listen port (the container's webhook port)", in.flagPort(t, "listen"), webhookPort.ContainerPort)

			// The CA the kube-apiserver trusts.
			ref := w.annotations[injectCAFrom]
			ns, name, ok := strings.Cut(ref, "/")
			if !ok {
				t.Errorf("annotation %s = %q, want NAMESPACE/CERTIFICATE", injectCAFrom, ref)
			} else if cert, ok := in.certificate(t, ns, name); !ok {
				t.Errorf("annotation %s names Certificate %s, which the install does not create", injectCAFrom, ref)
			} else {
				if got, want := cert.Spec.SecretName, in.tlsSecret(t); got != want {
					t.Errorf("%s names Certificate %s whose Secret %q is not the Secret %q the server mounts at %s",
						injectCAFrom, ref, got, want, tlsMountPath)
				}
				for _, dns := range serviceDNSNames(cc.Service.Name, cc.Service.Namespace)[:1] {
					if !slices.Contains(cert.Spec.DNSNames, dns) {
						t.Errorf("Certificate %s dnsNames %q lack %q, the name the kube-apiserver verifies", ref, cert.Spec.DNSNames, dns)
					}
				}
			}

			// Which requests.
			wantRules := []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"statefulsets"},
					Scope: ptrTo(admissionregistrationv1.NamespacedScope),
				},
			}}
			var gotRules []admissionregistrationv1.RuleWithOperations // operations in any order
			for _, r := range w.rules {
				r.Operations = slices.Sorted(slices.Values(r.Operations))
				gotRules = append(gotRules, r)
			}
			if !reflect.DeepEqual(gotRules, wantRules) {
				t.Errorf("rules = %s, want %s", describeRules(w.rules), describeRules(wantRules))
			}
			wantSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: serverLabel, Operator: metav1.LabelSelectorOpExists},
			}}
			if !reflect.DeepEqual(w.objectSelector, wantSelector) {
				t.Errorf("objectSelector = %s, want %s", metav1.FormatLabelSelector(w.objectSelector), metav1.FormatLabelSelector(wantSelector))
			}
			for _, l := range []map[string]string{{serverLabel: ""}, {serverLabel: "nfs-1", "app": "dittofs"}} {
				if !selects(t, w.objectSelector, l) {
					t.Errorf("objectSelector does not select a StatefulSet labelled %v", l)
				}
			}
			for _, l := range []map[string]string{{}, {"app": "dittofs"}, {"dittofs.com/server-name": "x"}} {
				if selects(t, w.objectSelector, l) {
					t.Errorf("objectSelector selects an unmanaged StatefulSet labelled %v", l)
				}
			}
			// The namespaceSelector must leave out kube-system and the
			// webhook's own namespace (no admission deadlock) and nothing
			// else a user may run DittoFS in.
			for _, n := range []string{"kube-system", in.namespace} {
				if selects(t, w.namespaceSelector, nsLabels(n)) {
					t.Errorf("namespaceSelector selects namespace %s", n)
				}
			}
			for _, n := range []string{"default", "dittofs", "storage"} {
				if !selects(t, w.namespaceSelector, nsLabels(n)) {
					t.Errorf("namespaceSelector leaves out namespace %s: its DittoFS StatefulSets would get no cache", n)
				}
			}

			// How.
			expect(t, "failurePolicy", show(w.failurePolicy), "Fail")
			expect(t, "sideEffects", show(w.sideEffects), "None")
			expect(t, "admissionReviewVersions", w.admissionReviewVersions, []string{"v1"})
			expect(t, "timeoutSeconds", show(w.timeoutSeconds), "5")
			expect(t, "matchPolicy", show(w.matchPolicy), "Equivalent")
			if w.config == "MutatingWebhookConfiguration" {
				expect(t, "reinvocationPolicy", show(w.reinvocationPolicy), "IfNeeded")
			}
		})
	}
}

func checkServingCertificate(t *testing.T, in *install) {
	// The server reads the files the Certificate's Secret is mounted as.
	secret := in.tlsSecret(t)
	for _, m := range in.container.VolumeMounts {
		if m.MountPath == tlsMountPath && !m.ReadOnly {
			t.Errorf("volume %q at %s is not mounted readOnly", m.Name, tlsMountPath)
		}
	}
	expect(t, "--tls-cert-file", in.flags["tls-cert-file"], path.Join(tlsMountPath, "tls.crt"))
	expect(t, "--tls-key-file", in.flags["tls-key-file"], path.Join(tlsMountPath, "tls.key"))

	ns, name, _ := strings.Cut(in.mwc.Annotations[injectCAFrom], "/")
	if v := in.vwc.Annotations[injectCAFrom]; v != in.mwc.Annotations[injectCAFrom] {
		t.Errorf("the webhook configurations inject different CAs: %q and %q", in.mwc.Annotations[injectCAFrom], v)
	}
	serving, ok := in.certificate(t, ns, name)
	if !ok {
		t.Fatalf("no Certificate %s/%s (named by %s)", ns, name, injectCAFrom)
	}
	expect(t, "serving Certificate secretName", serving.Spec.SecretName, secret)
	for _, dns := range serviceDNSNames(in.svc.Name, in.svc.Namespace) {
		if !slices.Contains(serving.Spec.DNSNames, dns) {
			t.Errorf("serving Certificate dnsNames %q lack %q", serving.Spec.DNSNames, dns)
		}
	}
	if serving.Spec.IsCA {
		t.Errorf("the serving Certificate is a CA")
	}
	servingLife := checkLifetime(t, "serving Certificate", serving)
	checkPrivateKey(t, "serving Certificate", serving)
	// (That every usage is one cert-manager knows is its CRD's enum, checked
	// by the e2e's server-side dry run.)
	if len(serving.Spec.Usages) > 0 && !slices.Contains(serving.Spec.Usages, cmapi.UsageServerAuth) {
		t.Errorf("serving Certificate usages %q lack server auth", serving.Spec.Usages)
	}

	// serving ← CA Issuer ← CA Certificate ← selfSigned Issuer.
	caIssuer, ok := in.issuerOf(t, "serving Certificate", serving)
	if !ok {
		return
	}
	if caIssuer.Spec.CA == nil {
		t.Fatalf("Issuer %s, which signs the serving Certificate, is not a CA issuer", caIssuer.Name)
	}
	var ca *cmapi.Certificate
	for _, o := range in.r.ofKind("Certificate") {
		if c := decode[cmapi.Certificate](t, o); c.Namespace == caIssuer.Namespace && c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
			ca = c
		}
	}
	if ca == nil {
		t.Fatalf("no Certificate writes Secret %q, the CA of Issuer %s", caIssuer.Spec.CA.SecretName, caIssuer.Name)
	}
	if !ca.Spec.IsCA {
		t.Errorf("CA Certificate %s: isCA is not true", ca.Name)
	}
	if ca.Spec.PrivateKey == nil || ca.Spec.PrivateKey.Algorithm != cmapi.ECDSAKeyAlgorithm {
		t.Errorf("CA Certificate %s: privateKey.algorithm is not ECDSA", ca.Name)
	}
	caLife := checkLifetime(t, "CA Certificate", ca)
	if caLife <= servingLife {
		t.Errorf("CA Certificate lasts %v, not longer than the serving certificate it signs (%v)", caLife, servingLife)
	}
	root, ok := in.issuerOf(t, "CA Certificate", ca)
	if ok && root.Spec.SelfSigned == nil {
		t.Errorf("Issuer %s, which signs the CA Certificate, is not selfSigned", root.Name)
	}
}

// issuerOf returns the Issuer that signs c, reporting one that is missing.
func (in *install) issuerOf(t *testing.T, what string, c *cmapi.Certificate) (*cmapi.Issuer, bool) {
	t.Helper()
	ref := c.Spec.IssuerRef
	if ref.Kind != "" && ref.Kind != "Issuer" {
		t.Errorf("%s issuerRef.kind = %q: the install brings its own namespaced Issuers", what, ref.Kind)
		return nil, false
	}
	if ref.Group != "" && ref.Group != "cert-manager.io" {
		t.Errorf("%s issuerRef.group = %q, want cert-manager.io", what, ref.Group)
	}
	is, ok := in.issuer(t, c.Namespace, ref.Name)
	if !ok {
		t.Errorf("%s is signed by Issuer %s/%s, which the install does not create", what, c.Namespace, ref.Name)
	}
	return is, ok
}

// checkLifetime checks duration and renewBefore (Go durations, or the
// decode failed) and returns the duration.
func checkLifetime(t *testing.T, what string, c *cmapi.Certificate) time.Duration {
	t.Helper()
	if c.Spec.Duration == nil || c.Spec.RenewBefore == nil {
		t.Errorf("%s: duration (%v) and renewBefore (%v) must both be set", what, c.Spec.Duration, c.Spec.RenewBefore)
		return 0
	}
	d, r := c.Spec.Duration.Duration, c.Spec.RenewBefore.Duration
	if r >= d {
		t.Errorf("%s: renewBefore %v is not shorter than duration %v", what, r, d)
	}
	return d
}

func checkPrivateKey(t *testing.T, what string, c *cmapi.Certificate) {
	t.Helper()
	pk := c.Spec.PrivateKey
	if pk == nil {
		t.Errorf("%s: privateKey unset", what)
		return
	}
	expect(t, what+" privateKey.rotationPolicy", pk.RotationPolicy, cmapi.RotationPolicyAlways)
	// (The algorithm's enum is the CRD's, checked by the e2e's dry run.)
	if pk.Algorithm == cmapi.ECDSAKeyAlgorithm && !slices.Contains([]int{0, 256, 384, 521}, pk.Size) {
		t.Errorf("%s: ECDSA size %d is not 256, 384 or 521", what, pk.Size)
	}
}

func checkAvailability(t *testing.T, in *install) {
	replicas := int32(1)
	if in.dep.Spec.Replicas != nil {
		replicas = *in.dep.Spec.Replicas
	}
	if replicas < 2 {
		t.Errorf("Deployment replicas = %d, want at least 2 (failurePolicy Fail: one replica down blocks DittoFS StatefulSets)", replicas)
	}
	if ru := in.dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
		t.Errorf("Deployment rollingUpdate.maxUnavailable is not 0: a rollout would lower the number of ready replicas")
	}

	// The PodDisruptionBudget.
	if !selects(t, in.pdb.Spec.Selector, in.podLabels()) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods (labels %v)", in.pdb.Spec.Selector, in.podLabels())
	}
	if in.pdb.Namespace != in.dep.Namespace {
		t.Errorf("PodDisruptionBudget is in %s, the Deployment in %s", in.pdb.Namespace, in.dep.Namespace)
	}
	if mu := in.pdb.Spec.MinAvailable; mu == nil || mu.String() != "1" {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want 1", mu)
	} else if int32(mu.IntValue()) >= replicas {
		t.Errorf("PodDisruptionBudget minAvailable %d leaves no replica evictable out of %d: node drains would hang", mu.IntValue(), replicas)
	}

	// Spread across nodes.
	found := false
	for _, c := range in.pod().TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" && c.MaxSkew == 1 && selects(t, c.LabelSelector, in.podLabels()) {
			found = true
		}
	}
	if !found {
		t.Errorf("no topologySpreadConstraint with maxSkew 1 over kubernetes.io/hostname selects the pods")
	}
	found = false
	if a := in.pod().Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && selects(t, w.PodAffinityTerm.LabelSelector, in.podLabels()) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no preferred podAntiAffinity over kubernetes.io/hostname selects the pods")
	}
}

func checkSecurity(t *testing.T, in *install) {
	pod := in.pod()
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("pod shares a host namespace (hostNetwork %v, hostPID %v, hostIPC %v)", pod.HostNetwork, pod.HostPID, pod.HostIPC)
	}
	psc := pod.SecurityContext
	if psc == nil {
		t.Fatalf("pod securityContext unset")
	}
	expect(t, "pod securityContext.runAsNonRoot", show(psc.RunAsNonRoot), "true")
	expect(t, "pod securityContext.runAsUser", show(psc.RunAsUser), fmt.Sprint(nonRootID))
	expect(t, "pod securityContext.runAsGroup", show(psc.RunAsGroup), fmt.Sprint(nonRootID))
	if psc.SeccompProfile == nil {
		t.Errorf("pod securityContext.seccompProfile unset")
	} else {
		expect(t, "pod securityContext.seccompProfile.type", psc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	}

	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %q: securityContext unset", c.Name)
			continue
		}
		p := fmt.Sprintf("container %q securityContext.", c.Name)
		expect(t, p+"runAsNonRoot", show(sc.RunAsNonRoot), "true")
		expect(t, p+"runAsUser", show(sc.RunAsUser), fmt.Sprint(nonRootID))
		expect(t, p+"runAsGroup", show(sc.RunAsGroup), fmt.Sprint(nonRootID))
		expect(t, p+"readOnlyRootFilesystem", show(sc.ReadOnlyRootFilesystem), "true")
		expect(t, p+"allowPrivilegeEscalation", show(sc.AllowPrivilegeEscalation), "false")
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%sprivileged is true", p)
		}
		if sc.Capabilities == nil {
			t.Errorf("%scapabilities unset", p)
		} else {
			expect(t, p+"capabilities.drop", sc.Capabilities.Drop, []corev1.Capability{"ALL"})
			if len(sc.Capabilities.Add) > 0 {
				t.Errorf("%scapabilities.add = %v, want none", p, sc.Capabilities.Add)
			}
		}
		if sc.SeccompProfile == nil {
			t.Errorf("%sseccompProfile unset", p)
		} else {
			expect(t, p+"seccompProfile.type", sc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
		}
	}
}

func checkArgs(t *testing.T, in *install) {
	for _, p := range in.argErrs {
		t.Errorf("container %q: %s", in.container.Name, p)
	}
	for name := range serveFlags {
		if _, ok := in.flags[name]; !ok && !optionalServeFlags[name] {
			t.Errorf("container %q args lack --%s: spell out every serve flag", in.container.Name, name)
		}
	}
	if len(in.container.Command) > 0 {
		t.Errorf("container %q sets command %q: the image's entrypoint /dittofs-webhook must run", in.container.Name, in.container.Command)
	}
	if in.container.Image == "" {
		t.Errorf("container %q has no image", in.container.Name)
	}
}

func checkProbes(t *testing.T, in *install) {
	metricsPort := in.flagPort(t, "metrics-listen")
	if p, ok := containerPort(in.container, intstr.FromString("metrics")); !ok || p.ContainerPort != metricsPort {
		t.Errorf("container port named metrics = %d, want the --metrics-listen port %d", p.ContainerPort, metricsPort)
	}
	for _, pr := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", in.container.LivenessProbe, "/healthz"},
		{"readinessProbe", in.container.ReadinessProbe, "/readyz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s", pr.what, pr.path)
			continue
		}
		g := pr.probe.HTTPGet
		expect(t, pr.what+".httpGet.path", g.Path, pr.path)
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s.httpGet.scheme = %s: the metrics listener is plain HTTP", pr.what, g.Scheme)
		}
		if p, ok := containerPort(in.container, g.Port); !ok || p.ContainerPort != metricsPort {
			t.Errorf("%s.httpGet.port %s is not the --metrics-listen port %d", pr.what, g.Port.String(), metricsPort)
		}
	}
}

func checkShutdown(t *testing.T, in *install) {
	lc := in.container.Lifecycle
	if lc == nil || lc.PreStop == nil || lc.PreStop.Sleep == nil || lc.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("container %q: want a lifecycle.preStop.sleep (the image has no shell for an exec sleep)", in.container.Name)
	}
	sleep := time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
	var drain, shutdown time.Duration
	for _, f := range []struct {
		name string
		d    *time.Duration
	}{{"shutdown-drain-period", &drain}, {"shutdown-timeout", &shutdown}} {
		d, err := time.ParseDuration(in.flags[f.name])
		if err != nil {
			t.Fatalf("--%s=%q: %v", f.name, in.flags[f.name], err)
		}
		*f.d = d
	}
	grace := 30 * time.Second // the API default
	if g := in.pod().TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	// The grace period counts from the start of preStop; SIGTERM comes after
	// the sleep, then the drain, then Shutdown waits for in-flight requests.
	if grace <= sleep+drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed preStop sleep %v + --shutdown-drain-period %v + --shutdown-timeout %v: SIGKILL would cut the drain or in-flight requests",
			grace, sleep, drain, shutdown)
	}
}

func checkService(t *testing.T, in *install) {
	if len(in.svc.Spec.Selector) == 0 || !selects(t, &metav1.LabelSelector{MatchLabels: in.svc.Spec.Selector}, in.podLabels()) {
		t.Errorf("Service selector %v does not select the pods (labels %v)", in.svc.Spec.Selector, in.podLabels())
	}
	if in.svc.Spec.Type != "" && in.svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s exposes the webhook outside the cluster", in.svc.Spec.Type)
	}
	metricsPort := in.flagPort(t, "metrics-listen")
	for _, want := range []struct {
		port   int32
		target int32
	}{{443, in.flagPort(t, "listen")}, {8080, metricsPort}} {
		sp, ok := servicePort(in.svc, want.port)
		if !ok {
			t.Errorf("Service has no port %d", want.port)
			continue
		}
		if cp, ok := containerPort(in.container, sp.TargetPort); !ok || cp.ContainerPort != want.target {
			t.Errorf("Service port %d targets %s, want container port %d", sp.Port, sp.TargetPort.String(), want.target)
		}
	}
}

func checkNetworkPolicy(t *testing.T, in *install) {
	np := in.np
	if !selects(t, &np.Spec.PodSelector, in.podLabels()) || len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) == 0 {
		t.Errorf("NetworkPolicy podSelector %v does not select exactly the webhook pods (labels %v)", np.Spec.PodSelector, in.podLabels())
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy policyTypes %v lack Ingress: ingress would not be restricted", np.Spec.PolicyTypes)
	}
	got := map[string]bool{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d lists no ports: it opens every port", i)
		}
		for _, p := range rule.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if p.Port == nil || p.EndPort != nil {
				t.Errorf("ingress rule %d opens a port range or every port", i)
				continue
			}
			port := p.Port.IntVal
			if p.Port.Type == intstr.String {
				cp, ok := containerPort(in.container, *p.Port)
				if !ok {
					t.Errorf("ingress rule %d names port %q, which the container does not declare", i, p.Port.StrVal)
					continue
				}
				port = cp.ContainerPort
			}
			got[fmt.Sprintf("%s/%d", proto, port)] = true
		}
	}
	want := map[string]bool{
		fmt.Sprintf("TCP/%d", in.flagPort(t, "listen")):         true,
		fmt.Sprintf("TCP/%d", in.flagPort(t, "metrics-listen")): true,
	}
	expect(t, "ports the NetworkPolicy lets in", got, want)
	if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) && len(np.Spec.Egress) > 0 {
		t.Errorf("NetworkPolicy allows egress %v: the server opens no connection", np.Spec.Egress)
	}
}

func servicePort(svc *corev1.Service, port int32) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// serviceDNSNames are the names a client in the cluster uses for a Service;
// the kube-apiserver verifies the first.
func serviceDNSNames(name, namespace string) []string {
	return []string{name + "." + namespace + ".svc", name + "." + namespace + ".svc.cluster.local"}
}

// nsLabels are the labels the kube-apiserver gives every namespace.
func nsLabels(name string) map[string]string {
	return map[string]string{"kubernetes.io/metadata.name": name}
}

func describeRules(rules []admissionregistrationv1.RuleWithOperations) string {
	var parts []string
	for _, r := range rules {
		parts = append(parts, fmt.Sprintf("{groups %q versions %q resources %q operations %q scope %s}",
			r.APIGroups, r.APIVersions, r.Resources, r.Operations, show(r.Scope)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func ptrTo[T any](v T) *T { return &v }
