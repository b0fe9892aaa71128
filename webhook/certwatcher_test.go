package webhook

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dittofs/dittofs-webhook/tests"
)

// logRecorder is a slog.Handler that keeps the records logged.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// errors counts the records at error level.
func (l *logRecorder) errors() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(l.records), func(r slog.Record) bool { return r.Level < slog.LevelError }))
}

// watcher is a certificate watcher on a Secret volume, with its metrics and logs.
type watcher struct {
	*CertWatcher
	vol  *tests.SecretVolume
	m    *Metrics
	logs *logRecorder
}

// newWatcher watches a volume not made yet; prepare lays it out before the first load.
func newWatcher(t *testing.T, poll time.Duration, prepare func(*tests.SecretVolume)) *watcher {
	t.Helper()
	vol := tests.NewSecretVolume(t, filepath.Join(t.TempDir(), "tls"))
	if prepare != nil {
		prepare(vol)
	}
	w := &watcher{vol: vol, m: NewMetrics(prometheus.NewRegistry()), logs: &logRecorder{}}
	w.CertWatcher = newCertWatcher(vol.CertFile(), vol.KeyFile(), slog.New(w.logs), w.m)
	w.poll = poll
	w.loadAtStart()
	return w
}

// start runs the watcher until the test ends, then checks no goroutine is left.
func (w *watcher) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Start(ctx); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
		noGoroutines(t, "watcher", "(*CertWatcher).Start", "fsnotify")
	})
}

func (w *watcher) reloads(result string) float64 {
	return testutil.ToFloat64(w.m.certReloads.WithLabelValues(result))
}

func (w *watcher) serial() string {
	if l := w.Leaf(); l != nil {
		return l.SerialNumber.String()
	}
	return ""
}

// serves reports whether w serves pair's certificate.
func (w *watcher) serves(pair [2][]byte) bool {
	block, _ := pem.Decode(pair[0])
	return block != nil && w.Leaf() != nil && bytes.Equal(w.Leaf().Raw, block.Bytes)
}

// TestReloadDuringRotationNeverFails: reloads racing with rotations never read
// the old certificate with the new key, so no good rotation counts as a failure.
func TestReloadDuringRotationNeverFails(t *testing.T) {
	const rotations = 150
	var last [2][]byte
	w := newWatcher(t, DefaultCertPollInterval, func(v *tests.SecretVolume) { v.Write(t, v.Issue(t)) })
	pairs := make([][2][]byte, rotations)
	for i := range pairs {
		pairs[i] = w.vol.Issue(t)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			w.Reload()
		}
	})
	for _, last = range pairs {
		w.vol.Write(t, last)
		time.Sleep(time.Millisecond)
	}
	stop()
	wg.Wait()
	w.Reload()
	if f := w.reloads("failure"); f != 0 || w.logs.errors() != 0 {
		t.Errorf("%v failures counted, %d logged during %d good rotations", f, w.logs.errors(), rotations)
	}
	if !w.serves(last) {
		t.Errorf("serving %s, not the last pair", w.serial())
	}
}

// TestCertWatcherWaitsForAPair: a watcher without a loadable pair serves none
// (not healthy, a reason given) until a good pair appears. Each distinct failure
// is logged and counted once however many polls see it; a served pair is kept.
func TestCertWatcherWaitsForAPair(t *testing.T) {
	type step struct {
		name string
		do   func(v *tests.SecretVolume)
		// What holds after the step, and still holds several polls later.
		healthy                 bool
		failures, successes     float64
		errorLogs               int
		sameCertificateAsBefore bool
	}
	good := func(v *tests.SecretVolume) { v.Write(t, v.Issue(t)) }
	garbage := func(v *tests.SecretVolume) { v.Write(t, tests.GarbagePair) }
	// A certificate with another certificate's key.
	mismatched := func(v *tests.SecretVolume) { v.Write(t, [2][]byte{v.Issue(t)[0], v.Issue(t)[1]}) }
	emptyDir := func(v *tests.SecretVolume) { tests.Must(0, os.Mkdir(v.Dir, 0o755))(t) }
	removed := func(v *tests.SecretVolume) { v.Remove(t) }
	waitGood := []step{
		{name: "at start", failures: 1, errorLogs: 1},
		{name: "good pair", do: good, healthy: true, failures: 1, successes: 1, errorLogs: 1},
	}
	for _, tc := range []struct {
		name  string
		start func(v *tests.SecretVolume) // the files at start; nil: no directory
		steps []step
	}{
		{"files written later", emptyDir, waitGood},
		{"directory created later", nil, waitGood},
		{"bad pair, then missing, then mismatched, then good", garbage, []step{
			{name: "at start", failures: 1, errorLogs: 1},
			{name: "files removed", do: removed, failures: 2, errorLogs: 2},
			{name: "mismatched pair", do: mismatched, failures: 3, errorLogs: 3},
			{name: "good pair", do: good, healthy: true, failures: 3, successes: 1, errorLogs: 3},
		}},
		{"good pair, then removed, then bad, then mismatched, then good", good, []step{
			{name: "at start", healthy: true},
			{name: "files removed", do: removed, healthy: true, failures: 1, errorLogs: 1, sameCertificateAsBefore: true},
			{name: "bad pair", do: garbage, healthy: true, failures: 2, errorLogs: 2, sameCertificateAsBefore: true},
			{name: "mismatched pair", do: mismatched, healthy: true, failures: 3, errorLogs: 3, sameCertificateAsBefore: true},
			{name: "good pair", do: good, healthy: true, failures: 3, successes: 1, errorLogs: 3},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const poll = 20 * time.Millisecond
			w := newWatcher(t, poll, tc.start)
			w.start(t)
			var serial string
			for _, st := range tc.steps {
				if st.do != nil {
					st.do(w.vol)
				}
				state := func() (string, bool) {
					const f = "healthy=%v failures=%v successes=%v errorLogs=%d"
					got := fmt.Sprintf(f, w.Healthy(), w.reloads("failure"), w.reloads("success"), w.logs.errors())
					return got, got == fmt.Sprintf(f, st.healthy, st.failures, st.successes, st.errorLogs)
				}
				tests.Eventually(t, 10*time.Second, state)
				time.Sleep(10 * poll) // many polls: nothing more is counted or logged
				if got, ok := state(); !ok {
					t.Fatalf("%s: %s after more polls", st.name, got)
				}
				_, certErr := w.GetCertificate(nil)
				ready, expiry, wantExpiry := w.NotReady(), testutil.ToFloat64(w.m.certExpiry), 0.0
				if st.healthy {
					wantExpiry = float64(w.Leaf().NotAfter.Unix())
				}
				oneLine := ready != nil && ready.Error() != "" && !strings.Contains(ready.Error(), "\n")
				if (certErr == nil) != st.healthy || (ready == nil) != st.healthy || oneLine == st.healthy ||
					expiry != wantExpiry {
					t.Errorf("%s: GetCertificate error %v, NotReady %q, expiry gauge %v; want nil, nil and the "+
						"served NotAfter when healthy (%v), else a one-line reason and 0", st.name, certErr, ready,
						expiry, st.healthy)
				}
				if now := w.serial(); st.healthy && (now == serial) != st.sameCertificateAsBefore {
					t.Errorf("%s: serving %s, before %s; want the same: %v",
						st.name, now, serial, st.sameCertificateAsBefore)
				}
				serial = w.serial()
			}
		})
	}
}

// TestCertWatcherChangesDuringRead: a volume removed while a reload reads it is
// one failure, logged and counted once, the old pair kept, reported as the later
// reads see it. The kubelet removes the old ..<timestamp> directory right after
// the ..data swap: a read through the old ..data that finds it gone is a
// rotation, not a failure, and the new pair is served.
func TestCertWatcherChangesDuringRead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     string // act just before this read of the file
		nthRead  int
		rotate   bool   // swap in a new pair and fail the read; else remove ..data
		wantsErr string // the error reported, "" for none
	}{
		{"removed before the key is read", "tls.key", 1, false, "reading certificate"},
		{"removed before the certificate is read again", "tls.crt", 2, false, "reading certificate"},
		{"old directory removed after the certificate's path was resolved", "tls.crt", 1, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want [2][]byte
			w := newWatcher(t, DefaultCertPollInterval, func(v *tests.SecretVolume) {
				want = v.Issue(t)
				v.Write(t, want)
			})
			next, reads := w.vol.Issue(t), 0
			w.readFile = func(name string) ([]byte, error) {
				if filepath.Base(name) != tc.file {
					return os.ReadFile(name)
				}
				switch reads++; {
				case reads == tc.nthRead && tc.rotate:
					w.vol.Write(t, next)
					want = next
					return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
				case reads == tc.nthRead:
					w.vol.Remove(t)
				}
				return os.ReadFile(name)
			}
			for range 3 {
				w.Reload()
			}
			failures := min(len(tc.wantsErr), 1)
			if f := w.reloads("failure"); f != float64(failures) || w.logs.errors() != failures || !w.serves(want) {
				t.Errorf("failures=%v errorLogs=%d serving %s; want %d failures logged once, serving the pair wanted",
					f, w.logs.errors(), w.serial(), failures)
			}
			if !strings.HasPrefix(w.readErr, tc.wantsErr) {
				t.Errorf("reported %q, want the error every later read gives (%q)", w.readErr, tc.wantsErr)
			}
		})
	}
}

// TestCertWatcherSeesRotation: fsnotify sees a rotation long before the next
// poll, also in a directory created after the start; without an event (files
// rewritten before the watch began) the poll picks the new pair up.
func TestCertWatcherSeesRotation(t *testing.T) {
	t.Run("fsnotify", func(t *testing.T) {
		const poll = 2 * time.Second
		w := newWatcher(t, poll, nil)
		w.start(t)
		w.vol.Write(t, w.vol.Issue(t))
		first := tests.Eventually(t, 2*poll, func() (string, bool) { s := w.serial(); return s, s != "" })
		// Loaded at a poll, which also added the watch: the next poll is about
		// 2 s away, fsnotify takes milliseconds.
		w.vol.Write(t, w.vol.Issue(t))
		tests.Eventually(t, poll/2, func() (string, bool) { s := w.serial(); return s, s != first })
	})
	t.Run("poll", func(t *testing.T) {
		w := newWatcher(t, 50*time.Millisecond, func(v *tests.SecretVolume) { v.Write(t, v.Issue(t)) })
		first := w.serial()
		w.vol.Write(t, w.vol.Issue(t)) // before Start: fsnotify cannot have seen it, only the poll can
		w.start(t)
		tests.Eventually(t, 5*time.Second, func() (string, bool) { s := w.serial(); return s, s != first })
	})
}

// noGoroutines fails t if, within 2 s, goroutines whose stack contains any of
// frames are still running (tests in this package do not run in parallel).
func noGoroutines(t *testing.T, what string, frames ...string) {
	t.Helper()
	tests.Eventually(t, 2*time.Second, func() (string, bool) {
		buf := make([]byte, 1<<20)
		left := slices.DeleteFunc(strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n"), func(g string) bool {
			return !slices.ContainsFunc(frames, func(f string) bool { return strings.Contains(g, f) })
		})
		return fmt.Sprintf("%d %s goroutines left:\n%s", len(left), what, strings.Join(left, "\n\n")), len(left) == 0
	})
}
