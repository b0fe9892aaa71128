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
	"errors"
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
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
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
	server := webhook.NewServer(webhook.Options{
		Host:    host,
		Port:    port,
		CertDir: *certDir,
		// As kubebuilder's scaffold does by default: no HTTP/2 (the rapid-reset CVEs).
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
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
