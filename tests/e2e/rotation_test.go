package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

const (
	// reloadWithin is how soon the server must serve a rotated certificate
	// (SPEC §5).
	reloadWithin = 10 * time.Second
	// The load runs for at most loadFor or loadMaxCycles create/delete
	// cycles, whichever comes first.
	loadFor       = 40 * time.Second
	loadMaxCycles = 2000
	// cyclesAround is how many cycles must succeed before the swap, and
	// again after the new certificate is served.
	cyclesAround = 10
)

// 8. The certificate is rotated the way the kubelet updates a mounted
// cert-manager Secret (a new timestamped directory, then an atomic rename of
// the ..data symlink) while the apiserver keeps sending the webhooks
// requests: none fails, and the server serves the new certificate within
// 10 s (SPEC §5).
func TestCertificateRotation(t *testing.T) {
	ns := newNamespace(t)
	before, err := env.server.servedCertificate(env.caPEM)
	if err != nil {
		t.Fatalf("dialling the server before the rotation: %v", err)
	}
	pair, err := env.issueServingPair("rotated-" + time.Now().UTC().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	if !sameBytes(filepath.Join(env.tlsDir, "ca.crt"), pair.ca) {
		t.Fatal("dev-certs made a new CA instead of reusing the first one")
	}
	newSerial := pair.serial()
	if newSerial == nil || newSerial.Cmp(before.SerialNumber) == 0 {
		t.Fatalf("the new serving certificate has serial %v, the served one %v: no rotation to test", newSerial, before.SerialNumber)
	}

	cs, err := kubernetes.NewForConfig(env.restConfig)
	if err != nil {
		t.Fatal(err)
	}
	load := startLoad(t, cs, ns)
	defer load.stop()

	if !load.waitCycles(cyclesAround, 30*time.Second) {
		t.Fatalf("the load did not get going: %s", load)
	}
	swapped := time.Now()
	if err := writeSecretVolume(env.tlsDir, pair); err != nil {
		t.Fatalf("swapping the certificate: %v", err)
	}
	var served time.Duration
	for {
		cert, err := env.server.servedCertificate(env.caPEM)
		if err == nil && cert.SerialNumber.Cmp(newSerial) == 0 {
			served = time.Since(swapped)
			break
		}
		if time.Since(swapped) > reloadWithin {
			t.Errorf("%s after the swap the server still serves serial %v (error %v), want the new serial %v",
				reloadWithin, serialOf(cert), err, newSerial)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if served > 0 {
		t.Logf("the new certificate (serial %v) was served %s after the swap", newSerial, served.Round(time.Millisecond))
	}
	if !load.waitCycles(load.count()+cyclesAround, 30*time.Second) {
		t.Errorf("the load stalled after the swap: %s", load)
	}
	load.stop()
	t.Logf("load: %s", load)
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of the requests through the webhooks failed around the rotation:\n  %s", len(f), strings.Join(f, "\n  "))
	}
	t.Logf("server metrics: %s", metricLines("dittofs_webhook_tls_certificate_reloads_total"))
}

func serialOf(c *x509.Certificate) string {
	if c == nil {
		return "(none)"
	}
	return c.SerialNumber.String()
}

// load creates and deletes labelled StatefulSets through the apiserver, one
// at a time, each create going through both webhooks. It is bounded by
// loadFor and loadMaxCycles and stops by itself.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	cycles   int
	failures []string
	started  time.Time
	ended    time.Time
}

func startLoad(t *testing.T, cs kubernetes.Interface, ns string) *load {
	t.Helper()
	var template appsv1.StatefulSet
	if err := yaml.Unmarshal([]byte(dittofs("load").yaml()), &template); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	l := &load{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(l.done)
		defer func() { l.mu.Lock(); l.ended = time.Now(); l.mu.Unlock() }()
		stsClient := cs.AppsV1().StatefulSets(ns)
		for i := 0; i < loadMaxCycles && ctx.Err() == nil; i++ {
			sts := template.DeepCopy()
			sts.Name = fmt.Sprintf("load-%d", i)
			err := func() error {
				created, err := stsClient.Create(ctx, sts, metav1.CreateOptions{})
				if err != nil {
					return fmt.Errorf("create: %w", err)
				}
				if vct(created, "cache") == nil {
					return fmt.Errorf("created without the cache claim (the mutating webhook did not run)")
				}
				if err := stsClient.Delete(ctx, sts.Name, metav1.DeleteOptions{}); err != nil {
					return fmt.Errorf("delete: %w", err)
				}
				return nil
			}()
			if ctx.Err() != nil {
				return // stopped mid-cycle: not a failure of the server
			}
			l.mu.Lock()
			if err != nil {
				l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), sts.Name, err))
			}
			l.cycles++
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *load) stop() {
	l.cancel()
	<-l.done
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cycles
}

func (l *load) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

// waitCycles waits until n cycles have run, or the load has ended, or timeout.
func (l *load) waitCycles(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l.count() >= n {
			return true
		}
		select {
		case <-l.done:
			return l.count() >= n
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := l.ended
	if end.IsZero() {
		end = time.Now()
	}
	return fmt.Sprintf("%d create/delete cycles in %s, %d failed", l.cycles, end.Sub(l.started).Round(time.Millisecond), len(l.failures))
}

// metricLines returns the server's samples of one metric, for the log.
func metricLines(name string) string {
	resp, err := http.Get("http://" + env.server.metrics + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name) {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) == 0 {
		return "(no " + name + ")"
	}
	return strings.Join(lines, "; ")
}
