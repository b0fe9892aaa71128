package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dittofs/dittofs-webhook/certs"
)

// SecretVolume is a certificate directory laid out as the kubelet lays out a
// Secret volume (tls.crt -> ..data/tls.crt, ..data -> ..<stamp> swapped atomically).
type SecretVolume struct {
	Dir string
	CA  *certs.CA
}

// NewSecretVolume returns a volume at dir (not created yet) with a new CA.
func NewSecretVolume(t testing.TB, dir string) *SecretVolume {
	t.Helper()
	return &SecretVolume{Dir: dir, CA: Must(certs.NewCA(0))(t)}
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
	must(t, err)
	return [2][]byte{crt, key}
}

// Write publishes pair as the kubelet does (WriteSecretVolume).
func (v *SecretVolume) Write(t testing.TB, pair [2][]byte) {
	t.Helper()
	must(t, WriteSecretVolume(v.Dir, map[string][]byte{"tls.crt": pair[0], "tls.key": pair[1]}))
}

// WriteSecretVolume writes data into dir as the kubelet's AtomicWriter updates a
// Secret volume: the files go into a new "..<timestamp>" directory, a
// "..data_tmp" symlink to it is renamed over "..data" (one atomic step), the
// previous directory is removed; each key is a symlink "KEY -> ..data/KEY"
// made before the swap, so every file changes at once. A missing dir is built
// beside it and renamed into place, so it too appears with all its files.
func WriteSecretVolume(dir string, data map[string][]byte) (err error) {
	root := dir
	if _, statErr := os.Stat(dir); os.IsNotExist(statErr) {
		root = dir + ".staging"
		if err := os.Mkdir(root, 0o755); err != nil {
			return err
		}
		defer func() {
			if err == nil {
				err = os.Rename(root, dir)
			}
		}()
	}
	oldTarget, _ := os.Readlink(filepath.Join(root, "..data"))
	tsDir, err := os.MkdirTemp(root, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if err := os.WriteFile(filepath.Join(tsDir, key), data[key], 0o644); err != nil {
			return err
		}
		link := filepath.Join(root, key)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", key) {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", key), link); err != nil {
			return err
		}
	}
	if err := os.Chmod(tsDir, 0o755); err != nil { // MkdirTemp makes it 0700
		return err
	}
	tmp := filepath.Join(root, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, "..data")); err != nil {
		return err
	}
	if oldTarget != "" && oldTarget != filepath.Base(tsDir) {
		return os.RemoveAll(filepath.Join(root, oldTarget))
	}
	return nil
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

// Scrape reads the samples a /metrics URL serves.
func Scrape(t testing.TB, url string) []Sample {
	t.Helper()
	resp := Must(http.Get(url))(t)
	defer resp.Body.Close()
	// The exposition is a few KiB; the bound keeps a broken one from eating memory.
	return Must(ReadMetrics(io.LimitReader(resp.Body, 1<<20)))(t)
}

// Metric is SumMetric of selector over what url serves.
func Metric(t testing.TB, url, selector string) float64 {
	t.Helper()
	return Must(SumMetric(Scrape(t, url), selector))(t)
}

// Running is a server started by StartRun.
type Running struct {
	Cancel context.CancelFunc // stops it
	Done   chan error         // its result; a test that reads it puts back nil for the cleanup
}

// StartRun runs run (a server such as webhook.Run) in a goroutine and returns
// once it has called ready; the test fails if run returns first or does not
// start within 30 s. When the test ends run is cancelled and must return nil.
func StartRun(t testing.TB, run func(ctx context.Context, ready func()) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, ready := &Running{Cancel: cancel, Done: make(chan error, 1)}, make(chan struct{})
	go func() { r.Done <- run(ctx, sync.OnceFunc(func() { close(ready) })) }()
	select {
	case <-ready:
	case err := <-r.Done:
		cancel()
		t.Fatalf("the server exited: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("the server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.Done:
			if err != nil {
				t.Errorf("the server returned %v after shutdown", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the server did not shut down")
		}
	})
	return r
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

// Eventually polls f (apimachinery's wait) until it reports true, and fails t
// if it does not within d; it returns f's last value.
func Eventually[T any](t testing.TB, d time.Duration, f func() (T, bool)) T {
	t.Helper()
	var v T
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, d, true,
		func(context.Context) (bool, error) {
			var ok bool
			v, ok = f()
			return ok, nil
		})
	if err != nil {
		t.Fatalf("condition not met within %s (last value %v)", d, v)
	}
	return v
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Must(f())(t) is f's value; an error of f fails t: for the setup calls of tests.
func Must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		must(t, err)
		return v
	}
}

// Sample is one series of a Prometheus text exposition (a histogram's
// _bucket, _sum and _count are three).
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ReadMetrics reads the samples of a Prometheus text exposition (what /metrics
// serves) with expfmt, histograms and summaries flattened as Prometheus does.
func ReadMetrics(r io.Reader) ([]Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{}, slices.Collect(maps.Values(fams))...)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(vec))
	for _, s := range vec {
		labels := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			if k != model.MetricNameLabel {
				labels[string(k)] = string(v)
			}
		}
		name := string(s.Metric[model.MetricNameLabel])
		out = append(out, Sample{Name: name, Labels: labels, Value: float64(s.Value)})
	}
	return out, nil
}

// SumMetric adds up the samples matching a selector: `name` or
// `name{label="value",...}`, the labels a subset of the series' labels.
func SumMetric(samples []Sample, selector string) (float64, error) {
	name, want, err := parseSelector(selector)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, s := range samples {
		match := s.Name == name
		for k, v := range want {
			match = match && s.Labels[k] == v
		}
		if match {
			sum += s.Value
		}
	}
	return sum, nil
}

// parseSelector parses `name` or `name{a="b",c="d"}` with the text parser.
func parseSelector(s string) (string, map[string]string, error) {
	if strings.ContainsAny(s, "\n#") || strings.TrimSpace(s) == "" {
		return "", nil, fmt.Errorf("bad metric selector %q", s)
	}
	samples, err := ReadMetrics(strings.NewReader(strings.TrimSpace(s) + " 0\n"))
	if err != nil {
		return "", nil, fmt.Errorf("bad metric selector %q: %w", s, err)
	}
	if len(samples) != 1 {
		return "", nil, errors.New("bad metric selector " + s)
	}
	return samples[0].Name, samples[0].Labels, nil
}
