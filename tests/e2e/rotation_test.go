package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

const (
	reloadWithin = 10 * time.Second // how soon a rotated certificate is served (SPEC §5)
	rotations    = 3
	// loadWorkers create and delete labelled StatefulSets for loadFor or loadMaxCycles in all; before the first
	// swap and after each new certificate is served, the load runs at least settle and cyclesAround cycles.
	loadWorkers, loadFor, loadMaxCycles = 2, 90 * time.Second, 20000
	settle, cyclesAround                = time.Second, 20
)

// 8. The certificate is rotated the kubelet's way, several times, under load
// through the webhooks: nothing fails, each is served within 10 s (SPEC §5).
func TestCertificateRotation(t *testing.T) {
	var template appsv1.StatefulSet
	if err := yaml.Unmarshal([]byte(dittofs("load").yaml()), &template); err != nil {
		t.Fatal(err)
	}
	// No pods: else the StatefulSet controller would make a pod and three
	// kept PVCs for each of thousands of StatefulSets, a backlog for later tests.
	template.Spec.Replicas = new(int32)
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	t.Cleanup(cancel)
	stsClient := env.Client.AppsV1().StatefulSets(newNamespace(t))
	// Each create goes through both webhooks.
	load := framework.StartLoad(ctx, "create/delete cycles", loadWorkers, loadMaxCycles, func(ctx context.Context, worker, i int) error {
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
	defer load.Stop()
	if !load.RunFor(cyclesAround, settle, 30*time.Second) {
		t.Fatalf("the load did not get going: %s", load)
	}

	roots := framework.CertPool(t, env.caPEM)
	for i := 1; i <= rotations; i++ {
		before, err := framework.ServedCertificate(env.server.listen, "127.0.0.1", roots)
		if err != nil {
			t.Fatalf("rotation %d: dialling the server before the swap: %v", i, err)
		}
		pair, err := env.issueServingPair(fmt.Sprintf("rotated-%d-%d", time.Now().UnixNano(), i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(env.caPEM, pair["ca.crt"]) {
			t.Fatal("dev-certs made a new CA instead of reusing the first one")
		}
		next, err := framework.ParseCertificate(pair["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		if newSerial := next.SerialNumber; newSerial.Cmp(before.SerialNumber) == 0 {
			t.Fatalf("rotation %d: the new serving certificate has the served one's serial %v", i, newSerial)
		}

		swapped := time.Now()
		if err := tests.WriteSecretVolume(env.tlsDir, pair); err != nil {
			t.Fatalf("rotation %d: swapping the certificate: %v", i, err)
		}
		err = framework.Poll(reloadWithin, nil, func() (bool, string) {
			cert, err := framework.ServedCertificate(env.server.listen, "127.0.0.1", roots)
			if err != nil {
				return false, err.Error()
			}
			return cert.SerialNumber.Cmp(next.SerialNumber) == 0, "serial " + cert.SerialNumber.String()
		})
		if err != nil {
			env.server.proc.PrintLogTail(os.Stderr, 20)
			t.Fatalf("rotation %d: the new serial %v is not served: %v", i, next.SerialNumber, err)
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
