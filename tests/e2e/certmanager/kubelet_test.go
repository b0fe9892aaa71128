package certmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

const (
	installNamespace = "dittofs-webhook"
	serviceName      = "dittofs-webhook"
	servingSecret    = "dittofs-webhook-tls" // the serving Certificate's secretName
	caSecret         = "dittofs-webhook-ca"
	// serviceDNSName is the name the kube-apiserver verifies the served
	// certificate against (clientConfig.service: name.namespace.svc).
	serviceDNSName = serviceName + "." + installNamespace + ".svc"
	// kubeletSyncPeriod is how often the harness, playing the kubelet, reads
	// the Secret, and kubeletLag how long a change waits before it is
	// written: a kubelet updates a Secret volume at its next pod sync, up to
	// its sync period plus its cache TTL later (a minute or more by
	// default), while cainjector follows the Secret at once. A few seconds
	// keep the run short and still put the files well behind the caBundle,
	// in the order a cluster sees them: an install that depends on the
	// files changing first fails admissions here.
	kubeletSyncPeriod = time.Second
	kubeletLag        = 5 * time.Second
)

// routeServiceToTestHost creates the install's namespace and, in it, the
// EndpointSlice the EndpointSlice controller would make from a ready webhook
// pod: the test host's address, with the ports named as the Service's.
func (h *harness) routeServiceToTestHost() error {
	if r := runKubectl("", "create", "namespace", installNamespace, "--save-config"); !r.ok() {
		return fmt.Errorf("creating the namespace: %s", r)
	}
	slice := endpointSlice{endpoints: []sliceEndpoint{{ip: h.host.podIP, state: ready}}}
	if r := runKubectl(slice.manifest(), "create", "-f", "-"); !r.ok() {
		return fmt.Errorf("creating the EndpointSlice: %s", r)
	}
	return nil
}

// secretVolume plays the kubelet for one Secret volume: it polls the Secret
// and, kubeletLag after its data changed, rewrites dir as the kubelet's
// AtomicWriter does.
type secretVolume struct {
	dir    string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	data    map[string][]byte // what the files hold
	written time.Time         // when they last changed
}

func startSecretVolume(cs kubernetes.Interface, ns, name, dir string, mode os.FileMode, gid int) (*secretVolume, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &secretVolume{dir: dir, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(v.done)
		tick := time.NewTicker(kubeletSyncPeriod)
		defer tick.Stop()
		var pending map[string][]byte // seen in the Secret, not yet written
		var seen time.Time
		for {
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			switch {
			case err != nil || maps.EqualFunc(s.Data, v.current(), bytes.Equal):
				pending = nil
			case !maps.EqualFunc(s.Data, pending, bytes.Equal):
				pending, seen = s.Data, time.Now()
			}
			// The first sync (the pod starting) is not delayed.
			if pending != nil && (v.current() == nil || time.Since(seen) >= kubeletLag) {
				if err := e2ekit.WriteSecretVolumeAs(dir, pending, mode, gid); err != nil {
					fmt.Fprintf(os.Stderr, "e2e: writing the %s volume: %v\n", name, err)
				} else {
					v.mu.Lock()
					v.data, v.written = pending, time.Now()
					v.mu.Unlock()
					pending = nil
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return v, nil
}

func (v *secretVolume) current() map[string][]byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.data
}

// lastWrite is when the files last changed.
func (v *secretVolume) lastWrite() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.written
}

func (v *secretVolume) stop() {
	v.cancel()
	<-v.done
}

// startReplica runs the image in a test host's network namespace the way a
// kubelet runs a pod of deploy/default's Deployment (env.pod: args, security
// settings, limits, the Secret volume), and waits until its readiness probe
// passes.
func (h *harness) startReplica(host *testHost, tlsDir string) (*process, error) {
	ps := h.pod
	flags, applied := ps.podmanArgs(tlsDir)
	args := append([]string{"run", "--rm", "--name", host.container(), "--replace", "--network", "ns:/run/netns/" + host.netns}, flags...)
	args = append(append(args, h.image), ps.container.Args...)
	fmt.Printf("e2e: running image %s (id %s) as deploy/default's Deployment: args %v; %s\n",
		h.image, imageID(h.image), ps.container.Args, strings.Join(applied, "; "))
	p, err := startProcess(filepath.Join(h.artifacts, "dittofs-webhook-"+strconv.Itoa(host.slot)+".log"), exec.Command("podman", args...))
	if err != nil {
		return nil, err
	}
	rp := ps.container.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil {
		_ = p.stop(5 * time.Second)
		return nil, fmt.Errorf("deploy/default's container has no HTTP readiness probe")
	}
	if err := waitProbe(p, ps.probeURL(rp, host.podIP.String()), time.Duration(rp.PeriodSeconds)*time.Second, 60*time.Second); err != nil {
		_ = p.stop(5 * time.Second)
		return nil, fmt.Errorf("dittofs-webhook container: %w", err)
	}
	if lp := ps.container.LivenessProbe; lp != nil && lp.HTTPGet != nil {
		if err := waitProbe(p, ps.probeURL(lp, host.podIP.String()), time.Second, 10*time.Second); err != nil {
			_ = p.stop(5 * time.Second)
			return nil, fmt.Errorf("dittofs-webhook container, liveness probe: %w", err)
		}
	}
	return p, nil
}

// stopReplica stops a container as a kubelet stops the pod: the preStop
// sleep, then SIGTERM (podman run passes it on), SIGKILL after the rest of
// terminationGracePeriodSeconds. beforeSIGTERM, if not nil, runs between.
func (h *harness) stopReplica(p *process, beforeSIGTERM func()) error {
	time.Sleep(h.pod.preStopSleep())
	if beforeSIGTERM != nil {
		beforeSIGTERM()
	}
	return p.stop(h.pod.grace() - h.pod.preStopSleep())
}

// servedCertificate is the leaf the server presents to a client asking for
// the Service's name, verified against roots (the injected caBundle).
func (h *harness) servedCertificate(roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(h.host.podIP.String(), "9443"),
		&tls.Config{ServerName: serviceDNSName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}
