package manifests

import (
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// sampleFile is minimal; deploy/default's is complete (applied before the webhooks).
const sampleFile = "deploy/samples/statefulset.yaml"

// checkSample: selected by the webhooks, claims want, a headless Service of r.
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

// TestSamples: the minimal sample has the emptyDir cache the webhook replaces.
func TestSamples(t *testing.T) {
	r := render(t, "deploy/samples")
	sts := one[appsv1.StatefulSet](t, r)
	// No namespace: it goes where the user applies it.
	diff(t, "namespace", "", sts.Namespace)
	checkSample(t, r, sts, nil, []string{"metadata", "content"}, loadInstall(t, render(t, "deploy/default")).webhooks(t))
	if !slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "cache" && v.EmptyDir != nil }) ||
		sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
		t.Errorf("the sample must have an emptyDir volume named cache and no retention policy: the webhook's M3 and default show")
	}
}

// checkInstalledSample: the sample, scaled to 0, alone in its own namespace.
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
	// The namespace's labels as the apiserver stores them.
	nsl := nsLabels(ns.Name)
	maps.Copy(nsl, ns.Labels)
	checkSample(t, in.sample, sts, nsl, []string{"metadata", "content", "cache"}, in.webhooks(t))
	diff(t, "replicas", ptr.To[int32](0), sts.Spec.Replicas)
}

// TestInstalledSampleIsTheWebhookOutput: each overlay's sample is `eval` of the minimal one.
func TestInstalledSampleIsTheWebhookOutput(t *testing.T) {
	bin, _ := serverBinary(t)
	for _, dir := range installOverlays {
		in := loadInstall(t, render(t, dir))
		installed := one[appsv1.StatefulSet](t, in.all)
		args := []string{"eval", "-f", filepath.Join(repoRoot, sampleFile), "-o", "json"}
		for _, f := range []string{"default-cache-size", "cache-mount-path"} {
			args = append(args, "--"+f+"="+in.flags[f])
		}
		out, err := exec.Command(bin, args...).Output() // (the emptyDir makes eval warn on stderr)
		if err != nil {
			t.Fatalf("dittofs-webhook %s: %v (want exit 0: allowed)\n%s", strings.Join(args, " "), err, stderrOf(err))
		}
		var minimal appsv1.StatefulSet
		if err := json.Unmarshal(out, &minimal); err != nil {
			t.Fatalf("eval -o json of %s is not a StatefulSet: %v\n%s", sampleFile, err, out)
		}
		got := installed.Spec.DeepCopy()
		got.Replicas = minimal.Spec.Replicas
		// As the apiserver compares: quantities by value (go-cmp calls Quantity.Equal), nil and empty alike.
		diff(t, dir+": the installed sample's spec (apart from replicas), and the webhook's output for "+sampleFile,
			minimal.Spec, *got, cmpopts.EquateEmpty())
		labels := maps.Clone(installed.Labels) // those of the minimal one, and more
		maps.DeleteFunc(labels, func(k, _ string) bool {
			_, ok := minimal.Labels[k]
			return !ok
		})
		diff(t, dir+": name, labels (of "+sampleFile+")", []any{minimal.Name, minimal.Labels}, []any{installed.Name, labels})
	}
}
