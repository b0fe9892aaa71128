package certs

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// must fails t on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustCA(t *testing.T, validity time.Duration) *CA {
	t.Helper()
	ca, err := NewCA(validity)
	must(t, err)
	return ca
}

// issue is ca.Issue, failing t on an error.
func issue(t *testing.T, ca *CA, hosts []string, validity time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(hosts, validity)
	must(t, err)
	return certPEM, keyPEM
}

// leaf parses a serving pair, failing t unless its key matches.
func leaf(t *testing.T, certPEM, keyPEM []byte) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	return pair.Leaf
}

func writeTestFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
}

// verifyHosts checks that the serving pair in dir verifies against the CA of
// dir for every host.
func verifyHosts(t *testing.T, dir string, hosts []string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	must(t, err)
	ca, err := LoadCA(dir)
	must(t, err)
	for _, host := range hosts {
		if err := verify(pair.Leaf, ca.Pool(), host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

var serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

func verify(cert *x509.Certificate, pool *x509.CertPool, host string) error {
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: serverAuth})
	return err
}

func TestIssue(t *testing.T) {
	ca, other := mustCA(t, 0), mustCA(t, 0)
	hosts := append(DefaultHosts(), "localhost") // a duplicate is harmless
	certPEM, keyPEM := issue(t, ca, hosts, 0)
	cert := leaf(t, certPEM, keyPEM)
	for _, host := range DefaultHosts() {
		if err := verify(cert, ca.Pool(), host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	svc := "dittofs-webhook.dittofs-webhook" // the Service the kube-apiserver dials
	want := []string{"localhost", "dittofs-webhook", svc, svc + ".svc", svc + ".svc.cluster.local"}
	if !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v (the default names once each, no IP)", cert.DNSNames, want)
	}
	_, otherKey := issue(t, ca, []string{"localhost"}, time.Hour)
	_, mismatch := tls.X509KeyPair(certPEM, otherKey)
	againPEM, againKey := issue(t, ca, hosts, 0)
	short := mustCA(t, 48*time.Hour)
	clampedPEM, clampedKey := issue(t, short, []string{"localhost"}, 0)
	fails := func(hosts []string, validity time.Duration) bool {
		_, _, err := ca.Issue(hosts, validity)
		return err != nil
	}
	for name, ok := range map[string]bool{
		"the CA signs certificates": ca.Cert.IsCA && ca.Cert.KeyUsage&x509.KeyUsageCertSign != 0,
		"IP SANs are 127.0.0.1 and ::1": slices.EqualFunc(cert.IPAddresses,
			[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, net.IP.Equal),
		"not valid for another name":    verify(cert, ca.Pool(), "example.com") != nil,
		"not valid for another address": verify(cert, ca.Pool(), "10.0.0.1") != nil,
		"not valid under another CA":    verify(cert, other.Pool(), "localhost") != nil,
		"CommonName is the first host":  cert.Subject.CommonName == "localhost",
		"not a CA":                      !cert.IsCA,
		"KeyUsage is DigitalSignature":  cert.KeyUsage == x509.KeyUsageDigitalSignature,
		"ExtKeyUsage is ServerAuth":     slices.Equal(cert.ExtKeyUsage, serverAuth),
		"ECDSA P-256": cert.PublicKeyAlgorithm == x509.ECDSA &&
			cert.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P256(),
		"serial is positive and at most 128 bits": cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() <= 128,
		"NotBefore is in the past":                cert.NotBefore.Before(time.Now().Add(-time.Minute)),
		"valid for about a year": time.Until(cert.NotAfter) > DefaultValidity-time.Minute &&
			time.Until(cert.NotAfter) <= DefaultValidity,
		"not beyond the CA":               !cert.NotAfter.After(ca.Cert.NotAfter),
		"clamped to the CA":               leaf(t, clampedPEM, clampedKey).NotAfter.Equal(short.Cert.NotAfter),
		"another key does not match":      mismatch != nil,
		"unique serials":                  leaf(t, againPEM, againKey).SerialNumber.Cmp(cert.SerialNumber) != 0,
		"no hosts is an error":            fails(nil, 0),
		"an empty host is an error":       fails([]string{"localhost", ""}, 0),
		"a negative validity is an error": fails([]string{"localhost"}, -time.Hour),
	} {
		if !ok {
			t.Errorf("%s: false", name)
		}
	}
}

// TestWrite checks what Write creates in a new directory (modes, no temporary
// files, a CA twice as long-lived as the serving pair, the pair verifying for
// every host), and what a second Write keeps or replaces when the directory
// already has files in it.
func TestWrite(t *testing.T) {
	files := []string{CACertFile, CAKeyFile, CertFile, KeyFile}
	serving := []string{CertFile, KeyFile}
	// servingFrom replaces the serving pair (or only its key) with one the
	// CA of dir (another CA when other) issues for validity.
	servingFrom := func(other, keyOnly bool, validity time.Duration) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			ca, err := LoadCA(dir)
			if other {
				ca, err = NewCA(0)
			}
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM := issue(t, ca, DefaultHosts(), validity)
			writeTestFile(t, dir, KeyFile, keyPEM)
			if !keyOnly {
				writeTestFile(t, dir, CertFile, certPEM)
			}
		}
	}
	remove := func(names ...string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			for _, name := range names {
				must(t, os.Remove(filepath.Join(dir, name)))
			}
		}
	}
	modes := map[string]fs.FileMode{
		"": 0o700 | fs.ModeDir, CACertFile: 0o644, CAKeyFile: 0o600, CertFile: 0o644, KeyFile: 0o600,
	}
	for _, tc := range []struct {
		name string
		// prepare changes dir, which holds the output of Write(Options{Dir:
		// dir, Validity: opts.Validity}).
		prepare func(t *testing.T, dir string)
		opts    Options
		// changed are the files the second Write must replace; the others must
		// stay byte for byte the same.
		changed []string
	}{
		{name: "idempotent"},
		{name: "a pair the loaded CA issued is kept", prepare: servingFrom(false, false, 0)},
		{name: "subset of hosts", opts: Options{Hosts: []string{"localhost", "::1"}}},
		// Shorter-lived than the 24h renewal window: renewed at two thirds of
		// its life, not on every run.
		{name: "short validity", opts: Options{Validity: 6 * time.Hour}},
		{name: "new host", opts: Options{Hosts: append(DefaultHosts(), "webhook.example")}, changed: serving},
		{name: "expiring serving certificate", prepare: servingFrom(false, false, time.Hour), changed: serving},
		{name: "serving certificate from another CA", prepare: servingFrom(true, false, 0), changed: serving},
		{name: "mismatched serving key", prepare: servingFrom(false, true, 0), changed: serving},
		{name: "serving pair missing", prepare: remove(CertFile, KeyFile), changed: serving},
		{name: "CA key missing", prepare: remove(CAKeyFile), changed: files},
		{
			name: "expiring CA",
			prepare: func(t *testing.T, dir string) {
				// Made 30 days ago, it expires in an hour.
				ca, err := newCA(time.Now().Add(-30*24*time.Hour), 30*24*time.Hour+time.Hour)
				must(t, err)
				writeTestFile(t, dir, CAKeyFile, ca.KeyPEM)
				writeTestFile(t, dir, CACertFile, ca.CertPEM)
			},
			changed: files,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			must(t, Write(Options{Dir: dir, Validity: tc.opts.Validity}))
			for name, mode := range modes {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode() != mode {
					t.Errorf("%q: %v, want mode %v", name, err, mode)
				}
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 4 {
				t.Errorf("%d entries in %s, want 4 (no temporary files left): %v", len(entries), dir, err)
			}
			ca, err := LoadCA(dir)
			must(t, err)
			validity := cmp.Or(tc.opts.Validity, DefaultValidity)
			if got := time.Until(ca.Cert.NotAfter); got <= 2*validity-time.Hour || got > 2*validity {
				t.Errorf("CA valid for %v more, want twice the serving validity %v", got, validity)
			}
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			before := map[string][]byte{}
			for _, name := range files {
				before[name], _ = os.ReadFile(filepath.Join(dir, name))
			}
			tc.opts.Dir = dir
			must(t, Write(tc.opts))
			for _, name := range files {
				after, err := os.ReadFile(filepath.Join(dir, name))
				must(t, err)
				if got, want := bytes.Equal(before[name], after), !slices.Contains(tc.changed, name); got != want {
					t.Errorf("%s unchanged = %v, want %v", name, got, want)
				}
			}
			if tc.opts.Hosts == nil {
				tc.opts.Hosts = DefaultHosts()
			}
			verifyHosts(t, dir, tc.opts.Hosts)
		})
	}
}

// TestWriteErrors: a bad directory or bad options are an error and no serving
// pair is written; LoadCA refuses a missing CA (fs.ErrNotExist) and a serving
// pair stored as a CA (Issue would make certificates no client accepts).
func TestWriteErrors(t *testing.T) {
	a, b := mustCA(t, 0), mustCA(t, 0)
	leaf, leafKey := issue(t, a, []string{"localhost"}, 0)
	for _, tc := range []struct {
		name   string
		caCert []byte
		caKey  []byte
		opts   Options
	}{
		{name: "corrupt CA is not overwritten", caCert: []byte("garbage"), caKey: []byte("garbage")},
		{name: "CA key does not match", caCert: a.CertPEM, caKey: b.KeyPEM},
		{name: "a serving pair as the CA", caCert: leaf, caKey: leafKey},
		{name: "no hosts", opts: Options{Hosts: []string{}}},
		{name: "negative validity", opts: Options{Validity: -time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.caCert != nil {
				writeTestFile(t, dir, CACertFile, tc.caCert)
				writeTestFile(t, dir, CAKeyFile, tc.caKey)
				if _, err := LoadCA(dir); err == nil {
					t.Error("LoadCA: no error")
				}
			}
			tc.opts.Dir = dir
			if err := Write(tc.opts); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(filepath.Join(dir, CertFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s written despite the error", CertFile)
			}
		})
	}
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadCA(empty dir) = %v, want fs.ErrNotExist", err)
	}
}
