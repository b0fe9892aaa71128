// Package certs makes a development certificate authority and a serving
// certificate for running dittofs-webhook locally and in tests.
//
// In a cluster cert-manager issues and rotates the serving certificate; this
// package only stands in for it where there is no cert-manager (make run,
// envtest, the server's TLS tests). It uses Go's crypto only, so nothing has
// to be installed (no openssl, no cfssl).
//
// Keys are ECDSA P-256: small, fast to generate (tests make many) and
// accepted by every TLS stack the kube-apiserver uses.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names written by [Write] and read by [LoadCA]. They match the keys of
// a cert-manager Secret (tls.crt, tls.key) so the server's default flags point
// at the same names whether the files come from here or from a mounted Secret.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CertFile   = "tls.crt"
	KeyFile    = "tls.key"
)

const (
	// DefaultDir is where [Write] puts the files when Options.Dir is empty.
	// It is git-ignored.
	DefaultDir = ".certs"

	// DefaultValidity is the lifetime of a serving certificate when none is given.
	DefaultValidity = 365 * 24 * time.Hour

	// caValidityFactor makes the CA outlive the serving certificates it
	// issues, so a reissued serving certificate does not also force clients
	// to trust a new CA.
	caValidityFactor = 2

	// backdate moves NotBefore into the past so a peer whose clock is a
	// little behind (a kind node, a VM just resumed) does not reject a
	// certificate made a moment ago as "not yet valid".
	backdate = time.Hour

	// renewBefore is how close to expiry an existing certificate may be
	// before [Write] replaces it; a third of the lifetime for certificates
	// shorter-lived than 3 days, as cert-manager does, so that Write stays
	// idempotent for them too.
	renewBefore = 24 * time.Hour
)

// DefaultHosts returns the names a development serving certificate is valid
// for when none are given: loopback for `make run`, and the in-cluster names of
// the dittofs-webhook Service in the dittofs-webhook namespace, which is what
// the kube-apiserver dials. A new slice is returned on each call.
func DefaultHosts() []string {
	return []string{
		"localhost",
		"127.0.0.1",
		"::1",
		"dittofs-webhook",
		"dittofs-webhook.dittofs-webhook",
		"dittofs-webhook.dittofs-webhook.svc",
		"dittofs-webhook.dittofs-webhook.svc.cluster.local",
	}
}

// Options configures [Write]. The zero value is usable.
type Options struct {
	// Dir receives ca.crt, ca.key, tls.crt and tls.key. Default [DefaultDir].
	Dir string
	// Hosts are the DNS names and IP addresses the serving certificate is
	// valid for; IP literals go into the IP SANs, everything else into the
	// DNS SANs. Default [DefaultHosts]; a non-nil slice replaces the defaults.
	Hosts []string
	// Validity is the serving certificate's lifetime. Default
	// [DefaultValidity]. A new CA lives twice as long.
	Validity time.Duration
}

// CA is a certificate authority that can issue serving certificates.
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
	// CertPEM is Cert, PEM-encoded: what a client adds to its trust pool
	// (the caBundle of a webhook configuration).
	CertPEM []byte
	// KeyPEM is Key, PEM-encoded (PKCS #8).
	KeyPEM []byte
}

// NewCA makes a self-signed CA valid for validity (zero means twice
// [DefaultValidity]).
func NewCA(validity time.Duration) (*CA, error) {
	return newCA(time.Now(), validity)
}

// newCA is NewCA at a given time, so tests can make a CA that is about to expire.
func newCA(now time.Time, validity time.Duration) (*CA, error) {
	if validity < 0 {
		return nil, fmt.Errorf("certs: negative CA validity %s", validity)
	}
	if validity == 0 {
		validity = caValidityFactor * DefaultValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "dittofs-webhook development CA",
			Organization: []string{"dittofs-webhook"},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// It signs serving certificates only, never another CA.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads back the CA that [Write] stored in dir, so that a second
// serving certificate can be issued by the same CA (a certificate rotation in
// a test, a rerun of `make run`). A missing file gives an error matching
// [fs.ErrNotExist].
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	// X509KeyPair checks that the key belongs to the certificate.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("certs: CA key in %s is %T, want ECDSA", dir, pair.PrivateKey)
	}
	cert := pair.Leaf
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certs: %s in %s is not a CA certificate", CACertFile, dir)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Pool returns a certificate pool holding only this CA, for a client (or a
// test) that must trust the serving certificates it issues.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Issue makes a serving certificate and its key, PEM-encoded, valid for hosts
// (DNS names or IP literals; the first is also the CommonName) for validity
// (zero means [DefaultValidity]). The certificate never outlives the CA: a
// chain is only as valid as its shortest-lived link.
func (ca *CA) Issue(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("certs: no hosts for the serving certificate")
	}
	if validity < 0 {
		return nil, nil, fmt.Errorf("certs: negative validity %s", validity)
	}
	if validity == 0 {
		validity = DefaultValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Clients match the SANs, not the CommonName; it is only for humans
		// reading the certificate.
		Subject:     pkix.Name{CommonName: hosts[0]},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		switch {
		case h == "":
			return nil, nil, errors.New("certs: empty host")
		case seen[h]:
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// Write makes sure opts.Dir holds a CA (ca.crt, ca.key) and a serving pair
// (tls.crt, tls.key) issued by it for opts.Hosts.
//
// It is idempotent and keeps what still works: an existing CA is reused unless
// it expires within 24h (a third of its lifetime if that is shorter), so a client that trusts ca.crt keeps trusting the
// server across runs; an existing serving pair is kept if it chains to the CA,
// is valid for every requested host and does not expire within 24h. Otherwise
// the serving pair is reissued. A CA that is present but unreadable is an
// error, not overwritten: remove the directory to start afresh.
//
// Every file is replaced atomically (temporary file, then rename), so a server
// watching them never reads half a file. Keys are written before their
// certificates: a watcher that reloads on each change may see a new key with
// the old certificate for a moment, but the last change always leaves a
// matching pair.
func Write(opts Options) error {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.Hosts == nil {
		opts.Hosts = DefaultHosts()
	}
	if len(opts.Hosts) == 0 {
		return errors.New("certs: no hosts for the serving certificate")
	}
	if opts.Validity < 0 {
		return fmt.Errorf("certs: negative validity %s", opts.Validity)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}

	now := time.Now()
	ca, err := LoadCA(opts.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ca = nil
	case err != nil:
		return fmt.Errorf("%w (remove %s to make a new CA)", err, opts.Dir)
	case dueForRenewal(ca.Cert, ca.Cert.NotAfter.Sub(ca.Cert.NotBefore), now):
		ca = nil // expired or about to: nothing it issues would be usable
	}
	if ca == nil {
		if ca, err = NewCA(caValidityFactor * opts.Validity); err != nil {
			return err
		}
		if err := writeFile(opts.Dir, CAKeyFile, ca.KeyPEM, 0o600); err != nil {
			return err
		}
		if err := writeFile(opts.Dir, CACertFile, ca.CertPEM, 0o644); err != nil {
			return err
		}
	} else if servingUsable(opts.Dir, ca, opts.Hosts, opts.Validity, now) {
		return nil
	}

	certPEM, keyPEM, err := ca.Issue(opts.Hosts, opts.Validity)
	if err != nil {
		return err
	}
	if err := writeFile(opts.Dir, KeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(opts.Dir, CertFile, certPEM, 0o644)
}

// dueForRenewal reports whether cert, of the given lifetime, expires within
// [renewBefore] (or a third of its lifetime, if shorter).
func dueForRenewal(cert *x509.Certificate, lifetime time.Duration, now time.Time) bool {
	return cert.NotAfter.Sub(now) < min(renewBefore, lifetime/3)
}

// servingUsable reports whether dir already holds a serving pair that ca
// issued, that is valid for every host and that does not expire soon.
func servingUsable(dir string, ca *CA, hosts []string, validity time.Duration, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return false
	}
	leaf := pair.Leaf
	if dueForRenewal(leaf, validity, now) {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// writeFile replaces dir/name with data atomically: readers see either the
// old content or the new, never a partial file.
func writeFile(dir, name string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("certs: write %s: %w", filepath.Join(dir, name), err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// Chmod, not the umask-dependent create mode, decides the final mode.
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// newSerial returns a random 128-bit serial number: unique without keeping
// state, as RFC 5280 asks of a CA (at most 20 octets, positive).
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return serial, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
