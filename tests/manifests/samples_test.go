package manifests

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// sampleFile is the minimal manifest a user writes (deploy/samples, applied
// separately). The sample StatefulSet deploy/default installs (SPEC §6: "a
// sample labelled StatefulSet") lives in deploy/base/installed-sample and is
// written complete, as the webhooks store it: `kubectl apply -k` creates
// StatefulSets before webhook configurations, so on a first install it
// reaches the apiserver before the webhooks exist, and must be right without
// them.
const sampleFile = "deploy/samples/statefulset.yaml"

// checkSample checks what both samples must be: labelled for the webhooks,
// selected by them in a namespace nsLabels (if any), with the claim templates
// want, each requesting storage, a container named dittofs, and a headless
// Service of r named by serviceName, its selector selecting its pods.
func checkSample(t *testing.T, r *rendering, sts *appsv1.StatefulSet, nsLabels map[string]string, want []string,
	webhooks []admissionregistrationv1.MutatingWebhook) {
	t.Helper()
	if _, ok := sts.Labels[serverLabel]; !ok {
		t.Errorf("the sample lacks the %s label", serverLabel)
	}
	for _, w := range webhooks {
		if !selects(t, w.ObjectSelector, sts.Labels) || (nsLabels != nil && !selects(t, w.NamespaceSelector, nsLabels)) {
			t.Errorf("webhook %s does not select the sample (labels %v) in its namespace (labels %v)", w.Name, sts.Labels, nsLabels)
		}
	}
	var names []string
	for _, vct := range sts.Spec.VolumeClaimTemplates {
		names = append(names, vct.Name)
		if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
			t.Errorf("volumeClaimTemplate %s requests no positive storage", vct.Name)
		}
	}
	diff(t, "volumeClaimTemplates", want, names)
	if !slices.ContainsFunc(sts.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "dittofs" }) {
		t.Errorf("no container named dittofs, the one the webhook mounts the cache into")
	}
	if svc := named[corev1.Service](r, sts.Namespace, sts.Spec.ServiceName); svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("serviceName %q names no headless Service of the sample", sts.Spec.ServiceName)
	}
	if !selects(t, sts.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod template labels %v", sts.Spec.Selector, sts.Spec.Template.Labels)
	}
}

// TestSamples checks that the sample is what docs/install.md says: a
// labelled StatefulSet that the webhooks select, with the storage the user
// provides and the emptyDir cache the webhook replaces.
func TestSamples(t *testing.T) {
	r := render(t, "deploy/samples")
	sts := one[appsv1.StatefulSet](t, r)
	// No namespace: it goes where the user applies it, which must not be a
	// namespace the webhooks leave out.
	var ns map[string]string
	if sts.Namespace != "" {
		ns = nsLabels(sts.Namespace)
	}
	in := loadInstall(t, render(t, "deploy/default"))
	checkSample(t, r, sts, ns, []string{"metadata", "content"}, in.webhooks(t))
	if !slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "cache" && v.EmptyDir != nil }) ||
		sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
		t.Errorf("the sample must have an emptyDir volume named cache and no retention policy: the webhook's M3 and default show")
	}

	// What the webhooks make of it (the cache claim, Retain/Retain, the
	// emptyDir gone with a warning) is tests/e2e TestShippedSample's.
}

// checkInstalledSample is an installCheck: the overlay installs exactly one
// StatefulSet, the sample, in a namespace of its own that the install
// creates and the webhooks select; it is labelled, complete (the webhooks
// have nothing to add or deny) and scaled to 0.
func checkInstalledSample(t *testing.T, in *install) {
	sts := one[appsv1.StatefulSet](t, in.all)
	ns := named[corev1.Namespace](in.sample, "", sampleNamespace)
	if sts.Namespace != sampleNamespace || ns == nil {
		t.Fatalf("the sample %s/%s is not in its own namespace %s, which the install creates", sts.Namespace, sts.Name, sampleNamespace)
	}
	for _, o := range in.sample.objs {
		if !slices.Contains([]string{"Namespace", "Service", "StatefulSet"}, o.Kind) {
			t.Errorf("%s: unexpected in the sample's namespace", o)
		}
	}
	// The namespace's labels as the apiserver stores them: its own, and
	// kubernetes.io/metadata.name, which the apiserver sets.
	nsl := nsLabels(ns.Name)
	for k, v := range ns.Labels {
		nsl[k] = v
	}
	checkSample(t, in.sample, sts, nsl, []string{"metadata", "content", "cache"}, in.webhooks(t))

	// The cache as the webhook of this install would give it (SPEC §2 M1):
	// of its --default-cache-size, at its --cache-mount-path (the minimal
	// sample names both itself). Scaled to 0: installing the webhook starts
	// no pod and creates no PVC. The rest of its spec (Retain/Retain, the
	// claim's access modes and storage class, no cache volume) is the
	// webhook's output: TestInstalledSampleIsTheWebhookOutput.
	var size resource.Quantity
	var mounts []string
	for _, vct := range sts.Spec.VolumeClaimTemplates {
		if vct.Name == "cache" {
			size = vct.Spec.Resources.Requests[corev1.ResourceStorage]
		}
	}
	for _, c := range sts.Spec.Template.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == "cache" && c.Name == "dittofs" {
				mounts = append(mounts, m.MountPath)
			}
		}
	}
	want, _ := resource.ParseQuantity(in.flags["default-cache-size"]) // an invalid one: the serve args check
	diff(t, "cache size (bytes), the dittofs container's cache mounts, replicas",
		[]any{want.Value(), []string{in.flags["cache-mount-path"]}, ptr.To[int32](0)},
		[]any{size.Value(), mounts, sts.Spec.Replicas})

	// That the webhooks leave it as it is, on create and on a re-apply, with
	// no warning, is tests/e2e TestInstalledSample's, through the shipped
	// webhook configurations on a real kube-apiserver.
}

// TestInstalledSampleIsTheWebhookOutput checks, for each overlay, that the
// installed sample is what its comments say: the output of `dittofs-webhook
// eval` (the image's binary, with the policy flags the overlay's Deployment
// gives serve) for the minimal manifest of deploy/samples (same spec apart
// from replicas, same labels), so the two samples cannot drift apart.
func TestInstalledSampleIsTheWebhookOutput(t *testing.T) {
	for _, dir := range installOverlays {
		in := loadInstall(t, render(t, dir))
		installed := one[appsv1.StatefulSet](t, in.all)
		args := []string{"eval", "-f", filepath.Join(repoRoot, sampleFile), "-o", "json"}
		for _, f := range []string{"default-cache-size", "cache-mount-path"} {
			args = append(args, "--"+f+"="+in.flags[f])
		}
		// (The minimal sample's emptyDir makes eval warn on stderr.)
		out, err := exec.Command(serverBinary(t), args...).Output()
		if err != nil {
			t.Fatalf("dittofs-webhook %s: %v (want exit 0: allowed)\n%s", strings.Join(args, " "), err, stderrOf(err))
		}
		var minimal appsv1.StatefulSet
		if err := json.Unmarshal(out, &minimal); err != nil {
			t.Fatalf("eval -o json of %s is not a StatefulSet: %v\n%s", sampleFile, err, out)
		}
		got := installed.Spec.DeepCopy()
		got.Replicas = minimal.Spec.Replicas // by design: the installed sample is scaled to 0
		// As the apiserver compares: quantities by value, nil and empty alike.
		diff(t, dir+": the installed sample's spec (apart from replicas), and the webhook's output for "+sampleFile,
			minimal.Spec, *got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }))
		for k, v := range minimal.Labels {
			if w, ok := installed.Labels[k]; !ok || w != v {
				t.Errorf("%s: label %s=%q of %s is not on the installed sample (labels %v)", dir, k, v, sampleFile, installed.Labels)
			}
		}
		diff(t, dir+": name", minimal.Name, installed.Name)
	}
}
