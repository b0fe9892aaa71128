package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
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
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	load := startLoad(t, cs, ns)
	defer load.Stop()
	if !load.RunFor(cyclesAround, settle, 30*time.Second) {
		t.Fatalf("the load did not get going: %s", load)
	}

	for i := 1; i <= rotations; i++ {
		before, err := framework.ServedCertificate(env.server.listen, "127.0.0.1", framework.CertPool(t, env.caPEM))
		if err != nil {
			t.Fatalf("rotation %d: dialling the server before the swap: %v", i, err)
		}
		pair, err := env.issueServingPair(fmt.Sprintf("rotated-%d-%d", time.Now().UnixNano(), i))
		if err != nil {
			t.Fatal(err)
		}
		if ca, err := os.ReadFile(filepath.Join(env.tlsDir, "ca.crt")); err != nil || !bytes.Equal(ca, pair.ca) {
			t.Fatalf("dev-certs made a new CA instead of reusing the first one (%v)", err)
		}
		next, err := framework.ParseCertificate(pair.cert)
		if err != nil {
			t.Fatal(err)
		}
		newSerial := next.SerialNumber
		if newSerial.Cmp(before.SerialNumber) == 0 {
			t.Fatalf("rotation %d: the new serving certificate has serial %v, the served one %v: nothing to rotate",
				i, newSerial, before.SerialNumber)
		}

		swapped := time.Now()
		if err := writeSecretVolume(env.tlsDir, pair); err != nil {
			t.Fatalf("rotation %d: swapping the certificate: %v", i, err)
		}
		err = framework.Poll(reloadWithin, nil, func() (bool, string) {
			cert, err := framework.ServedCertificate(env.server.listen, "127.0.0.1", framework.CertPool(t, env.caPEM))
			if err != nil {
				return false, err.Error()
			}
			return cert.SerialNumber.Cmp(newSerial) == 0, "serial " + cert.SerialNumber.String()
		})
		if err != nil {
			env.server.proc.PrintLogTail(os.Stderr, 20)
			t.Fatalf("rotation %d: the new serial %v is not served: %v", i, newSerial, err)
		}
		t.Logf("rotation %d: served %s after the swap", i, time.Since(swapped).Round(time.Millisecond))
		if !load.RunFor(load.Count()+cyclesAround, settle, 30*time.Second) {
			t.Fatalf("rotation %d: the load stalled after the swap: %s", i, load)
		}
	}
	load.Stop()
	t.Logf("load: %s", load)
	if f := load.Failures(); len(f) > 0 {
		t.Errorf("%d of the requests through the webhooks failed around the rotations:\n  %s", len(f), strings.Join(f, "\n  "))
	}
}

// startLoad creates and deletes labelled StatefulSets through the apiserver,
// one at a time per worker, each create going through both webhooks. It is
// bounded by loadFor and loadMaxCycles and stops by itself.
func startLoad(t *testing.T, cs kubernetes.Interface, ns string) *framework.Load {
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
	t.Cleanup(cancel)
	stsClient := cs.AppsV1().StatefulSets(ns)
	return framework.StartLoad(ctx, "create/delete cycles", loadWorkers, loadMaxCycles, func(ctx context.Context, worker, i int) error {
		defer framework.HaltIfStopping()
		sts := template.DeepCopy()
		sts.Name = fmt.Sprintf("load-%d-%d", worker, i)
		created, err := stsClient.Create(ctx, sts, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("%s: create: %w", sts.Name, err)
		}
		if vct(created, "cache") == nil {
			return fmt.Errorf("%s: created without the cache claim (the mutating webhook did not run)", sts.Name)
		}
		if err := stsClient.Delete(ctx, sts.Name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("%s: delete: %w", sts.Name, err)
		}
		return nil
	})
}
