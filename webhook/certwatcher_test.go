package webhook

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	w := loadedCertWatcher(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), m)
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

// logCounter is a slog.Handler that counts the records at error level.
type logCounter struct{ errors atomic.Int64 }

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		c.errors.Add(1)
	}
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }

func issuePair(t *testing.T, ca *certs.CA) [2][]byte {
	t.Helper()
	crt, key, err := ca.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return [2][]byte{crt, key}
}

// mismatchedPair is a certificate with another certificate's key.
func mismatchedPair(t *testing.T, ca *certs.CA) [2][]byte {
	return [2][]byte{issuePair(t, ca)[0], issuePair(t, ca)[1]}
}

var garbagePair = [2][]byte{[]byte("not a certificate"), []byte("not a key")}

// writeSecretVolume lays pair out in dir as the kubelet does for a Secret
// volume: tls.crt -> ..data/tls.crt, ..data -> ..<stamp>, the ..data link
// swapped atomically. The tls.crt and tls.key links are made first (dangling
// until ..data exists) so both files appear at once. A missing dir is built
// beside it and renamed into place, so the directory appears at once too.
func writeSecretVolume(t *testing.T, dir string, pair [2][]byte) {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		staging := dir + ".staging"
		must(t, os.Mkdir(staging, 0o755))
		writeSecretVolume(t, staging, pair)
		must(t, os.Rename(staging, dir))
		return
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

// removeSecretVolume removes the files (the ..data link), leaving dangling
// tls.crt and tls.key links.
func removeSecretVolume(t *testing.T, dir string) {
	t.Helper()
	must(t, os.Remove(filepath.Join(dir, "..data")))
}

// noWatcherGoroutines fails if a certificate watcher or fsnotify goroutine is
// still running (tests in this package do not run in parallel).
func noWatcherGoroutines(t *testing.T) {
	t.Helper()
	noGoroutines(t, "watcher", "(*CertWatcher).Start", "fsnotify")
}

// noGoroutines fails t if, within 2 s, goroutines whose stack contains any of
// frames are still running.
func noGoroutines(t *testing.T, what string, frames ...string) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if slices.ContainsFunc(frames, func(f string) bool { return strings.Contains(g, f) }) {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%d %s goroutines left running:\n%s", len(left), what, strings.Join(left, "\n\n"))
	}
}

// TestCertWatcherWaitsForAPair: a watcher started without a loadable pair
// serves none (handshakes fail, not healthy, a reason given) until a good pair
// appears, and then serves it. Each distinct failure is logged and counted
// once however many polls see it; a failure once a pair is served keeps it.
func TestCertWatcherWaitsForAPair(t *testing.T) {
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		name string
		do   func(t *testing.T, dir string)
		// What holds after the step, and still holds several polls later.
		healthy                 bool
		failures, successes     float64
		errorLogs               int64
		sameCertificateAsBefore bool
	}
	good := func(t *testing.T, dir string) { writeSecretVolume(t, dir, issuePair(t, ca)) }
	garbage := func(t *testing.T, dir string) { writeSecretVolume(t, dir, garbagePair) }
	mismatched := func(t *testing.T, dir string) { writeSecretVolume(t, dir, mismatchedPair(t, ca)) }
	emptyDir := func(t *testing.T, dir string) { must(t, os.Mkdir(dir, 0o755)) }
	cases := []struct {
		name  string
		start func(t *testing.T, dir string) // the files at start; nil: no directory
		steps []step
	}{
		{"files written later", emptyDir, []step{
			{name: "at start", failures: 1, errorLogs: 1},
			{name: "good pair", do: good, healthy: true, failures: 1, successes: 1, errorLogs: 1},
		}},
		{"directory created later", nil, []step{
			{name: "at start", failures: 1, errorLogs: 1},
			{name: "good pair", do: good, healthy: true, failures: 1, successes: 1, errorLogs: 1},
		}},
		{"bad pair, then missing, then mismatched, then good", garbage, []step{
			{name: "at start", failures: 1, errorLogs: 1},
			{name: "files removed", do: removeSecretVolume, failures: 2, errorLogs: 2},
			{name: "mismatched pair", do: mismatched, failures: 3, errorLogs: 3},
			{name: "good pair", do: good, healthy: true, failures: 3, successes: 1, errorLogs: 3},
		}},
		{"good pair, then removed, then bad, then good", good, []step{
			{name: "at start", healthy: true},
			{name: "files removed", do: removeSecretVolume, healthy: true, failures: 1, errorLogs: 1, sameCertificateAsBefore: true},
			{name: "bad pair", do: garbage, healthy: true, failures: 2, errorLogs: 2, sameCertificateAsBefore: true},
			{name: "good pair", do: good, healthy: true, failures: 2, successes: 1, errorLogs: 2},
		}},
	}
	const poll = 20 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			if tc.start != nil {
				tc.start(t, dir)
			}
			logs := &logCounter{}
			m := NewMetrics(prometheus.NewRegistry())
			w := newCertWatcher(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(logs), m)
			w.poll = poll
			w.loadAtStart()
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			go func() { w.Start(ctx); close(stopped) }()
			defer func() {
				cancel()
				<-stopped
				noWatcherGoroutines(t)
			}()
			var serial string
			for _, st := range tc.steps {
				if st.do != nil {
					st.do(t, dir)
				}
				state := func() (string, bool) {
					got := fmt.Sprintf("%s: healthy=%v failures=%v successes=%v errorLogs=%d", st.name,
						w.Healthy(), testutil.ToFloat64(m.certReloads.WithLabelValues("failure")),
						testutil.ToFloat64(m.certReloads.WithLabelValues("success")), logs.errors.Load())
					want := fmt.Sprintf("%s: healthy=%v failures=%v successes=%v errorLogs=%d", st.name, st.healthy, st.failures, st.successes, st.errorLogs)
					return got, got == want
				}
				waitFor(t, 10*time.Second, state)
				time.Sleep(10 * poll) // many polls: nothing more is counted or logged
				if got, ok := state(); !ok {
					t.Fatalf("%s: %s after more polls", st.name, got)
				}
				_, certErr := w.GetCertificate(nil)
				if ready := w.NotReady(); (certErr == nil) != st.healthy || (ready == nil) != st.healthy {
					t.Errorf("%s: GetCertificate error %v, NotReady %v, want them nil only when healthy (%v)", st.name, certErr, ready, st.healthy)
				}
				if !st.healthy {
					if r := w.NotReady(); r == nil || r.Error() == "" || strings.Contains(r.Error(), "\n") {
						t.Errorf("%s: NotReady = %q, want a one-line reason", st.name, r)
					}
					if expiry := testutil.ToFloat64(m.certExpiry); expiry != 0 {
						t.Errorf("%s: expiry gauge %v without a certificate", st.name, expiry)
					}
					continue
				}
				if expiry := testutil.ToFloat64(m.certExpiry); expiry != float64(w.Leaf().NotAfter.Unix()) {
					t.Errorf("%s: expiry gauge %v, want the served NotAfter %v", st.name, expiry, w.Leaf().NotAfter.Unix())
				}
				now := w.Leaf().SerialNumber.String()
				if (now == serial) != st.sameCertificateAsBefore {
					t.Errorf("%s: serving %s, before %s; want the same: %v", st.name, now, serial, st.sameCertificateAsBefore)
				}
				serial = now
			}
		})
	}
}

// TestCertWatcherRemovalDuringRead: a Secret volume removed while a reload
// reads it (after the certificate, before or after the key) is one failure,
// logged and counted once, however the later reloads see it: the read racing
// with the removal reports what they report, not that the key went missing.
func TestCertWatcherRemovalDuringRead(t *testing.T) {
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		file     string // remove ..data just before this read
		nthRead  int    // of the file
		wantsErr string
	}{
		{"before the key is read", "tls.key", 1, "reading certificate"},
		{"before the certificate is read again", "tls.crt", 2, "reading certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			writeSecretVolume(t, dir, issuePair(t, ca))
			logs := &logCounter{}
			m := NewMetrics(prometheus.NewRegistry())
			w := newCertWatcher(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(logs), m)
			w.loadAtStart()
			if !w.Healthy() {
				t.Fatal("the pair was not loaded at start")
			}
			reads := 0
			w.readFile = func(name string) ([]byte, error) {
				if filepath.Base(name) == tc.file {
					if reads++; reads == tc.nthRead {
						removeSecretVolume(t, dir)
					}
				}
				return os.ReadFile(name)
			}
			for range 3 {
				w.Reload()
			}
			failures := testutil.ToFloat64(m.certReloads.WithLabelValues("failure"))
			if failures != 1 || logs.errors.Load() != 1 || !w.Healthy() {
				t.Errorf("failures=%v errorLogs=%d healthy=%v, want one failure logged once and the old pair kept",
					failures, logs.errors.Load(), w.Healthy())
			}
			if !strings.HasPrefix(w.readErr, tc.wantsErr) {
				t.Errorf("reported %q, want the error every later read gives (%s)", w.readErr, tc.wantsErr)
			}
		})
	}
}

// TestCertWatcherWatchesDirectoryCreatedLater: a directory that did not exist
// at start is watched once it appears, so a rotation after that is seen by
// fsnotify, long before the next poll.
func TestCertWatcherWatchesDirectoryCreatedLater(t *testing.T) {
	ca, err := certs.NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	const poll = 2 * time.Second
	w := newCertWatcher(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), discardLog, nil)
	w.poll = poll
	w.loadAtStart()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Start(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	writeSecretVolume(t, dir, issuePair(t, ca))
	first := waitFor(t, 2*poll, func() (string, bool) {
		if l := w.Leaf(); l != nil {
			return l.SerialNumber.String(), true
		}
		return "", false
	})
	// Loaded at a poll, which also added the watch: the next poll is about
	// 2 s away, fsnotify takes milliseconds.
	writeSecretVolume(t, dir, issuePair(t, ca))
	waitFor(t, poll/2, func() (string, bool) { s := w.Leaf().SerialNumber.String(); return s, s != first })
}

// loadedCertWatcher returns a watcher that loaded the pair at start, as Run's
// does, and fails the test if it could not.
func loadedCertWatcher(t *testing.T, certFile, keyFile string, m *Metrics) *CertWatcher {
	t.Helper()
	w := newCertWatcher(certFile, keyFile, discardLog, m)
	w.loadAtStart()
	if err := w.NotReady(); err != nil {
		t.Fatal(err)
	}
	return w
}
