package certmanager

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rolloutAdmissions is how many admissions the rolling update must carry at
// least (issue 17).
const rolloutAdmissions = 300

// endpointState is an endpoint's conditions as the EndpointSlice controller
// writes them from its pod.
type endpointState int

const (
	ready       endpointState = iota // ready true, serving true, terminating false
	terminating                      // deleted, still ready: ready false, serving true, terminating true
	notReady                         // running, readiness probe failing: all false
)

func (s endpointState) conditions() string {
	switch s {
	case terminating:
		return "{ready: false, serving: true, terminating: true}"
	case notReady:
		return "{ready: false, serving: false, terminating: false}"
	}
	return "{ready: true, serving: true, terminating: false}"
}

// endpointSlice is the Service's EndpointSlice as the harness maintains it,
// playing the EndpointSlice controller: one endpoint per pod, in order.
type endpointSlice struct {
	endpoints []sliceEndpoint
}

type sliceEndpoint struct {
	ip    netip.Addr
	state endpointState
}

// manifest is the slice as YAML.
func (s *endpointSlice) manifest() string {
	var eps strings.Builder
	for _, e := range s.endpoints {
		fmt.Fprintf(&eps, "  - addresses: [%q]\n    conditions: %s\n", e.ip, e.state.conditions())
	}
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-e2e
  namespace: %[2]s
  labels:
    kubernetes.io/service-name: %[1]s
    endpointslice.kubernetes.io/managed-by: e2e.dittofs.com
addressType: IPv4
ports:
  - {name: webhook, port: 9443, protocol: TCP}
  - {name: metrics, port: 8080, protocol: TCP}
endpoints:
%[3]s`, serviceName, installNamespace, eps.String())
}

func (s *endpointSlice) write(t *testing.T) {
	t.Helper()
	mustKubectl(t, s.manifest(), "replace", "-f", "-")
}

// set adds the endpoint of ip or changes its state, and writes the slice.
func (s *endpointSlice) set(t *testing.T, ip netip.Addr, state endpointState) {
	t.Helper()
	i := slices.IndexFunc(s.endpoints, func(e sliceEndpoint) bool { return e.ip == ip })
	if i < 0 {
		s.endpoints = append(s.endpoints, sliceEndpoint{ip: ip, state: state})
	} else {
		s.endpoints[i].state = state
	}
	s.write(t)
}

// remove removes the endpoint of ip and writes the slice.
func (s *endpointSlice) remove(t *testing.T, ip netip.Addr) {
	t.Helper()
	s.endpoints = slices.DeleteFunc(s.endpoints, func(e sliceEndpoint) bool { return e.ip == ip })
	s.write(t)
}

// replica is one pod of the Deployment: a container in a test host.
type replica struct {
	host    *testHost
	p       *process
	readyAt time.Time // when its readiness probe first passed
}

func (r *replica) String() string { return strconv.Itoa(r.host.slot) }

// serving is the replica that serves between the steps: env.server.
func serving() *replica { return &replica{host: env.host, p: env.server} }

// startReplica starts one more pod of the Deployment in a test host of its
// own, and returns once its readiness probe passes.
func startReplica(t *testing.T) *replica {
	t.Helper()
	host, err := newTestHost(os.Getpid(), len(env.hosts))
	if err != nil {
		t.Fatal(err)
	}
	env.hosts = append(env.hosts, host)
	if err := host.checkLocal(); err != nil {
		t.Fatal(err)
	}
	p, err := env.startReplica(host, env.volume.dir)
	if err != nil {
		t.Fatal(err)
	}
	env.others = append(env.others, p)
	return &replica{host: host, p: p, readyAt: time.Now()}
}

// keep makes r the replica that serves the later steps, as env.server was.
func keep(r *replica) {
	env.others = slices.DeleteFunc(env.others, func(p *process) bool { return p == r.p })
	env.server, env.host = r.p, r.host
}

// testRollingUpdate rolls the Deployment's two replicas under steady
// admission traffic through the kube-apiserver of kubeconfig exactly as the
// Deployment controller (maxSurge 1, maxUnavailable 0), the kubelet and the
// EndpointSlice controller do: start a new replica, add its endpoint once
// its readiness probe passes; mark the old endpoint terminating, run the old
// pod's preStop, SIGTERM, remove the endpoint once it has exited; then the
// second. No admission may fail (kube-apiserver does not retry a failed
// webhook call). One new replica is left serving. roundTripLB is whether
// that kube-apiserver must have WebhookRoundTripLoadBalancing on.
func testRollingUpdate(t *testing.T, kubeconfig string, roundTripLB bool) {
	if on := featureEnabled(t, kubeconfig, "WebhookRoundTripLoadBalancing"); on != roundTripLB {
		t.Fatalf("kube-apiserver has WebhookRoundTripLoadBalancing %v, want %v", on, roundTripLB)
	}
	t.Logf("kube-apiserver with WebhookRoundTripLoadBalancing %v", roundTripLB)
	if r := runKubectl("", "get", "namespace", loadNamespace); !r.ok() {
		mustKubectl(t, "", "create", "namespace", loadNamespace)
	}
	// Two replicas, as the Deployment runs them.
	old := []*replica{serving(), startReplica(t)}
	var slice endpointSlice
	for _, r := range old {
		slice.set(t, r.host.podIP, ready)
	}

	l := startLoad(kubeconfig, loadNamespace)
	defer l.Stop()
	if !l.RunFor(5, 3*time.Second, time.Minute) {
		t.Fatalf("the load did not get going: %s", l)
	}
	counters := map[string]float64{}
	var current []*replica
	for _, o := range old {
		n := startReplica(t)
		slice.set(t, n.host.podIP, ready)
		current = append(current, n)

		slice.set(t, o.host.podIP, terminating)
		t0 := time.Now()
		marked := admissionsAt(t, o.host)
		// Read before its SIGTERM (it is gone after): what it served while
		// terminating came over connections the apiserver kept.
		if err := env.stopReplica(o.p, func() { counters[o.String()] = admissionsAt(t, o.host) }); err != nil {
			t.Errorf("replica %s did not stop cleanly: %v", o, err)
		}
		slice.remove(t, o.host.podIP)
		t.Logf("replica %s replaced by %s: preStop, SIGTERM and exit took %s; it answered %v admissions while its endpoint was terminating",
			o, n, time.Since(t0).Round(time.Millisecond), counters[o.String()]-marked)
	}
	if !l.RunFor(rolloutAdmissions, 3*time.Second, 5*time.Minute) {
		t.Errorf("the load stopped early: %s", l)
	}
	l.Stop()
	for _, r := range current {
		counters[r.String()] = admissionsAt(t, r.host)
	}
	t.Logf("rolling update: %s; admissions counted by each replica: %v", l, counters)
	if l.Count() < rolloutAdmissions {
		t.Errorf("only %d admissions across the rolling update, want at least %d", l.Count(), rolloutAdmissions)
	}
	if f := l.Failures(); len(f) > 0 {
		t.Errorf("%d of %d admissions failed across the rolling update:\n%s", len(f), l.Count(), strings.Join(f, "\n"))
	}

	// One replica stays for the later steps, as the server was before.
	last := current[1]
	slice.remove(t, last.host.podIP)
	if err := env.stopReplica(last.p, nil); err != nil {
		t.Errorf("replica %s did not stop cleanly: %v", last, err)
	}
	keep(current[0])
}

// testRollingUpdateWithoutRoundTripLoadBalancing is the rolling update on a
// second kube-apiserver (the same etcd) with the webhook client of 1.30–1.36:
// without WebhookRoundTripLoadBalancing it reuses pooled keep-alive
// connections to a pod that has left the endpoints (kubernetes#127335).
func testRollingUpdateWithoutRoundTripLoadBalancing(t *testing.T) {
	kubeconfig, err := env.startAPIServer("kube-apiserver-no-round-trip-lb",
		map[string]string{"feature-gates": "WebhookRoundTripLoadBalancing=false"})
	if err != nil {
		t.Fatal(err)
	}
	testRollingUpdate(t, kubeconfig, false)
}

// featureEnabled reads a feature gate's state from the kube-apiserver's own
// metrics (kubernetes_feature_enabled), so a mode is what it says it is.
func featureEnabled(t *testing.T, kubeconfig, gate string) bool {
	t.Helper()
	r := kubectlOn(kubeconfig, "", "get", "--raw", "/metrics")
	if !r.ok() {
		t.Fatal(r)
	}
	on, found, err := sumMetric(strings.NewReader(r.stdout), "kubernetes_feature_enabled", map[string]string{"name": gate})
	if err != nil || !found {
		t.Fatalf("the kube-apiserver's metrics have no kubernetes_feature_enabled{name=%q}: %v", gate, err)
	}
	return on == 1
}

// testReplicaKilled kills one of two replicas outright (SIGKILL: the OOM
// killer, a crash) under admission traffic and leaves its endpoint ready for
// as long as the install's readiness probe takes to notice: the harness
// probes as the kubelet does, every periodSeconds from when the pod became
// ready, and marks the endpoint not ready after failureThreshold failures in
// a row, as the kubelet and the EndpointSlice controller would. It prints the
// failed admissions and the window; the window must stay within what the
// probe's settings allow, and nothing may fail once the endpoint is not ready.
func testReplicaKilled(t *testing.T) {
	rp := env.pod.container.ReadinessProbe
	period, timeout := time.Duration(rp.PeriodSeconds)*time.Second, time.Duration(rp.TimeoutSeconds)*time.Second
	threshold := int(rp.FailureThreshold)

	kept, victim := serving(), startReplica(t)
	var slice endpointSlice
	slice.set(t, kept.host.podIP, ready)
	slice.set(t, victim.host.podIP, ready)
	l := startLoad(env.kubeconfig, loadNamespace)
	defer l.Stop()
	if !l.RunFor(20, 3*time.Second, time.Minute) {
		t.Fatalf("the load did not get going: %s", l)
	}

	killed := time.Now()
	if out, err := exec.Command("podman", "kill", "--signal", "KILL", victim.host.container()).CombinedOutput(); err != nil {
		t.Fatalf("podman kill: %v %s", err, out)
	}
	env.others = slices.DeleteFunc(env.others, func(p *process) bool { return p == victim.p })

	// The kubelet's readiness probe, on its own ticker since the pod became
	// ready; it does not wait for anything else.
	url := env.pod.probeURL(rp, victim.host.podIP.String())
	client := &http.Client{Timeout: timeout}
	next := victim.readyAt
	var probes []string
	for failed := 0; failed < threshold; {
		for !next.After(time.Now()) {
			next = next.Add(period)
		}
		time.Sleep(time.Until(next))
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 400 {
				t.Fatalf("%s answered %s after the container was killed", url, resp.Status)
			}
		}
		failed++
		probes = append(probes, "+"+time.Since(killed).Round(time.Millisecond).String())
	}
	slice.set(t, victim.host.podIP, notReady)
	noticed := time.Now()
	window := noticed.Sub(killed)
	select {
	case <-victim.p.done: // podman run exits with the container (137)
	case <-time.After(30 * time.Second):
		t.Errorf("the killed container's podman run did not exit")
	}

	// Then as much traffic again, none of which may fail.
	if !l.RunFor(l.Count()+100, 5*time.Second, 2*time.Minute) {
		t.Errorf("the load stopped early: %s", l)
	}
	l.Stop()
	inWindow := l.FailedBetween(killed, noticed)
	// An attempt ends up to a kubectl call after the endpoint changed.
	late := l.FailedBetween(noticed.Add(2*time.Second), time.Now())
	t.Logf("replica %s killed (SIGKILL) under load: its endpoint stayed ready for %s (readiness probe every %s, failed at %s, %d in a row mark it not ready); %s; %d failed while it was in the endpoints, %d after\n%s",
		victim, window.Round(time.Millisecond), period, strings.Join(probes, " "), threshold, l, inWindow, late, strings.Join(l.Failures(), "\n"))
	// The kubelet notices after threshold failed probes, the first within a period of the kill.
	if limit := time.Duration(threshold)*period + timeout + 2*time.Second; window > limit {
		t.Errorf("the killed replica stayed in the endpoints %s, more than the probe allows (%s)", window, limit)
	}
	if late > 0 {
		t.Errorf("%d admissions failed after the killed replica's endpoint was marked not ready", late)
	}
	slice.remove(t, victim.host.podIP)
}
