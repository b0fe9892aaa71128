// Command e2ebench measures the latency the admission webhooks add to creating
// a labelled StatefulSet through a real kube-apiserver (started by
// framework.StartControlPlane, as the e2e starts it): sequential creates
// through client-go, each deleted at once (untimed), under each configuration
// in turn: none; deploy/base's webhook configurations pointed at
// dittofs-webhook, at the controller-runtime peer, at the floor and at floors
// replaying dittofs-webhook's answer; deploy/in-tree's admission policies; and
// dittofs-webhook with the policies. Unlabelled creates, which the
// objectSelector keeps from the webhooks, alternate with the labelled ones.
//
// Run it from tests/e2e: go run ./bench/cmd/e2ebench (or make bench-e2e).
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
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
	f.Register(3)
	creates := flag.Int("creates", 300, "labelled creates per configuration (as many unlabelled), split over the rounds")
	warmup := flag.Int("warmup", 20, "untimed creates after each configuration change")
	flag.Parse()
	benchkit.Main("e2ebench", &f, "", 20*time.Minute, func(ctx context.Context, s *benchkit.Setup) (string, error) {
		return run(ctx, &f, s, max(1, *creates/f.Rounds), *warmup)
	})
}

// config is one admission set-up under test, and what it measured.
type config struct {
	name     string
	server   *benchkit.Server // the webhook configurations point at it; nil: none
	policies bool             // deploy/in-tree's policies are installed
	mutates  bool             // a labelled create comes back with a cache volumeClaimTemplate

	labelled, unlabelled []time.Duration
	calls                calls               // during the timed creates
	unlabelledCalls      float64             // during 20 more unlabelled creates per round
	created              *appsv1.StatefulSet // the first labelled create's result
}

type bench struct {
	s         *benchkit.Setup
	cs        *kubernetes.Clientset
	cl        client.Client
	object    *appsv1.StatefulSet // the benchmark body's StatefulSet
	seq       int
	installed []client.Object
}

func run(ctx context.Context, f *benchkit.Flags, s *benchkit.Setup, per, warmup int) (string, error) {
	started := time.Now()
	bin, err := framework.BuildTool(s.Repo, "build.sh")
	if err != nil {
		return "", err
	}
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime's logger
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{RepoRoot: s.Repo, Dir: s.Work, Bin: bin})
	defer func() {
		if err := cp.Stop(); err != nil {
			benchkit.Logf("stopping the control plane: %v", err)
		}
	}()
	if err != nil {
		return "", err
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 1e6, 1e6          // no client-side throttling
	cfg.WarningHandler = rest.NoWarnings{} // the mutations warn; printing them is not what is measured
	b := &bench{s: s}
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

	var servers []*benchkit.Server
	defer func() {
		for _, srv := range servers {
			_ = srv.Stop()
		}
	}()
	for _, spec := range []benchkit.ServerSpec{{Kind: benchkit.Ditto}, {Kind: benchkit.Peer}, {Kind: benchkit.Floor},
		{Kind: benchkit.Floor, Label: "replay"}, {Kind: benchkit.Floor, Label: "replay-patch"}} {
		if spec.Label != "" {
			// Floors that replay dittofs-webhook's own answer to the benchmark
			// body: all of it (patch, warnings, audit annotations), or only its patch.
			file, err := b.cannedAnswer(servers[0], spec.Label == "replay-patch")
			if err != nil {
				return "", err
			}
			spec.Args = []string{"--mutate-response", file}
		}
		spec.LogLevel = f.LogLevel
		srv, err := s.Start(spec)
		if err != nil {
			return "", err
		}
		servers = append(servers, srv)
	}
	configs := []*config{
		{name: "none"},
		{name: "dittofs-webhook", server: servers[0], mutates: true},
		{name: "controller-runtime", server: servers[1], mutates: true},
		{name: "floor", server: servers[2]},
		{name: "floor replaying dittofs-webhook's answer", server: servers[3], mutates: true},
		{name: "floor replaying only its patch", server: servers[4], mutates: true},
		{name: "in-tree policies (MAP+VAP)", policies: true, mutates: true},
		{name: "dittofs-webhook + in-tree policies", server: servers[0], policies: true, mutates: true},
	}
	p50 := func(d []time.Duration) time.Duration { return benchkit.Quantile(d, 0.5) }
	for round := 1; round <= f.Rounds; round++ {
		for _, c := range configs {
			if err := b.measure(ctx, c, per, warmup); err != nil {
				return "", fmt.Errorf("%s: %w", c.name, err)
			}
			benchkit.Logf("round %d %-42s labelled p50 %s, unlabelled p50 %s (%d each so far)", round, c.name,
				benchkit.Ms(p50(c.labelled)), benchkit.Ms(p50(c.unlabelled)), len(c.labelled))
		}
	}
	if err := b.apply(ctx, &config{name: "none"}); err != nil {
		return "", err
	}

	var r strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&r, format, args...) }
	version, _ := b.cs.Discovery().ServerVersion()
	p("\n## End to end: latency added to a StatefulSet create through kube-apiserver %s\n\n- %s\n", version, s.Describe())
	p("- etcd and kube-apiserver from tests/tools/build.sh, started by envtest; the three servers unpinned, logging at %s; "+
		"everything at nice %d when run as root\n", f.LogLevel, benchkit.Nice)
	p("- %d rounds; per round and configuration %d untimed warm-up creates, then %d labelled and %d unlabelled creates, "+
		"alternating, sequential, each deleted at once (untimed)\n", f.Rounds, warmup, per, per)
	p("- the webhook configurations are deploy/base/webhooks' (objectSelector on %s, failurePolicy Fail, timeoutSeconds 5, "+
		"reinvocationPolicy IfNeeded) with a url clientConfig; webhook calls, and reviews for unlabelled creates, are the "+
		"apiserver's apiserver_admission_webhook_admission_duration_seconds\n", labelServer)
	p("- run took %s\n", time.Since(started).Round(time.Second))
	// The stored objects must agree: the peer's and the policies' with dittofs-webhook's.
	for _, c := range configs[2:] {
		switch ref, got := configs[1].created, c.created; {
		case !c.mutates || got == nil || ref == nil:
		case equality.Semantic.DeepEqual(ref.Spec, got.Spec):
			p("- %s: the stored StatefulSet spec equals dittofs-webhook's\n", c.name)
		default:
			p("- %s: the stored StatefulSet spec DIFFERS from dittofs-webhook's (-dittofs-webhook +%[1]s):\n%s\n", c.name,
				cmp.Diff(ref.Spec, got.Spec))
		}
	}
	added := func(c *config, labelled bool) time.Duration {
		if labelled {
			return p50(c.labelled) - p50(configs[0].labelled)
		}
		return p50(c.unlabelled) - p50(configs[0].unlabelled)
	}
	var rows [][]string
	for _, c := range configs {
		wc, uc := "", ""
		if c.server != nil {
			n := float64(len(c.labelled))
			wc = fmt.Sprintf("%s / %s (%.1f / %.1f calls per create)", mean(c.calls[0], c.calls[1]),
				mean(c.calls[2], c.calls[3]), c.calls[0]/n, c.calls[2]/n)
			uc = fmt.Sprint(c.unlabelledCalls)
		}
		rows = append(rows, []string{c.name, benchkit.Ms(p50(c.labelled)), benchkit.Ms(benchkit.Quantile(c.labelled, 0.9)),
			benchkit.Ms(benchkit.Quantile(c.labelled, 0.99)), signed(added(c, true)), wc, benchkit.Ms(p50(c.unlabelled)),
			signed(added(c, false)), uc})
	}
	benchkit.Table(&r, 1, []string{"configuration", "labelled create p50", "p90", "p99", "added (p50)",
		"webhook calls, mean as the apiserver times them (mutate / validate)", "unlabelled create p50", "added (p50)",
		"reviews for unlabelled creates"}, rows)
	d, fl, rp := added(configs[1], true), added(configs[3], true), added(configs[4], true)
	benchkit.Table(&r, 3, []string{"target", "measured", "result"}, [][]string{
		{"dittofs-webhook adds within 0.5 ms of what the floor adds (p50)",
			fmt.Sprintf("%s vs %s (%s)", signed(d), signed(fl), signed(d-fl)), benchkit.PassFail(d-fl <= 500*time.Microsecond)},
		{"(analysis) dittofs-webhook adds within 0.5 ms of a floor that replays its answer (the server's own share; " +
			"the rest is the apiserver applying the mutation)",
			fmt.Sprintf("%s vs %s (%s)", signed(d), signed(rp), signed(d-rp)), benchkit.PassFail(d-rp <= 500*time.Microsecond)},
		{"unlabelled creates: dittofs-webhook is not called (objectSelector)", fmt.Sprintf("%v reviews; median create %s vs "+
			"no configuration", configs[1].unlabelledCalls, signed(added(configs[1], false))),
			benchkit.PassFail(configs[1].unlabelledCalls == 0)},
	})
	return r.String(), nil
}

// measure runs one round of c: configured, warm-up creates, the machine
// quiet, then the timed creates, labelled and unlabelled alternating, and
// with a server, 20 more unlabelled creates that must reach no webhook.
func (b *bench) measure(ctx context.Context, c *config, per, warmup int) error {
	if err := b.apply(ctx, c); err != nil {
		return err
	}
	for i := range warmup {
		if _, err := b.create(ctx, c, i%2 == 0); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	benchkit.WaitQuiet(ctx, 20*time.Second)
	m0, err := b.calls(ctx)
	for i := 0; i < per && err == nil; i++ {
		var dl, du time.Duration
		if dl, err = b.create(ctx, c, true); err == nil {
			du, err = b.create(ctx, c, false)
		}
		c.labelled, c.unlabelled = append(c.labelled, dl), append(c.unlabelled, du)
	}
	if err != nil {
		return err
	}
	m1, err := b.calls(ctx)
	for i := range c.calls {
		c.calls[i] += m1[i] - m0[i]
	}
	for i := 0; i < 20 && c.server != nil && err == nil; i++ {
		_, err = b.create(ctx, c, false)
	}
	if err != nil || c.server == nil {
		return err
	}
	m2, err := b.calls(ctx)
	c.unlabelledCalls += m2[0] + m2[2] - m1[0] - m1[2]
	return err
}

// create creates and deletes one StatefulSet, returning how long the create
// took, and checks that c mutated it, or not, as it should.
func (b *bench) create(ctx context.Context, c *config, labelled bool) (time.Duration, error) {
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
	if labelled && c.created == nil {
		c.created = got
	}
	return d, b.cs.AppsV1().StatefulSets(namespace).Delete(ctx, sts.Name, metav1.DeleteOptions{})
}

func hasCache(sts *appsv1.StatefulSet) bool {
	return slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(v corev1.PersistentVolumeClaim) bool { return v.Name == "cache" })
}

// apply removes every configuration this program made and installs c's:
// deploy/base's webhook configurations, their clientConfig a url of c's
// server, and deploy/in-tree's policies. Then it waits until the apiserver
// uses them.
func (b *bench) apply(ctx context.Context, c *config) error {
	for _, o := range b.installed {
		if err := client.IgnoreNotFound(b.cl.Delete(ctx, o)); err != nil {
			return err
		}
	}
	b.installed = nil
	var objs []*unstructured.Unstructured
	if c.server != nil {
		hooks, err := b.read(filepath.Join("deploy", "base", "webhooks"), "mutatingwebhookconfiguration.yaml",
			"validatingwebhookconfiguration.yaml")
		if err != nil {
			return err
		}
		for _, o := range hooks {
			for _, w := range o.Object["webhooks"].([]any) {
				w := w.(map[string]any)
				path, _, _ := unstructured.NestedString(w, "clientConfig", "service", "path")
				w["clientConfig"] = map[string]any{"url": c.server.URL(path), "caBundle": base64.StdEncoding.EncodeToString(b.s.CAPEM)}
			}
		}
		objs = hooks
	}
	if c.policies {
		p, err := b.read(inTreeDir, "mutatingadmissionpolicy.yaml", "validatingadmissionpolicy.yaml")
		if err != nil {
			return err
		}
		objs = append(objs, p...)
	}
	for _, o := range objs {
		if err := b.cl.Create(ctx, o, client.FieldValidation("Strict")); err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
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
	err = framework.Poll(30*time.Second, ctx.Err, func() (bool, string) {
		sts := b.object.DeepCopy()
		sts.Name = "bench-probe"
		got, err := b.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || hasCache(got) != c.mutates {
			return false, fmt.Sprintf("mutated %v, error %v", err == nil && hasCache(got), err)
		}
		now, err := b.calls(ctx)
		return c.server == nil || err == nil && now[0]+now[2] > before[0]+before[2], "no webhook call yet"
	})
	if err != nil {
		return fmt.Errorf("the apiserver did not take up %s: %w", c.name, err)
	}
	benchkit.WaitCtx(ctx, time.Second)
	return ctx.Err()
}

// read returns the objects of the YAML files in dir, a folder of the repository.
func (b *bench) read(dir string, files ...string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(b.s.Repo, dir, name))
		for d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096); err == nil; {
			u := &unstructured.Unstructured{}
			if err = d.Decode(&u.Object); err == nil && len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
		if !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return objs, nil
}

// calls are the apiserver's calls of the webhooks on CREATE, from
// apiserver_admission_webhook_admission_duration_seconds: admit count and
// seconds, validating count and seconds. This program installs the only
// webhook configurations.
type calls [4]float64

func (b *bench) calls(ctx context.Context) (calls, error) {
	var out calls
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	samples, err2 := tests.ReadMetrics(bytes.NewReader(raw))
	if err := errors.Join(err, err2); err != nil {
		return out, fmt.Errorf("the apiserver's metrics: %w", err)
	}
	for i, series := range []string{`_count{type="admit"`, `_sum{type="admit"`, `_count{type="validating"`,
		`_sum{type="validating"`} {
		out[i], err = tests.SumMetric(samples, "apiserver_admission_webhook_admission_duration_seconds"+series+
			`,operation="CREATE"}`)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func mean(count, seconds float64) string {
	if count == 0 {
		return "-"
	}
	return benchkit.Ms(time.Duration(seconds / count * 1e9))
}

// cannedAnswer writes dittofs-webhook's answer to the benchmark body, its uid
// written <UID>, for a replaying floor; with patchOnly, without its warnings
// and audit annotations.
func (b *bench) cannedAnswer(ditto *benchkit.Server, patchOnly bool) (string, error) {
	c := b.s.NewClient(1)
	defer c.CloseIdleConnections()
	rv, raw, err := benchkit.Post(c, ditto.URL(webhook.MutatePath), b.s.Bodies.Create)
	if err == nil && patchOnly {
		rv.Response.Warnings, rv.Response.AuditAnnotations = nil, nil
		raw, err = json.Marshal(rv)
	}
	if err != nil {
		return "", err
	}
	canned := strings.Replace(string(raw), `"uid":"`+string(rv.Response.UID)+`"`, `"uid":"<UID>"`, 1)
	if !strings.Contains(canned, "<UID>") {
		return "", errors.New("no uid in dittofs-webhook's answer")
	}
	file := filepath.Join(b.s.Work, fmt.Sprintf("canned-%v.json", patchOnly))
	return file, os.WriteFile(file, []byte(canned), 0o644)
}

func signed(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }
