// Command certmanager-e2e runs the parts of cert-manager that the dittofs-webhook install needs — the controllers
// that issue and renew Certificates from a self-signed and a CA Issuer, and cainjector — in one process, for the
// end-to-end tests (tests/e2e/node). It is built from cert-manager's own Go module, at the release whose CRDs the
// tests install: the module proxy does not serve cert-manager's binaries (cmd/ is a set of separate modules), but
// it serves pkg/, which holds every controller.
//
// It wires the controllers and cainjector as cert-manager's cmd/controller/app and cmd/cainjector/app do (v1.21),
// with their default option values, minus what a test does not need or must not do: no leader election (one
// instance), and no metrics, healthz or profiling listeners (cert-manager's defaults bind 0.0.0.0; the tests keep
// their traffic on loopback).
//
// Test-only: this is not how to run cert-manager; install its release.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	// Each controller registers itself with controller.Known() in its package's init: import exactly the ones this
	// install needs.
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuers controller sets up an Issuer only for the issuer types registered with pkg/issuer, which these
	// packages do in their init: without them an Issuer never becomes Ready.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// controllers are the controllers run: cert-manager's default set (DefaultEnabledControllers in
// internal/apis/config/controller/v1alpha1) restricted to Issuers (not ClusterIssuers), the CA and self-signed
// CertificateRequest issuers, and the Certificate controllers. certificaterequests-approver matters: cert-manager
// signs only approved requests, so without it no certificate is ever issued.
var controllers = []string{
	issuers.ControllerName, approver.ControllerName, crca.CRControllerName, crselfsigned.CRControllerName,
	trigger.ControllerName, issuing.ControllerName, keymanager.ControllerName, requestmanager.ControllerName,
	readiness.ControllerName, revisionmanager.ControllerName,
}

func main() {
	// An own flag set: controller-runtime registers --kubeconfig on the default one (and would then read it
	// itself).
	fs := flag.NewFlagSet("certmanager-e2e", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (required)")
	featureGates := fs.String("feature-gates", "", "cert-manager feature gates, as its --feature-gates "+
		"(e.g. CAInjectorMerging=false: cainjector then replaces caBundle, as releases before v1.19 do)")
	klog.InitFlags(fs) // -v, for cert-manager's own log levels (2 = info)
	_ = fs.Parse(os.Args[1:])
	err := utilfeature.DefaultMutableFeatureGate.Set(*featureGates)
	if *kubeconfig == "" {
		err = errors.New("--kubeconfig is required")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "certmanager-e2e: %v\n", err)
		os.Exit(2)
	}

	logf.InitLogs()
	defer logf.FlushLogs()
	ctrl.SetLogger(logf.Log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig); err != nil && !errors.Is(err, context.Canceled) {
		logf.Log.Error(err, "certmanager-e2e failed")
		logf.FlushLogs()
		os.Exit(1)
	}
}

// run runs the controllers and cainjector until ctx is done or either fails.
func run(ctx context.Context, kubeconfig string) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runController(logf.NewContext(ctx, logf.Log, "controller"), kubeconfig) })
	g.Go(func() error { return runCAInjector(logf.NewContext(ctx, logf.Log, "cainjector"), kubeconfig) })
	return g.Wait()
}

// runController is cmd/controller/app.Run without its listeners and leader election.
func runController(ctx context.Context, kubeconfig string) error {
	log := logf.FromContext(ctx)
	// The option values are v1.21's defaults (internal/apis/config/controller/v1alpha1/defaults.go).
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig: kubeconfig, KubernetesAPIQPS: 20, KubernetesAPIBurst: 50,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: "kube-system", ClusterIssuerAmbientCredentials: true},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			// The backoff after a failed CertificateRequest.
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	known := controller.Known()
	for _, name := range controllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered (its package is not imported)", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %q: %w", name, err)
		}
		log.V(logf.InfoLevel).Info("starting controller", "controller", name)
		g.Go(func() error { return c.Run(5, ctx) }) // --concurrent-workers
	}
	// Only now: each constructor registers the informers it needs with the shared factories, and Start starts
	// those registered so far.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	err = g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}

// runCAInjector is cmd/cainjector/app.Run with its defaults (every injectable kind, Certificates as a data
// source), without leader election and metrics.
func runCAInjector(ctx context.Context, kubeconfig string) error {
	log := logf.FromContext(ctx)
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	restConfig = util.RestConfigWithUserAgent(restConfig, "cainjector")

	// Every injectable kind is enabled by default, so the scheme needs the CRD and APIService types as well.
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		// As cainjector: Secrets are read directly, never cached.
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("cainjector manager: %w", err)
	}

	// As cainjector with --enable-certificates-data-source (the default): wait until the Certificate CRD exists,
	// or its watch fails to start.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := direct.Get(ctx, types.NamespacedName{Name: "certificates.cert-manager.io"}, &apiext.CustomResourceDefinition{})
		if apierrors.IsNotFound(err) {
			log.Info("waiting for the certificates.cert-manager.io CRD")
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for cert-manager's CRDs: %w", err)
	}

	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	}); err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	return mgr.Start(ctx)
}
