package certmanager

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// rolloutAdmissions is how many admissions the rolling update must carry at
// least (issue 17).
const rolloutAdmissions = 300

// endpointSlice is the Service's EndpointSlice as the harness maintains it,
// playing the EndpointSlice controller: one endpoint per pod, in order.
type endpointSlice struct {
	endpoints []sliceEndpoint
}

type sliceEndpoint struct {
	ip          netip.Addr
	terminating bool // ready false, serving true, terminating true
}

func (s *endpointSlice) write(t *testing.T) {
	t.Helper()
	var eps strings.Builder
	for _, e := range s.endpoints {
		cond := "{ready: true, serving: true, terminating: false}"
		if e.terminating {
			cond = "{ready: false, serving: true, terminating: true}"
		}
		fmt.Fprintf(&eps, "  - addresses: [%q]\n    conditions: %s\n", e.ip, cond)
	}
	slice := fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
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
	mustKubectl(t, slice, "replace", "-f", "-")
}

func (s *endpointSlice) set(ip netip.Addr, terminating bool) {
	for i := range s.endpoints {
		if s.endpoints[i].ip == ip {
			s.endpoints[i].terminating = terminating
			return
		}
	}
	s.endpoints = append(s.endpoints, sliceEndpoint{ip: ip, terminating: terminating})
}

func (s *endpointSlice) remove(ip netip.Addr) {
	for i := range s.endpoints {
		if s.endpoints[i].ip == ip {
			s.endpoints = append(s.endpoints[:i], s.endpoints[i+1:]...)
			return
		}
	}
}

// replica is one pod of the Deployment: a container in a test host.
type replica struct {
	name string
	host *testHost
	p    *process
}

// testRollingUpdate rolls the Deployment's two replicas under steady
// admission traffic exactly as the Deployment controller (maxSurge 1,
// maxUnavailable 0), the kubelet and the EndpointSlice controller do: start
// a new replica, add its endpoint once its readiness probe passes; mark the
// old endpoint terminating, run the old pod's preStop, SIGTERM, remove the
// endpoint once it has exited; then the second. No admission may fail
// (kube-apiserver does not retry a failed webhook call).
func testRollingUpdate(t *testing.T) {
	if r := runKubectl("", "get", "namespace", loadNamespace); !r.ok() {
		mustKubectl(t, "", "create", "namespace", loadNamespace)
	}
	newHost := func(slot int) *testHost {
		h, err := newTestHost(os.Getpid(), slot)
		if err != nil {
			t.Fatal(err)
		}
		env.hosts = append(env.hosts, h)
		if err := h.checkLocal(); err != nil {
			t.Fatal(err)
		}
		return h
	}
	start := func(name string, host *testHost) *replica {
		p, err := env.startReplica(name, host, env.volume.dir)
		if err != nil {
			t.Fatal(err)
		}
		env.others = append(env.others, p)
		return &replica{name: name, host: host, p: p}
	}

	// Two replicas, as the Deployment runs them.
	old := []*replica{{name: "0", host: env.host, p: env.server}, start("1", newHost(1))}
	var slice endpointSlice
	for _, r := range old {
		slice.set(r.host.podIP, false)
	}
	slice.write(t)

	l := startLoad(loadNamespace)
	defer l.Stop()
	if !l.RunFor(5, 3*time.Second, time.Minute) {
		t.Fatalf("the load did not get going: %s", l)
	}
	counters := map[string]float64{}
	var current []*replica
	for i, o := range old {
		n := start(fmt.Sprintf("new-%d", i), newHost(2+i)) // returns once ready
		slice.set(n.host.podIP, false)
		slice.write(t)
		current = append(current, n)

		slice.set(o.host.podIP, true)
		slice.write(t)
		t0 := time.Now()
		counters[o.name] = admissionsAt(t, o.host) // before its SIGTERM: it is gone after
		if err := env.stopReplica(o.p); err != nil {
			t.Errorf("replica %s did not stop cleanly: %v", o.name, err)
		}
		slice.remove(o.host.podIP)
		slice.write(t)
		t.Logf("replica %s replaced by %s: preStop, SIGTERM and exit took %s", o.name, n.name, time.Since(t0).Round(time.Millisecond))
	}
	if !l.RunFor(rolloutAdmissions, 3*time.Second, 5*time.Minute) {
		t.Errorf("the load stopped early: %s", l)
	}
	l.Stop()
	for _, r := range current {
		counters[r.name] = admissionsAt(t, r.host)
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
	slice.remove(last.host.podIP)
	slice.write(t)
	if err := env.stopReplica(last.p); err != nil {
		t.Errorf("replica %s did not stop cleanly: %v", last.name, err)
	}
	env.server, env.host = current[0].p, current[0].host
}
