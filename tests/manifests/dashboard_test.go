package manifests

//lint:file-ignore SA1019 the dashboards are Grafana's classic JSON model (schemaVersion 36+), which the dashboard package decodes; dashboardv2 is the v2 resource schema, another format

import (
	"bytes"
	"encoding/json"
	"fmt"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"io/fs"
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
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// The Grafana dashboard and the alerts are written once for kustomize and
// copied into the chart (kustomize reads nothing outside its directory, Helm
// nothing outside the chart's): sharedFiles lists each pair, which must stay
// identical. (The in-tree policies have one copy, in the chart, which
// deploy/in-tree takes as a directory: intree_test.go.)
var sharedFiles = []struct{ kustomize, chart string }{
	{"deploy/monitoring/dashboard.json", chartDir + "/files/dashboard.json"},
	{"deploy/monitoring/prometheusrule.yaml", chartDir + "/files/prometheusrule.yaml"},
}

const (
	dashboardFile = "deploy/monitoring/dashboard.json"
	dashboardKey  = "dittofs-webhook.json" // its key in the ConfigMaps
	// grafanaSidecarLabel is what kube-prometheus-stack's Grafana sidecar
	// looks for (sidecar.dashboards.label and labelValue).
	grafanaSidecarLabel = "grafana_dashboard"
)

func TestSharedFilesIdentical(t *testing.T) {
	for _, f := range sharedFiles {
		a, errA := os.ReadFile(filepath.Join(repoRoot, f.kustomize))
		b, errB := os.ReadFile(filepath.Join(repoRoot, f.chart))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ: edit the first, then cp it to the second", f.kustomize, f.chart)
		}
	}
}

// registerGrafanaVariants tells the foundation SDK's decoder the panel types
// and the data source the dashboard uses, so their options, field configs and
// queries are decoded strictly too (an unregistered kind is kept as an
// untyped bag, checked by nothing).
var registerGrafanaVariants = sync.OnceFunc(func() {
	rt := cog.NewRuntime()
	rt.RegisterDataqueryVariant(prometheus.VariantConfig())
	for _, v := range []variants.PanelcfgConfig{timeseries.VariantConfig(), stat.VariantConfig(), table.VariantConfig()} {
		rt.RegisterPanelcfgVariant(v)
	}
})

// decodeDashboard decodes a dashboard as Grafana's own schema has it
// (github.com/grafana/grafana-foundation-sdk/go/dashboard, the classic JSON
// model of schemaVersion 36 and later): an unknown field, a field of the
// wrong type or a missing required one is an error, in a panel's options
// and queries too. It returns the panels, rows' included, in order.
func decodeDashboard(raw []byte) (*dashboard.Dashboard, []*dashboard.Panel, error) {
	registerGrafanaVariants()
	var d dashboard.Dashboard
	if err := strictError(d.UnmarshalJSONStrict(raw)); err != nil {
		return nil, nil, err
	}
	// v0.0.22 checks the panels but drops every one from d.Panels
	// (PanelOrRowPanel stops at the typed-nil error of a panel that decoded
	// fine): decode them one by one.
	var top struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, nil, err
	}
	panels, err := decodePanels(top.Panels)
	return &d, panels, err
}

// decodePanels decodes panels strictly, a row's panels in its place.
func decodePanels(raws []json.RawMessage) ([]*dashboard.Panel, error) {
	var out []*dashboard.Panel
	for i, raw := range raws {
		var head struct {
			Type    string            `json:"type"`
			Panels  []json.RawMessage `json:"panels"`
			Targets []json.RawMessage `json:"targets"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("panels[%d]: %w", i, err)
		}
		if head.Type == "row" {
			inner, err := decodePanels(head.Panels)
			if err != nil {
				return nil, fmt.Errorf("panels[%d].%w", i, err)
			}
			out = append(out, inner...)
			continue
		}
		p := &dashboard.Panel{}
		if err := strictError(p.UnmarshalJSONStrict(raw)); err != nil {
			return nil, fmt.Errorf("panels[%d]: %w", i, err)
		}
		// The queries are dropped the same way: decoded strictly above,
		// kept here. Every query of this dashboard is a Prometheus one.
		p.Targets = nil
		for k, t := range head.Targets {
			q := &prometheus.Dataquery{}
			if err := strictError(q.UnmarshalJSONStrict(t)); err != nil {
				return nil, fmt.Errorf("panels[%d].targets[%d]: %w", i, k, err)
			}
			p.Targets = append(p.Targets, q)
		}
		out = append(out, p)
	}
	return out, nil
}

// strictError is err, or nil for the empty error list v0.0.22's strict
// decoders return as a non-nil error (a typed nil) when all is well.
func strictError(err error) error {
	if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
		return nil
	}
	return err
}

// panelQuery is one PromQL query of a panel, parsed.
type panelQuery struct {
	panel string
	text  string
	expr  parser.Expr
}

// Grafana's built-in interval variables, with a value of their kind.
var grafanaIntervals = map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "6h", "__range_s": "21600"}

var grafanaVarRE = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::\w+)?\}`)

// nonServerSeries are the series the dashboard may read that the server does
// not export: Prometheus' own per-target up.
var nonServerSeries = map[string]bool{"up": true}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	d, panels, err := decodeDashboard(raw)
	if err != nil {
		t.Fatalf("%s is not a dashboard as Grafana's schema has it: %v", dashboardFile, err)
	}
	if d.Title == nil || *d.Title == "" || d.Uid == nil || *d.Uid == "" || d.SchemaVersion == 0 || len(panels) == 0 {
		t.Fatalf("%s lacks a title, uid, schemaVersion or panels", dashboardFile)
	}

	t.Run("both installs ship it to the Grafana sidecar", func(t *testing.T) {
		for _, r := range []*rendering{render(t, "deploy/monitoring"), renderHelm(t, helmMonitoringInstall.release)} {
			cm := one[corev1.ConfigMap](t, r)
			diff(t, r.dir+": ConfigMap label "+grafanaSidecarLabel, "1", cm.Labels[grafanaSidecarLabel])
			if cm.Data[dashboardKey] != string(raw) {
				t.Errorf("%s: ConfigMap %s data[%s] is not %s", r.dir, cm.Name, dashboardKey, dashboardFile)
			}
		}
	})

	// The template variables, and the data source every query must use.
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
	for _, pn := range panels {
		where := "panel " + ptr.Deref(pn.Title, "")
		if pn.Id == nil || ids[*pn.Id] {
			t.Errorf("%s: no id, or one used twice", where)
		} else {
			ids[*pn.Id] = true
		}
		if g := pn.GridPos; g == nil || g.W == 0 || g.H == 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v is not within the 24 columns", where, g)
		}
		diff(t, where+" datasource", wantDS, pn.Datasource)
		if len(pn.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range pn.Targets {
			q, ok := tg.(*prometheus.Dataquery)
			if !ok {
				t.Errorf("%s: a %T query, not a Prometheus one", where, tg)
				continue
			}
			if q.Datasource != nil {
				diff(t, where+" query "+ptr.Deref(q.RefId, "")+" datasource", wantDS, q.Datasource)
			}
			parse(where, q.Expr)
		}
	}
	panelQueries := queries[variableQueries:]

	t.Run("every series is one the server exports", func(t *testing.T) {
		for _, q := range queries {
			for _, vs := range selectors(q.expr) {
				if !knownSeries(vs.Name) && !nonServerSeries[vs.Name] {
					t.Errorf("%s reads %s, which the server does not export (SPEC §5)", q.panel, vs.Name)
				}
			}
		}
	})
	t.Run("every panel query selects the install chosen by $namespace and $job", func(t *testing.T) {
		for _, q := range panelQueries {
			for _, vs := range selectors(q.expr) {
				for _, want := range []string{"namespace", "job"} {
					if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
						return m.Name == want && m.Type == labels.MatchEqual && m.Value == "$"+want
					}) {
						t.Errorf("%s: %s has no matcher %s=\"$%s\": two installs would be summed", q.panel, vs.Name, want, want)
					}
				}
			}
		}
	})
	t.Run("every metric family of the server is on it", func(t *testing.T) {
		for name := range serverMetrics {
			if !slices.ContainsFunc(panelQueries, func(q panelQuery) bool {
				return slices.ContainsFunc(selectors(q.expr), func(vs *parser.VectorSelector) bool {
					return vs.Name == name || (serverMetrics[name] == "histogram" && vs.Name == name+"_bucket")
				})
			}) {
				t.Errorf("no panel reads %s", name)
			}
		}
	})

	// What the dashboard must show (issue 14).
	for _, c := range []struct {
		what string
		ok   func(e parser.Expr) bool
	}{
		{"request rate by webhook and result", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_admission_requests_total") && calls(e, "rate") && groupsBy(e, "webhook", "allowed")
		}},
		{"latency quantiles from the histogram", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_admission_duration_seconds_bucket") && groupsBy(e, "le") &&
				slices.ContainsFunc(nodes[*parser.Call](e), func(c *parser.Call) bool {
					_, literal := c.Args[0].(*parser.NumberLiteral)
					return c.Func.Name == "histogram_quantile" && literal
				})
		}},
		{"denials and warnings by rule", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_violations_total") && groupsBy(e, "rule", "action")
		}},
		{"mutations by kind", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_mutations_total") && groupsBy(e, "mutation")
		}},
		{"bad requests by reason", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_bad_requests_total") && groupsBy(e, "reason")
		}},
		{"certificate expiry", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_tls_certificate_expiry_timestamp_seconds") && calls(e, "time")
		}},
		{"certificate reload failures", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_tls_certificate_reloads_total", "result", "failure")
		}},
		{"replicas up", func(e parser.Expr) bool { return reads(e, "up") }},
	} {
		t.Run("a panel shows "+c.what, func(t *testing.T) {
			if !slices.ContainsFunc(panelQueries, func(q panelQuery) bool { return c.ok(q.expr) }) {
				t.Errorf("no panel query shows %s", c.what)
			}
		})
	}
	t.Logf("%s: %d panel queries, %d variable queries, all parsed", dashboardFile, len(panelQueries), variableQueries)
}

// groupsBy reports whether e aggregates by (at least) the labels given.
func groupsBy(e parser.Expr, want ...string) bool {
	return slices.ContainsFunc(nodes[*parser.AggregateExpr](e), func(a *parser.AggregateExpr) bool {
		return !a.Without && !slices.ContainsFunc(want, func(l string) bool { return !slices.Contains(a.Grouping, l) })
	})
}

// metricNameRE finds the metric names the server's Go code registers.
var metricNameRE = regexp.MustCompile(`"(dittofs_webhook_[a-z0-9_]+)"`)

// TestServerMetricsList keeps serverMetrics — the list the alerts and the
// dashboard are checked against — equal to the metric names in the server's
// code, wherever they are defined (every non-test Go file outside tests/), so
// neither can name a metric the server does not export.
func TestServerMetricsList(t *testing.T) {
	inCode := map[string][]string{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if d.IsDir() && (rel == "tests" || strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricNameRE.FindAllStringSubmatch(string(src), -1) {
			inCode[m[1]] = append(inCode[m[1]], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range inCode {
		if serverMetrics[name] == "" {
			t.Errorf("%s (in %s) is missing from serverMetrics", name, files)
		}
	}
	for name := range serverMetrics {
		if inCode[name] == nil {
			t.Errorf("serverMetrics lists %s, which no Go file of the server names", name)
		}
	}
}

// The strict decoding bites: the dashboard with one unknown or mistyped
// field, wherever it is, does not decode.
func TestDashboardDecodingIsStrict(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, patch := range map[string]string{ // a JSON patch "add" at path, of value
		"unknown top-level field":    `"/refreshh", "value": "30s"`,
		"mistyped top-level field":   `"/schemaVersion", "value": "39"`,
		"unknown panel field":        `"/panels/0/tittle", "value": "x"`,
		"mistyped panel field":       `"/panels/0/title", "value": 5`,
		"unknown stat option":        `"/panels/0/options/colourMode", "value": "value"`,
		"unknown time series option": `"/panels/4/options/legendd", "value": {}`,
		"unknown query field":        `"/panels/0/targets/0/exprr", "value": "up"`,
		"unknown variable field":     `"/templating/list/0/lable", "value": "x"`,
	} {
		p, err := jsonpatch.DecodePatch([]byte(`[{"op": "add", "path": ` + patch + `}]`))
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Apply(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := decodeDashboard(b); err == nil {
			t.Errorf("the dashboard decodes with %s", name)
		}
	}
}
