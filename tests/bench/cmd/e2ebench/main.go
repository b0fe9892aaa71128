// Command e2ebench measures, through a real kube-apiserver (started with
// controller-runtime's envtest from the binaries tests/tools/build.sh builds),
// the latency the admission webhooks add to creating a labelled StatefulSet:
// sequential creates through client-go (each deleted at once, untimed) with no
// admission configuration; with dittofs-webhook's Mutating and Validating
// WebhookConfigurations; with the same pointed at the controller-runtime peer,
// at the floor, and at floors replaying dittofs-webhook's answer; with
// deploy/in-tree's MutatingAdmissionPolicy and ValidatingAdmissionPolicy; and
// with dittofs-webhook and the policies together. Every configuration also
// gets unlabelled creates, which the objectSelector keeps from the webhooks.
//
// Configurations are interleaved over rounds; the report gives the create
// latency of each and what it adds over no configuration.
//
// Run it from tests/bench: go run ./cmd/e2ebench (or make bench-e2e).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/webhook"
)

const (
	namespace   = "dittofs-bench"
	labelServer = "dittofs.com/server"
	// inTreeDir holds the policies deploy/in-tree installs, read at run time
	// so that what is measured is what ships.
	inTreeDir = "deploy/helm/dittofs-webhook/files/in-tree"
)

func main() {
	var f benchkit.Flags
	f.Register(3, 20*time.Minute)
	creates := flag.Int("creates", 300, "labelled creates per configuration (as many unlabelled), split over the rounds")
	warmup := flag.Int("warmup", 20, "untimed creates after each configuration change")
	flag.Parse()
	benchkit.Main("e2ebench", &f, "", func(ctx context.Context, s *benchkit.Setup) (string, error) {
		return run(ctx, &f, s, max(1, *creates/f.Rounds), *warmup)
	})
}

// config is one admission set-up under test.
type config struct {
	name     string
	server   *benchkit.Server // the webhook configurations point at it; nil: none
	policies bool             // deploy/in-tree's policies are installed
	mutates  bool             // a labelled create comes back with a cache volumeClaimTemplate
}

type bench struct {
	s         *benchkit.Setup
	cs        *kubernetes.Clientset
	cl        client.Client
	object    *appsv1.StatefulSet // the benchmark body's StatefulSet
	seq       int
	installed []client.Object
	created   map[string]*appsv1.StatefulSet // each configuration's first labelled create
}

type key struct {
	config   string
	labelled bool
}

func run(ctx context.Context, f *benchkit.Flags, s *benchkit.Setup, per, warmup int) (string, error) {
	started := time.Now()
	benchkit.Logf("building the control plane (tests/tools/build.sh)")
	cmd := exec.Command("bash", filepath.Join(s.Repo, "tests", "tools", "build.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tests/tools/build.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assets := lines[len(lines)-1]
	benchkit.Logf("starting etcd and kube-apiserver from %s", assets)
	log, err := os.Create(filepath.Join(s.Work, "control-plane.log"))
	if err != nil {
		return "", err
	}
	defer log.Close()
	te := &envtest.Environment{BinaryAssetsDirectory: assets, UseExistingCluster: ptr.To(false), ControlPlaneStartTimeout: 2 * time.Minute}
	te.ControlPlane.Etcd = &envtest.Etcd{Out: log, Err: log}
	te.ControlPlane.APIServer = &envtest.APIServer{Out: log, Err: log}
	cfg, err := te.Start()
	if err != nil {
		return "", fmt.Errorf("starting the control plane (log in %s): %w", s.Work, err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			benchkit.Logf("stopping the control plane: %v", err)
		}
	}()
	cfg.QPS, cfg.Burst = 1e6, 1e6          // no client-side throttling
	cfg.WarningHandler = rest.NoWarnings{} // the mutations warn; printing them is not what is measured
	b := &bench{s: s, created: map[string]*appsv1.StatefulSet{}}
	if b.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return "", err
	}
	if b.cl, err = client.New(cfg, client.Options{}); err != nil {
		return "", err
	}
	if err := json.Unmarshal(s.Bodies.Object, &b.object); err != nil {
		return "", err
	}
	// What the apiserver sets itself goes.
	b.object.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Labels: b.object.Labels, Annotations: b.object.Annotations}
	b.object.Status = appsv1.StatefulSetStatus{}
	if err := b.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return "", err
	}

	servers := map[string]*benchkit.Server{}
	defer func() {
		for _, srv := range servers {
			_ = srv.Stop()
		}
	}()
	for _, k := range []benchkit.Kind{benchkit.Ditto, benchkit.Peer, benchkit.Floor} {
		if servers[string(k)], err = s.Start(benchkit.ServerSpec{Kind: k, LogLevel: f.LogLevel}); err != nil {
			return "", err
		}
	}
	// Floors that replay dittofs-webhook's own answer to the benchmark body:
	// all of it (patch, warnings, audit annotations), or only its patch.
	for _, name := range []string{"replay", "replay-patch"} {
		file, err := b.cannedAnswer(servers[string(benchkit.Ditto)], name)
		if err != nil {
			return "", err
		}
		spec := benchkit.ServerSpec{Kind: benchkit.Floor, Label: "floor-" + name, Args: []string{"--mutate-response", file}}
		if servers[name], err = s.Start(spec); err != nil {
			return "", err
		}
	}
	ditto := servers[string(benchkit.Ditto)]
	configs := []config{
		{name: "none"},
		{name: "dittofs-webhook", server: ditto, mutates: true},
		{name: "controller-runtime", server: servers[string(benchkit.Peer)], mutates: true},
		{name: "floor", server: servers[string(benchkit.Floor)]},
		{name: "floor replaying dittofs-webhook's answer", server: servers["replay"], mutates: true},
		{name: "floor replaying only its patch", server: servers["replay-patch"], mutates: true},
	}
	policyNote := ""
	if err := b.apply(ctx, config{name: "in-tree policies", policies: true, mutates: true}); err != nil {
		policyNote = "in-tree MutatingAdmissionPolicy not measured: " + err.Error()
		benchkit.Logf("%s", policyNote)
	} else {
		configs = append(configs, config{name: "in-tree policies (MAP+VAP)", policies: true, mutates: true},
			config{name: "dittofs-webhook + in-tree policies", server: ditto, policies: true, mutates: true})
	}

	lat := map[key][]time.Duration{}
	calls := map[string]callsByType{} // webhook calls by configuration and type, as the apiserver times them
	unlabelledCalls := map[string]float64{}
	for round := 1; round <= f.Rounds; round++ {
		for _, c := range configs {
			if err := b.apply(ctx, c); err != nil {
				return "", fmt.Errorf("configuring %s: %w", c.name, err)
			}
			for i := range warmup {
				if _, err := b.create(ctx, c, i%2 == 0); err != nil {
					return "", fmt.Errorf("%s warm-up: %w", c.name, err)
				}
			}
			benchkit.WaitQuiet(ctx, 20*time.Second)
			m0, err := b.calls(ctx)
			if err != nil {
				return "", err
			}
			for range per {
				for _, labelled := range []bool{true, false} {
					d, err := b.create(ctx, c, labelled)
					if err != nil {
						return "", fmt.Errorf("%s: %w", c.name, err)
					}
					lat[key{c.name, labelled}] = append(lat[key{c.name, labelled}], d)
				}
			}
			m1, err := b.calls(ctx)
			if err != nil {
				return "", err
			}
			if calls[c.name] == nil {
				calls[c.name] = callsByType{}
			}
			for typ := range m1 {
				calls[c.name][typ] = calls[c.name][typ].add(m1[typ].sub(m0[typ]))
			}
			if c.server != nil {
				// 20 more unlabelled creates: the apiserver must call no webhook.
				for range 20 {
					if _, err := b.create(ctx, c, false); err != nil {
						return "", err
					}
				}
				m2, err := b.calls(ctx)
				if err != nil {
					return "", err
				}
				unlabelledCalls[c.name] += m2.total() - m1.total()
			}
			benchkit.Logf("round %d %-42s labelled p50 %s, unlabelled p50 %s (%d each so far)", round, c.name,
				benchkit.Ms(benchkit.Quantile(lat[key{c.name, true}], 0.5)), benchkit.Ms(benchkit.Quantile(lat[key{c.name, false}], 0.5)),
				len(lat[key{c.name, true}]))
		}
	}
	if err := b.apply(ctx, config{name: "none"}); err != nil {
		return "", err
	}

	// Report.
	var r strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&r, format, args...) }
	version, _ := b.cs.Discovery().ServerVersion()
	p("\n## End to end: latency added to a StatefulSet create through kube-apiserver %s\n\n", version)
	p("- date: %s; %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), s.Describe())
	p("- etcd and kube-apiserver from tests/tools/build.sh, started by envtest; the three servers unpinned, logging at %s; "+
		"everything at nice %d\n", f.LogLevel, f.Nice)
	p("- %d rounds; per round and configuration %d untimed warm-up creates, then %d labelled and %d unlabelled creates, "+
		"alternating, sequential, each deleted at once (untimed)\n", f.Rounds, warmup, per, per)
	p("- the webhook configurations are deploy/'s settings (objectSelector on %s, failurePolicy Fail, timeoutSeconds 5, "+
		"reinvocationPolicy IfNeeded), with a url clientConfig; webhook calls and reviews for unlabelled creates are the "+
		"apiserver's apiserver_admission_webhook_admission_duration_seconds\n", labelServer)
	p("- run took %s\n", time.Since(started).Round(time.Second))
	// The created objects must agree: the peer's and the policies' with dittofs-webhook's.
	for _, name := range []string{"controller-runtime", "in-tree policies (MAP+VAP)", "dittofs-webhook + in-tree policies"} {
		ref, got := b.created["dittofs-webhook"], b.created[name]
		switch {
		case ref == nil || got == nil:
		case equality.Semantic.DeepEqual(ref.Spec, got.Spec):
			p("- %s: the stored StatefulSet spec equals dittofs-webhook's\n", name)
		default:
			a, _ := json.Marshal(ref.Spec)
			g, _ := json.Marshal(got.Spec)
			p("- %s: the stored StatefulSet spec DIFFERS from dittofs-webhook's:\n  %s\n  %s\n", name, a, g)
		}
	}
	if policyNote != "" {
		p("- %s\n", policyNote)
	}
	med := func(config string, labelled bool) time.Duration {
		return benchkit.Quantile(lat[key{config, labelled}], 0.5)
	}
	added := func(config string, labelled bool) time.Duration { return med(config, labelled) - med("none", labelled) }
	var rows [][]string
	for _, c := range configs {
		l := lat[key{c.name, true}]
		wc, uc := "", ""
		if c.server != nil {
			a, v, n := calls[c.name]["admit"], calls[c.name]["validating"], float64(len(l))
			wc = fmt.Sprintf("%s / %s (%.1f / %.1f calls per create)", a.mean(), v.mean(), a.count/n, v.count/n)
			uc = fmt.Sprint(unlabelledCalls[c.name])
		}
		rows = append(rows, []string{c.name, benchkit.Ms(med(c.name, true)), benchkit.Ms(benchkit.Quantile(l, 0.9)),
			benchkit.Ms(benchkit.Quantile(l, 0.99)), signed(added(c.name, true)), wc, benchkit.Ms(med(c.name, false)),
			signed(added(c.name, false)), uc})
	}
	benchkit.Table(&r, 1, []string{"configuration", "labelled create p50", "p90", "p99", "added (p50)",
		"webhook calls, mean as the apiserver times them (mutate / validate)", "unlabelled create p50", "added (p50)",
		"reviews for unlabelled creates"}, rows)
	dAdd, fAdd := added("dittofs-webhook", true), added("floor", true)
	rAdd := added("floor replaying dittofs-webhook's answer", true)
	u := unlabelledCalls["dittofs-webhook"]
	benchkit.Table(&r, 3, []string{"target", "measured", "result"}, [][]string{
		{"dittofs-webhook adds within 0.5 ms of what the floor adds (p50)",
			fmt.Sprintf("%s vs %s (%s)", signed(dAdd), signed(fAdd), signed(dAdd-fAdd)), benchkit.PassFail(dAdd-fAdd <= 500*time.Microsecond)},
		{"(analysis) dittofs-webhook adds within 0.5 ms of a floor that replays its answer (the server's own share; " +
			"the rest is the apiserver applying the mutation)",
			fmt.Sprintf("%s vs %s (%s)", signed(dAdd), signed(rAdd), signed(dAdd-rAdd)), benchkit.PassFail(dAdd-rAdd <= 500*time.Microsecond)},
		{"unlabelled creates: dittofs-webhook is not called (objectSelector)",
			fmt.Sprintf("%v reviews; median create %s vs no configuration", u, signed(added("dittofs-webhook", false))), benchkit.PassFail(u == 0)},
	})
	return r.String(), nil
}

// create creates and deletes one StatefulSet, returning how long the create
// took, and checks that c mutated it, or not, as it should.
func (b *bench) create(ctx context.Context, c config, labelled bool) (time.Duration, error) {
	b.seq++
	sts := b.object.DeepCopy()
	sts.Name = fmt.Sprintf("bench-%d", b.seq)
	if !labelled {
		delete(sts.Labels, labelServer)
	}
	t0 := time.Now()
	got, err := b.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{})
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if hasCache(got) != (labelled && c.mutates) {
		return 0, fmt.Errorf("create (labelled %v) under %s: cache volumeClaimTemplate present=%v", labelled, c.name, hasCache(got))
	}
	if _, ok := b.created[c.name]; labelled && !ok {
		b.created[c.name] = got
	}
	return d, b.cs.AppsV1().StatefulSets(namespace).Delete(ctx, sts.Name, metav1.DeleteOptions{})
}

func hasCache(sts *appsv1.StatefulSet) bool {
	for _, v := range sts.Spec.VolumeClaimTemplates {
		if v.Name == "cache" {
			return true
		}
	}
	return false
}

// apply removes every configuration this program made and installs c's, then
// waits until the apiserver uses it.
func (b *bench) apply(ctx context.Context, c config) error {
	for _, o := range b.installed {
		if err := client.IgnoreNotFound(b.cl.Delete(ctx, o)); err != nil {
			return err
		}
	}
	b.installed = nil
	var objs []client.Object
	if c.server != nil {
		objs = webhookConfigs(c.server, b.s.CAPEM)
	}
	if c.policies {
		p, err := b.policies()
		if err != nil {
			return err
		}
		objs = append(objs, p...)
	}
	for _, o := range objs {
		if err := b.cl.Create(ctx, o, client.FieldValidation("Strict")); err != nil {
			return fmt.Errorf("%s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
		b.installed = append(b.installed, o)
	}
	// Poll with dry-run creates (which go through admission) until the
	// apiserver answers as c should: mutated or not, and with a server, until
	// the apiserver calls a webhook. Then wait a second more, for the
	// validating side.
	before, err := b.calls(ctx)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); ; benchkit.WaitCtx(ctx, 100*time.Millisecond) {
		sts := b.object.DeepCopy()
		sts.Name = "bench-probe"
		got, err := b.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		ok := err == nil && hasCache(got) == c.mutates
		if ok && c.server != nil {
			now, err := b.calls(ctx)
			ok = err == nil && now.total() > before.total()
		}
		if ok {
			benchkit.WaitCtx(ctx, time.Second)
			return ctx.Err()
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("the apiserver did not take up %s within 30 s (last error: %v)", c.name, err)
		}
	}
}

// webhookConfigs are deploy/'s webhook configurations pointed at s by url.
func webhookConfigs(s *benchkit.Server, caPEM []byte) []client.Object {
	sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: labelServer, Operator: metav1.LabelSelectorOpExists}}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"statefulsets"}},
	}}
	cc := func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(s.URL(path)), CABundle: caPEM}
	}
	return []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "dittofs-bench-mutate"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: "mutate.statefulsets.dittofs.com", ClientConfig: cc(webhook.MutatePath), Rules: rules,
				FailurePolicy: ptr.To(admissionregistrationv1.Fail), MatchPolicy: ptr.To(admissionregistrationv1.Equivalent),
				ObjectSelector: sel, SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), TimeoutSeconds: ptr.To[int32](5),
				AdmissionReviewVersions: []string{"v1"}, ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			}},
		},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "dittofs-bench-validate"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: "validate.statefulsets.dittofs.com", ClientConfig: cc(webhook.ValidatePath), Rules: rules,
				FailurePolicy: ptr.To(admissionregistrationv1.Fail), MatchPolicy: ptr.To(admissionregistrationv1.Equivalent),
				ObjectSelector: sel, SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), TimeoutSeconds: ptr.To[int32](5),
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}

// policies reads deploy/in-tree's MutatingAdmissionPolicy and
// ValidatingAdmissionPolicy with their bindings.
func (b *bench) policies() ([]client.Object, error) {
	var objs []client.Object
	for _, name := range []string{"mutatingadmissionpolicy.yaml", "validatingadmissionpolicy.yaml"} {
		raw, err := os.ReadFile(filepath.Join(b.s.Repo, inTreeDir, name))
		if err != nil {
			return nil, err
		}
		d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := d.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs, nil
}

// sumCount is a histogram's _sum and _count.
type sumCount struct{ sum, count float64 }

func (a sumCount) add(b sumCount) sumCount { return sumCount{a.sum + b.sum, a.count + b.count} }
func (a sumCount) sub(b sumCount) sumCount { return sumCount{a.sum - b.sum, a.count - b.count} }
func (a sumCount) mean() string {
	if a.count == 0 {
		return "-"
	}
	return benchkit.Ms(time.Duration(a.sum / a.count * 1e9))
}

type callsByType map[string]sumCount

func (m callsByType) total() float64 { return m["admit"].count + m["validating"].count }

// calls reads the apiserver's apiserver_admission_webhook_admission_duration_seconds
// for this program's webhooks on CREATE, by type (admit, validating).
func (b *bench) calls(ctx context.Context) (callsByType, error) {
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the apiserver's metrics: %w", err)
	}
	out := callsByType{}
	for _, m := range families["apiserver_admission_webhook_admission_duration_seconds"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if strings.HasSuffix(labels["name"], ".statefulsets.dittofs.com") && labels["operation"] == "CREATE" {
			h := m.GetHistogram()
			out[labels["type"]] = out[labels["type"]].add(sumCount{h.GetSampleSum(), float64(h.GetSampleCount())})
		}
	}
	return out, nil
}

// cannedAnswer writes dittofs-webhook's answer to the benchmark body, its uid
// written <UID>, for a replaying floor: as it is ("replay"), or without its
// warnings and audit annotations ("replay-patch").
func (b *bench) cannedAnswer(ditto *benchkit.Server, name string) (string, error) {
	c := b.s.NewClient(1)
	defer c.CloseIdleConnections()
	rv, raw, err := benchkit.Post(c, ditto.URL(webhook.MutatePath), b.s.Bodies.Create)
	if err != nil {
		return "", err
	}
	if name == "replay-patch" {
		rv.Response.Warnings, rv.Response.AuditAnnotations = nil, nil
		if raw, err = json.Marshal(rv); err != nil {
			return "", err
		}
	}
	canned := strings.Replace(string(raw), `"uid":"`+string(rv.Response.UID)+`"`, `"uid":"<UID>"`, 1)
	if !strings.Contains(canned, "<UID>") {
		return "", errors.New("no uid in dittofs-webhook's answer")
	}
	file := filepath.Join(b.s.Work, name+".json")
	return file, os.WriteFile(file, []byte(canned), 0o644)
}

func signed(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }
