package manifests

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// serverMetrics are the metric families the server exports (SPEC §5).
var serverMetrics = map[string]string{
	"dittofs_webhook_admission_requests_total":                 "counter",
	"dittofs_webhook_admission_duration_seconds":               "histogram",
	"dittofs_webhook_violations_total":                         "counter",
	"dittofs_webhook_mutations_total":                          "counter",
	"dittofs_webhook_bad_requests_total":                       "counter",
	"dittofs_webhook_panics_total":                             "counter",
	"dittofs_webhook_tls_certificate_expiry_timestamp_seconds": "gauge",
	"dittofs_webhook_tls_certificate_reloads_total":            "counter",
	"dittofs_webhook_build_info":                               "gauge",
}

// knownSeries reports whether name is a series the server exports.
func knownSeries(name string) bool {
	if serverMetrics[name] != "" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && serverMetrics[base] == "histogram" {
			return true
		}
	}
	return false
}

// alertRule is one alerting rule with its parsed expression.
type alertRule struct {
	group, name string
	expr        parser.Expr
	exprText    string
	forText     string
	labels      map[string]string
	annotations map[string]string
}

// selectors returns the vector selectors of the expression e.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// calls returns the names of the functions the expression e calls.
func calls(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok {
			out = append(out, c.Func.Name)
		}
		return nil
	})
	return out
}

// quantiles returns the quantiles e takes with histogram_quantile.
func quantiles(e parser.Expr) []float64 {
	var out []float64
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok && c.Func.Name == "histogram_quantile" {
			if q, ok := c.Args[0].(*parser.NumberLiteral); ok {
				out = append(out, q.Val)
			}
		}
		return nil
	})
	return out
}

// reads reports whether the expression e reads metric with a matcher
// label=value for each pair of want (label, value, label, value, ...).
func reads(e parser.Expr, metric string, want ...string) bool {
	for _, vs := range selectors(e) {
		if vs.Name != metric {
			continue
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if !hasMatcher(vs, want[i], want[i+1]) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == name && m.Type == labels.MatchEqual && m.Value == value {
			return true
		}
	}
	return false
}

var alertNameRE = regexp.MustCompile(`^DittoFSWebhook[A-Z][A-Za-z]+$`)

// TestMonitoring checks deploy/monitoring and the chart with its monitoring
// on, installed under another release name and namespace than the alerts'
// source file names (the chart rewrites those).
func TestMonitoring(t *testing.T) {
	t.Run("deploy/monitoring", func(t *testing.T) {
		r := render(t, "deploy/monitoring")
		checkMonitoring(t, r, loadInstall(t, r))
	})
	h := helmMonitoringInstall
	t.Run("helm "+h.name, func(t *testing.T) {
		r := renderHelm(t, h.release)
		checkMonitoring(t, r, loadInstallAs(t, r, h.layout()))
	})
}

func checkMonitoring(t *testing.T, r *rendering, in *install) {
	t.Run("ServiceMonitor scrapes the metrics port", func(t *testing.T) {
		sm := decode[monitoringv1.ServiceMonitor](t, r.only(t, "ServiceMonitor"))
		ns := sm.Spec.NamespaceSelector
		if !ns.Any && !slices.Contains(ns.MatchNames, in.svc.Namespace) && !(len(ns.MatchNames) == 0 && sm.Namespace == in.svc.Namespace) {
			t.Errorf("ServiceMonitor namespaceSelector %+v does not cover the Service's namespace %s", ns, in.svc.Namespace)
		}
		if !selects(t, &sm.Spec.Selector, in.svc.Labels) || len(sm.Spec.Selector.MatchLabels)+len(sm.Spec.Selector.MatchExpressions) == 0 {
			t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v)", sm.Spec.Selector, in.svc.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		var port *corev1.ServicePort
		for i := range in.svc.Spec.Ports {
			if in.svc.Spec.Ports[i].Name == ep.Port {
				port = &in.svc.Spec.Ports[i]
			}
		}
		if port == nil {
			t.Fatalf("ServiceMonitor endpoint port %q is not a port name of the Service", ep.Port)
		}
		metrics := in.flagPort(t, "metrics-listen")
		if cp, ok := containerPort(in.container, port.TargetPort); !ok || cp.ContainerPort != metrics {
			t.Errorf("ServiceMonitor scrapes Service port %q, which targets %s, not the --metrics-listen port %d",
				ep.Port, port.TargetPort.String(), metrics)
		}
		if ep.Path != "" && ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor path %q, want /metrics", ep.Path)
		}
		if s := ep.Scheme.String(); s != "" && s != "http" {
			t.Errorf("ServiceMonitor scheme %q: the metrics listener is plain HTTP", s)
		}
		if ep.Interval != "" {
			if _, err := model.ParseDuration(string(ep.Interval)); err != nil {
				t.Errorf("ServiceMonitor interval %q: %v", ep.Interval, err)
			}
		}
	})

	rule := decode[monitoringv1.PrometheusRule](t, r.only(t, "PrometheusRule"))
	var alerts []alertRule
	p := parser.NewParser(parser.Options{})
	for _, g := range rule.Spec.Groups {
		for _, rl := range g.Rules {
			a := alertRule{group: g.Name, name: rl.Alert, exprText: rl.Expr.String(), forText: string(ptr.Deref(rl.For, "")), labels: rl.Labels, annotations: rl.Annotations}
			if rl.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert; recording rules belong in their own file", g.Name, rl.Record)
				continue
			}
			expr, err := p.ParseExpr(a.exprText)
			if err != nil {
				t.Errorf("alert %s: expr does not parse: %v\n%s", rl.Alert, err, a.exprText)
				continue
			}
			a.expr = expr
			alerts = append(alerts, a)
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("PrometheusRule has no alert")
	}

	t.Run("every alert is well formed", func(t *testing.T) {
		seen := map[string]bool{}
		for _, a := range alerts {
			if seen[a.name] {
				t.Errorf("alert %s defined twice", a.name)
			}
			seen[a.name] = true
			if !alertNameRE.MatchString(a.name) {
				t.Errorf("alert %s: name does not match %s", a.name, alertNameRE)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, a.labels["severity"]) {
				t.Errorf("alert %s: severity label %q, want critical, warning or info", a.name, a.labels["severity"])
			}
			for _, k := range []string{"summary", "description"} {
				if strings.TrimSpace(a.annotations[k]) == "" {
					t.Errorf("alert %s: no %s annotation", a.name, k)
				}
			}
			if a.forText != "" {
				if _, err := model.ParseDuration(a.forText); err != nil {
					t.Errorf("alert %s: for %q: %v", a.name, a.forText, err)
				}
			}
			if a.expr.Type() != parser.ValueTypeVector {
				t.Errorf("alert %s: expr is a %s, want an instant vector", a.name, a.expr.Type())
			}
		}
	})

	t.Run("alerts read only real series of this install", func(t *testing.T) {
		for _, a := range alerts {
			for _, vs := range selectors(a.expr) {
				if strings.HasPrefix(vs.Name, "dittofs_") && !knownSeries(vs.Name) {
					t.Errorf("alert %s reads %s, which the server does not export (SPEC §5)", a.name, vs.Name)
				}
				// Matchers on the install's identity must name this install.
				for _, want := range []struct{ label, value string }{
					{"namespace", in.dep.Namespace},
					{"deployment", in.dep.Name},
					{"job", in.svc.Name}, // the Prometheus Operator's job is the Service name
				} {
					for _, m := range vs.LabelMatchers {
						if m.Name == want.label && m.Type == labels.MatchEqual && m.Value != want.value {
							t.Errorf("alert %s: %s{%s=%q}, but this install's %s is %q", a.name, vs.Name, m.Name, m.Value, want.label, want.value)
						}
					}
				}
			}
		}
	})

	// What the alerts must cover (the brief of deploy/monitoring).
	covers := []struct {
		what string
		ok   func(a alertRule) bool
	}{
		{"admission errors (bad requests or panics)", func(a alertRule) bool {
			return reads(a.expr, "dittofs_webhook_bad_requests_total") || reads(a.expr, "dittofs_webhook_panics_total")
		}},
		{"admission denials rate", func(a alertRule) bool {
			return reads(a.expr, "dittofs_webhook_admission_requests_total", "allowed", "false") && slices.Contains(calls(a.expr), "rate")
		}},
		{"p99 admission latency", func(a alertRule) bool {
			return reads(a.expr, "dittofs_webhook_admission_duration_seconds_bucket") && slices.Contains(quantiles(a.expr), 0.99)
		}},
		{"certificate expiring within 7 days", func(a alertRule) bool {
			return reads(a.expr, "dittofs_webhook_tls_certificate_expiry_timestamp_seconds") &&
				slices.Contains(calls(a.expr), "time") && comparesWith(a.expr, 7*24*3600)
		}},
		{"certificate reload failures", func(a alertRule) bool {
			return reads(a.expr, "dittofs_webhook_tls_certificate_reloads_total", "result", "failure")
		}},
		{"no ready replica", func(a alertRule) bool {
			return reads(a.expr, "kube_deployment_status_replicas_available", "namespace", in.dep.Namespace, "deployment", in.dep.Name) ||
				reads(a.expr, "kube_deployment_status_replicas_ready", "namespace", in.dep.Namespace, "deployment", in.dep.Name)
		}},
	}
	for _, c := range covers {
		t.Run("an alert for "+c.what, func(t *testing.T) {
			if !slices.ContainsFunc(alerts, c.ok) {
				t.Errorf("no alert covers %s", c.what)
			}
		})
	}
}

// comparesWith reports whether the expression compares against the number
// v, written as a literal or as constant arithmetic (7 * 24 * 3600).
func comparesWith(e parser.Expr, v float64) bool {
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		b, ok := n.(*parser.BinaryExpr)
		if !ok || !b.Op.IsComparisonOperator() {
			return nil
		}
		for _, side := range []parser.Expr{b.LHS, b.RHS} {
			if x, ok := constValue(side); ok && x == v {
				found = true
			}
		}
		return nil
	})
	return found
}

// constValue evaluates a constant arithmetic expression.
func constValue(e parser.Expr) (float64, bool) {
	switch n := e.(type) {
	case *parser.NumberLiteral:
		return n.Val, true
	case *parser.ParenExpr:
		return constValue(n.Expr)
	case *parser.BinaryExpr:
		l, ok1 := constValue(n.LHS)
		r, ok2 := constValue(n.RHS)
		if !ok1 || !ok2 {
			return 0, false
		}
		switch n.Op {
		case parser.MUL:
			return l * r, true
		case parser.ADD:
			return l + r, true
		case parser.SUB:
			return l - r, true
		case parser.DIV:
			return l / r, true
		}
	}
	return 0, false
}
