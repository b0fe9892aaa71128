package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedappsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
	"sigs.k8s.io/yaml"
)

const (
	// reloadWithin is how soon the server must serve a rotated certificate
	// (SPEC §5).
	reloadWithin = 10 * time.Second
	// rotations is how many times the certificate is swapped under load.
	rotations = 3
	// The load: loadWorkers goroutines, each creating and deleting labelled
	// StatefulSets one after the other, for at most loadFor or
	// loadMaxCycles create/delete cycles in all, whichever comes first.
	loadWorkers   = 2
	loadFor       = 90 * time.Second
	loadMaxCycles = 20000
	// Before the first swap and after each new certificate is served, the
	// load runs for at least settle and cyclesAround cycles.
	settle       = time.Second
	cyclesAround = 20
)

// 8. The certificate is rotated the way the kubelet updates a mounted
// cert-manager Secret (a new timestamped directory, then an atomic rename of
// the ..data symlink), several times, while the apiserver keeps sending the
// webhooks requests: none fails, and each time the server serves the new
// certificate within 10 s (SPEC §5).
func TestCertificateRotation(t *testing.T) {
	ns := newNamespace(t)
	cs, err := kubernetes.NewForConfig(env.restConfig)
	if err != nil {
		t.Fatal(err)
	}
	load := startLoad(t, cs, ns)
	defer load.stop()
	if !load.runFor(cyclesAround, settle) {
		t.Fatalf("the load did not get going: %s", load)
	}

	for i := 1; i <= rotations; i++ {
		before, err := env.server.servedCertificate(env.caPEM)
		if err != nil {
			t.Fatalf("rotation %d: dialling the server before the swap: %v", i, err)
		}
		pair, err := env.issueServingPair(fmt.Sprintf("rotated-%d-%d", time.Now().UnixNano(), i))
		if err != nil {
			t.Fatal(err)
		}
		if !sameBytes(filepath.Join(env.tlsDir, "ca.crt"), pair.ca) {
			t.Fatal("dev-certs made a new CA instead of reusing the first one")
		}
		newSerial := pair.serial()
		if newSerial == nil || newSerial.Cmp(before.SerialNumber) == 0 {
			t.Fatalf("rotation %d: the new serving certificate has serial %v, the served one %v: nothing to rotate",
				i, newSerial, before.SerialNumber)
		}

		swapped := time.Now()
		if err := writeSecretVolume(env.tlsDir, pair); err != nil {
			t.Fatalf("rotation %d: swapping the certificate: %v", i, err)
		}
		for {
			cert, err := env.server.servedCertificate(env.caPEM)
			if err == nil && cert.SerialNumber.Cmp(newSerial) == 0 {
				t.Logf("rotation %d: the new certificate (serial %v) was served %s after the swap",
					i, newSerial, time.Since(swapped).Round(time.Millisecond))
				break
			}
			if time.Since(swapped) > reloadWithin {
				env.server.printLogTail(os.Stderr, 20)
				t.Fatalf("rotation %d: %s after the swap the server still serves serial %v (dial error: %v), want the new serial %v",
					i, reloadWithin, serialOf(cert), err, newSerial)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !load.runFor(load.count()+cyclesAround, settle) {
			t.Fatalf("rotation %d: the load stalled after the swap: %s", i, load)
		}
	}
	load.stop()
	t.Logf("load: %s", load)
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of the requests through the webhooks failed around the rotations:\n  %s", len(f), strings.Join(f, "\n  "))
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
	// No pods: the load is about admission. With replicas the StatefulSet
	// controller would make a pod and three PVCs (kept: Retain) for each of
	// the thousands of StatefulSets, and the later tests would share the
	// control plane with that backlog.
	template.Spec.Replicas = new(int32)
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	l := &load{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() { l.work(ctx, cs.AppsV1().StatefulSets(ns), &template, w) })
	}
	go func() {
		wg.Wait()
		l.mu.Lock()
		l.ended = time.Now()
		l.mu.Unlock()
		close(l.done)
	}()
	return l
}

func (l *load) work(ctx context.Context, stsClient typedappsv1.StatefulSetInterface, template *appsv1.StatefulSet, worker int) {
	for i := 0; ctx.Err() == nil; i++ {
		sts := template.DeepCopy()
		sts.Name = fmt.Sprintf("load-%d-%d", worker, i)
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
		haltIfStopping()
		if ctx.Err() != nil {
			return // stopped mid-cycle: not a failure of the server
		}
		l.mu.Lock()
		if err != nil {
			l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), sts.Name, err))
		}
		l.cycles++
		enough := l.cycles >= loadMaxCycles
		l.mu.Unlock()
		if enough {
			return
		}
	}
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

// runFor waits until n cycles have run and at least d has passed, and
// reports whether that happened before the load ended or 30 s went by.
func (l *load) runFor(n int, d time.Duration) bool {
	start := time.Now()
	timeout := time.After(30 * time.Second)
	for {
		if l.count() >= n && time.Since(start) >= d {
			return true
		}
		select {
		case <-l.done:
			return false
		case <-timeout:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
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
