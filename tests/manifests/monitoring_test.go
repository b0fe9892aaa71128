package manifests

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/ptr"

	dittofswebhook "github.com/dittofs/dittofs-webhook/webhook"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// serverMetrics are the server's metric families (SPEC §5), as its registry
// gathers them after one request (before it, the histogram has no series).
var serverMetrics = sync.OnceValue(func() map[string]dto.MetricType {
	reg := prometheus.NewRegistry()
	h := dittofswebhook.NewRouter(&admission.Admitter{}, dittofswebhook.NewMetrics(reg), slog.New(slog.DiscardHandler))
	review := `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "operation": "DELETE"}}`
	r := httptest.NewRequest(http.MethodPost, dittofswebhook.ValidatePath, strings.NewReader(review))
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), r)
	families, err := reg.Gather()
	utilruntime.Must(err)
	metrics := map[string]dto.MetricType{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "dittofs_webhook_") {
			metrics[f.GetName()] = f.GetType()
		}
	}
	return metrics
})

var histogramSeriesRE = regexp.MustCompile(`^(.+)_(bucket|sum|count)$`)

func knownSeries(name string) bool {
	_, ok := serverMetrics()[name]
	m := histogramSeriesRE.FindStringSubmatch(name)
	return ok || m != nil && serverMetrics()[m[1]] == dto.MetricType_HISTOGRAM
}

type alertRule struct {
	monitoringv1.Rule
	expr parser.Expr
}

func nodes[T parser.Node](e parser.Expr) []T {
	var out []T
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if v, ok := n.(T); ok {
			out = append(out, v)
		}
		return nil
	})
	return out
}

func selectors(e parser.Expr) []*parser.VectorSelector { return nodes[*parser.VectorSelector](e) }

// reads reports whether e reads metric with the matchers want (label, value, ...).
func reads(e parser.Expr, metric string, want ...string) bool {
	return slices.ContainsFunc(selectors(e), func(vs *parser.VectorSelector) bool {
		for i := 0; i+1 < len(want); i += 2 {
			if !hasMatcher(vs, want[i], want[i+1]) {
				return false
			}
		}
		return vs.Name == metric
	})
}

func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	return slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
		return m.Name == name && m.Type == labels.MatchEqual && m.Value == value
	})
}

var alertNameRE = regexp.MustCompile(`^DittoFSWebhook[A-Z][A-Za-z]+$`)

// TestMonitoring: deploy/monitoring, and the chart under another release name.
func TestMonitoring(t *testing.T) {
	t.Run("deploy/monitoring", func(t *testing.T) { checkMonitoring(t, loadInstall(t, render(t, "deploy/monitoring"))) })
	t.Run("helm "+helmMonitoringInstall.name, func(t *testing.T) { checkMonitoring(t, helmMonitoringInstall.load(t)) })
}

func checkMonitoring(t *testing.T, in *install) {
	t.Run("ServiceMonitor scrapes the metrics port", func(t *testing.T) {
		sm := one[monitoringv1.ServiceMonitor](t, in.all)
		if !selects(t, &sm.Spec.Selector, in.svc.Labels) || len(sm.Spec.Selector.MatchLabels)+len(sm.Spec.Selector.MatchExpressions) == 0 {
			t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v)", sm.Spec.Selector, in.svc.Labels)
		}
		// The metrics listener is plain HTTP (the Service's port metrics: checkPorts).
		diff(t, "ServiceMonitor namespaceSelector, endpoints", []any{monitoringv1.NamespaceSelector{MatchNames: []string{in.svc.Namespace}},
			[]monitoringv1.Endpoint{{Port: "metrics", Path: "/metrics", Scheme: ptr.To(monitoringv1.Scheme("http")), Interval: "30s"}}},
			[]any{sm.Spec.NamespaceSelector, sm.Spec.Endpoints})
	})

	rule := one[monitoringv1.PrometheusRule](t, in.all)
	var alerts []alertRule
	p := parser.NewParser(parser.Options{})
	for _, g := range rule.Spec.Groups {
		for _, rl := range g.Rules {
			expr, err := p.ParseExpr(rl.Expr.String())
			if rl.Alert == "" || err != nil {
				t.Errorf("group %s: rule %q (alert %q): only alerts belong here, parsed (%v)\n%s", g.Name, rl.Record, rl.Alert, err, rl.Expr.String())
				continue
			}
			alerts = append(alerts, alertRule{rl, expr})
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("PrometheusRule has no alert")
	}

	t.Run("every alert is well formed", func(t *testing.T) {
		for i, a := range alerts {
			twice := slices.ContainsFunc(alerts[:i], func(b alertRule) bool { return b.Alert == a.Alert })
			if !alertNameRE.MatchString(a.Alert) || twice {
				t.Errorf("alert %s: name does not match %s, or is defined twice", a.Alert, alertNameRE)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, a.Labels["severity"]) {
				t.Errorf("alert %s: severity label %q, want critical, warning or info", a.Alert, a.Labels["severity"])
			}
			if strings.TrimSpace(a.Annotations["summary"]) == "" || strings.TrimSpace(a.Annotations["description"]) == "" {
				t.Errorf("alert %s: no summary or no description annotation", a.Alert)
			}
			if _, err := model.ParseDuration(string(ptr.Deref(a.For, "0s"))); err != nil {
				t.Errorf("alert %s: for %q: %v", a.Alert, *a.For, err)
			}
			if a.expr.Type() != parser.ValueTypeVector {
				t.Errorf("alert %s: expr is a %s, want an instant vector", a.Alert, a.expr.Type())
			}
		}
	})

	t.Run("alerts read only real series of this install", func(t *testing.T) {
		for _, a := range alerts {
			for _, vs := range selectors(a.expr) {
				if strings.HasPrefix(vs.Name, "dittofs_") && !knownSeries(vs.Name) {
					t.Errorf("alert %s reads %s, which the server does not export (SPEC §5)", a.Alert, vs.Name)
				}
				// Matchers on the install's identity must name this install (the
				// Prometheus Operator's job is the Service name).
				identity := map[string]string{"namespace": in.dep.Namespace, "deployment": in.dep.Name, "job": in.svc.Name}
				for _, m := range vs.LabelMatchers {
					if want, ok := identity[m.Name]; ok && m.Type == labels.MatchEqual && m.Value != want {
						t.Errorf("alert %s: %s{%s=%q}, but this install's is %q", a.Alert, vs.Name, m.Name, m.Value, want)
					}
				}
			}
		}
	})

	t.Run("alerts fire when they should", func(t *testing.T) { checkAlertsFire(t, in, alerts) })
}

// alertCase evaluates an alert over promqltest series (a sample a minute from
// 0, $ns the install's namespace matcher), as `promtool test rules` would.
type alertCase struct {
	alert, scenario, series string
	at                      time.Duration // evaluation time
	fires                   bool
}

const day = 24 * 3600

var alertCases = []alertCase{
	{"DittoFSWebhookNoReadyReplica", "no available replica",
		`kube_deployment_status_replicas_available{$ns, deployment="dittofs-webhook"} 0x10`, 5 * time.Minute, true},
	{"DittoFSWebhookNoReadyReplica", "one of two available",
		`kube_deployment_status_replicas_available{$ns, deployment="dittofs-webhook"} 1x10`, 5 * time.Minute, false},
	{"DittoFSWebhookNoReadyReplica", "another deployment has none", `
kube_deployment_status_replicas_available{$ns, deployment="dittofs-webhook"} 2x10
kube_deployment_status_replicas_available{$ns, deployment="other"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookDown", "every target down", `
up{job="dittofs-webhook", $ns, pod="a"} 0x10
up{job="dittofs-webhook", $ns, pod="b"} 0x10`, 5 * time.Minute, true},
	{"DittoFSWebhookDown", "never scraped", `up{job="other", $ns} 1x10`, 5 * time.Minute, true},
	{"DittoFSWebhookDown", "one target up", `
up{job="dittofs-webhook", $ns, pod="a"} 1x10
up{job="dittofs-webhook", $ns, pod="b"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookPanics", "a panic", `dittofs_webhook_panics_total{$ns, pod="a"} 0 0 0 1 1 1 1 1`, 6 * time.Minute, true},
	{"DittoFSWebhookPanics", "none", `dittofs_webhook_panics_total{$ns, pod="a"} 0x10`, 6 * time.Minute, false},

	{"DittoFSWebhookBadRequests", "malformed requests keep coming",
		`dittofs_webhook_bad_requests_total{$ns, pod="a", reason="content-type"} 0+5x10`, 8 * time.Minute, true},
	{"DittoFSWebhookBadRequests", "none",
		`dittofs_webhook_bad_requests_total{$ns, pod="a", reason="content-type"} 3x10`, 8 * time.Minute, false},

	{"DittoFSWebhookHighDenialRate", "most requests denied", requests("0+10x30", "0+1x30"), 20 * time.Minute, true},
	{"DittoFSWebhookHighDenialRate", "few requests denied", requests("0+1x30", "0+10x30"), 20 * time.Minute, false},
	{"DittoFSWebhookHighDenialRate", "denials stopped (a rate, not the totals)", requests("0+10x10 100x30", "0+1x40"),
		30 * time.Minute, false},

	{"DittoFSWebhookHighLatency", "decisions take seconds", latency(0, 100), 10 * time.Minute, true},
	{"DittoFSWebhookHighLatency", "decisions under a millisecond", latency(100, 0), 10 * time.Minute, false},
	{"DittoFSWebhookHighLatency", "2% take seconds (the 99th percentile, not the median)", latency(98, 2), 10 * time.Minute, true},

	// The gauge is the Unix time the certificate expires (evaluation: near 0).
	{"DittoFSWebhookCertificateExpiringSoon", "one pod serves a certificate with 6 days left", `
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{$ns, pod="a"} ` + strconv.Itoa(60*day) + `x10
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{$ns, pod="b"} ` + strconv.Itoa(6*day) + `x10`, 5 * time.Minute, true},
	{"DittoFSWebhookCertificateExpiringSoon", "8 days left",
		`dittofs_webhook_tls_certificate_expiry_timestamp_seconds{$ns, pod="a"} ` + strconv.Itoa(8*day) + `x10`,
		5 * time.Minute, false},
	{"DittoFSWebhookCertificateExpiringSoon", "6 days left on day 100 (counted from time())",
		`dittofs_webhook_tls_certificate_expiry_timestamp_seconds{$ns, pod="a"} _x143990 ` + strconv.Itoa(106*day) + `x10`,
		100 * 24 * time.Hour, true},
	{"DittoFSWebhookCertificateExpiringSoon", "no certificate loaded yet",
		`dittofs_webhook_tls_certificate_expiry_timestamp_seconds{$ns, pod="a"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookCertificateReloadFailing", "a reload failed", `
dittofs_webhook_tls_certificate_reloads_total{$ns, pod="a", result="success"} 1x10
dittofs_webhook_tls_certificate_reloads_total{$ns, pod="a", result="failure"} 0 0 0 1 1 1 1 1`, 6 * time.Minute, true},
	{"DittoFSWebhookCertificateReloadFailing", "reloads succeed", `
dittofs_webhook_tls_certificate_reloads_total{$ns, pod="a", result="success"} 0 1 2 3 4 5 6 7
dittofs_webhook_tls_certificate_reloads_total{$ns, pod="a", result="failure"} 0x10`, 6 * time.Minute, false},
}

func requests(denied, allowed string) string {
	const s = "\ndittofs_webhook_admission_requests_total{$ns, pod=\"a\", webhook=\"validate\", operation=\"UPDATE\", allowed=%q} %s"
	return fmt.Sprintf(s+s, "false", denied, "true", allowed)
}

// latency is the histogram of fast (< 1 ms) and slow (1-2.5 s) decisions a minute.
func latency(fast, slow int) string {
	var b strings.Builder
	for le, n := range map[string]int{"0.001": fast, "1": fast, "2.5": fast + slow, "+Inf": fast + slow} {
		fmt.Fprintf(&b, "\ndittofs_webhook_admission_duration_seconds_bucket{$ns, pod=\"a\", webhook=\"mutate\", le=%q} 0+%dx20",
			le, n)
	}
	return b.String()
}

func checkAlertsFire(t *testing.T, in *install, alerts []alertRule) {
	rename := strings.NewReplacer("$ns", `namespace="`+in.dep.Namespace+`"`, "\n", "\n  ",
		`deployment="dittofs-webhook"`, `deployment="`+in.dep.Name+`"`, `job="dittofs-webhook"`, `job="`+in.svc.Name+`"`)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	covered := map[string]bool{} // alert/fires
	for _, c := range alertCases {
		t.Run(c.alert+"/"+c.scenario, func(t *testing.T) {
			i := slices.IndexFunc(alerts, func(a alertRule) bool { return a.Alert == c.alert })
			if i < 0 {
				t.Fatalf("the PrometheusRule has no alert %s", c.alert)
			}
			covered[fmt.Sprint(c.alert, "/", c.fires)] = true
			expr, series := alerts[i].Expr.String(), rename.Replace("\n"+strings.TrimSpace(c.series))
			q, err := engine.NewInstantQuery(context.Background(), promqltest.LoadedStorage(t, "load 1m"+series), nil, expr,
				time.Unix(0, 0).Add(c.at))
			fatalIf(t, err)
			defer q.Close()
			vec, err := q.Exec(context.Background()).Vector()
			fatalIf(t, err)
			if fired := len(vec) > 0; fired != c.fires {
				t.Errorf("alert %s fired = %v, want %v\nexpr: %s\nseries:%s\nresult: %v",
					c.alert, fired, c.fires, strings.TrimSpace(expr), series, vec)
			}
		})
	}
	for _, a := range alerts {
		if !covered[a.Alert+"/true"] || !covered[a.Alert+"/false"] {
			t.Errorf("alert %s needs a case where it fires and one where it does not", a.Alert)
		}
	}
}
