package manifests

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
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
		if errA != nil || errB != nil {
			t.Fatalf("reading %s and %s: %v %v", f.kustomize, f.chart, errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ: edit the first, then cp it to the second", f.kustomize, f.chart)
		}
	}
}

// grafanaDashboard is the part of Grafana's dashboard JSON model the tests
// read.
type grafanaDashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string             `json:"name"`
			Type       string             `json:"type"`
			Query      any                `json:"query"`
			Definition string             `json:"definition"`
			Datasource *grafanaDatasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string             `json:"expr"`
		RefID      string             `json:"refId"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
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
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s does not load: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("%s lacks a title, uid, schemaVersion or panels", dashboardFile)
	}

	t.Run("both installs ship it to the Grafana sidecar", func(t *testing.T) {
		for _, r := range []*rendering{render(t, "deploy/monitoring"), renderHelm(t, helmMonitoringInstall.release)} {
			cm := decode[corev1.ConfigMap](t, r.only(t, "ConfigMap"))
			expect(t, r.dir+": ConfigMap label "+grafanaSidecarLabel, cm.Labels[grafanaSidecarLabel], "1")
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
		if v.Type == "datasource" {
			dsVar = v.Name
			expect(t, "data source variable query", v.Query, "prometheus")
		}
	}
	if dsVar == "" {
		t.Fatalf("no data source variable: the dashboard would be tied to one Grafana's data source uid")
	}
	wantDS := grafanaDatasource{Type: "prometheus", UID: "${" + dsVar + "}"}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// label_values(SELECTOR, label): the selector is PromQL.
		inner, ok := strings.CutPrefix(v.Definition, "label_values(")
		i := strings.LastIndex(inner, ",")
		if !ok || i < 0 {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, v.Definition)
			continue
		}
		parse("variable "+v.Name, inner[:i])
		if v.Datasource == nil || *v.Datasource != wantDS {
			t.Errorf("variable %s: datasource %v, want %v", v.Name, v.Datasource, wantDS)
		}
	}
	variableQueries := len(queries)

	ids := map[int]bool{}
	var walk func(panels []grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, pn := range panels {
			where := "panel " + pn.Title
			if ids[pn.ID] {
				t.Errorf("%s: id %d used twice", where, pn.ID)
			}
			ids[pn.ID] = true
			if g := pn.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v is not within the 24 columns", where, g)
			}
			if pn.Type == "row" {
				walk(pn.Panels)
				continue
			}
			if pn.Datasource == nil || *pn.Datasource != wantDS {
				t.Errorf("%s: datasource %v, want %v", where, pn.Datasource, wantDS)
			}
			if len(pn.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range pn.Targets {
				if tg.Datasource != nil && *tg.Datasource != wantDS {
					t.Errorf("%s query %s: datasource %v, want %v", where, tg.RefID, tg.Datasource, wantDS)
				}
				parse(where, tg.Expr)
			}
		}
	}
	walk(d.Panels)
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
			return reads(e, "dittofs_webhook_admission_requests_total") && slices.Contains(calls(e), "rate") && groupsBy(e, "webhook", "allowed")
		}},
		{"latency quantiles from the histogram", func(e parser.Expr) bool {
			return reads(e, "dittofs_webhook_admission_duration_seconds_bucket") && len(quantiles(e)) > 0 && groupsBy(e, "le")
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
			return reads(e, "dittofs_webhook_tls_certificate_expiry_timestamp_seconds") && slices.Contains(calls(e), "time")
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
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if a, ok := n.(*parser.AggregateExpr); ok && !a.Without {
			ok := true
			for _, l := range want {
				ok = ok && slices.Contains(a.Grouping, l)
			}
			found = found || ok
		}
		return nil
	})
	return found
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
