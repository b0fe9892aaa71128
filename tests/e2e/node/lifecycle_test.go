package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// disruptionAdmissions is how many admissions a disruption must carry at least (issue 17).
const disruptionAdmissions = 300

// TestWebhookLifecycle is the webhook's own lifecycle on the node, under steady admission traffic: `kubectl
// rollout restart` through kube-apiserver 1.37.2 with its defaults and through a second one without
// WebhookRoundTripLoadBalancing (the webhook client of 1.30–1.36), `kubectl delete pod` of one replica, and one
// replica's process killed with SIGKILL. Rollouts and the delete must fail no admission (SPEC §6): kube-apiserver
// does not retry a failed webhook call, so only the server's drain on SIGTERM keeps pooled connections safe.
func TestWebhookLifecycle(t *testing.T) {
	ensureNamespace(t, loadNamespace)
	pooled := tests.Must(env.StartAPIServer("kube-apiserver-no-round-trip-lb",
		map[string]string{"feature-gates": "WebhookRoundTripLoadBalancing=false"}))(t)
	restart := []string{"rollout", "restart", "deployment/" + deploymentName}
	framework.Steps{
		{"rollout restart, 1.37 defaults", func(t *testing.T) { testNoneFails(t, env.Kubeconfig, true, restart...) }},
		{"rollout restart, WebhookRoundTripLoadBalancing=false", func(t *testing.T) {
			testNoneFails(t, pooled, false, restart...)
		}},
		{"delete pod of one replica", func(t *testing.T) {
			testNoneFails(t, env.Kubeconfig, true, "delete", "pod", webhookPods(t)[0].Name)
		}},
		{"one replica killed (SIGKILL)", testReplicaKilled},
	}.Run(t)
}

// testNoneFails runs `kubectl -n dittofs-webhook disrupt...` under load through the kube-apiserver of kubeconfig,
// whose WebhookRoundTripLoadBalancing must be roundTripLB, until only the Deployment's current pods are left: at
// least disruptionAdmissions admissions, none failed.
func testNoneFails(t *testing.T, kubeconfig string, roundTripLB bool, disrupt ...string) {
	if on := featureEnabled(t, kubeconfig, "WebhookRoundTripLoadBalancing"); on != roundTripLB {
		t.Fatalf("kube-apiserver has WebhookRoundTripLoadBalancing %v, want %v", on, roundTripLB)
	}
	l := startRunningLoad(t, kubeconfig)
	defer l.Stop()
	mustKubectl(t, "", append([]string{"-n", installNamespace}, disrupt...)...)
	waitRolledOut(t)
	ok := l.RunFor(l.Count()+disruptionAdmissions, 2*time.Second, 2*time.Minute)
	l.Stop()
	t.Logf("kubectl %s: %s, %.0f/s", strings.Join(disrupt, " "), l, l.Rate())
	if !ok {
		t.Errorf("the load stopped early: %s", l)
	}
	if f := l.Failures(); len(f) > 0 {
		t.Errorf("%d of %d admissions failed:\n%s", len(f), l.Count(), strings.Join(f, "\n"))
	}
}

// startRunningLoad starts the load through the kube-apiserver of kubeconfig and returns once it runs.
func startRunningLoad(t *testing.T, kubeconfig string) *framework.Load {
	t.Helper()
	l := startLoad(kubeconfig, loadNamespace)
	if !l.RunFor(100, 3*time.Second, time.Minute) {
		l.Stop()
		t.Fatalf("the load did not get going: %s", l)
	}
	return l
}

// waitRolledOut waits until the Deployment is rolled out and only its current pods are left: `rollout status`
// returns while the old ones still terminate.
func waitRolledOut(t *testing.T) {
	t.Helper()
	mustKubectl(t, "", "-n", installNamespace, "rollout", "status", "deployment/"+deploymentName, "--timeout=110s")
	framework.Eventually(t, 2*time.Minute, "the old webhook pods are gone", env.ControllersAlive, func() (bool, string) {
		n := len(webhookPods(t))
		return n == 2, fmt.Sprintf("%d webhook pods, want 2", n)
	})
}

// testReplicaKilled kills one replica's server process with SIGKILL from this machine (the OOM killer, a crash)
// under load. The kubelet sees the container exit and the EndpointSlice controller takes the endpoint out; the
// apiserver retries none of the admissions sent to the dead address before, but none may fail once its endpoint is
// not ready. The kubelet restarts the container.
func testReplicaKilled(t *testing.T) {
	l := startRunningLoad(t, env.Kubeconfig)
	defer l.Stop()
	victim := webhookPods(t)[0]
	pid := tests.Must(env.node.ContainerPID(victim.Status.ContainerStatuses[0].ContainerID))(t)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var out time.Time
	for deadline := killed.Add(time.Minute); out.IsZero(); time.Sleep(20 * time.Millisecond) {
		if !endpointReady(t, victim.Status.PodIP) {
			out = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatalf("pod %s's endpoint still ready a minute after its process was killed", victim.Name)
		}
	}
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=condition=Ready", "pod/"+victim.Name, "--timeout=110s")
	l.RunFor(l.Count()+disruptionAdmissions, 3*time.Second, 2*time.Minute)
	l.Stop()
	// An attempt in flight ends shortly after the endpoint changed.
	late := l.FailedBetween(out.Add(time.Second), time.Now())
	t.Logf("pod %s's process (pid %d) killed: endpoint not ready after %s; %s; %d failed before, %d more than 1s after",
		victim.Name, pid, out.Sub(killed).Round(time.Millisecond), l, l.FailedBetween(killed, out), late)
	if late > 0 {
		t.Errorf("%d admissions failed more than 1s after the killed replica's endpoint was not ready:\n%s",
			late, strings.Join(l.Failures(), "\n"))
	}
}

// endpointReady reports whether ip is a ready endpoint in the Service's EndpointSlices.
func endpointReady(t *testing.T, ip string) bool {
	t.Helper()
	list := tests.Must(env.Client.DiscoveryV1().EndpointSlices(installNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + serviceName}))(t)
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if slices.Contains(e.Addresses, ip) && e.Conditions.Ready != nil && *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// webhookPods are the Deployment's pods, in name order.
func webhookPods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods := tests.Must(env.Client.CoreV1().Pods(installNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: webhookSelector}))(t)
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods.Items
}

// featureEnabled reads a feature gate's state from the kube-apiserver's own metrics (kubernetes_feature_enabled),
// so a mode is what it says it is.
func featureEnabled(t *testing.T, kubeconfig, gate string) bool {
	t.Helper()
	r := env.Kubectl.On(kubeconfig).Run("", "get", "--raw", "/metrics")
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
