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
// file_source: the pair is loaded at start (fail fast), served through
// GetCertificate, watched with fsnotify and polled, compared by bytes, and a
// bad new pair keeps the old one serving.
type CertWatcher struct {
	certFile, keyFile string
	poll              time.Duration
	log               *slog.Logger
	metrics           *Metrics

	current atomic.Pointer[tls.Certificate]

	mu              sync.Mutex // serialises reloads
	certPEM, keyPEM []byte     // the bytes of the pair being served
	badCert, badKey []byte     // the last pair that failed, so it is counted once
}

// NewCertWatcher loads the pair from certFile and keyFile; an error means the
// server must not start.
func NewCertWatcher(certFile, keyFile string, log *slog.Logger, metrics *Metrics) (*CertWatcher, error) {
	w := &CertWatcher{certFile: certFile, keyFile: keyFile, poll: DefaultCertPollInterval, log: log, metrics: metrics}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	certPEM, keyPEM, cert, err := w.read()
	if err != nil {
		return nil, err
	}
	w.install(certPEM, keyPEM, cert, false)
	return w, nil
}

// GetCertificate is the tls.Config hook that serves the current pair.
func (w *CertWatcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.current.Load(), nil
}

// Healthy reports whether a certificate is loaded (for /readyz).
func (w *CertWatcher) Healthy() bool { return w.current.Load() != nil }

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
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw, err := fsnotify.NewWatcher(); err != nil {
		w.log.Warn("certificate watch unavailable, polling only", "error", err)
	} else {
		defer fw.Close()
		// Watch the directories, not the files: a Secret volume swaps a symlink
		// (..data) in the directory, and an editor or cert-manager may replace
		// the file itself, which would drop a watch on the old inode.
		for _, dir := range uniqueDirs(w.certFile, w.keyFile) {
			if err := fw.Add(dir); err != nil {
				w.log.Warn("cannot watch certificate directory, polling only", "dir", dir, "error", err)
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
			w.Reload()
		}
	}
}

// Reload re-reads the files and serves the new pair if it differs from the
// current one and is valid. A bad pair is logged and counted once, and the old
// pair keeps serving.
func (w *CertWatcher) Reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	certPEM, keyPEM, err := readPair(w.certFile, w.keyFile)
	if err == nil && bytes.Equal(certPEM, w.certPEM) && bytes.Equal(keyPEM, w.keyPEM) {
		return
	}
	if err == nil && bytes.Equal(certPEM, w.badCert) && bytes.Equal(keyPEM, w.badKey) {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = parsePair(certPEM, keyPEM)
	}
	if err != nil {
		if certPEM != nil || keyPEM != nil {
			w.badCert, w.badKey = certPEM, keyPEM
		}
		w.log.Error("certificate reload failed, still serving the previous certificate",
			"cert_file", w.certFile, "key_file", w.keyFile, "error", err)
		w.metrics.certLoaded(false, time.Time{}, true)
		return
	}
	w.install(certPEM, keyPEM, cert, true)
}

func (w *CertWatcher) read() ([]byte, []byte, *tls.Certificate, error) {
	certPEM, keyPEM, err := readPair(w.certFile, w.keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, err
	}
	return certPEM, keyPEM, cert, nil
}

func (w *CertWatcher) install(certPEM, keyPEM []byte, cert *tls.Certificate, reload bool) {
	w.certPEM, w.keyPEM = certPEM, keyPEM
	w.badCert, w.badKey = nil, nil
	w.current.Store(cert)
	w.metrics.certLoaded(true, cert.Leaf.NotAfter, reload)
	w.log.Info("serving certificate loaded", "subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter, "reload", reload)
}

// readPair reads the certificate and the key. The two reads are not atomic:
// a rotation between them (the Secret volume's ..data swap) would pair the old
// certificate with the new key and look like a bad pair. So the certificate is
// read again after the key, and the pair is only returned when the
// certificate did not change meanwhile.
func readPair(certFile, keyFile string) ([]byte, []byte, error) {
	for attempt := 0; ; attempt++ {
		certPEM, err := os.ReadFile(certFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading key: %w", err)
		}
		again, err := os.ReadFile(certFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading certificate: %w", err)
		}
		if bytes.Equal(certPEM, again) || attempt == 4 {
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
