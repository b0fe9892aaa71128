// Command e2ebench measures, through a real kube-apiserver (started with
// controller-runtime's envtest from the binaries tests/tools/build.sh builds),
// the latency the admission webhooks add to creating a labelled StatefulSet:
// sequential creates through client-go (each deleted at once, untimed) with
// no admission configuration, with dittofs-webhook's Mutating and Validating
// WebhookConfigurations, with the same pointing at the controller-runtime peer,
// at the floor, with deploy/in-tree's MutatingAdmissionPolicy and
// ValidatingAdmissionPolicy, and with both dittofs-webhook and the policies
// (the policies as a safety net). Every configuration also gets
// unlabelled creates, which the objectSelector should keep from the webhooks.
//
// Configurations are interleaved over rounds; the report gives the median
// create latency of each and what it adds over no configuration.
//
// Run it from tests/bench: go run ./cmd/e2ebench (or make bench-e2e).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/webhook"
)

// inTreeDir holds the in-tree policies deploy/in-tree installs (its
// kustomization takes this directory as it is), from
// tests/bench (where make bench-e2e runs this program).
const inTreeDir = "../../deploy/helm/dittofs-webhook/files/in-tree"

// inTreeFiles are its policies, read at run time, so what is measured is what
// ships.
var inTreeFiles = []string{"mutatingadmissionpolicy.yaml", "validatingadmissionpolicy.yaml"}

const (
	namespace    = "dittofs-bench"
	configPrefix = "dittofs-bench"
	labelServer  = "dittofs.com/server"
)

type options struct {
	creates  int
	rounds   int
	warmup   int
	nice     int
	markdown string
	keep     bool
	maxDur   time.Duration
	logLevel string
}

func main() {
	var o options
	flag.IntVar(&o.creates, "creates", 300, "labelled creates per configuration (as many unlabelled), split over the rounds")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds: the configurations are interleaved within each")
	flag.IntVar(&o.warmup, "warmup", 20, "untimed creates after each configuration change")
	flag.IntVar(&o.nice, "nice", -19, "nice value of everything this starts (root only; 0 leaves it)")
	flag.StringVar(&o.markdown, "markdown", "", "also write the report to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the working folder (logs, certificates)")
	flag.DurationVar(&o.maxDur, "max-duration", 20*time.Minute, "give up after this long")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level of dittofs-webhook and the peer")
	flag.Parse()
	if os.Geteuid() != 0 {
		o.nice = 0
	}
	if o.nice != 0 && os.Getenv("E2EBENCH_NICED") == "" {
		reexecNiced(o.nice)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.maxDur)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "e2ebench: %v\n", err)
		os.Exit(1)
	}
}

// reexecNiced runs the program again under nice: etcd, kube-apiserver and the
// servers it starts inherit the priority, so other work on the machine
// disturbs the measurement less.
func reexecNiced(n int) {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	cmd := exec.Command("nice", append([]string{"-n", strconv.Itoa(n), exe}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "E2EBENCH_NICED=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2ebench: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// config is one admission set-up under test.
type config struct {
	name   string
	server *benchkit.Server // the webhook server, nil for none and the policies
	// policies: deploy/in-tree's MutatingAdmissionPolicy and
	// ValidatingAdmissionPolicy are installed (with or without a server).
	policies bool
	// mutates: a labelled create comes back with a cache volumeClaimTemplate.
	mutates bool
}

type env struct {
	o       options
	cs      *kubernetes.Clientset
	caPEM   []byte
	floor   *benchkit.Server
	ditto   *benchkit.Server
	object  *appsv1.StatefulSet // the labelled StatefulSet of the benchmark body
	seq     int
	created map[string]*appsv1.StatefulSet // a labelled create's result, per configuration
}

func run(ctx context.Context, o options) error {
	started := time.Now()
	repo, err := benchkit.FindRepo()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "e2ebench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("working folder %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}

	logf("building the control plane (tests/tools/build.sh) and the three servers")
	cmd := exec.Command("bash", filepath.Join(repo, "tests", "tools", "build.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tests/tools/build.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assets := lines[len(lines)-1]
	bins, err := benchkit.Build(repo, filepath.Join(work, "bin"))
	if err != nil {
		return err
	}
	certDir := filepath.Join(work, "certs")
	_, caPEM, err := benchkit.Certs(certDir)
	if err != nil {
		return err
	}
	bodies, _, err := benchkit.LoadBodies(repo)
	if err != nil {
		return err
	}

	logf("starting etcd and kube-apiserver from %s", assets)
	apiLog, err := os.Create(filepath.Join(work, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	defer apiLog.Close()
	etcdLog, err := os.Create(filepath.Join(work, "etcd.log"))
	if err != nil {
		return err
	}
	defer etcdLog.Close()
	useExisting := false
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		UseExistingCluster:       &useExisting,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	te.ControlPlane.APIServer = &envtest.APIServer{Out: apiLog, Err: apiLog}
	te.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}
	restCfg, err := te.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane (logs in %s): %w", work, err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = 1e6, 1e6      // no client-side throttling
	restCfg.WarningHandler = rest.NoWarnings{} // the mutations warn; printing them is not what is measured
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	version, _ := cs.Discovery().ServerVersion()

	servers := map[string]*benchkit.Server{}
	defer func() {
		for _, s := range servers {
			_ = s.Stop()
		}
	}()
	for _, k := range []benchkit.Kind{benchkit.Ditto, benchkit.Peer, benchkit.Floor} {
		s, err := benchkit.Start(benchkit.ServerSpec{Kind: k, Bins: bins, CertDir: certDir, LogLevel: o.logLevel, LogDir: work})
		if err != nil {
			return err
		}
		servers[string(k)] = s
	}

	// A second floor that replays dittofs-webhook's own answer to the
	// benchmark body (patch, warnings, audit annotations).
	// A third replays only its patch (no warnings, no audit annotations).
	for _, r := range []struct {
		name      string
		patchOnly bool
	}{{"replay", false}, {"replay-patch", true}} {
		file, err := cannedAnswer(servers[string(benchkit.Ditto)], caPEM, bodies.Create, filepath.Join(work, r.name+".json"), r.patchOnly)
		if err != nil {
			return err
		}
		servers[r.name], err = benchkit.Start(benchkit.ServerSpec{Kind: benchkit.Floor, Label: "floor-" + r.name, Bins: bins, CertDir: certDir, LogDir: work,
			Args: []string{"--mutate-response", file}})
		if err != nil {
			return err
		}
	}

	e := &env{o: o, cs: cs, caPEM: caPEM, floor: servers[string(benchkit.Floor)], ditto: servers[string(benchkit.Ditto)], created: map[string]*appsv1.StatefulSet{}}
	if e.object, err = benchObject(bodies.Object); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	configs := []config{
		{name: "none"},
		{name: "dittofs-webhook", server: servers[string(benchkit.Ditto)], mutates: true},
		{name: "controller-runtime", server: servers[string(benchkit.Peer)], mutates: true},
		{name: "floor", server: servers[string(benchkit.Floor)]},
		{name: "floor replaying dittofs-webhook's answer", server: servers["replay"], mutates: true},
		{name: "floor replaying only its patch", server: servers["replay-patch"], mutates: true},
	}
	policyNote := ""
	if err := e.checkPolicies(ctx); err != nil {
		policyNote = "in-tree MutatingAdmissionPolicy not measured: " + err.Error()
		logf("%s", policyNote)
	} else {
		configs = append(configs,
			config{name: "in-tree policies (MAP+VAP)", policies: true, mutates: true},
			config{name: "dittofs-webhook + in-tree policies", server: servers[string(benchkit.Ditto)], policies: true, mutates: true})
	}

	type key struct{ config, kind string }
	lat := map[key][]time.Duration{}
	calls := map[key]sumCount{}         // apiserver-measured webhook calls, by configuration and type
	unlabelledCalls := map[string]int{} // reviews a server got for unlabelled creates
	per := max(1, o.creates/o.rounds)
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := e.apply(ctx, c); err != nil {
				return fmt.Errorf("configuring %s: %w", c.name, err)
			}
			for i := 0; i < o.warmup; i++ {
				if _, err := e.create(ctx, c, i%2 == 0); err != nil {
					return fmt.Errorf("%s warm-up: %w", c.name, err)
				}
			}
			benchkit.WaitQuiet(ctx, 20*time.Second, logf)
			m0, err := e.webhookMetrics(ctx)
			if err != nil {
				return err
			}
			for i := 0; i < per; i++ {
				for _, labelled := range []bool{true, false} {
					d, err := e.create(ctx, c, labelled)
					if err != nil {
						return fmt.Errorf("%s: %w", c.name, err)
					}
					k := key{c.name, "unlabelled"}
					if labelled {
						k.kind = "labelled"
					}
					lat[k] = append(lat[k], d)
				}
			}
			m1, err := e.webhookMetrics(ctx)
			if err != nil {
				return err
			}
			for typ := range m1 {
				calls[key{c.name, typ}] = calls[key{c.name, typ}].add(m1[typ].sub(m0[typ]))
			}
			if c.server != nil {
				n, err := e.unlabelledCalls(ctx, c)
				if err != nil {
					return err
				}
				if n < 0 || unlabelledCalls[c.name] < 0 {
					unlabelledCalls[c.name] = -1
				} else {
					unlabelledCalls[c.name] += n
				}
			}
			logf("round %d %-42s labelled p50 %s, unlabelled p50 %s (%d each so far)", round, c.name,
				msd(quantile(lat[key{c.name, "labelled"}], 0.5)), msd(quantile(lat[key{c.name, "unlabelled"}], 0.5)), len(lat[key{c.name, "labelled"}]))
		}
	}
	if err := e.apply(ctx, config{name: "none"}); err != nil {
		return err
	}

	// The created objects must agree: the peer's and the policies' against dittofs-webhook's.
	var agree []string
	ref := e.created["dittofs-webhook"]
	for _, name := range []string{"controller-runtime", "in-tree policies (MAP+VAP)", "dittofs-webhook + in-tree policies"} {
		got, ok := e.created[name]
		if !ok || ref == nil {
			continue
		}
		if equality.Semantic.DeepEqual(ref.Spec, got.Spec) {
			agree = append(agree, fmt.Sprintf("%s: the stored StatefulSet spec equals dittofs-webhook's", name))
		} else {
			a, _ := json.Marshal(ref.Spec)
			b, _ := json.Marshal(got.Spec)
			agree = append(agree, fmt.Sprintf("%s: the stored StatefulSet spec DIFFERS from dittofs-webhook's:\n  %s\n  %s", name, a, b))
		}
	}

	// Report.
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	gv := ""
	if version != nil {
		gv = version.GitVersion
	}
	p("\n## End to end: latency added to a StatefulSet create through kube-apiserver %s\n\n", gv)
	p("- date: %s; machine: %s; dittofs-webhook revision %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), benchkit.Machine(), benchkit.Revision(repo))
	p("- etcd and kube-apiserver from tests/tools/build.sh, started by envtest; the three servers unpinned, logging at %s; everything at nice %d\n", o.logLevel, o.nice)
	p("- %d rounds; per round and configuration %d untimed warm-up creates, then %d labelled and %d unlabelled creates, alternating, sequential, each deleted at once (untimed)\n",
		o.rounds, o.warmup, per, per)
	p("- the webhook configurations are deploy/'s settings (objectSelector on %s, failurePolicy Fail, timeoutSeconds 5, reinvocationPolicy IfNeeded), with a url clientConfig\n", labelServer)
	p("- run took %s\n", time.Since(started).Round(time.Second))
	for _, a := range agree {
		p("- %s\n", a)
	}
	if policyNote != "" {
		p("- %s\n", policyNote)
	}
	base := quantile(lat[key{"none", "labelled"}], 0.5)
	ubase := quantile(lat[key{"none", "unlabelled"}], 0.5)
	p("\n| configuration | labelled create p50 | p90 | p99 | added (p50) | webhook calls, mean as the apiserver times them (mutate / validate) | unlabelled create p50 | added (p50) | reviews for unlabelled creates |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range configs {
		l, u := lat[key{c.name, "labelled"}], lat[key{c.name, "unlabelled"}]
		wc, uc := "", ""
		if c.server != nil {
			n := float64(len(l))
			wc = fmt.Sprintf("%s / %s (%.1f / %.1f calls per create)", calls[key{c.name, "admit"}].mean(), calls[key{c.name, "validating"}].mean(),
				calls[key{c.name, "admit"}].count/n, calls[key{c.name, "validating"}].count/n)
			uc = strconv.Itoa(unlabelledCalls[c.name])
			if unlabelledCalls[c.name] < 0 {
				uc = "(no counter)"
			}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.name, msd(quantile(l, 0.5)), msd(quantile(l, 0.9)), msd(quantile(l, 0.99)),
			signed(quantile(l, 0.5)-base), wc, msd(quantile(u, 0.5)), signed(quantile(u, 0.5)-ubase), uc)
	}
	dAdd := quantile(lat[key{"dittofs-webhook", "labelled"}], 0.5) - base
	fAdd := quantile(lat[key{"floor", "labelled"}], 0.5) - base
	uAdd := quantile(lat[key{"dittofs-webhook", "unlabelled"}], 0.5) - ubase
	res := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	p("\n| target | measured | result |\n|---|---|---|\n")
	p("| dittofs-webhook adds within 0.5 ms of what the floor adds (p50) | %s vs %s (%s) | %s |\n", signed(dAdd), signed(fAdd), signed(dAdd-fAdd), res(dAdd-fAdd <= 500*time.Microsecond))
	rAdd := quantile(lat[key{"floor replaying dittofs-webhook's answer", "labelled"}], 0.5) - base
	p("| (analysis) dittofs-webhook adds within 0.5 ms of a floor that replays its answer (the server's own share; the rest is the apiserver applying the mutation) | %s vs %s (%s) | %s |\n",
		signed(dAdd), signed(rAdd), signed(dAdd-rAdd), res(dAdd-rAdd <= 500*time.Microsecond))
	p("| unlabelled creates: dittofs-webhook is not called (objectSelector) | %d reviews; median create %s vs no configuration | %s |\n",
		unlabelledCalls["dittofs-webhook"], signed(uAdd), res(unlabelledCalls["dittofs-webhook"] == 0))
	fmt.Print(b.String())
	if o.markdown != "" {
		return os.WriteFile(o.markdown, []byte(b.String()), 0o644)
	}
	return nil
}

// benchObject is the benchmark body's StatefulSet, ready to create: what the
// apiserver sets itself (uid, generation, managedFields) removed.
func benchObject(raw []byte) (*appsv1.StatefulSet, error) {
	var sts appsv1.StatefulSet
	if err := json.Unmarshal(raw, &sts); err != nil {
		return nil, err
	}
	sts.UID, sts.Generation, sts.ManagedFields, sts.ResourceVersion = "", 0, nil, ""
	sts.Namespace = namespace
	sts.Status = appsv1.StatefulSetStatus{}
	return &sts, nil
}

// create creates and deletes one StatefulSet, returning how long the create took.
func (e *env) create(ctx context.Context, c config, labelled bool) (time.Duration, error) {
	e.seq++
	sts := e.object.DeepCopy()
	sts.Name = fmt.Sprintf("bench-%d", e.seq)
	if !labelled {
		delete(sts.Labels, labelServer)
	}
	t0 := time.Now()
	got, err := e.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{})
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if labelled {
		if hasCache(got) != c.mutates {
			return 0, fmt.Errorf("labelled create under %s: cache volumeClaimTemplate present=%v, want %v", c.name, hasCache(got), c.mutates)
		}
		if _, ok := e.created[c.name]; !ok {
			e.created[c.name] = got
		}
	} else if hasCache(got) {
		return 0, fmt.Errorf("unlabelled create under %s was mutated", c.name)
	}
	if err := e.cs.AppsV1().StatefulSets(namespace).Delete(ctx, sts.Name, metav1.DeleteOptions{}); err != nil {
		return 0, err
	}
	return d, nil
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
func (e *env) apply(ctx context.Context, c config) error {
	ar := e.cs.AdmissionregistrationV1()
	del := metav1.DeleteOptions{}
	for _, n := range []string{configPrefix + "-mutate"} {
		if err := ar.MutatingWebhookConfigurations().Delete(ctx, n, del); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if err := ar.ValidatingWebhookConfigurations().Delete(ctx, configPrefix+"-validate", del); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	for _, n := range []string{"dittofs-cache"} {
		if err := ar.MutatingAdmissionPolicyBindings().Delete(ctx, n, del); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := ar.MutatingAdmissionPolicies().Delete(ctx, n, del); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	for _, n := range []string{"dittofs-storage"} {
		if err := ar.ValidatingAdmissionPolicyBindings().Delete(ctx, n, del); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := ar.ValidatingAdmissionPolicies().Delete(ctx, n, del); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if c.server != nil {
		mw, vw := webhookConfigs(c.server, e.caPEM)
		if _, err := ar.MutatingWebhookConfigurations().Create(ctx, mw, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := ar.ValidatingWebhookConfigurations().Create(ctx, vw, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if c.policies {
		if err := e.createPolicies(ctx); err != nil {
			return err
		}
	}
	return e.waitActive(ctx, c)
}

// waitActive polls with dry-run creates (which go through admission) until the
// apiserver answers as c should: mutated or not, and for the floor, until the
// floor counts a review. Then it waits a second more, for the validating side.
func (e *env) waitActive(ctx context.Context, c config) error {
	deadline := time.Now().Add(30 * time.Second)
	before := e.floorCount()
	for {
		sts := e.object.DeepCopy()
		sts.Name = "bench-probe"
		got, err := e.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		ok := err == nil && hasCache(got) == c.mutates
		if ok && c.server == e.floor && c.server != nil {
			ok = e.floorCount() > before
		}
		if ok {
			benchkit.WaitCtx(ctx, time.Second)
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the apiserver did not take up %s within 30 s (last error: %v)", c.name, err)
		}
		benchkit.WaitCtx(ctx, 100*time.Millisecond)
	}
}

// sumCount is a histogram's _sum and _count.
type sumCount struct {
	sum   float64
	count float64
}

func (a sumCount) add(b sumCount) sumCount { return sumCount{a.sum + b.sum, a.count + b.count} }
func (a sumCount) sub(b sumCount) sumCount { return sumCount{a.sum - b.sum, a.count - b.count} }
func (a sumCount) mean() string {
	if a.count == 0 {
		return "-"
	}
	return msd(time.Duration(a.sum / a.count * 1e9))
}

// webhookMetrics reads the apiserver's apiserver_admission_webhook_admission_duration_seconds
// for this program's webhooks, summed by type (admit, validating).
func (e *env) webhookMetrics(ctx context.Context) (map[string]sumCount, error) {
	raw, err := e.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	samples, err := tests.ParseMetrics(raw)
	if err != nil {
		return nil, fmt.Errorf("the apiserver's metrics: %w", err)
	}
	out := map[string]sumCount{}
	const metric = "apiserver_admission_webhook_admission_duration_seconds"
	for _, s := range samples {
		if !strings.HasSuffix(s.Labels["name"], ".statefulsets.dittofs.com") || s.Labels["operation"] != "CREATE" {
			continue
		}
		typ := "admit"
		if s.Labels["type"] == "validating" {
			typ = "validating"
		}
		sc := out[typ]
		switch s.Name {
		case metric + "_sum":
			sc.sum += s.Value
		case metric + "_count":
			sc.count += s.Value
		}
		out[typ] = sc
	}
	return out, nil
}

// unlabelledCalls makes 20 unlabelled creates under c and returns how many
// reviews c's server got meanwhile (dittofs-webhook's request counter, the
// floor's /count).
func (e *env) unlabelledCalls(ctx context.Context, c config) (int, error) {
	count := func() (float64, error) {
		if c.server.Spec.Kind == benchkit.Ditto {
			return e.dittoRequests()
		}
		if c.server.Spec.Kind == benchkit.Floor {
			return float64(countOf(c.server)), nil
		}
		return -1, nil // the peer exposes no counter here
	}
	before, err := count()
	if err != nil || before < 0 {
		return -1, err
	}
	for i := 0; i < 20; i++ {
		if _, err := e.create(ctx, c, false); err != nil {
			return 0, err
		}
	}
	after, err := count()
	return int(after - before), err
}

// dittoRequests sums dittofs_webhook_admission_requests_total.
func (e *env) dittoRequests() (float64, error) {
	resp, err := http.Get("http://" + e.ditto.MetricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	samples, err := tests.ReadMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	return tests.SumMetric(samples, "dittofs_webhook_admission_requests_total")
}

// cannedAnswer writes dittofs-webhook's answer to body, its uid replaced by
// <UID>, for the replaying floor; with patchOnly, without its warnings and
// audit annotations.
func cannedAnswer(ditto *benchkit.Server, caPEM, body []byte, file string, patchOnly bool) (string, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := benchkit.NewClient(pool, 1)
	defer c.CloseIdleConnections()
	r, raw, err := benchkit.Post(c, ditto.URL(webhook.MutatePath), body)
	if err != nil {
		return "", err
	}
	if patchOnly {
		var rv map[string]any
		if err := json.Unmarshal(raw, &rv); err != nil {
			return "", err
		}
		resp, _ := rv["response"].(map[string]any)
		delete(resp, "warnings")
		delete(resp, "auditAnnotations")
		if raw, err = json.Marshal(rv); err != nil {
			return "", err
		}
	}
	canned := strings.Replace(string(raw), `"uid":"`+r.Response.UID+`"`, `"uid":"<UID>"`, 1)
	if !strings.Contains(canned, "<UID>") {
		return "", errors.New("no uid in dittofs-webhook's answer")
	}
	return file, os.WriteFile(file, []byte(canned), 0o644)
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // loopback, our own floor

func (e *env) floorCount() int64 { return countOf(e.floor) }

func countOf(floor *benchkit.Server) int64 {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(floor.URL("/count"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// webhookConfigs are deploy/'s webhook configurations pointed at s by url.
func webhookConfigs(s *benchkit.Server, caPEM []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(5)
	sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: labelServer, Operator: metav1.LabelSelectorOpExists}}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"statefulsets"}},
	}}
	url := func(path string) *string { u := s.URL(path); return &u }
	mw := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configPrefix + "-mutate"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "mutate.statefulsets.dittofs.com",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: url(webhook.MutatePath), CABundle: caPEM},
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			ObjectSelector:          sel,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
		}},
	}
	vw := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configPrefix + "-validate"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validate.statefulsets.dittofs.com",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: url(webhook.ValidatePath), CABundle: caPEM},
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			ObjectSelector:          sel,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	return mw, vw
}

// checkPolicies creates the in-tree policies once (and removes them): an
// error says why they cannot be measured (API not served, CEL rejected).
func (e *env) checkPolicies(ctx context.Context) error {
	if _, err := e.cs.Discovery().ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1"); err != nil {
		return err
	}
	if err := e.createPolicies(ctx); err != nil {
		return err
	}
	return e.apply(ctx, config{name: "none"})
}

func (e *env) createPolicies(ctx context.Context) error {
	ar := e.cs.AdmissionregistrationV1()
	var docs [][]byte
	for _, f := range inTreeFiles {
		b, err := os.ReadFile(filepath.Join(inTreeDir, f))
		if err != nil {
			return err
		}
		docs = append(docs, splitYAML(b)...)
	}
	for _, doc := range docs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return err
		}
		var err error
		switch meta.Kind {
		case "MutatingAdmissionPolicy":
			var p admissionregistrationv1.MutatingAdmissionPolicy
			if err = yaml.UnmarshalStrict(doc, &p); err == nil {
				_, err = ar.MutatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{})
			}
		case "MutatingAdmissionPolicyBinding":
			var p admissionregistrationv1.MutatingAdmissionPolicyBinding
			if err = yaml.UnmarshalStrict(doc, &p); err == nil {
				_, err = ar.MutatingAdmissionPolicyBindings().Create(ctx, &p, metav1.CreateOptions{})
			}
		case "ValidatingAdmissionPolicy":
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			if err = yaml.UnmarshalStrict(doc, &p); err == nil {
				_, err = ar.ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{})
			}
		case "ValidatingAdmissionPolicyBinding":
			var p admissionregistrationv1.ValidatingAdmissionPolicyBinding
			if err = yaml.UnmarshalStrict(doc, &p); err == nil {
				_, err = ar.ValidatingAdmissionPolicyBindings().Create(ctx, &p, metav1.CreateOptions{})
			}
		default:
			err = fmt.Errorf("unexpected kind %q in %s", meta.Kind, inTreeDir)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", meta.Kind, err)
		}
	}
	return nil
}

func splitYAML(b []byte) [][]byte {
	var out [][]byte
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		if strings.TrimSpace(doc) != "" {
			out = append(out, []byte(doc))
		}
	}
	return out
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func msd(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func signed(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }
