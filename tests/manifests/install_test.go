package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	dittofswebhook "github.com/dittofs/dittofs-webhook/webhook"
)

// install is a rendering of the webhook's install, its objects decoded.
type install struct {
	namespace, namePrefix string
	// kustomize renders the Namespace (Helm, which stores the release in it, cannot) and the sample.
	kustomize bool
	all       *rendering // everything rendered
	r         *rendering // the webhook's objects: all but the sample's namespace
	sample    *rendering // the sample's namespace and what is in it
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

func loadInstall(t *testing.T, r *rendering) *install {
	t.Helper()
	return loadInstallAs(t, r, installNamespace, namePrefix, true)
}

func loadInstallAs(t *testing.T, rendered *rendering, namespace, namePrefix string, kustomize bool) *install {
	t.Helper()
	sample, r := rendered.split(sampleNamespace)
	in := &install{namespace: namespace, namePrefix: namePrefix, kustomize: kustomize, all: rendered, r: r, sample: sample,
		sa: one[corev1.ServiceAccount](t, r), dep: one[appsv1.Deployment](t, r), svc: one[corev1.Service](t, r),
		pdb: one[policyv1.PodDisruptionBudget](t, r), np: one[networkingv1.NetworkPolicy](t, r),
		mwc: one[admissionregistrationv1.MutatingWebhookConfiguration](t, r),
		vwc: one[admissionregistrationv1.ValidatingWebhookConfiguration](t, r),
	}
	var gotNS []string
	for _, ns := range all[corev1.Namespace](r) {
		gotNS = append(gotNS, ns.Name)
	}
	diff(t, r.dir+" Namespaces", map[bool][]string{true: {namespace}}[kustomize], gotNS)
	if n := len(in.pod().Containers); n != 1 {
		t.Fatalf("%s: the Deployment's pod has %d containers, want the webhook server's alone", r.dir, n)
	}
	in.container = &in.pod().Containers[0]
	in.flags, in.argErrs = parseServeArgs(in.container.Args)
	return in
}

func (in *install) pod() *corev1.PodSpec { return &in.dep.Spec.Template.Spec }

func (in *install) flagPort(t *testing.T, name string) int32 {
	t.Helper()
	p, err := listenPort(in.flags[name])
	fatalIf(t, err)
	return p
}

// webhooks returns both webhooks as the mutating type (a superset of fields).
func (in *install) webhooks(t *testing.T) []admissionregistrationv1.MutatingWebhook {
	t.Helper()
	if len(in.mwc.Webhooks) != 1 || len(in.vwc.Webhooks) != 1 {
		t.Fatalf("%d mutating and %d validating webhooks, want 1 and 1", len(in.mwc.Webhooks), len(in.vwc.Webhooks))
	}
	var v admissionregistrationv1.MutatingWebhook
	raw, err := json.Marshal(in.vwc.Webhooks[0])
	fatalIf(t, errors.Join(err, decodeStrict(raw, &v)))
	return []admissionregistrationv1.MutatingWebhook{in.mwc.Webhooks[0], v}
}

func diff(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, opts...); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// installChecks are what every install (installOverlays, helmInstalls) must satisfy.
var installChecks = []struct {
	name  string
	check func(t *testing.T, in *install)
}{
	{"names and namespaces", func(t *testing.T, in *install) {
		for _, o := range in.r.objs {
			if !strings.HasPrefix(o.Name, in.namePrefix) {
				t.Errorf("%s: name does not start with %q", o, in.namePrefix)
			}
			if want := map[bool]string{false: in.namespace}[clusterScoped[o.Kind]]; o.Namespace != want {
				t.Errorf("%s: namespace %q, want %q", o, o.Namespace, want)
			}
		}
	}},
	{"no service account token", func(t *testing.T, in *install) {
		diff(t, "automountServiceAccountToken (SA, pod), serviceAccountName", []any{ptr.To(false), ptr.To(false), in.sa.Name},
			[]any{in.sa.AutomountServiceAccountToken, in.pod().AutomountServiceAccountToken, in.pod().ServiceAccountName})
	}},
	{"webhook configurations", checkWebhooks},
	{"serving certificate", checkServingCertificate},
	{"replicas, spread and disruption budget", checkAvailability},
	{"pod and container security", func(t *testing.T, in *install) {
		pod := in.pod()
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("pod shares a host namespace (hostNetwork %v, hostPID %v, hostIPC %v)", pod.HostNetwork, pod.HostPID, pod.HostIPC)
		}
		seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
		diff(t, "pod securityContext", &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(nonRootID),
			RunAsGroup: ptr.To(nonRootID), FSGroup: ptr.To(nonRootID), SeccompProfile: seccomp}, pod.SecurityContext)
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			diff(t, fmt.Sprintf("container %q securityContext", c.Name), &corev1.SecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(nonRootID), RunAsGroup: ptr.To(nonRootID),
				ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), Privileged: ptr.To(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: seccomp,
			}, c.SecurityContext)
		}
	}},
	{"resource requests and limits", func(t *testing.T, in *install) {
		for _, c := range slices.Concat(in.pod().InitContainers, in.pod().Containers) {
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[res]
				lim, hasLim := c.Resources.Limits[res]
				if !hasReq || !hasLim || req.Cmp(lim) > 0 {
					t.Errorf("container %q: %s request %v unset or over the limit %v", c.Name, res, req.String(), lim.String())
				}
			}
		}
	}},
	{"serve args", func(t *testing.T, in *install) {
		for _, p := range in.argErrs {
			t.Errorf("container %q: %s", in.container.Name, p)
		}
		for name := range serveFlags {
			if _, ok := in.flags[name]; !ok && !optionalServeFlags[name] {
				t.Errorf("container %q args lack --%s: spell out every serve flag", in.container.Name, name)
			}
		}
		if len(in.container.Command) > 0 || in.container.Image == "" { // the image's entrypoint must run
			t.Errorf("container %q: command %q, image %q", in.container.Name, in.container.Command, in.container.Image)
		}
	}},
	{"ports, probes, Service and NetworkPolicy", checkPorts},
	{"graceful shutdown", checkShutdown},
	{"the installed sample, where there is one", func(t *testing.T, in *install) {
		if in.kustomize {
			checkInstalledSample(t, in)
		} else if len(in.sample.objs)+len(all[appsv1.StatefulSet](in.all)) > 0 {
			t.Errorf("%s installs a sample: %v", in.all.dir, in.sample.objs)
		}
	}},
}

var installOverlays = []string{"deploy/default", "deploy/monitoring", "deploy/rollout-warn"}

func TestInstall(t *testing.T) {
	run := func(t *testing.T, in *install) {
		for _, c := range installChecks {
			t.Run(c.name, func(t *testing.T) { c.check(t, in) })
		}
	}
	for _, dir := range installOverlays {
		t.Run(dir, func(t *testing.T) {
			in := loadInstall(t, render(t, dir))
			// SPEC §6: 2 replicas (checkAvailability holds for any count the chart's value may set).
			if replicas := ptr.Deref(in.dep.Spec.Replicas, 1); replicas != 2 {
				t.Errorf("Deployment replicas = %d, want 2", replicas)
			}
			run(t, in)
		})
	}
	for _, h := range helmInstalls {
		t.Run("helm "+h.name, func(t *testing.T) { run(t, h.load(t)) })
	}
}

func checkWebhooks(t *testing.T, in *install) {
	ws := in.webhooks(t)
	diff(t, "validating namespaceSelector (the mutating one's)", ws[0].NamespaceSelector, ws[1].NamespaceSelector)
	for i, w := range ws {
		name, path := "mutate", "/mutate-apps-v1-statefulset"
		reinvocation := ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy)
		if i == 1 {
			name, path, reinvocation = "validate", "/validate-apps-v1-statefulset", nil
		}
		want := admissionregistrationv1.MutatingWebhook{
			Name: name + ".statefulsets.dittofs.com",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Namespace: in.svc.Namespace, Name: in.svc.Name, Path: &path, Port: ptr.To[int32](443)}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"},
					Resources: []string{"statefulsets"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: serverLabel, Operator: metav1.LabelSelectorOpExists}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			ReinvocationPolicy:      reinvocation,
		}
		diff(t, name+" webhook", want, w, cmpopts.IgnoreFields(w, "NamespaceSelector"), // below
			cmpopts.SortSlices(func(a, b admissionregistrationv1.OperationType) bool { return a < b }))
		// A request slower than the duration histogram's last finite bucket is
		// only in +Inf: the dashboard could not tell 3 s from a timeout.
		if last := dittofswebhook.DurationBuckets[len(dittofswebhook.DurationBuckets)-1]; float64(ptr.Deref(w.TimeoutSeconds, 10)) > last {
			t.Errorf("%s: timeoutSeconds %d, but the duration histogram's last finite bucket is %gs (webhook.DurationBuckets)",
				name, ptr.Deref(w.TimeoutSeconds, 10), last)
		}
		// Leave out kube-system and the webhook's own namespace (no admission
		// deadlock), and nothing else a user may run DittoFS in.
		for _, n := range []string{"kube-system", in.namespace, "default", "dittofs", "storage"} {
			if selected := selects(t, w.NamespaceSelector, nsLabels(n)); selected != (n != "kube-system" && n != in.namespace) {
				t.Errorf("%s namespaceSelector selects namespace %s: %v", name, n, selected)
			}
		}
	}
}

// checkServingCertificate: serving ← CA Issuer ← CA Certificate ← selfSigned Issuer.
func checkServingCertificate(t *testing.T, in *install) {
	p, ns := in.namePrefix, in.namespace
	diff(t, "--tls-cert-file, --tls-key-file, volume mounts, volumes", []any{
		[]string{path.Join(tlsMountPath, "tls.crt"), path.Join(tlsMountPath, "tls.key")},
		[]corev1.VolumeMount{{Name: "tls", MountPath: tlsMountPath, ReadOnly: true}},
		[]corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: p + "-tls", DefaultMode: ptr.To[int32](0o440)}}}},
	}, []any{[]string{in.flags["tls-cert-file"], in.flags["tls-key-file"]}, in.container.VolumeMounts, in.pod().Volumes})
	diff(t, "inject-ca-from (mutating, validating)", []string{ns + "/" + p + "-serving-cert", ns + "/" + p + "-serving-cert"},
		[]string{in.mwc.Annotations[injectCAFrom], in.vwc.Annotations[injectCAFrom]})
	key := func(rotation cmapi.PrivateKeyRotationPolicy) *cmapi.CertificatePrivateKey {
		return &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: rotation}
	}
	issuer := func(name string) cmmeta.IssuerReference {
		return cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: name}
	}
	hours := func(h int) *metav1.Duration { return &metav1.Duration{Duration: time.Duration(h) * time.Hour} }
	want := map[string]any{
		p + "-selfsigned": cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		p + "-ca":         cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: p + "-ca"}}},
		"Certificate " + p + "-ca": cmapi.CertificateSpec{IsCA: true, CommonName: p + "-ca", SecretName: p + "-ca",
			Duration: hours(43800), RenewBefore: hours(8760), PrivateKey: key(cmapi.RotationPolicyNever),
			IssuerRef: issuer(p + "-selfsigned"), RevisionHistoryLimit: ptr.To[int32](1)},
		// The kube-apiserver verifies the first name.
		"Certificate " + p + "-serving-cert": cmapi.CertificateSpec{
			DNSNames:   []string{in.svc.Name + "." + ns + ".svc", in.svc.Name + "." + ns + ".svc.cluster.local"},
			SecretName: p + "-tls", Duration: hours(2160), RenewBefore: hours(720), PrivateKey: key(cmapi.RotationPolicyAlways),
			Usages:    []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageDigitalSignature},
			IssuerRef: issuer(p + "-ca"), RevisionHistoryLimit: ptr.To[int32](1)},
	}
	got := map[string]any{}
	for _, c := range all[cmapi.Certificate](in.r) {
		got["Certificate "+c.Name] = c.Spec
	}
	for _, i := range all[cmapi.Issuer](in.r) {
		got[i.Name] = i.Spec
	}
	diff(t, "the cert-manager Issuers' and Certificates' specs", want, got)
}

// checkAvailability: with failurePolicy Fail, a replica down must not block writes.
func checkAvailability(t *testing.T, in *install) {
	if replicas := ptr.Deref(in.dep.Spec.Replicas, 1); replicas < 2 {
		t.Errorf("Deployment replicas = %d, want at least 2", replicas)
	}
	sel := in.dep.Spec.Selector
	spread := func(key string, when corev1.UnsatisfiableConstraintAction, honor *corev1.NodeInclusionPolicy) corev1.TopologySpreadConstraint {
		return corev1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: when, LabelSelector: sel,
			NodeTaintsPolicy: honor, MatchLabelKeys: []string{"pod-template-hash"}}
	}
	diff(t, "rollingUpdate, PodDisruptionBudget, topologySpreadConstraints, affinity", []any{
		&appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0))},
		policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: sel,
			UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow)},
		[]corev1.TopologySpreadConstraint{spread("kubernetes.io/hostname", corev1.DoNotSchedule, ptr.To(corev1.NodeInclusionPolicyHonor)),
			spread("topology.kubernetes.io/zone", corev1.ScheduleAnyway, nil)},
		&corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
			{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: sel}}}}},
	}, []any{in.dep.Spec.Strategy.RollingUpdate, in.pdb.Spec, in.pod().TopologySpreadConstraints, in.pod().Affinity})
}

// checkPorts: the flags' ports declared, used by name, and let in alone.
func checkPorts(t *testing.T, in *install) {
	listen, metrics := in.flagPort(t, "listen"), in.flagPort(t, "metrics-listen")
	diff(t, "--listen port", int32(9443), listen)
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("metrics")}},
			PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: failures}
	}
	tcp := ptr.To(corev1.ProtocolTCP)
	diff(t, "container ports, liveness and readiness probes", []any{
		[]corev1.ContainerPort{{Name: "webhook", ContainerPort: listen, Protocol: *tcp}, {Name: "metrics", ContainerPort: metrics, Protocol: *tcp}},
		probe("/healthz", 10, 3), probe("/readyz", 2, 2),
	}, []any{in.container.Ports, in.container.LivenessProbe, in.container.ReadinessProbe})
	// ClusterIP: nothing outside the cluster reaches the webhook.
	diff(t, "Service", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: in.dep.Spec.Selector.MatchLabels,
		Ports: []corev1.ServicePort{{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook"), Protocol: *tcp},
			{Name: "metrics", Port: 8080, TargetPort: intstr.FromString("metrics"), Protocol: *tcp}},
	}, in.svc.Spec)
	// Egress listed with no rule: the server opens no connection.
	diff(t, "NetworkPolicy", networkingv1.NetworkPolicySpec{PodSelector: *in.dep.Spec.Selector,
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: tcp, Port: ptr.To(intstr.FromInt32(listen))}, {Protocol: tcp, Port: ptr.To(intstr.FromInt32(metrics))}}}},
	}, in.np.Spec)
}

func checkShutdown(t *testing.T, in *install) {
	lc := in.container.Lifecycle
	if lc == nil || lc.PreStop == nil || lc.PreStop.Sleep == nil || lc.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("container %q: want a lifecycle.preStop.sleep (the image has no shell for an exec sleep)", in.container.Name)
	}
	sleep := time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
	drain, _ := time.ParseDuration(in.flags["shutdown-drain-period"]) // a missing or bad one: "serve args"
	shutdown, _ := time.ParseDuration(in.flags["shutdown-timeout"])
	grace := time.Duration(ptr.Deref(in.pod().TerminationGracePeriodSeconds, 30)) * time.Second // 30: the API default
	// From preStop: the sleep, SIGTERM, the drain, Shutdown waiting for requests.
	if grace <= sleep+drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed preStop sleep %v + --shutdown-drain-period %v + --shutdown-timeout %v: SIGKILL would cut the drain or in-flight requests",
			grace, sleep, drain, shutdown)
	}
}

// nsLabels are the labels the kube-apiserver gives a namespace.
func nsLabels(name string) map[string]string {
	return map[string]string{"kubernetes.io/metadata.name": name}
}
