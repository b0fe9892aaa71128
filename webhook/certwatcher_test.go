package webhook

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dittofs/dittofs-webhook/certs"
)

// TestReloadDuringRotationNeverFails: reloads racing with Secret-volume
// rotations never read the old certificate with the new key, so a good
// rotation is never counted or logged as a failure.
func TestReloadDuringRotationNeverFails(t *testing.T) {
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const rotations = 150
	pairs := make([][2][]byte, rotations+1)
	for i := range pairs {
		crt, key, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = [2][]byte{crt, key}
	}
	swap := func(i int) {
		stamp := fmt.Sprintf("..%d", i)
		must(t, os.Mkdir(filepath.Join(dir, stamp), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, stamp, "tls.crt"), pairs[i][0], 0o600))
		must(t, os.WriteFile(filepath.Join(dir, stamp, "tls.key"), pairs[i][1], 0o600))
		must(t, os.Symlink(stamp, filepath.Join(dir, "..data_tmp")))
		must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	swap(0)
	for _, f := range []string{"tls.crt", "tls.key"} {
		must(t, os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)))
	}
	m := NewMetrics(prometheus.NewRegistry())
	w, err := NewCertWatcher(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), discardLog, m)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				w.Reload()
			}
		}
	})
	for i := 1; i <= rotations; i++ {
		swap(i)
		time.Sleep(time.Millisecond)
	}
	close(done)
	wg.Wait()
	w.Reload()
	if f := testutil.ToFloat64(m.certReloads.WithLabelValues("failure")); f != 0 {
		t.Errorf("%v failures counted during %d good rotations", f, rotations)
	}
	if got, want := w.Leaf().SerialNumber.String(), mustLeafSerial(t, pairs[rotations][0]); got != want {
		t.Errorf("serving %s, want the last pair %s", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustLeafSerial(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}
