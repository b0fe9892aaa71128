package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Routes of the two webhooks, as the webhook configurations name them.
const (
	MutatePath   = "/mutate-apps-v1-statefulset"
	ValidatePath = "/validate-apps-v1-statefulset"
)

// Options configure Run. cmd/dittofs-webhook fills them from flags; the
// comments give the flag and its default.
type Options struct {
	// Listen is the HTTPS admission address (--listen, ":9443").
	Listen string
	// CertFile and KeyFile hold the serving pair (--tls-cert-file,
	// --tls-key-file, under /etc/dittofs-webhook/tls where the cert-manager
	// Secret is mounted).
	CertFile, KeyFile string
	// TLSMinVersion is tls.VersionTLS12 or tls.VersionTLS13 (--tls-min-version, 1.2).
	TLSMinVersion uint16
	// EnableHTTP2 turns HTTP/2 on (--enable-http2, off: the rapid-reset CVEs).
	EnableHTTP2 bool
	// MetricsListen is the plain-HTTP address of /metrics, /healthz and
	// /readyz (--metrics-listen, ":8080").
	MetricsListen string
	// Policy holds --default-cache-size, --cache-mount-path and
	// --validation-action.
	Policy policies.Options
	// DrainPeriod is how long, on SIGTERM, the server keeps serving (not
	// ready) with Connection: close on every response, so that clients move
	// their kept-alive connections to other replicas before Shutdown closes
	// the idle ones. Zero: no drain (--shutdown-drain-period, 10s).
	DrainPeriod time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on SIGTERM,
	// after the drain (--shutdown-timeout, 25s).
	ShutdownTimeout time.Duration
	// CertPollInterval is how often the certificate files are re-read
	// (DefaultCertPollInterval when zero).
	CertPollInterval time.Duration
	// Log receives the structured logs.
	Log *slog.Logger
	// Registry receives the metrics; a new one when nil.
	Registry *prometheus.Registry
	// Ready, if set, is told the addresses once both listeners are open (tests
	// use ports chosen by the kernel).
	Ready func(admission, metrics net.Addr)
}

// Server timeouts. The apiserver waits at most timeoutSeconds (5 s) for an
// answer; these only bound what a slow or hostile client can hold. The idle
// timeout is longer than the 90 s after which kube-apiserver's transport (Go's
// default IdleConnTimeout) drops an idle connection itself: the client closes
// first, so the server never closes an idle connection the client may be
// about to write on (the race the shutdown drain is about, drain.go).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 15 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Run serves both webhooks and the metrics endpoint until ctx is cancelled,
// then shuts down gracefully: /readyz fails first, the drain moves clients'
// kept-alive connections away (DrainPeriod), in-flight requests finish
// (bounded by ShutdownTimeout), and Run returns nil. A certificate that cannot
// be loaded at start does not stop it: it serves not ready (TLS handshakes
// fail, /readyz 503 says why) until the files hold a good pair.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if err := o.Policy.Validate(); err != nil {
		return err
	}
	metrics := NewMetrics(o.Registry)
	// Without a loadable pair the server starts anyway, not ready, and the
	// watcher installs the first good pair that appears (SPEC §5: /readyz
	// fails until a certificate is loaded).
	certs := newCertWatcher(o.CertFile, o.KeyFile, o.Log, metrics)
	if o.CertPollInterval > 0 {
		certs.poll = o.CertPollInterval
	}
	certs.loadAtStart() // a failure is logged and counted, and the watcher waits

	admissionLn, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("admission listener: %w", err)
	}
	defer admissionLn.Close()
	metricsLn, err := net.Listen("tcp", o.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	defer metricsLn.Close()

	var shuttingDown atomic.Bool
	drainer := &drain{}
	admission := newHTTPServer(drainer.handler(NewRouter(&admission.Admitter{Policy: o.Policy}, metrics, o.Log)), o.Log)
	admission.ConnState = drainer.connState
	admission.TLSConfig = &tls.Config{MinVersion: o.TLSMinVersion, GetCertificate: certs.GetCertificate}
	admission.Protocols = protocols(o.EnableHTTP2)
	health := newHTTPServer(healthRouter(o.Registry, func() error {
		if shuttingDown.Load() {
			return errShuttingDown
		}
		return certs.NotReady()
	}), o.Log)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { certs.Start(watchCtx) })
	errc := make(chan error, 2)
	wg.Go(func() { errc <- serveErr("admission", admission.ServeTLS(admissionLn, "", "")) })
	wg.Go(func() { errc <- serveErr("metrics", health.Serve(metricsLn)) })
	o.Log.Info("serving", "admission", admissionLn.Addr().String(), "metrics", metricsLn.Addr().String(),
		"version", Version, "http2", o.EnableHTTP2)
	if o.Ready != nil {
		o.Ready(admissionLn.Addr(), metricsLn.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	// Not ready first, so load balancers stop sending; then drain the
	// kept-alive connections (before Shutdown: once it is called, Go's server
	// answers no new request on a kept-alive connection); then let in-flight
	// requests finish.
	shuttingDown.Store(true)
	if o.DrainPeriod > 0 {
		drainer.run(o.DrainPeriod, o.Log)
	}
	o.Log.Info("shutting down", "timeout", o.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if err := admission.Shutdown(sctx); err != nil {
		o.Log.Warn("admission server did not drain in time", "error", err)
		_ = admission.Close()
	}
	if err := health.Shutdown(sctx); err != nil {
		_ = health.Close()
	}
	stopWatch()
	wg.Wait()
	return runErr
}

// newHTTPServer bounds what a slow or hostile client can hold.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", name, err)
}

// protocols enables HTTP/1.1, and HTTP/2 only when asked: the apiserver speaks
// HTTP/1.1 to webhooks, and HTTP/2 brought the rapid-reset CVEs.
func protocols(http2 bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(http2)
	return p
}

// NewRouter routes the two webhooks (POST only; any other method is answered
// 405 by the handler itself, so it is counted).
func NewRouter(a *admission.Admitter, metrics *Metrics, log *slog.Logger) http.Handler {
	r := mux.NewRouter()
	r.Handle(MutatePath, &Handler{Webhook: "mutate", Admit: a.Mutate, Metrics: metrics, Log: log})
	r.Handle(ValidatePath, &Handler{Webhook: "validate", Admit: a.Validate, Metrics: metrics, Log: log})
	return r
}

// errShuttingDown is the /readyz answer once shutdown has begun.
var errShuttingDown = errors.New("shutting down")

// healthRouter serves /metrics, /healthz (the process answers) and /readyz (a
// certificate is loaded and the server is not shutting down). notReady
// returns nil when ready, else why not: the 503 body, one line.
func healthRouter(reg *prometheus.Registry, notReady func() error) http.Handler {
	r := mux.NewRouter()
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	r.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := notReady(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return r
}
