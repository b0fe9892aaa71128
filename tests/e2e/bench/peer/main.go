// Command peer is the comparison webhook of the benchmarks: the CREATE side of
// the DittoFS StatefulSet policy (SPEC §2–§3; what the benchmarks send) written the way a kubebuilder project
// usually writes a webhook for a built-in type, served by controller-runtime's
// webhook.Server: an admission.Handler per webhook, the object decoded into a
// typed appsv1.StatefulSet by admission.Decoder, the mutation applied to a
// DeepCopy and turned into a JSON patch by admission.PatchResponseFromRaw, a
// denial built from a field.ErrorList with apierrors.NewInvalid. It talks to
// no Kubernetes API.
//
//	peer --listen 127.0.0.1:9443 --cert-dir DIR [--log-level info|warn]
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"slices"
	"strconv"
	"syscall"

	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/dittofs/dittofs-webhook/policies"
)

func main() {
	listen := flag.String("listen", ":9443", "HTTPS address of the webhooks")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	logLevel := flag.String("log-level", "info", "info or warn")
	flag.Parse()
	host, portStr, err := net.SplitHostPort(*listen)
	port, err2 := strconv.Atoi(portStr)
	var lvl zapcore.Level
	if err := errors.Join(err, err2, lvl.UnmarshalText([]byte(*logLevel))); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{Development: false, Level: lvl})))
	// As kubebuilder's scaffold does by default: no HTTP/2 (the rapid-reset CVEs).
	server := webhook.NewServer(webhook.Options{Host: host, Port: port, CertDir: *certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}})
	defaulter, validator := handlers()
	server.Register("/mutate-apps-v1-statefulset", &webhook.Admission{Handler: defaulter})
	server.Register("/validate-apps-v1-statefulset", &webhook.Admission{Handler: validator})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := server.Start(ctx); err != nil {
		ctrl.Log.Error(err, "webhook server failed")
		os.Exit(1)
	}
}

// handlers are the two webhooks, as main serves them and the test calls them.
func handlers() (defaulter, validator admission.Handler) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	dec := admission.NewDecoder(scheme)
	return &StatefulSetDefaulter{Decoder: dec, DefaultCacheSize: resource.MustParse("5Gi"), CacheMountPath: "/data/cache"},
		&StatefulSetValidator{Decoder: dec}
}

var (
	statefulSetLog  = logf.Log.WithName("statefulset-resource")
	retain          = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	retentionFields = []string{"whenDeleted", "whenScaled"}
)

// StatefulSetDefaulter is the mutating webhook.
type StatefulSetDefaulter struct {
	Decoder          admission.Decoder
	DefaultCacheSize resource.Quantity
	CacheMountPath   string
}

// StatefulSetValidator is the validating webhook.
type StatefulSetValidator struct {
	Decoder admission.Decoder
}

// decode returns the object of a CREATE of a labelled StatefulSet, or the
// response to send when the request is not one to look at.
func decode(d admission.Decoder, req admission.Request) (*appsv1.StatefulSet, *admission.Response) {
	r := admission.Allowed("")
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return nil, &r
	}
	if req.Kind.Group != "apps" || req.Kind.Version != "v1" || req.Kind.Kind != "StatefulSet" {
		r = admission.Errored(http.StatusBadRequest, fmt.Errorf("this webhook handles apps/v1 StatefulSet, got %s", req.Kind))
		return nil, &r
	}
	sts := &appsv1.StatefulSet{}
	if err := d.Decode(req, sts); err != nil {
		r = admission.Errored(http.StatusBadRequest, err)
		return nil, &r
	}
	if _, ok := sts.Labels[policies.LabelServer]; !ok {
		return nil, &r
	}
	return sts, nil
}

func invalid(name string, errs field.ErrorList, warnings []string) admission.Response {
	status := apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Result: &status, Warnings: warnings}}
}

// Handle implements admission.Handler.
func (d *StatefulSetDefaulter) Handle(_ context.Context, req admission.Request) admission.Response {
	sts, resp := decode(d.Decoder, req)
	if resp != nil {
		return *resp
	}
	statefulSetLog.Info("defaulting", "name", sts.Name, "namespace", sts.Namespace, "operation", req.Operation, "uid", req.UID)
	mutated := sts.DeepCopy()
	warnings, errs := d.mutate(mutated)
	if len(errs) > 0 {
		return invalid(sts.Name, errs, warnings)
	}
	if equality.Semantic.DeepEqual(sts, mutated) {
		return admission.Allowed("").WithWarnings(warnings...)
	}
	marshalled, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, marshalled).WithWarnings(warnings...)
}

func claimIndex(sts *appsv1.StatefulSet, name string) int {
	return slices.IndexFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == name })
}

// mutate applies M1–M4 to sts in place.
func (d *StatefulSetDefaulter) mutate(sts *appsv1.StatefulSet) (warnings []string, errs field.ErrorList) {
	spec := field.NewPath("spec")
	if claimIndex(sts, policies.CacheVolume) < 0 { // M1
		size := d.DefaultCacheSize
		if v, ok := sts.Annotations[policies.AnnotationCacheSize]; ok {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				return nil, field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations").Key(policies.AnnotationCacheSize), v,
					"must be a positive quantity such as 5Gi")}
			}
			size = q
		}
		var class *string
		if v, ok := sts.Annotations[policies.AnnotationCacheStorageClass]; ok {
			class = &v
		} else if i := claimIndex(sts, policies.MetadataVolume); i >= 0 && sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName != nil {
			c := *sts.Spec.VolumeClaimTemplates[i].Spec.StorageClassName
			class = &c
		}
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: policies.CacheVolume},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
				StorageClassName: class,
			},
		})
	}

	// M2
	rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil {
		rp = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
		sts.Spec.PersistentVolumeClaimRetentionPolicy = rp
	}
	for i, v := range []*appsv1.PersistentVolumeClaimRetentionPolicyType{&rp.WhenDeleted, &rp.WhenScaled} {
		if *v != "" && *v != retain {
			warnings = append(warnings, fmt.Sprintf("%s: %q replaced by %q: DittoFS volumes hold the file system's data",
				spec.Child("persistentVolumeClaimRetentionPolicy", retentionFields[i]), *v, retain))
		}
		*v = retain
	}

	// M3
	podSpec, podPath := &sts.Spec.Template.Spec, spec.Child("template", "spec")
	var kept []corev1.Volume
	for i, v := range podSpec.Volumes {
		switch {
		case v.Name != policies.CacheVolume:
			kept = append(kept, v)
		case v.EmptyDir == nil:
			errs = append(errs, field.Invalid(podPath.Child("volumes").Index(i).Child("name"), policies.CacheVolume,
				"the volume name \"cache\" is reserved for the persistent DittoFS cache volumeClaimTemplate: rename this volume"))
			kept = append(kept, v)
		default:
			warnings = append(warnings, fmt.Sprintf("%s: emptyDir volume %q removed: the persistent volumeClaimTemplate replaces it",
				podPath.Child("volumes").Index(i), policies.CacheVolume))
		}
	}
	if len(errs) > 0 {
		return warnings, errs
	}
	if len(kept) != len(podSpec.Volumes) {
		podSpec.Volumes = kept // nil when none is left
	}

	// M4
	find := func(name string) int {
		return slices.IndexFunc(podSpec.Containers, func(c corev1.Container) bool { return c.Name == name })
	}
	ci, why := find(policies.DefaultContainer), ""
	if name, ok := sts.Annotations[policies.AnnotationContainer]; ok {
		if ci = find(name); ci < 0 {
			why = fmt.Sprintf("annotation %s names container %q, which the pod template does not have", policies.AnnotationContainer, name)
		}
	} else if ci < 0 && len(podSpec.Containers) == 1 {
		ci = 0
	} else if ci < 0 {
		why = "cannot tell which container runs DittoFS: name it \"dittofs\" or set the annotation " + policies.AnnotationContainer
	}
	if ci < 0 {
		return append(warnings, podPath.Child("containers").String()+": no cache volumeMount added: "+why), nil
	}
	c := &podSpec.Containers[ci]
	for _, vm := range c.VolumeMounts {
		if vm.Name == policies.CacheVolume {
			return warnings, nil
		}
	}
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == path.Clean(d.CacheMountPath) {
			return append(warnings, fmt.Sprintf("%s: no cache volumeMount added to container %q: volume %q is already mounted at %s",
				podPath.Child("containers").Index(ci).Child("volumeMounts"), c.Name, vm.Name, vm.MountPath)), nil
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: policies.CacheVolume, MountPath: d.CacheMountPath})
	return warnings, nil
}

// Handle implements admission.Handler.
func (v *StatefulSetValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	sts, resp := decode(v.Decoder, req)
	if resp != nil {
		return *resp
	}
	statefulSetLog.Info("validating", "name", sts.Name, "namespace", sts.Namespace, "operation", req.Operation, "uid", req.UID)
	var warnings []string
	for i, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name == policies.MetadataVolume || vol.Name == policies.ContentVolume {
			warnings = append(warnings, fmt.Sprintf("spec.template.spec.volumes[%d]: volume %q is shadowed by the "+
				"volumeClaimTemplate of that name", i, vol.Name))
		}
	}
	if errs := validateStatefulSet(sts); len(errs) > 0 {
		return invalid(sts.Name, errs, warnings)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

func validateStatefulSet(sts *appsv1.StatefulSet) field.ErrorList {
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
	rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil {
		rp = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	for i, v := range []appsv1.PersistentVolumeClaimRetentionPolicyType{rp.WhenDeleted, rp.WhenScaled} {
		const msg = policies.RuleRetentionPolicy + ": must be Retain: DittoFS volumes hold the file system's data"
		if fp := field.NewPath("spec", "persistentVolumeClaimRetentionPolicy", retentionFields[i]); v == "" {
			errs = append(errs, field.Required(fp, msg))
		} else if v != retain {
			errs = append(errs, field.Invalid(fp, string(v), msg))
		}
	}
	return errs
}
