// Command peer is the comparison webhook of the benchmarks (docs/performance.md): the CREATE side of the DittoFS
// StatefulSet policy (SPEC §2–§3) as kubebuilder scaffolds a webhook for a built-in type, an admission.Defaulter
// and an admission.Validator served on 127.0.0.1 by controller-runtime's webhook.Server. It talks to no
// Kubernetes API.
//
//	peer --port 9443 --cert-dir DIR
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"slices"
	"syscall"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/dittofs/dittofs-webhook/policies"
)

func main() {
	port := flag.Int("port", 9443, "HTTPS port of the webhooks, on 127.0.0.1")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{Development: false}))) // info
	// As kubebuilder's scaffold does by default: no HTTP/2 (the rapid-reset CVEs).
	server := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: *port, CertDir: *certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}})
	mutate, validate := webhooks()
	server.Register("/mutate-apps-v1-statefulset", mutate)
	server.Register("/validate-apps-v1-statefulset", validate)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := server.Start(ctx); err != nil {
		ctrl.Log.Error(err, "webhook server failed")
		os.Exit(1)
	}
}

// webhooks are the two webhooks, as main serves them and the test calls them. DefaulterRemoveUnknownOrOmitableFields
// makes the patch turn the request's object into the typed one, as a handwritten handler's does, rather than diff
// the object twice to keep what the typed round trip drops.
func webhooks() (mutate, validate *admission.Webhook) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	o := policies.DefaultOptions() // the server's defaults, which TestPeerAgrees compares with
	return admission.WithDefaulter(scheme, &statefulSetDefaulter{DefaultCacheSize: o.DefaultCacheSize,
			CacheMountPath: o.CacheMountPath}, admission.DefaulterRemoveUnknownOrOmitableFields),
		admission.WithValidator(scheme, statefulSetValidator{})
}

var (
	statefulSetLog = logf.Log.WithName("statefulset-resource")
	retain         = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
)

type statefulSetDefaulter struct {
	DefaultCacheSize resource.Quantity
	CacheMountPath   string
}

type statefulSetValidator struct{}

// managed tells whether the webhooks look at sts: on CREATE, when it has the label.
func managed(ctx context.Context, sts *appsv1.StatefulSet) bool {
	req, err := admission.RequestFromContext(ctx)
	_, ok := sts.Labels[policies.LabelServer]
	return err == nil && req.Operation == admissionv1.Create && ok
}

func invalid(name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, name, errs)
}

func claimIndex(sts *appsv1.StatefulSet, name string) int {
	return slices.IndexFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == name })
}

// Default implements admission.Defaulter: M1–M4.
func (d *statefulSetDefaulter) Default(ctx context.Context, sts *appsv1.StatefulSet) error {
	if !managed(ctx, sts) {
		return nil
	}
	statefulSetLog.Info("defaulting", "name", sts.Name, "namespace", sts.Namespace)
	if claimIndex(sts, policies.CacheVolume) < 0 { // M1
		size := d.DefaultCacheSize
		if v, ok := sts.Annotations[policies.AnnotationCacheSize]; ok {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				return invalid(sts.Name, field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations").
					Key(policies.AnnotationCacheSize), v, "must be a positive quantity such as 5Gi")})
			}
			size = q
		}
		var class *string
		if v, ok := sts.Annotations[policies.AnnotationCacheStorageClass]; ok {
			class = &v
		} else if i := claimIndex(sts, policies.MetadataVolume); i >= 0 && sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName != nil {
			class = ptr.To(*sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName)
		}
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: policies.CacheVolume}, Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}}})
	}
	sts.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{ // M2
		WhenDeleted: retain, WhenScaled: retain}

	// M3
	podSpec := &sts.Spec.Template.Spec
	var kept []corev1.Volume
	var errs field.ErrorList
	for i, v := range podSpec.Volumes {
		if v.Name != policies.CacheVolume || v.EmptyDir == nil {
			kept = append(kept, v)
		}
		if v.Name == policies.CacheVolume && v.EmptyDir == nil {
			errs = append(errs, field.Invalid(field.NewPath("spec", "template", "spec", "volumes").Index(i).Child("name"),
				policies.CacheVolume, "the volume name \"cache\" is reserved for the persistent DittoFS cache "+
					"volumeClaimTemplate: rename this volume"))
		}
	}
	if len(errs) > 0 {
		return invalid(sts.Name, errs)
	}
	if len(kept) != len(podSpec.Volumes) {
		podSpec.Volumes = kept // nil when none is left
	}

	// M4: the container named by the annotation, else "dittofs", else the only one; none is no mount.
	find := func(name string) int {
		return slices.IndexFunc(podSpec.Containers, func(c corev1.Container) bool { return c.Name == name })
	}
	ci := find(policies.DefaultContainer)
	if name, ok := sts.Annotations[policies.AnnotationContainer]; ok {
		ci = find(name)
	} else if ci < 0 && len(podSpec.Containers) == 1 {
		ci = 0
	}
	if ci < 0 {
		return nil
	}
	c := &podSpec.Containers[ci]
	if slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.Name == policies.CacheVolume || path.Clean(vm.MountPath) == path.Clean(d.CacheMountPath)
	}) {
		return nil // mounted already, or its mount path taken
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: policies.CacheVolume, MountPath: d.CacheMountPath})
	return nil
}

// ValidateCreate implements admission.Validator: SPEC §3.
func (statefulSetValidator) ValidateCreate(ctx context.Context, sts *appsv1.StatefulSet) (admission.Warnings, error) {
	if !managed(ctx, sts) {
		return nil, nil
	}
	statefulSetLog.Info("validating", "name", sts.Name, "namespace", sts.Namespace)
	var warnings admission.Warnings
	for i, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name == policies.MetadataVolume || vol.Name == policies.ContentVolume {
			warnings = append(warnings, fmt.Sprintf("spec.template.spec.volumes[%d]: volume %q is shadowed by the "+
				"volumeClaimTemplate of that name", i, vol.Name))
		}
	}
	var errs field.ErrorList
	vctPath := field.NewPath("spec", "volumeClaimTemplates")
	for _, st := range []struct{ name, rule string }{
		{policies.MetadataVolume, policies.RuleMetadataStorage}, {policies.ContentVolume, policies.RuleContentStorage},
		{policies.CacheVolume, policies.RuleCacheStorage},
	} {
		i := claimIndex(sts, st.name)
		if i < 0 {
			msg := fmt.Sprintf("%s: add a volumeClaimTemplate named %q", st.rule, st.name)
			if st.name == policies.CacheVolume {
				msg += ": the mutating webhook, which adds it, did not run"
			}
			errs = append(errs, field.Required(vctPath, msg))
			continue
		}
		fp := vctPath.Index(i).Child("spec", "resources", "requests").Key(string(corev1.ResourceStorage))
		if q, ok := sts.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			errs = append(errs, field.Required(fp, fmt.Sprintf("%s: the %q volumeClaimTemplate must request a storage size",
				policies.RuleStorageSize, st.name)))
		} else if q.Sign() <= 0 {
			errs = append(errs, field.Invalid(fp, q.String(), fmt.Sprintf("%s: the %q volumeClaimTemplate must request a "+
				"positive storage size", policies.RuleStorageSize, st.name)))
		}
	}
	rp := ptr.Deref(sts.Spec.PersistentVolumeClaimRetentionPolicy, appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{})
	for i, v := range []appsv1.PersistentVolumeClaimRetentionPolicyType{rp.WhenDeleted, rp.WhenScaled} {
		const msg = policies.RuleRetentionPolicy + ": must be Retain: DittoFS volumes hold the file system's data"
		if fp := field.NewPath("spec", "persistentVolumeClaimRetentionPolicy", []string{"whenDeleted", "whenScaled"}[i]); v == "" {
			errs = append(errs, field.Required(fp, msg))
		} else if v != retain {
			errs = append(errs, field.Invalid(fp, string(v), msg))
		}
	}
	if len(errs) > 0 {
		return warnings, invalid(sts.Name, errs)
	}
	return warnings, nil
}

// ValidateUpdate implements admission.Validator: the benchmarks send no UPDATE (nor DELETE).
func (statefulSetValidator) ValidateUpdate(context.Context, *appsv1.StatefulSet, *appsv1.StatefulSet) (admission.Warnings, error) {
	return nil, nil
}

func (statefulSetValidator) ValidateDelete(context.Context, *appsv1.StatefulSet) (admission.Warnings, error) {
	return nil, nil
}
