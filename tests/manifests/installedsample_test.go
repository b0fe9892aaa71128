package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The sample StatefulSet that deploy/default installs (SPEC §6: "a sample
// labelled StatefulSet") lives in deploy/base/installed-sample. Unlike
// deploy/samples (the minimal manifest a user writes, applied separately) it
// is written complete, as the webhooks store it: `kubectl apply -k` creates
// StatefulSets before webhook configurations, so on a first install it reaches
// the apiserver before the webhooks exist, and must be right without them.

// checkInstalledSample is an installCheck: the overlay installs exactly one
// StatefulSet, the sample, in a namespace of its own that the install
// creates and the webhooks select; it is labelled, complete (the webhooks
// have nothing to add or deny), scaled to 0, and the server's own policy code
// agrees.
func checkInstalledSample(t *testing.T, in *install) {
	all := in.all.ofKind("StatefulSet")
	if len(all) != 1 {
		t.Fatalf("%s renders %d StatefulSets, want exactly 1, the sample: %v", in.all.dir, len(all), all)
	}
	o := all[0]
	if o.Namespace != sampleNamespace {
		t.Fatalf("the sample %s is not in its own namespace %s", o, sampleNamespace)
	}
	sts := decode[appsv1.StatefulSet](t, o)
	nsObj, ok := in.sample.find("Namespace", "", sampleNamespace)
	if !ok {
		t.Fatalf("the install does not create the sample's namespace %s", sampleNamespace)
	}
	ns := decode[corev1.Namespace](t, nsObj)
	for _, o := range in.sample.objs {
		if !slices.Contains([]string{"Namespace", "Service", "StatefulSet"}, o.Kind) {
			t.Errorf("%s: unexpected in the sample's namespace", o)
		}
	}

	t.Run("the webhooks select it", func(t *testing.T) {
		if _, ok := sts.Labels[serverLabel]; !ok {
			t.Fatalf("the sample lacks the %s label", serverLabel)
		}
		// The namespace's labels as the apiserver stores them: its own, and
		// kubernetes.io/metadata.name, which the apiserver sets.
		nsl := map[string]string{}
		for k, v := range ns.Labels {
			nsl[k] = v
		}
		for k, v := range nsLabels(ns.Name) {
			nsl[k] = v
		}
		for _, w := range in.webhooks() {
			if !selects(t, w.objectSelector, sts.Labels) {
				t.Errorf("%s objectSelector %s does not select the sample's labels %v",
					w.config, metav1.FormatLabelSelector(w.objectSelector), sts.Labels)
			}
			if !selects(t, w.namespaceSelector, nsl) {
				t.Errorf("%s namespaceSelector %s leaves out the sample's namespace %s (labels %v)",
					w.config, metav1.FormatLabelSelector(w.namespaceSelector), ns.Name, nsl)
			}
		}
	})

	t.Run("complete as written", func(t *testing.T) {
		var names []string
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			names = append(names, vct.Name)
			if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
				t.Errorf("volumeClaimTemplate %s requests no positive storage", vct.Name)
			}
		}
		expect(t, "volumeClaimTemplates", names, []string{"metadata", "content", "cache"})
		// The cache as the webhook of this install would append it (SPEC §2 M1).
		if cache := claimTemplate(sts, "cache"); cache != nil {
			want, err := resource.ParseQuantity(in.flags["default-cache-size"])
			if err != nil {
				t.Fatalf("the Deployment's --default-cache-size: %v", err)
			}
			if q := cache.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(want) != 0 {
				t.Errorf("cache volumeClaimTemplate requests %s, want the server's --default-cache-size %s", q.String(), want.String())
			}
			expect(t, "cache accessModes", cache.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce})
			if md := claimTemplate(sts, "metadata"); md != nil {
				expect(t, "cache storageClassName (the metadata template's)", show(cache.Spec.StorageClassName), show(md.Spec.StorageClassName))
			}
		}
		rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
		if rp == nil || rp.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
			rp.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
			t.Errorf("persistentVolumeClaimRetentionPolicy = %+v, want Retain/Retain", rp)
		}
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if slices.Contains([]string{"metadata", "content", "cache"}, v.Name) {
				t.Errorf("pod template volume %q: the volumeClaimTemplate of that name provides it", v.Name)
			}
		}
		i := slices.IndexFunc(sts.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "dittofs" })
		if i < 0 {
			t.Fatalf("no container named dittofs, the one the webhook mounts the cache into")
		}
		var mounts []string
		for _, m := range sts.Spec.Template.Spec.Containers[i].VolumeMounts {
			if m.Name == "cache" {
				mounts = append(mounts, m.MountPath)
			}
		}
		expect(t, "the dittofs container's cache mounts", mounts, []string{in.flags["cache-mount-path"]})
	})

	t.Run("scaled to 0", func(t *testing.T) {
		// Installing the webhook starts no pod and creates no PVC.
		expect(t, "replicas", show(sts.Spec.Replicas), "0")
	})

	t.Run("headless Service and selector", func(t *testing.T) {
		checkServiceAndSelector(t, in.sample, sts)
	})

	// The server's own code (`dittofs-webhook eval`, the mutating then the
	// validating webhook, configured as the Deployment configures serve):
	// no patch, allowed, no warning, on create (the webhooks were there
	// first) and on an update with the same object (a re-apply, or the first
	// apply after the webhooks came up).
	t.Run("dittofs-webhook eval: no patch, allowed, no warning", func(t *testing.T) {
		for _, op := range []string{"CREATE", "UPDATE"} {
			got := evalPatch(t, in, o.raw, op == "UPDATE")
			if len(got) != 1 {
				t.Fatalf("%s: eval answered for %d StatefulSets, want 1: %+v", op, len(got), got)
			}
			p := got[0]
			expect(t, op+": operation", p.Operation, op)
			expect(t, op+": allowed", p.Allowed, true)
			if len(p.Patch) > 0 {
				t.Errorf("%s: the mutating webhook patches the installed sample: %s", op, p.Patch)
			}
		}
	})
}

// claimTemplate returns the volumeClaimTemplate name of sts, or nil.
func claimTemplate(sts *appsv1.StatefulSet, name string) *corev1.PersistentVolumeClaim {
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name == name {
			return &sts.Spec.VolumeClaimTemplates[i]
		}
	}
	return nil
}

// evalOut is one StatefulSet of `dittofs-webhook eval -o patch`.
type evalOut struct {
	StatefulSet string            `json:"statefulset"`
	Operation   string            `json:"operation"`
	Allowed     bool              `json:"allowed"`
	Patch       []json.RawMessage `json:"patch"`
}

// runEval runs `dittofs-webhook eval -f FILE` with the policy flags the
// install's Deployment gives serve, and the extra args, and returns what it
// printed. An exit status other than 0 (denied, or bad input) fails the test.
func runEval(t *testing.T, in *install, file string, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := serverBinary(t)
	full := []string{"eval", "-f", file}
	for _, f := range []string{"default-cache-size", "cache-mount-path"} {
		if v, ok := in.flags[f]; ok {
			full = append(full, "--"+f+"="+v)
		}
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, append(full, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("dittofs-webhook %s: %v (want exit 0: allowed)\nstderr:\n%s", strings.Join(cmd.Args[1:], " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// evalPatch runs `dittofs-webhook eval -o patch` on the object raw, as a
// CREATE or as an UPDATE of itself.
func evalPatch(t *testing.T, in *install, raw []byte, update bool) []evalOut {
	t.Helper()
	file := filepath.Join(t.TempDir(), "statefulset.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-o", "patch"}
	if update {
		args = append(args, "--old", file)
	}
	out, warnings := runEval(t, in, file, args...)
	if warnings != "" {
		t.Errorf("dittofs-webhook eval %s printed warnings, want none:\n%s", strings.Join(args, " "), warnings)
	}
	var res []evalOut
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p evalOut
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("eval -o patch printed %v:\n%s", err, out)
		}
		res = append(res, p)
	}
	return res
}

// TestInstalledSampleIsTheWebhookOutput checks that the installed sample is
// what its comments say: the webhook's output for the minimal manifest of
// deploy/samples (same spec apart from replicas, same labels), so the two
// samples cannot drift apart.
func TestInstalledSampleIsTheWebhookOutput(t *testing.T) {
	in := loadInstall(t, render(t, "deploy/default"))
	installed := decode[appsv1.StatefulSet](t, in.all.only(t, "StatefulSet"))

	// (The minimal sample's emptyDir makes eval warn on stderr.)
	out, _ := runEval(t, in, filepath.Join(repoRoot, sampleFile), "-o", "json")
	var minimal appsv1.StatefulSet
	if err := json.Unmarshal([]byte(out), &minimal); err != nil {
		t.Fatalf("eval -o json of %s is not a StatefulSet: %v\n%s", sampleFile, err, out)
	}

	got, want := installed.Spec.DeepCopy(), minimal.Spec.DeepCopy()
	// By design: the installed sample is scaled to 0.
	got.Replicas = want.Replicas
	// As the apiserver compares: quantities by value, nil and empty alike.
	opts := cmp.Options{cmpopts.EquateEmpty(), cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })}
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("the installed sample's spec (apart from replicas) differs from the webhook's output for %s (-webhook +installed):\n%s",
			sampleFile, d)
	}
	for k, v := range minimal.Labels {
		if w, ok := installed.Labels[k]; !ok || w != v {
			t.Errorf("label %s=%q of %s is not on the installed sample (labels %v)", k, v, sampleFile, installed.Labels)
		}
	}
	expect(t, "name", installed.Name, minimal.Name)
}
