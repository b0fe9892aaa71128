// Command e2ebench measures the latency the admission webhooks add to creating a StatefulSet through a real
// kube-apiserver (started as the e2e starts it), under each configuration in turn (docs/performance.md): none;
// deploy/base's webhook configurations pointed at dittofs-webhook, at the controller-runtime peer and at the
// floor; deploy/in-tree's policies; and dittofs-webhook with the policies.
//
// Run it from tests/e2e: go run ./bench/cmd/e2ebench (or make bench-e2e).
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
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
	gocmp "github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

const namespace = "dittofs-bench"

func main() {
	creates := flag.Int("creates", 300, "labelled creates per configuration (as many unlabelled), split over the rounds")
	warmup := flag.Int("warmup", 20, "untimed creates after each configuration change")
	flag.Parse()
	benchkit.Main("e2ebench", "", 20*time.Minute, func(ctx context.Context, s *benchkit.Setup) (string, error) {
		return run(ctx, s, *benchkit.Rounds, max(1, *creates / *benchkit.Rounds), *warmup)
	})
}

// config is one admission set-up under test, and what it measured.
type config struct {
	name                 string
	server               *benchkit.Server // the webhook configurations point at it; nil: none
	policies             bool             // deploy/in-tree's policies are installed
	mutates              bool             // a labelled create comes back with a cache volumeClaimTemplate
	labelled, unlabelled []time.Duration
	unlabelledCalls      float64             // webhook calls during 20 more unlabelled creates per round
	created              *appsv1.StatefulSet // the first labelled create's result
}

type bench struct {
	s         *benchkit.Setup
	cs        *kubernetes.Clientset
	cl        client.Client
	seq       int
	installed []client.Object
}

func run(ctx context.Context, s *benchkit.Setup, rounds, per, warmup int) (_ string, err error) {
	started := time.Now()
	bin, err := framework.BuildTool(s.Repo, "build.sh")
	if err != nil {
		return "", err
	}
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime's logger
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{RepoRoot: s.Repo, Dir: s.Work, Bin: bin})
	defer func() { err = errors.Join(err, cp.Stop()) }()
	if err != nil {
		return "", err
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 1e6, 1e6          // no client-side throttling
	cfg.WarningHandler = rest.NoWarnings{} // the mutations warn; printing them is not what is measured
	b := &bench{s: s}
	if b.cs, err = kubernetes.NewForConfig(cfg); err == nil {
		b.cl, err = client.New(cfg, client.Options{})
	}
	if err == nil {
		err = b.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
	}
	if err != nil {
		return "", err
	}
	var servers []*benchkit.Server
	defer func() { err = errors.Join(err, benchkit.StopAll(servers...)) }()
	for _, kind := range []benchkit.Kind{benchkit.Ditto, benchkit.Peer, benchkit.Floor} {
		srv, err := s.Start(kind, "")
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
		{name: "in-tree policies (MAP+VAP)", policies: true, mutates: true},
		{name: "dittofs-webhook + in-tree policies", server: servers[0], policies: true, mutates: true},
	}
	p50 := func(d []time.Duration) time.Duration { return benchkit.Quantile(d, 0.5) }
	for round := 1; round <= rounds; round++ {
		for _, c := range configs {
			if err := b.measure(ctx, c, per, warmup); err != nil {
				return "", fmt.Errorf("%s: %w", c.name, err)
			}
			benchkit.Logf("round %d %-36s labelled p50 %s, unlabelled p50 %s (%d each so far)", round, c.name,
				benchkit.Ms(p50(c.labelled)), benchkit.Ms(p50(c.unlabelled)), len(c.labelled))
		}
	}

	var r strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&r, format, args...) }
	version, _ := b.cs.Discovery().ServerVersion()
	p("\n## End to end: latency added to a StatefulSet create through kube-apiserver %s\n\n- %s\n", version, s.Describe())
	p("- etcd and kube-apiserver from tests/tools/build.sh, started by envtest; the three servers unpinned, logging "+
		"at info; everything at nice %d when run as root; run took %s\n", benchkit.Nice, time.Since(started).Round(time.Second))
	p("- %d rounds; per round and configuration %d untimed warm-up creates, then %d labelled and %d unlabelled "+
		"creates, alternating, sequential, each deleted at once (untimed), then 20 unlabelled creates whose webhook "+
		"calls the apiserver counts (apiserver_admission_webhook_admission_duration_seconds_count)\n",
		rounds, warmup, per, per)
	// The stored objects must agree: the peer's and the policies' with dittofs-webhook's.
	for _, c := range configs[2:] {
		if !c.mutates {
			continue
		}
		if diff := gocmp.Diff(configs[1].created.Spec, c.created.Spec); diff == "" {
			p("- %s: the stored StatefulSet spec equals dittofs-webhook's\n", c.name)
		} else {
			p("- %s: the stored StatefulSet spec DIFFERS from dittofs-webhook's (-dittofs-webhook +%[1]s):\n%s\n", c.name, diff)
		}
	}
	added := func(d, none []time.Duration) string { return signed(p50(d) - p50(none)) }
	var rows [][]string
	for _, c := range configs {
		calls := map[bool]string{true: fmt.Sprint(c.unlabelledCalls)}[c.server != nil] // none counted without a server
		rows = append(rows, []string{c.name, benchkit.Ms(p50(c.labelled)), benchkit.Ms(benchkit.Quantile(c.labelled, 0.9)),
			benchkit.Ms(benchkit.Quantile(c.labelled, 0.99)), added(c.labelled, configs[0].labelled),
			benchkit.Ms(p50(c.unlabelled)), added(c.unlabelled, configs[0].unlabelled), calls})
	}
	benchkit.Table(&r, 1, []string{"configuration", "labelled create p50", "p90", "p99", "added (p50)",
		"unlabelled create p50", "added (p50)", "reviews for unlabelled creates"}, rows)
	var t benchkit.Targets
	d, fl := p50(configs[1].labelled)-p50(configs[0].labelled), p50(configs[3].labelled)-p50(configs[0].labelled)
	t.Add("dittofs-webhook adds within 0.5 ms of what the floor adds (p50)", signed(d)+" vs "+signed(fl),
		d-fl <= 500*time.Microsecond, signed(d-fl))
	t.Add("unlabelled creates: dittofs-webhook is not called (objectSelector)",
		fmt.Sprintf("%v reviews", configs[1].unlabelledCalls), configs[1].unlabelledCalls == 0,
		"median create "+added(configs[1].unlabelled, configs[0].unlabelled)+" vs no configuration")
	t.Write(&r)
	return r.String(), nil
}

// measure runs one round of c: configured, warm-up creates, then the timed creates, labelled and unlabelled
// alternating, and with a server, 20 more unlabelled creates that must reach no webhook.
func (b *bench) measure(ctx context.Context, c *config, per, warmup int) error {
	if err := b.apply(ctx, c); err != nil {
		return err
	}
	var err error
	for i := 0; i < warmup && err == nil; i++ {
		_, err = b.create(ctx, c, i%2 == 0)
	}
	for i := 0; i < per && err == nil; i++ {
		var dl, du time.Duration
		if dl, err = b.create(ctx, c, true); err == nil {
			du, err = b.create(ctx, c, false)
		}
		c.labelled, c.unlabelled = append(c.labelled, dl), append(c.unlabelled, du)
	}
	if err != nil || c.server == nil {
		return err
	}
	before, err := b.calls(ctx)
	for i := 0; i < 20 && err == nil; i++ {
		_, err = b.create(ctx, c, false)
	}
	after, err2 := b.calls(ctx)
	c.unlabelledCalls += after - before
	return cmp.Or(err, err2)
}

// create creates and deletes one StatefulSet, returning how long the create took, and checks that c mutated
// it, or not, as it should.
func (b *bench) create(ctx context.Context, c *config, labelled bool) (time.Duration, error) {
	b.seq++
	sts := b.object(fmt.Sprintf("bench-%d", b.seq), labelled)
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

// object is the benchmark body's StatefulSet named name, without what the apiserver sets itself.
func (b *bench) object(name string, labelled bool) *appsv1.StatefulSet {
	sts := b.s.Bodies.Object.DeepCopy()
	sts.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: sts.Labels, Annotations: sts.Annotations}
	sts.Status = appsv1.StatefulSetStatus{}
	if !labelled {
		delete(sts.Labels, policies.LabelServer)
	}
	return sts
}

func hasCache(sts *appsv1.StatefulSet) bool {
	return slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(v corev1.PersistentVolumeClaim) bool {
		return v.Name == policies.CacheVolume
	})
}

// apply removes every configuration this program made and installs c's: deploy/base's webhook configurations,
// their clientConfig a url of c's server, and deploy/in-tree's policies (as the Helm chart ships them: what is
// measured is what ships). Then it waits until the apiserver uses them.
func (b *bench) apply(ctx context.Context, c *config) error {
	for _, o := range b.installed {
		if err := client.IgnoreNotFound(b.cl.Delete(ctx, o)); err != nil {
			return err
		}
	}
	b.installed = nil
	var files []string
	if c.server != nil {
		files = append(files, "deploy/base/webhooks/mutatingwebhookconfiguration.yaml",
			"deploy/base/webhooks/validatingwebhookconfiguration.yaml")
	}
	if c.policies {
		const dir = "deploy/helm/dittofs-webhook/files/in-tree/"
		files = append(files, dir+"mutatingadmissionpolicy.yaml", dir+"validatingadmissionpolicy.yaml")
	}
	objs, err := b.read(files...)
	if err != nil {
		return err
	}
	url := func(cc *admissionregistrationv1.WebhookClientConfig) {
		*cc = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(c.server.URL(*cc.Service.Path)), CABundle: b.s.CAPEM}
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for i := range o.Webhooks {
				url(&o.Webhooks[i].ClientConfig)
			}
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for i := range o.Webhooks {
				url(&o.Webhooks[i].ClientConfig)
			}
		}
		if err := b.cl.Create(ctx, o); err != nil {
			return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
		}
		b.installed = append(b.installed, o)
	}
	// Poll with dry-run creates (which go through admission) until the apiserver answers as c should, mutated or
	// not; then wait a second more, for the validating side and a configuration that does not mutate.
	err = framework.Poll(30*time.Second, ctx.Err, func() (bool, string) {
		got, err := b.cs.AppsV1().StatefulSets(namespace).Create(ctx, b.object("bench-probe", true),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && hasCache(got) == c.mutates, fmt.Sprintf("mutated %v, error %v", err == nil && hasCache(got), err)
	})
	if err != nil {
		return fmt.Errorf("the apiserver did not take up %s: %w", c.name, err)
	}
	time.Sleep(time.Second)
	return ctx.Err()
}

// strict decodes the repository's manifests into typed objects, failing on a field the types do not have.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// read returns the objects of the repository's YAML files.
func (b *bench) read(files ...string) ([]client.Object, error) {
	var objs []client.Object
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(b.s.Repo, name))
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for doc := []byte(nil); err == nil; {
			if doc, err = r.Read(); err == nil {
				var o runtime.Object
				if o, _, err = strict.Decode(doc, nil, nil); err == nil {
					objs = append(objs, o.(client.Object))
				}
			}
		}
		if !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return objs, nil
}

// calls counts the apiserver's calls of webhooks on CREATE (this program installs the only webhook
// configurations).
func (b *bench) calls(ctx context.Context) (float64, error) {
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	samples, err2 := tests.ReadMetrics(bytes.NewReader(raw))
	if err := errors.Join(err, err2); err != nil {
		return 0, fmt.Errorf("the apiserver's metrics: %w", err)
	}
	return tests.SumMetric(samples, `apiserver_admission_webhook_admission_duration_seconds_count{operation="CREATE"}`)
}

func signed(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }
