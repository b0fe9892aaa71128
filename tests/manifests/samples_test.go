package manifests

import (
	"bytes"
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

var retainRetain = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
	WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
}

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

	// The cache as the webhook of this install would append it (SPEC §2 M1).
	if cache := claimTemplate(sts, "cache"); cache != nil {
		want, err := resource.ParseQuantity(in.flags["default-cache-size"])
		if q := cache.Spec.Resources.Requests[corev1.ResourceStorage]; err != nil || q.Cmp(want) != 0 {
			t.Errorf("cache volumeClaimTemplate requests %s, want the server's --default-cache-size %s (%v)", q.String(), want.String(), err)
		}
		diff(t, "cache accessModes", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, cache.Spec.AccessModes)
		if md := claimTemplate(sts, "metadata"); md != nil {
			diff(t, "cache storageClassName (the metadata template's)", md.Spec.StorageClassName, cache.Spec.StorageClassName)
		}
	}
	// Scaled to 0: installing the webhook starts no pod and creates no PVC.
	diff(t, "retention policy, replicas", []any{retainRetain, ptr.To[int32](0)},
		[]any{sts.Spec.PersistentVolumeClaimRetentionPolicy, sts.Spec.Replicas})
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if slices.Contains([]string{"metadata", "content", "cache"}, v.Name) {
			t.Errorf("pod template volume %q: the volumeClaimTemplate of that name provides it", v.Name)
		}
	}
	var mounts []string
	for _, c := range sts.Spec.Template.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == "cache" && c.Name == "dittofs" {
				mounts = append(mounts, m.MountPath)
			}
		}
	}
	diff(t, "the dittofs container's cache mounts", []string{in.flags["cache-mount-path"]}, mounts)

	// That the webhooks leave it as it is, on create and on a re-apply, with
	// no warning, is tests/e2e TestInstalledSample's, through the shipped
	// webhook configurations on a real kube-apiserver.
}

// claimTemplate returns the volumeClaimTemplate name of sts, or nil.
func claimTemplate(sts *appsv1.StatefulSet, name string) *corev1.PersistentVolumeClaim {
	i := slices.IndexFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == name })
	if i < 0 {
		return nil
	}
	return &sts.Spec.VolumeClaimTemplates[i]
}

// runEval runs `dittofs-webhook eval -f FILE` with the policy flags the
// install's Deployment gives serve, and the extra args, and returns what it
// printed. An exit status other than 0 (denied, or bad input) fails the test.
func runEval(t *testing.T, in *install, file string, args ...string) (stdout, stderr string) {
	t.Helper()
	full := []string{"eval", "-f", file}
	for _, f := range []string{"default-cache-size", "cache-mount-path"} {
		if v, ok := in.flags[f]; ok {
			full = append(full, "--"+f+"="+v)
		}
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(serverBinary(t), append(full, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("dittofs-webhook %s: %v (want exit 0: allowed)\nstderr:\n%s", strings.Join(cmd.Args[1:], " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// TestInstalledSampleIsTheWebhookOutput checks that the installed sample is
// what its comments say: the webhook's output for the minimal manifest of
// deploy/samples (same spec apart from replicas, same labels), so the two
// samples cannot drift apart.
func TestInstalledSampleIsTheWebhookOutput(t *testing.T) {
	in := loadInstall(t, render(t, "deploy/default"))
	installed := one[appsv1.StatefulSet](t, in.all)
	// (The minimal sample's emptyDir makes eval warn on stderr.)
	out, _ := runEval(t, in, filepath.Join(repoRoot, sampleFile), "-o", "json")
	var minimal appsv1.StatefulSet
	if err := json.Unmarshal([]byte(out), &minimal); err != nil {
		t.Fatalf("eval -o json of %s is not a StatefulSet: %v\n%s", sampleFile, err, out)
	}
	got := installed.Spec.DeepCopy()
	got.Replicas = minimal.Spec.Replicas // by design: the installed sample is scaled to 0
	// As the apiserver compares: quantities by value, nil and empty alike.
	diff(t, "the installed sample's spec (apart from replicas), and the webhook's output for "+sampleFile, minimal.Spec, *got,
		cmpopts.EquateEmpty(), cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }))
	for k, v := range minimal.Labels {
		if w, ok := installed.Labels[k]; !ok || w != v {
			t.Errorf("label %s=%q of %s is not on the installed sample (labels %v)", k, v, sampleFile, installed.Labels)
		}
	}
	diff(t, "name", minimal.Name, installed.Name)
}
