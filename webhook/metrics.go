package webhook

import (
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Reasons of dittofs_webhook_bad_requests_total.
const (
	reasonMethod      = "method_not_allowed"
	reasonContentType = "unsupported_media_type"
	reasonTooLarge    = "body_too_large"
	reasonNotReview   = "not_admission_review"
	reasonReadError   = "read_error"
)

// Metrics are the server's Prometheus metrics (SPEC §5). They are registered
// on the Registerer passed to NewMetrics, never on a global one, so tests and
// embedders get their own.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	violations  *prometheus.CounterVec
	mutations   *prometheus.CounterVec
	badRequests *prometheus.CounterVec
	panics      prometheus.Counter
	certExpiry  prometheus.Gauge
	certReloads *prometheus.CounterVec
}

// operationLabel bounds the operation label: the admission API has four
// operations, and anything else a client sends is counted as "unknown", so a
// hostile body cannot create series without bound.
func operationLabel(op string) string {
	switch op {
	case "CREATE", "UPDATE", "DELETE", "CONNECT":
		return op
	}
	return "unknown"
}

// DurationBuckets are the upper bounds of the admission-duration histogram.
// A request takes tens of microseconds, so most sit below 1 ms; the last
// finite ones reach the webhooks' timeoutSeconds (5 by default, at most 30,
// the API's limit), so a request the kube-apiserver gave up on still lands
// in a bucket of its own rather than only in +Inf.
var DurationBuckets = []float64{.00005, .0001, .00025, .0005, .00075, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates the metrics and registers them, with the Go and process
// collectors and build info, on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dittofs_webhook_admission_requests_total",
			Help: "Admission requests answered, by webhook, operation and verdict.",
		}, []string{"webhook", "operation", "allowed"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dittofs_webhook_admission_duration_seconds",
			Help:    "Time to answer an admission request, from the first byte read to the last written.",
			Buckets: DurationBuckets,
		}, []string{"webhook"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dittofs_webhook_violations_total",
			Help: "Validation rule violations, by rule ID and action: deny (the request was denied) or warn (allowed with a warning under --validation-action warn).",
		}, []string{"rule", "action"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dittofs_webhook_mutations_total",
			Help: "Mutations returned in patches, by mutation ID.",
		}, []string{"mutation"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dittofs_webhook_bad_requests_total",
			Help: "Requests refused as malformed or misdirected, by reason.",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dittofs_webhook_panics_total",
			Help: "Panics recovered while handling a request.",
		}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dittofs_webhook_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate, as a Unix timestamp.",
		}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dittofs_webhook_tls_certificate_reloads_total",
			Help: "Serving certificate reloads, by result (success or failure; a failure keeps the old pair).",
		}, []string{"result"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dittofs_webhook_build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(Version, runtime.Version()).Set(1)

	reg.MustRegister(m.requests, m.duration, m.violations, m.mutations, m.badRequests,
		m.panics, m.certExpiry, m.certReloads, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Start every known series at zero so rate() and alerts see the first event.
	for _, r := range policies.Rules {
		m.violations.WithLabelValues(r, string(policies.Deny))
		m.violations.WithLabelValues(r, string(policies.Warn))
	}
	for _, mu := range policies.Mutations {
		m.mutations.WithLabelValues(mu)
	}
	for _, r := range []string{reasonMethod, reasonContentType, reasonTooLarge, reasonNotReview, reasonReadError, "wrong_kind", "bad_object"} {
		m.badRequests.WithLabelValues(r)
	}
	m.certReloads.WithLabelValues("success")
	m.certReloads.WithLabelValues("failure")
	// The operations the webhook configurations send start at zero.
	for _, wh := range []string{"mutate", "validate"} {
		for _, op := range []string{"CREATE", "UPDATE"} {
			m.requests.WithLabelValues(wh, op, "false")
			m.requests.WithLabelValues(wh, op, "true")
		}
	}
	return m
}

// observe records one answered admission request.
func (m *Metrics) observe(webhook, operation string, resp *admission.Response, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(webhook, operationLabel(operation), strconv.FormatBool(resp.Allowed)).Inc()
	m.duration.WithLabelValues(webhook).Observe(took.Seconds())
	for _, v := range resp.Violations {
		m.violations.WithLabelValues(v.Rule, v.Action).Inc()
	}
	for _, mu := range resp.Mutations {
		m.mutations.WithLabelValues(mu).Inc()
	}
	if resp.BadReason != "" {
		m.badRequests.WithLabelValues(resp.BadReason).Inc()
	}
}

func (m *Metrics) badRequest(reason string) {
	if m != nil {
		m.badRequests.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) panicked() {
	if m != nil {
		m.panics.Inc()
	}
}

// certLoaded records a certificate reload (or the first load, ok only) and
// the expiry of the pair now served.
func (m *Metrics) certLoaded(ok bool, notAfter time.Time, counted bool) {
	if m == nil {
		return
	}
	if ok {
		m.certExpiry.Set(float64(notAfter.Unix()))
	}
	if !counted {
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	m.certReloads.WithLabelValues(result).Inc()
}
