package manifests

//lint:file-ignore SA1019 the dashboards are Grafana's classic JSON model (schemaVersion 36+), which the dashboard package decodes; dashboardv2 is the v2 resource schema, another format

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// dashboardFile's copy in the chart: kept equal by TestHelmRendersTheKustomizeInstall.
const dashboardFile = "deploy/monitoring/dashboard.json"

// registerGrafanaVariants: else the SDK keeps panel options and queries untyped.
var registerGrafanaVariants = sync.OnceFunc(func() {
	rt := cog.NewRuntime()
	rt.RegisterDataqueryVariant(prometheus.VariantConfig())
	for _, v := range []variants.PanelcfgConfig{timeseries.VariantConfig(), stat.VariantConfig(), table.VariantConfig()} {
		rt.RegisterPanelcfgVariant(v)
	}
})

// dashboardPanel: the SDK (v0.0.22) checks the panels strictly but keeps none.
type dashboardPanel struct {
	ID          *uint32
	Title, Type string
	GridPos     *dashboard.GridPos
	Datasource  *common.DataSourceRef
	Targets     []struct {
		RefID, Expr string
		Datasource  *common.DataSourceRef
	}
	Panels []dashboardPanel // a row's
}

// decodeDashboard: an unknown, mistyped or missing field (Grafana's schema) fails.
func decodeDashboard(raw []byte) (*dashboard.Dashboard, []dashboardPanel, error) {
	registerGrafanaVariants()
	var d dashboard.Dashboard
	// An empty cog.BuildErrors (a typed nil) is no error.
	err := d.UnmarshalJSONStrict(raw)
	if be, ok := err.(cog.BuildErrors); err != nil && (!ok || len(be) > 0) {
		return nil, nil, err
	}
	var top struct{ Panels []dashboardPanel }
	err = json.Unmarshal(raw, &top)
	return &d, top.Panels, err
}

type panelQuery struct {
	panel, text string
	expr        parser.Expr
}

// Grafana's built-in interval variables, with a value of their kind.
var grafanaIntervals = map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "6h", "__range_s": "21600"}

var grafanaVarRE = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::\w+)?\}`)

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	fatalIf(t, err)
	d, panels, err := decodeDashboard(raw)
	if err != nil {
		t.Fatalf("%s is not a dashboard as Grafana's schema has it: %v", dashboardFile, err)
	}
	if d.Title == nil || *d.Title == "" || d.Uid == nil || *d.Uid == "" || d.SchemaVersion == 0 || len(panels) == 0 {
		t.Fatalf("%s lacks a title, uid, schemaVersion or panels", dashboardFile)
	}

	// grafana_dashboard: the label kube-prometheus-stack's Grafana sidecar selects by.
	if cm := one[corev1.ConfigMap](t, render(t, "deploy/monitoring")); cm.Labels["grafana_dashboard"] != "1" ||
		cm.Data["dittofs-webhook.json"] != string(raw) {
		t.Errorf("ConfigMap %s: labels %v, want grafana_dashboard=1 and data[dittofs-webhook.json] the file", cm.Name, cm.Labels)
	}

	vars := map[string]bool{}
	dsVar := ""
	var queries []panelQuery
	p := parser.NewParser(parser.Options{})
	parse := func(where, text string) {
		expanded := grafanaVarRE.ReplaceAllStringFunc(text, func(m string) string {
			sub := grafanaVarRE.FindStringSubmatch(m)
			name := sub[1] + sub[2]
			if v, ok := grafanaIntervals[name]; ok {
				return v
			}
			if !vars[name] {
				t.Errorf("%s: %s uses $%s, which is no variable of the dashboard", where, text, name)
			}
			return m // a variable of the dashboard stays: it may appear only in a label value
		})
		e, err := p.ParseExpr(expanded)
		if err != nil {
			t.Errorf("%s: PromQL does not parse: %v\n%s", where, err, text)
			return
		}
		queries = append(queries, panelQuery{where, text, e})
	}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == dashboard.VariableTypeDatasource {
			dsVar = v.Name
			if v.Query == nil || v.Query.String == nil || *v.Query.String != "prometheus" {
				t.Errorf("data source variable %s: query %v, want prometheus", v.Name, v.Query)
			}
		}
	}
	if dsVar == "" {
		t.Fatalf("no data source variable: the dashboard would be tied to one Grafana's data source uid")
	}
	wantDS := &common.DataSourceRef{Type: ptr.To("prometheus"), Uid: ptr.To("${" + dsVar + "}")}
	for _, v := range d.Templating.List {
		if v.Type != dashboard.VariableTypeQuery {
			continue
		}
		// label_values(SELECTOR, label): the selector is PromQL.
		def := ptr.Deref(v.Definition, "")
		inner, ok := strings.CutPrefix(def, "label_values(")
		i := strings.LastIndex(inner, ",")
		if !ok || i < 0 {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, def)
			continue
		}
		parse("variable "+v.Name, inner[:i])
		diff(t, "variable "+v.Name+" datasource", wantDS, v.Datasource)
	}
	variableQueries := len(queries)

	ids := map[uint32]bool{}
	for i := 0; i < len(panels); i++ {
		pn, where := panels[i], "panel "+panels[i].Title
		if pn.Type == "row" {
			panels = append(panels, pn.Panels...)
			continue
		}
		if pn.ID == nil || ids[*pn.ID] {
			t.Errorf("%s: no id, or one used twice", where)
		}
		ids[ptr.Deref(pn.ID, 0)] = true
		if g := pn.GridPos; g == nil || g.W == 0 || g.H == 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v is not within the 24 columns", where, g)
		}
		diff(t, where+" datasource", wantDS, pn.Datasource)
		if len(pn.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, q := range pn.Targets {
			if q.Datasource != nil {
				diff(t, where+" query "+q.RefID+" datasource", wantDS, q.Datasource)
			}
			parse(where, q.Expr)
		}
	}
	panelQueries := queries[variableQueries:]

	t.Run("every series is the server's, every panel's of the install chosen by $namespace and $job", func(t *testing.T) {
		for i, q := range queries {
			for _, vs := range selectors(q.expr) {
				if !knownSeries(vs.Name) && vs.Name != "up" { // Prometheus' own, per target
					t.Errorf("%s reads %s, which the server does not export (SPEC §5)", q.panel, vs.Name)
				}
				for _, want := range []string{"namespace", "job"} {
					if i >= variableQueries && !hasMatcher(vs, want, "$"+want) {
						t.Errorf("%s: %s has no matcher %s=\"$%s\": two installs would be summed", q.panel, vs.Name, want, want)
					}
				}
			}
		}
	})
	t.Run("every metric family of the server is on it", func(t *testing.T) {
		for name, typ := range serverMetrics() {
			if !slices.ContainsFunc(panelQueries, func(q panelQuery) bool {
				return reads(q.expr, name) || (typ == dto.MetricType_HISTOGRAM && reads(q.expr, name+"_bucket"))
			}) {
				t.Errorf("no panel reads %s", name)
			}
		}
	})

	// What the dashboard must show (issue 14).
	for _, c := range []struct {
		what, metric string
		by           []string
		fn           string
		matchers     []string
	}{
		{"request rate by webhook and result", "dittofs_webhook_admission_requests_total", []string{"webhook", "allowed"},
			"rate", nil},
		{"latency quantiles", "dittofs_webhook_admission_duration_seconds_bucket", []string{"le"}, "histogram_quantile", nil},
		{"denials and warnings by rule", "dittofs_webhook_violations_total", []string{"rule", "action"}, "", nil},
		{"mutations by kind", "dittofs_webhook_mutations_total", []string{"mutation"}, "", nil},
		{"bad requests by reason", "dittofs_webhook_bad_requests_total", []string{"reason"}, "", nil},
		{"certificate expiry", "dittofs_webhook_tls_certificate_expiry_timestamp_seconds", nil, "time", nil},
		{"certificate reload failures", "dittofs_webhook_tls_certificate_reloads_total", nil, "", []string{"result", "failure"}},
		{"replicas up", "up", nil, "", nil},
	} {
		t.Run("a panel shows "+c.what, func(t *testing.T) {
			if !slices.ContainsFunc(panelQueries, func(q panelQuery) bool {
				return reads(q.expr, c.metric, c.matchers...) && (c.by == nil || groupsBy(q.expr, c.by...)) &&
					(c.fn == "" || slices.ContainsFunc(nodes[*parser.Call](q.expr), func(call *parser.Call) bool {
						return call.Func.Name == c.fn
					}))
			}) {
				t.Errorf("no panel query shows %s", c.what)
			}
		})
	}
}

func groupsBy(e parser.Expr, want ...string) bool {
	return slices.ContainsFunc(nodes[*parser.AggregateExpr](e), func(a *parser.AggregateExpr) bool {
		return !a.Without && !slices.ContainsFunc(want, func(l string) bool { return !slices.Contains(a.Grouping, l) })
	})
}
