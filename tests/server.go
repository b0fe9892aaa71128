package tests

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/certs"
)

// SecretVolume is a certificate directory laid out as the kubelet lays out a
// Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<stamp>, the ..data
// link swapped atomically on every update. The server tests, the watcher's
// and the binary's share it.
type SecretVolume struct {
	Dir string
	CA  *certs.CA
}

// NewSecretVolume returns a volume at dir (not created yet) with a new CA.
func NewSecretVolume(t testing.TB, dir string) *SecretVolume {
	t.Helper()
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	return &SecretVolume{Dir: dir, CA: ca}
}

// CertFile and KeyFile are the paths the server is given.
func (v *SecretVolume) CertFile() string { return filepath.Join(v.Dir, "tls.crt") }
func (v *SecretVolume) KeyFile() string  { return filepath.Join(v.Dir, "tls.key") }

// GarbagePair is a pair that does not parse.
var GarbagePair = [2][]byte{[]byte("not a certificate"), []byte("not a key")}

// Issue returns a new serving pair for loopback from the volume's CA.
func (v *SecretVolume) Issue(t testing.TB) [2][]byte {
	t.Helper()
	crt, key, err := v.CA.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return [2][]byte{crt, key}
}

// Mismatched is a certificate with another certificate's key.
func (v *SecretVolume) Mismatched(t testing.TB) [2][]byte {
	return [2][]byte{v.Issue(t)[0], v.Issue(t)[1]}
}

// Write publishes pair as the kubelet does. The tls.crt and tls.key links are
// made first (dangling until ..data exists) so both files appear at once; a
// missing directory is built beside it and renamed into place, so it appears
// at once too.
func (v *SecretVolume) Write(t testing.TB, pair [2][]byte) {
	t.Helper()
	dir := v.Dir
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		dir += ".staging"
		must(t, os.Mkdir(dir, 0o755))
		defer func() { must(t, os.Rename(dir, v.Dir)) }()
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); os.IsNotExist(err) {
			must(t, os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)))
		}
	}
	stamp := fmt.Sprintf("..%d", time.Now().UnixNano())
	must(t, os.Mkdir(filepath.Join(dir, stamp), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, stamp, "tls.crt"), pair[0], 0o600))
	must(t, os.WriteFile(filepath.Join(dir, stamp, "tls.key"), pair[1], 0o600))
	must(t, os.Symlink(stamp, filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
}

// Remove removes the files (the ..data link), leaving dangling links.
func (v *SecretVolume) Remove(t testing.TB) {
	t.Helper()
	must(t, os.Remove(filepath.Join(v.Dir, "..data")))
}

// Client trusts the volume's CA; protos are the ALPN protocols offered.
func (v *SecretVolume) Client(protos ...string) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(v.CA.Cert)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: protos}, ForceAttemptHTTP2: len(protos) > 0,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// ServedSerial dials addr and returns the serial of the certificate it
// presents.
func ServedSerial(t testing.TB, addr string) string {
	t.Helper()
	anyCert := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only reading the certificate
	conn, err := tls.Dial("tcp", addr, anyCert)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// Scrape reads the samples a /metrics URL serves.
func Scrape(t testing.TB, url string) []Sample {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	samples, err := ReadMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

// Metric is SumMetric of selector over what url serves.
func Metric(t testing.TB, url, selector string) float64 {
	t.Helper()
	v, err := SumMetric(Scrape(t, url), selector)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// HTTPStatus is the status of a GET of url, 0 when it cannot be had.
func HTTPStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Eventually polls f until it reports true, and fails t if it does not
// within d; it returns f's last value.
func Eventually[T any](t testing.TB, d time.Duration, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s (last value %v)", d, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
