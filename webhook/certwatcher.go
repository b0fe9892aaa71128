package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultCertPollInterval is how often the certificate files are re-read even
// without a filesystem event: events can be missed (a watched directory
// replaced, an overlay filesystem), and SPEC §5 promises a reload within 10 s.
const DefaultCertPollInterval = 5 * time.Second

// CertWatcher serves a TLS key pair from files and reloads it when they change,
// in the manner of controller-runtime's certwatcher and cert-manager's
// file_source: the pair is loaded at start, served through GetCertificate,
// watched with fsnotify and polled, compared by bytes, and a bad new pair keeps
// the old one serving. When no pair can be loaded at start the watcher serves
// none (GetCertificate fails, Healthy is false) until the first good pair
// appears.
type CertWatcher struct {
	certFile, keyFile string
	poll              time.Duration
	log               *slog.Logger
	metrics           *Metrics
	// readFile reads a file (os.ReadFile; a test interleaves changes with it).
	readFile func(string) ([]byte, error)

	current atomic.Pointer[tls.Certificate]
	// waitReason says why no certificate is loaded yet (nil once one is).
	waitReason atomic.Pointer[string]

	mu              sync.Mutex // serialises reloads
	certPEM, keyPEM []byte     // the bytes of the pair being served
	badCert, badKey []byte     // the last pair that failed, so it is counted once
	haveBad         bool       // badCert and badKey are set (they may be empty)
	readErr         string     // the last read error reported, so it is reported once
}

// errNoCertificate fails TLS handshakes until a pair is loaded.
var errNoCertificate = errors.New("no serving certificate loaded yet")

// newCertWatcher returns a watcher that serves no certificate yet; loadAtStart
// or Reload loads one.
func newCertWatcher(certFile, keyFile string, log *slog.Logger, metrics *Metrics) *CertWatcher {
	w := &CertWatcher{certFile: certFile, keyFile: keyFile, poll: DefaultCertPollInterval, log: log, metrics: metrics,
		readFile: os.ReadFile}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	reason := errNoCertificate.Error()
	w.waitReason.Store(&reason)
	return w
}

// loadAtStart tries the pair once, at start. On success it is served (not
// counted as a reload); on failure the error is logged and counted, and the
// watcher keeps waiting: Start installs the first good pair that appears.
func (w *CertWatcher) loadAtStart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reloadLocked(false)
}

// GetCertificate is the tls.Config hook that serves the current pair. Until
// one is loaded it fails, and so does the handshake.
func (w *CertWatcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := w.current.Load(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// Healthy reports whether a certificate is loaded (for /readyz).
func (w *CertWatcher) Healthy() bool { return w.current.Load() != nil }

// NotReady returns nil once a certificate is loaded, and before that an error
// saying why none is (for the body of /readyz).
func (w *CertWatcher) NotReady() error {
	if w.Healthy() {
		return nil
	}
	if r := w.waitReason.Load(); r != nil {
		return errors.New(*r)
	}
	return errNoCertificate
}

// Leaf returns the certificate being served.
func (w *CertWatcher) Leaf() *x509.Certificate {
	if c := w.current.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// Start watches and polls the files until ctx is done. It returns when the
// watcher has stopped.
func (w *CertWatcher) Start(ctx context.Context) {
	var fw *fsnotify.Watcher
	var events <-chan fsnotify.Event
	var errs <-chan error
	dirs := uniqueDirs(w.certFile, w.keyFile)
	if f, err := fsnotify.NewWatcher(); err != nil {
		w.log.Warn("certificate watch unavailable, polling only", "error", err)
	} else {
		fw = f
		defer fw.Close()
		// Watch the directories, not the files: a Secret volume swaps a symlink
		// (..data) in the directory, and an editor or cert-manager may replace
		// the file itself, which would drop a watch on the old inode.
		for _, dir := range dirs {
			if err := fw.Add(dir); err != nil {
				w.log.Warn("cannot watch certificate directory, polling it until it can be", "dir", dir, "error", err)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			w.Reload()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("certificate watch error", "error", err)
		case <-tick.C:
			if fw != nil {
				w.rewatch(fw, dirs)
			}
			w.Reload()
		}
	}
}

// rewatch adds the watch of a directory that could not be watched before
// (it did not exist yet) or whose watch was dropped (it was removed and
// created again). The poll covers the files meanwhile.
func (w *CertWatcher) rewatch(fw *fsnotify.Watcher, dirs []string) {
	watched := fw.WatchList()
	for _, dir := range dirs {
		if slices.Contains(watched, dir) {
			continue
		}
		if err := fw.Add(dir); err == nil {
			w.log.Info("watching certificate directory", "dir", dir)
		}
	}
}

// Reload re-reads the files and serves the new pair if it differs from the
// current one and is valid. A bad pair is logged and counted once, and the old
// pair (if any) keeps serving; so is an unreadable pair, once per distinct
// error, so missing files are not reported at every poll.
func (w *CertWatcher) Reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reloadLocked(true)
}

// reloadLocked is Reload with w.mu held; counted says whether a success is
// counted as a reload (every load but the one at start).
func (w *CertWatcher) reloadLocked(counted bool) {
	certPEM, keyPEM, err := readPair(w.readFile, w.certFile, w.keyFile)
	if err != nil {
		// readPair gives the same error for the same files, however a read
		// raced with the change that led to them, so this is once per state.
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.failed(err)
		}
		return
	}
	w.readErr = ""
	if w.current.Load() != nil && bytes.Equal(certPEM, w.certPEM) && bytes.Equal(keyPEM, w.keyPEM) {
		return
	}
	if w.haveBad && bytes.Equal(certPEM, w.badCert) && bytes.Equal(keyPEM, w.badKey) {
		return
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		w.badCert, w.badKey, w.haveBad = certPEM, keyPEM, true
		w.failed(err)
		return
	}
	w.install(certPEM, keyPEM, cert, counted)
}

// failed logs and counts a pair that could not be loaded.
func (w *CertWatcher) failed(err error) {
	w.metrics.certLoaded(false, time.Time{}, true)
	if w.current.Load() != nil {
		w.log.Error("certificate reload failed, still serving the previous certificate",
			"cert_file", w.certFile, "key_file", w.keyFile, "error", err)
		return
	}
	reason := errNoCertificate.Error() + ": " + strings.ReplaceAll(err.Error(), "\n", " ")
	w.waitReason.Store(&reason)
	w.log.Error("no serving certificate loaded, waiting for valid certificate files (not ready until then)",
		"cert_file", w.certFile, "key_file", w.keyFile, "error", err)
}

func (w *CertWatcher) install(certPEM, keyPEM []byte, cert *tls.Certificate, reload bool) {
	w.certPEM, w.keyPEM = certPEM, keyPEM
	w.badCert, w.badKey, w.haveBad = nil, nil, false
	// Counted before it is served: whoever sees the pair in use (a handshake,
	// /readyz) then sees it in the metrics too.
	w.metrics.certLoaded(true, cert.Leaf.NotAfter, reload)
	w.current.Store(cert)
	w.waitReason.Store(nil)
	w.log.Info("serving certificate loaded", "subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter, "reload", reload)
}

// readPair reads the certificate and the key with read. The reads are not
// atomic, and a change between them (the Secret volume's ..data swap, or its
// removal) would give a result that matches neither the files before nor the
// files after: the old certificate with the new key, which looks like a bad
// pair, or the certificate read and then the key missing, an error worded
// otherwise than the one every later read gives ("reading key" rather than
// "reading certificate"), so reported a second time for the same removal. So
// the certificate is read again after the key, whether the key could be read
// or not, and the result (the pair or the key's error) is only returned when
// the certificate did not change meanwhile: the result then depends on the
// files, not on when the read raced with a change.
func readPair(read func(string) ([]byte, error), certFile, keyFile string) ([]byte, []byte, error) {
	for attempt := 0; ; attempt++ {
		// The first read can fail too: the kubelet removes the previous
		// ..<timestamp> directory right after the swap, so a path resolved
		// through the old ..data just before it is gone. Files really missing
		// fail every attempt and are reported after the last.
		certPEM, certErr := read(certFile)
		keyPEM, keyErr := read(keyFile)
		again, againErr := read(certFile)
		if (certErr == nil && againErr == nil && bytes.Equal(certPEM, again)) || attempt == 4 {
			switch {
			case certErr != nil:
				return nil, nil, fmt.Errorf("reading certificate: %w", certErr)
			case againErr != nil:
				return nil, nil, fmt.Errorf("reading certificate: %w", againErr)
			case keyErr != nil:
				return nil, nil, fmt.Errorf("reading key: %w", keyErr)
			}
			return certPEM, keyPEM, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading key pair: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		return nil, errors.New("certificate expired at " + cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

func uniqueDirs(files ...string) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, f := range files {
		d := filepath.Dir(f)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}
