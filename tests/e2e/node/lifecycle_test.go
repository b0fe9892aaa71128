package node

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// rolloutAdmissions is how many admissions a rollout must carry at least
// (issue 17); at the load's rate it carries many more.
const rolloutAdmissions = 300

// rollouts is how many rollouts each mode runs (E2E_ROLLOUTS, default 1):
// failures are rare events, so a measurement runs several.
func rollouts() int { return envInt("E2E_ROLLOUTS", 1) }

// TestWebhookLifecycle is the webhook's own lifecycle on the node, under
// steady admission traffic: `kubectl rollout restart` through kube-apiserver
// 1.37.2 with its defaults and through a second one without
// WebhookRoundTripLoadBalancing (the webhook client of 1.30–1.36), `kubectl
// delete pod` of one replica, and one replica's process killed with SIGKILL
// as the kubelet and the EndpointSlice controller handle it. Rollouts and
// the delete must fail no admission: kube-apiserver does not retry a failed
// webhook call. With E2E_NO_DRAIN=1 it first shows what happens without the
// server's drain on SIGTERM (--shutdown-drain-period=0), pooled mode only,
// reporting the failures rather than asserting.
func TestWebhookLifecycle(t *testing.T) {
	if r := runKubectl("", "get", "namespace", loadNamespace); !r.OK() {
		mustKubectl(t, "", "create", "namespace", loadNamespace)
	}
	pooled, err := env.StartAPIServer("kube-apiserver-no-round-trip-lb", map[string]string{"feature-gates": "WebhookRoundTripLoadBalancing=false"})
	if err != nil {
		t.Fatal(err)
	}
	steps := framework.Steps{
		{"rollout restart, 1.37 defaults", func(t *testing.T) { testRolloutRestart(t, env.Kubeconfig, true, true) }},
		{"rollout restart, WebhookRoundTripLoadBalancing=false", func(t *testing.T) { testRolloutRestart(t, pooled, false, true) }},
		{"delete pod of one replica", testDeletePod},
		{"one replica killed (SIGKILL)", testReplicaKilled},
	}
	if os.Getenv("E2E_NO_DRAIN") != "" {
		steps = append(framework.Steps{{"rollout restart without the drain, WebhookRoundTripLoadBalancing=false (reported, not asserted)", func(t *testing.T) {
			reinstall(t, "--shutdown-drain-period=0")
			defer reinstall(t, "")
			testRolloutRestart(t, pooled, false, false)
		}}}, steps...)
	}
	steps.Run(t)
}

// reinstall applies the install's overlay again with arg added to the
// server's args (none: as installed), and waits for the rollout.
func reinstall(t *testing.T, arg string) {
	dir := filepath.Join(env.artifacts, "install")
	if arg != "" {
		dir += "-with-" + strings.Trim(strings.ReplaceAll(arg, "=", "-"), "-")
	}
	if err := writeOverlay(dir, env.repoRoot, env.image, arg); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, "", "apply", "-k", dir)
	waitRolledOut(t)
}

// testRolloutRestart runs `kubectl rollout restart` of the Deployment under
// load through the kube-apiserver of kubeconfig, rollouts() times, and
// prints the admissions, each replica's own counter and every failure with
// its time from the nearest SIGTERM. roundTripLB is the state that
// apiserver's WebhookRoundTripLoadBalancing must be in; strict fails the test
// on any failed admission.
func testRolloutRestart(t *testing.T, kubeconfig string, roundTripLB, strict bool) {
	if on := featureEnabled(t, kubeconfig, "WebhookRoundTripLoadBalancing"); on != roundTripLB {
		t.Fatalf("kube-apiserver has WebhookRoundTripLoadBalancing %v, want %v", on, roundTripLB)
	}
	for i := range rollouts() {
		w, l := startWatchedLoad(t, kubeconfig)
		t0 := time.Now()
		mustKubectl(t, "", "-n", installNamespace, "rollout", "restart", "deployment/"+deploymentName)
		waitRolledOut(t)
		took := time.Since(t0)
		ok := l.RunFor(rolloutAdmissions, 2*time.Second, 2*time.Minute)
		l.Stop()
		w.stop()
		t.Logf("rollout %d of %d (WebhookRoundTripLoadBalancing %v): rollout restart to the old pods gone %s; %s, %.0f/s; %s",
			i+1, rollouts(), roundTripLB, took.Round(time.Millisecond), l, l.Rate(), w.report(l.FailedAttempts()))
		if !ok || l.Count() < rolloutAdmissions {
			t.Errorf("only %d admissions across the rollout, want at least %d", l.Count(), rolloutAdmissions)
		}
		if f := l.Failures(); len(f) > 0 && strict {
			t.Errorf("%d of %d admissions failed across the rollout", len(f), l.Count())
		}
	}
}

// startWatchedLoad starts following the webhook's pods and the load through
// the kube-apiserver of kubeconfig, and returns once the load runs.
func startWatchedLoad(t *testing.T, kubeconfig string) (*webhookWatch, *framework.Load) {
	t.Helper()
	w := watchWebhook(t)
	l := startLoad(kubeconfig, loadNamespace)
	if !l.RunFor(100, 3*time.Second, time.Minute) {
		l.Stop()
		w.stop()
		t.Fatalf("the load did not get going: %s", l)
	}
	return w, l
}

// waitRolledOut waits until the Deployment is rolled out and only its
// current pods are left: `rollout status` returns while the old ones still
// terminate.
func waitRolledOut(t *testing.T) {
	t.Helper()
	mustKubectl(t, "", "-n", installNamespace, "rollout", "status", "deployment/"+deploymentName, "--timeout=110s")
	framework.Eventually(t, 2*time.Minute, "the old webhook pods are gone", env.ControllersAlive, func() (bool, string) {
		n := len(webhookPods(t))
		return n == 2, fmt.Sprintf("%d webhook pods, want 2", n)
	})
}

// testDeletePod deletes one replica under load (kubectl waits until it is
// gone); the ReplicaSet replaces it. No admission may fail.
func testDeletePod(t *testing.T) {
	w, l := startWatchedLoad(t, env.Kubeconfig)
	defer w.stop()
	defer l.Stop()
	victim := webhookPods(t)[0]
	mustKubectl(t, "", "-n", installNamespace, "delete", "pod", victim.Name)
	waitRolledOut(t)
	l.RunFor(l.Count()+rolloutAdmissions, 2*time.Second, 2*time.Minute)
	l.Stop()
	t.Logf("kubectl delete pod %s: %s, %.0f/s; %s", victim.Name, l, l.Rate(), w.report(l.FailedAttempts()))
	if f := l.Failures(); len(f) > 0 {
		t.Errorf("%d of %d admissions failed across the pod's deletion", len(f), l.Count())
	}
}

// testReplicaKilled kills one replica's server process with SIGKILL from
// this machine (the OOM killer, a crash) under load, and measures how the
// kubelet (which sees the container exit) and the EndpointSlice controller
// take it out of the endpoints: the window, and the admissions that failed in
// it (the apiserver sends some to the dead address, and retries none). None
// may fail once its endpoint is not ready; the kubelet restarts the
// container.
func testReplicaKilled(t *testing.T) {
	w, l := startWatchedLoad(t, env.Kubeconfig)
	defer w.stop()
	defer l.Stop()
	victim := webhookPods(t)[0]
	pid, err := env.node.ContainerPID(victim.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var notReady, endpointOut time.Time
	for deadline := time.Now().Add(time.Minute); endpointOut.IsZero(); time.Sleep(20 * time.Millisecond) {
		notReady, endpointOut = w.out(victim.Name, victim.Status.PodIP)
		if time.Now().After(deadline) {
			t.Fatalf("pod %s's endpoint still ready a minute after its process was killed", victim.Name)
		}
	}
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "pod/"+victim.Name, "--timeout=110s")
	restarted := time.Now()
	l.RunFor(l.Count()+rolloutAdmissions, 3*time.Second, 2*time.Minute)
	l.Stop()
	inWindow := l.FailedBetween(killed, endpointOut)
	// An attempt in flight ends shortly after the endpoint changed.
	late := l.FailedBetween(endpointOut.Add(time.Second), time.Now())
	var failed []string
	for _, f := range l.FailedAttempts() {
		failed = append(failed, fmt.Sprintf("+%s %v", f.At.Sub(killed).Round(time.Millisecond), f.Err))
	}
	t.Logf("pod %s's process (pid %d) killed with SIGKILL under load: pod not ready after %s, its endpoint not ready after %s, Ready again (restarted) after %s; %s, %.0f/s; %d failed while its endpoint was ready, %d more than 1s after; per replica: %s; failures from the kill:\n%s",
		victim.Name, pid, notReady.Sub(killed).Round(time.Millisecond), endpointOut.Sub(killed).Round(time.Millisecond),
		restarted.Sub(killed).Round(time.Millisecond), l, l.Rate(), inWindow, late, w.counters(), strings.Join(failed, "\n"))
	if late > 0 {
		t.Errorf("%d admissions failed more than 1s after the killed replica's endpoint was not ready", late)
	}
}

// webhookPods are the Deployment's pods, in name order.
func webhookPods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(installNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: webhookSelector})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods.Items
}

// webhookWatch follows the webhook's pods and EndpointSlices as the
// controllers change them, and samples each replica's admission counter
// (every 200 ms, while it answers).
type webhookWatch struct {
	stopCh chan struct{}
	done   sync.WaitGroup

	mu          sync.Mutex
	ips         map[string]string    // pod → IP
	sigterm     map[string]time.Time // pod → its deletion seen + the preStop sleep: when the kubelet sends SIGTERM
	notReady    map[string]time.Time // pod → first seen not ready after being ready
	endpointOut map[string]time.Time // IP → first seen not ready (or gone) in the EndpointSlices
	count       map[string]float64   // pod → its admission counter, last read
}

func watchWebhook(t *testing.T) *webhookWatch {
	t.Helper()
	preStop := preStopSleep(t)
	w := &webhookWatch{stopCh: make(chan struct{}), ips: map[string]string{}, sigterm: map[string]time.Time{},
		notReady: map[string]time.Time{}, endpointOut: map[string]time.Time{}, count: map[string]float64{}}
	f := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(installNamespace))
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if p.Status.PodIP != "" {
			w.ips[p.Name] = p.Status.PodIP
		}
		if _, seen := w.sigterm[p.Name]; p.DeletionTimestamp != nil && !seen {
			w.sigterm[p.Name] = time.Now().Add(preStop)
		}
		if _, seen := w.notReady[p.Name]; !framework.PodReady(p) && !seen && p.Status.PodIP != "" {
			w.notReady[p.Name] = time.Now()
		}
	}
	onSlice := func(obj any) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		listed := map[string]bool{}
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				listed[a] = e.Conditions.Ready != nil && *e.Conditions.Ready
			}
		}
		for _, ip := range w.ips {
			if _, seen := w.endpointOut[ip]; !listed[ip] && !seen {
				w.endpointOut[ip] = time.Now()
			}
		}
	}
	_, _ = f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }})
	_, _ = f.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSlice, UpdateFunc: func(_, o any) { onSlice(o) }})
	f.Start(w.stopCh)
	f.WaitForCacheSync(w.stopCh)
	// The pods ready now are not "not ready": only changes from here count.
	w.mu.Lock()
	clear(w.notReady)
	clear(w.endpointOut)
	w.mu.Unlock()
	w.done.Go(func() {
		defer f.Shutdown()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stopCh:
				return
			case <-tick.C:
			}
			w.mu.Lock()
			ips := maps.Clone(w.ips)
			w.mu.Unlock()
			for pod, ip := range ips {
				if n, err := admissionsAt(ip); err == nil {
					w.mu.Lock()
					w.count[pod] = n
					w.mu.Unlock()
				}
			}
		}
	})
	return w
}

func (w *webhookWatch) stop() {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	w.done.Wait()
}

// out is when pod was first seen not ready, and when its address left the
// ready endpoints (zero until then).
func (w *webhookWatch) out(pod, ip string) (notReady, endpoint time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notReady[pod], w.endpointOut[ip]
}

// counters are each replica's admission counter, last read.
func (w *webhookWatch) counters() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, pod := range slices.Sorted(maps.Keys(w.count)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", pod, w.count[pod]))
	}
	return strings.Join(parts, ", ")
}

// report is each replica's counter, each SIGTERM, and each failure with
// its time from the nearest SIGTERM.
func (w *webhookWatch) report(failures []framework.Failure) string {
	w.mu.Lock()
	var terms []string
	for _, pod := range slices.Sorted(maps.Keys(w.sigterm)) {
		terms = append(terms, pod+" "+w.sigterm[pod].Format("15:04:05.000"))
	}
	sigterm := maps.Clone(w.sigterm)
	w.mu.Unlock()
	var lines []string
	for _, f := range failures {
		nearest, pod := time.Duration(1<<62), ""
		for p, at := range sigterm {
			if d := f.At.Sub(at); abs(d) < abs(nearest) {
				nearest, pod = d, p
			}
		}
		where := "no SIGTERM"
		if pod != "" {
			where = fmt.Sprintf("%+.3fs from the SIGTERM of %s", nearest.Seconds(), pod)
		}
		lines = append(lines, fmt.Sprintf("  %s (%s): %v", f.At.Format("15:04:05.000"), where, f.Err))
	}
	return fmt.Sprintf("admission requests counted by each replica: %s; SIGTERM (deletion seen + preStop): %s; %d failed%s",
		w.counters(), strings.Join(terms, ", "), len(failures), strings.Join(append([]string{""}, lines...), "\n"))
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// preStopSleep is the installed Deployment's preStop sleep, which the
// kubelet runs before SIGTERM.
func preStopSleep(t *testing.T) time.Duration {
	d, err := env.Client.AppsV1().Deployments(installNamespace).Get(context.Background(), deploymentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l := d.Spec.Template.Spec.Containers[0].Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		return time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	return 0
}

// featureEnabled reads a feature gate's state from the kube-apiserver's own
// metrics (kubernetes_feature_enabled), so a mode is what it says it is.
func featureEnabled(t *testing.T, kubeconfig, gate string) bool {
	t.Helper()
	r := kubectlOn(kubeconfig, "", "get", "--raw", "/metrics")
	if !r.OK() {
		t.Fatal(r)
	}
	samples, err := tests.ReadMetrics(strings.NewReader(r.Stdout))
	i := slices.IndexFunc(samples, func(s tests.Sample) bool {
		return s.Name == "kubernetes_feature_enabled" && s.Labels["name"] == gate
	})
	if err != nil || i < 0 {
		t.Fatalf("the kube-apiserver's metrics have no kubernetes_feature_enabled{name=%q}: %v", gate, err)
	}
	return samples[i].Value == 1
}
