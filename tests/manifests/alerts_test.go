package manifests

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// alertCase evaluates one alert's expression over synthetic series, as
// `promtool test rules` would (without the `for` delay): the alert must fire
// when something is wrong and stay quiet when all is well.
type alertCase struct {
	alert    string
	scenario string
	series   string        // promqltest series, one a line, one sample a minute from time 0
	at       time.Duration // evaluation time
	fires    bool
}

const (
	day = 24 * 3600
	ns  = `namespace="dittofs-webhook"`
)

var alertCases = []alertCase{
	{"DittoFSWebhookNoReadyReplica", "no available replica", `
kube_deployment_status_replicas_available{` + ns + `, deployment="dittofs-webhook"} 0x10`, 5 * time.Minute, true},
	{"DittoFSWebhookNoReadyReplica", "one of two available", `
kube_deployment_status_replicas_available{` + ns + `, deployment="dittofs-webhook"} 1x10`, 5 * time.Minute, false},
	{"DittoFSWebhookNoReadyReplica", "another deployment has none", `
kube_deployment_status_replicas_available{` + ns + `, deployment="dittofs-webhook"} 2x10
kube_deployment_status_replicas_available{` + ns + `, deployment="other"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookDown", "every target down", `
up{job="dittofs-webhook", ` + ns + `, pod="a"} 0x10
up{job="dittofs-webhook", ` + ns + `, pod="b"} 0x10`, 5 * time.Minute, true},
	{"DittoFSWebhookDown", "never scraped", `
up{job="other", ` + ns + `} 1x10`, 5 * time.Minute, true},
	{"DittoFSWebhookDown", "one target up", `
up{job="dittofs-webhook", ` + ns + `, pod="a"} 1x10
up{job="dittofs-webhook", ` + ns + `, pod="b"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookPanics", "a panic", `
dittofs_webhook_panics_total{` + ns + `, pod="a"} 0 0 0 1 1 1 1 1`, 6 * time.Minute, true},
	{"DittoFSWebhookPanics", "none", `
dittofs_webhook_panics_total{` + ns + `, pod="a"} 0x10`, 6 * time.Minute, false},

	{"DittoFSWebhookBadRequests", "malformed requests keep coming", `
dittofs_webhook_bad_requests_total{` + ns + `, pod="a", reason="content-type"} 0+5x10`, 8 * time.Minute, true},
	{"DittoFSWebhookBadRequests", "none", `
dittofs_webhook_bad_requests_total{` + ns + `, pod="a", reason="content-type"} 3x10`, 8 * time.Minute, false},

	{"DittoFSWebhookHighDenialRate", "most requests denied", `
dittofs_webhook_admission_requests_total{` + ns + `, pod="a", webhook="validate", operation="UPDATE", allowed="false"} 0+10x30
dittofs_webhook_admission_requests_total{` + ns + `, pod="a", webhook="validate", operation="UPDATE", allowed="true"} 0+1x30`, 20 * time.Minute, true},
	{"DittoFSWebhookHighDenialRate", "few requests denied", `
dittofs_webhook_admission_requests_total{` + ns + `, pod="a", webhook="validate", operation="UPDATE", allowed="false"} 0+1x30
dittofs_webhook_admission_requests_total{` + ns + `, pod="a", webhook="validate", operation="UPDATE", allowed="true"} 0+10x30`, 20 * time.Minute, false},

	{"DittoFSWebhookHighLatency", "decisions take seconds", `
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="0.001"} 0x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="1"} 0x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="2.5"} 0+100x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="+Inf"} 0+100x20`, 10 * time.Minute, true},
	{"DittoFSWebhookHighLatency", "decisions under a millisecond", `
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="0.001"} 0+100x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="1"} 0+100x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="2.5"} 0+100x20
dittofs_webhook_admission_duration_seconds_bucket{` + ns + `, pod="a", webhook="mutate", le="+Inf"} 0+100x20`, 10 * time.Minute, false},

	// The gauge is the Unix time the served certificate expires; evaluation
	// is a few minutes after the Unix epoch.
	{"DittoFSWebhookCertificateExpiringSoon", "one pod serves a certificate with 6 days left", `
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{` + ns + `, pod="a"} ` + strconv.Itoa(60*day) + `x10
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{` + ns + `, pod="b"} ` + strconv.Itoa(6*day) + `x10`, 5 * time.Minute, true},
	{"DittoFSWebhookCertificateExpiringSoon", "8 days left", `
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{` + ns + `, pod="a"} ` + strconv.Itoa(8*day) + `x10`, 5 * time.Minute, false},

	{"DittoFSWebhookCertificateExpiringSoon", "no certificate loaded yet", `
dittofs_webhook_tls_certificate_expiry_timestamp_seconds{` + ns + `, pod="a"} 0x10`, 5 * time.Minute, false},

	{"DittoFSWebhookCertificateReloadFailing", "a reload failed", `
dittofs_webhook_tls_certificate_reloads_total{` + ns + `, pod="a", result="success"} 1x10
dittofs_webhook_tls_certificate_reloads_total{` + ns + `, pod="a", result="failure"} 0 0 0 1 1 1 1 1`, 6 * time.Minute, true},
	{"DittoFSWebhookCertificateReloadFailing", "reloads succeed", `
dittofs_webhook_tls_certificate_reloads_total{` + ns + `, pod="a", result="success"} 0 1 2 3 4 5 6 7
dittofs_webhook_tls_certificate_reloads_total{` + ns + `, pod="a", result="failure"} 0x10`, 6 * time.Minute, false},
}

func TestAlertsFire(t *testing.T) {
	rule := decode[monitoringv1.PrometheusRule](t, render(t, "deploy/monitoring").only(t, "PrometheusRule"))
	exprs := map[string]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				exprs[r.Alert] = r.Expr.String()
			}
		}
	}
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)

	covered := map[string]map[bool]bool{}
	for _, c := range alertCases {
		t.Run(c.alert+"/"+c.scenario, func(t *testing.T) {
			expr, ok := exprs[c.alert]
			if !ok {
				t.Fatalf("the PrometheusRule has no alert %s", c.alert)
			}
			if covered[c.alert] == nil {
				covered[c.alert] = map[bool]bool{}
			}
			covered[c.alert][c.fires] = true

			storage := promqltest.LoadedStorage(t, "load 1m\n"+indent(strings.TrimSpace(c.series)))
			q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).Add(c.at))
			if err != nil {
				t.Fatalf("query %s: %v", expr, err)
			}
			defer q.Close()
			res := q.Exec(context.Background())
			if res.Err != nil {
				t.Fatalf("evaluate %s: %v", expr, res.Err)
			}
			vec, ok := res.Value.(promql.Vector)
			if !ok {
				t.Fatalf("%s evaluates to a %s, want an instant vector", c.alert, res.Value.Type())
			}
			if fired := len(vec) > 0; fired != c.fires {
				t.Errorf("alert %s fired = %v, want %v\nexpr: %s\nseries:%s\nresult: %v",
					c.alert, fired, c.fires, strings.TrimSpace(expr), c.series, vec)
			}
		})
	}
	t.Run("every alert has a firing and a quiet case", func(t *testing.T) {
		for name := range exprs {
			if !covered[name][true] || !covered[name][false] {
				t.Errorf("alert %s needs a case where it fires and one where it does not", name)
			}
		}
	})
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = "  " + strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "\n")
}
