package manifests

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const sampleFile = "deploy/samples/statefulset.yaml"

// TestSamples checks that the sample is what docs/install.md says: a
// labelled StatefulSet that the webhooks select, with the storage the user
// provides and the emptyDir cache the webhook replaces.
func TestSamples(t *testing.T) {
	r := render(t, "deploy/samples")
	checkKnownAndStrict(t, r)
	sts := decode[appsv1.StatefulSet](t, r.only(t, "StatefulSet"))
	mwc := decode[admissionregistrationv1.MutatingWebhookConfiguration](t,
		render(t, "deploy/default").only(t, "MutatingWebhookConfiguration"))

	t.Run("the webhooks select it", func(t *testing.T) {
		if _, ok := sts.Labels[serverLabel]; !ok {
			t.Fatalf("the sample lacks the %s label", serverLabel)
		}
		w := mwc.Webhooks[0]
		if !selects(t, w.ObjectSelector, sts.Labels) {
			t.Errorf("the webhook objectSelector does not select the sample's labels %v", sts.Labels)
		}
		// No namespace: it goes where the user applies it, which must not be
		// a namespace the webhooks leave out.
		if sts.Namespace != "" && !selects(t, w.NamespaceSelector, nsLabels(sts.Namespace)) {
			t.Errorf("the sample's namespace %s is left out by the webhook namespaceSelector", sts.Namespace)
		}
	})

	t.Run("storage", func(t *testing.T) {
		var names []string
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			names = append(names, vct.Name)
			if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
				t.Errorf("volumeClaimTemplate %s requests no positive storage", vct.Name)
			}
		}
		expect(t, "volumeClaimTemplates", names, []string{"metadata", "content"})
		if !slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == "cache" && v.EmptyDir != nil
		}) {
			t.Errorf("the sample has no emptyDir volume named cache (the webhook's M3 has nothing to show)")
		}
		if sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
			t.Errorf("the sample sets a retention policy: the webhook's default (Retain/Retain) is what it shows")
		}
	})

	t.Run("pod", func(t *testing.T) {
		if !slices.ContainsFunc(sts.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "dittofs" }) {
			t.Errorf("no container named dittofs, the one the webhook mounts the cache into")
		}
		checkServiceAndSelector(t, r, sts)
	})

	// The server's own offline evaluation (`dittofs-webhook eval`) of the
	// sample: what `kubectl apply -f` of it will store.
	t.Run("dittofs-webhook eval accepts and completes it", func(t *testing.T) {
		bin := serverBinary(t)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "eval", "-f", filepath.Join(repoRoot, sampleFile), "-o", "yaml")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("dittofs-webhook eval -f %s: %v (want exit 0: allowed)\n%s", sampleFile, err, stderr.String())
		}
		var out appsv1.StatefulSet
		if err := yaml.Unmarshal(bytes.TrimPrefix(bytes.TrimSpace(stdout.Bytes()), []byte("---")), &out); err != nil {
			t.Fatalf("eval output is not a StatefulSet: %v\n%s", err, stdout.String())
		}
		var names []string
		for _, vct := range out.Spec.VolumeClaimTemplates {
			names = append(names, vct.Name)
		}
		expect(t, "volumeClaimTemplates after the webhook", names, []string{"metadata", "content", "cache"})
		rp := out.Spec.PersistentVolumeClaimRetentionPolicy
		if rp == nil || rp.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
			rp.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
			t.Errorf("retention policy after the webhook = %+v, want Retain/Retain", rp)
		}
		if slices.ContainsFunc(out.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "cache" }) {
			t.Errorf("the emptyDir cache volume is still there after the webhook")
		}
		if !strings.Contains(stderr.String(), "emptyDir") {
			t.Errorf("eval printed no warning about the removed emptyDir; stderr:\n%s", stderr.String())
		}
	})
}

// checkServiceAndSelector: a sample StatefulSet's serviceName names a headless
// Service of the same rendering, and its selector selects its pods.
func checkServiceAndSelector(t *testing.T, r *rendering, sts *appsv1.StatefulSet) {
	t.Helper()
	if svc, ok := r.find("Service", sts.Namespace, sts.Spec.ServiceName); !ok {
		t.Errorf("serviceName %q names no Service of the sample", sts.Spec.ServiceName)
	} else if s := decode[corev1.Service](t, svc); s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s is not headless", s.Name)
	}
	if !selects(t, sts.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod template labels %v", sts.Spec.Selector, sts.Spec.Template.Labels)
	}
}
