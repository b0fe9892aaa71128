// Command peer is the comparison webhook of the benchmarks: the DittoFS
// StatefulSet policy (SPEC §2–§3) served the usual kubebuilder way, by
// controller-runtime's webhook.Server with admission.Webhook handlers (see
// policy.go). It talks to no Kubernetes API.
//
//	peer --listen 127.0.0.1:9443 --cert-dir DIR [--log-level info|warn]
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

var scheme = runtime.NewScheme()

func init() {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

func main() {
	listen := flag.String("listen", ":9443", "HTTPS address of the webhooks")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	logLevel := flag.String("log-level", "info", "info or warn")
	defaultCacheSize := flag.String("default-cache-size", "5Gi", "size of an injected cache volumeClaimTemplate")
	cacheMountPath := flag.String("cache-mount-path", "/data/cache", "where the DittoFS container mounts the cache")
	enableHTTP2 := flag.Bool("enable-http2", false, "serve HTTP/2 too")
	flag.Parse()

	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{Development: false, Level: lvl})))
	setupLog := ctrl.Log.WithName("setup")

	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		setupLog.Error(err, "bad --listen")
		os.Exit(2)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		setupLog.Error(err, "bad --listen port")
		os.Exit(2)
	}
	size, err := resource.ParseQuantity(*defaultCacheSize)
	if err != nil {
		setupLog.Error(err, "bad --default-cache-size")
		os.Exit(2)
	}

	// As kubebuilder's scaffold does: HTTP/2 off unless asked (the
	// rapid-reset CVEs).
	var tlsOpts []func(*tls.Config)
	if !*enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	server := webhook.NewServer(webhook.Options{
		Host:    host,
		Port:    port,
		CertDir: *certDir,
		TLSOpts: tlsOpts,
	})
	decoder := admission.NewDecoder(scheme)
	server.Register("/mutate-apps-v1-statefulset", &webhook.Admission{Handler: &StatefulSetDefaulter{
		Decoder: decoder, DefaultCacheSize: size, CacheMountPath: *cacheMountPath,
	}})
	server.Register("/validate-apps-v1-statefulset", &webhook.Admission{Handler: &StatefulSetValidator{Decoder: decoder}})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := server.Start(ctx); err != nil {
		setupLog.Error(err, "webhook server failed")
		os.Exit(1)
	}
}
