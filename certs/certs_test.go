package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeTestFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func verify(cert *x509.Certificate, pool *x509.CertPool, host string) error {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:     pool,
		DNSName:   host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestIssue(t *testing.T) {
	ca, err := NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("CA certificate: IsCA=%v KeyUsage=%v", ca.Cert.IsCA, ca.Cert.KeyUsage)
	}
	hosts := append(DefaultHosts(), "localhost") // a duplicate is harmless
	certPEM, keyPEM, err := ca.Issue(hosts, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, certPEM)

	t.Run("verifies for each default host", func(t *testing.T) {
		for _, host := range DefaultHosts() {
			if err := verify(cert, ca.Pool(), host); err != nil {
				t.Errorf("%s: %v", host, err)
			}
		}
	})

	t.Run("rejects other hosts and other CAs", func(t *testing.T) {
		other, err := NewCA(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			pool *x509.CertPool
			host string
		}{
			{"unknown name", ca.Pool(), "example.com"},
			{"unknown IP", ca.Pool(), "10.0.0.1"},
			{"other CA", other.Pool(), "localhost"},
		} {
			if verify(cert, tc.pool, tc.host) == nil {
				t.Errorf("%s: verified, want an error", tc.name)
			}
		}
	})

	t.Run("fields", func(t *testing.T) {
		wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		if len(cert.IPAddresses) != len(wantIPs) {
			t.Fatalf("IPAddresses = %v, want %v", cert.IPAddresses, wantIPs)
		}
		for i, ip := range wantIPs {
			if !cert.IPAddresses[i].Equal(ip) {
				t.Errorf("IPAddresses[%d] = %v, want %v", i, cert.IPAddresses[i], ip)
			}
		}
		if len(cert.DNSNames) != 5 {
			t.Errorf("DNSNames = %v, want the 5 default names once each", cert.DNSNames)
		}
		for _, name := range cert.DNSNames {
			if net.ParseIP(name) != nil {
				t.Errorf("IP %s in DNSNames", name)
			}
		}
		checks := []struct {
			name string
			ok   bool
		}{
			{"CommonName is the first host", cert.Subject.CommonName == "localhost"},
			{"not a CA", !cert.IsCA},
			{"KeyUsage is DigitalSignature", cert.KeyUsage == x509.KeyUsageDigitalSignature},
			{"ExtKeyUsage is ServerAuth", len(cert.ExtKeyUsage) == 1 && cert.ExtKeyUsage[0] == x509.ExtKeyUsageServerAuth},
			{"ECDSA P-256", cert.PublicKeyAlgorithm == x509.ECDSA && cert.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P256()},
			{"serial is positive and at most 128 bits", cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() <= 128},
			{"NotBefore is in the past", cert.NotBefore.Before(time.Now().Add(-time.Minute))},
			{"valid for about a year", time.Until(cert.NotAfter) > DefaultValidity-time.Minute && time.Until(cert.NotAfter) <= DefaultValidity},
			{"not beyond the CA", !cert.NotAfter.After(ca.Cert.NotAfter)},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: false", c.name)
			}
		}
	})

	t.Run("key pair matches", func(t *testing.T) {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		_, otherKey, err := ca.Issue([]string{"localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.X509KeyPair(certPEM, otherKey); err == nil {
			t.Fatal("certificate paired with another key: no error")
		}
	})

	t.Run("unique serials", func(t *testing.T) {
		again, _, err := ca.Issue(hosts, 0)
		if err != nil {
			t.Fatal(err)
		}
		if parseCert(t, again).SerialNumber.Cmp(cert.SerialNumber) == 0 {
			t.Fatal("two certificates with the same serial")
		}
	})

	t.Run("clamped to the CA", func(t *testing.T) {
		short, err := NewCA(48 * time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _, err := short.Issue([]string{"localhost"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseCert(t, certPEM).NotAfter; !got.Equal(short.Cert.NotAfter) {
			t.Fatalf("NotAfter = %v, want the CA's %v", got, short.Cert.NotAfter)
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			hosts    []string
			validity time.Duration
		}{
			{"no hosts", nil, 0},
			{"empty host", []string{"localhost", ""}, 0},
			{"negative validity", []string{"localhost"}, -time.Hour},
		} {
			if _, _, err := ca.Issue(tc.hosts, tc.validity); err == nil {
				t.Errorf("%s: no error", tc.name)
			}
		}
	})
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := Write(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}

	t.Run("file modes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			mode fs.FileMode
		}{
			{"", 0o700 | fs.ModeDir},
			{CACertFile, 0o644},
			{CAKeyFile, 0o600},
			{CertFile, 0o644},
			{KeyFile, 0o600},
		} {
			fi, err := os.Stat(filepath.Join(dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("%q: mode %v, want %v", tc.name, fi.Mode(), tc.mode)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 4 {
			t.Errorf("%d entries in %s, want 4 (no temporary files left)", len(entries), dir)
		}
	})

	t.Run("serving pair verifies against ca.crt", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(readFile(t, dir, CACertFile)) {
			t.Fatal("ca.crt: no certificate")
		}
		for _, host := range DefaultHosts() {
			if err := verify(pair.Leaf, pool, host); err != nil {
				t.Errorf("%s: %v", host, err)
			}
		}
	})

	t.Run("TLS handshake", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		srv.StartTLS()
		defer srv.Close()
		ca, err := LoadCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:    ca.Pool(),
			ServerName: "dittofs-webhook.dittofs-webhook.svc",
		}}}
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})

	t.Run("second Issue from LoadCA verifies against the same pool", func(t *testing.T) {
		ca, err := LoadCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.Issue([]string{"rotated.example", "127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(readFile(t, dir, CACertFile))
		for _, host := range []string{"rotated.example", "127.0.0.1"} {
			if err := verify(parseCert(t, certPEM), pool, host); err != nil {
				t.Errorf("%s: %v", host, err)
			}
		}
	})
}

// TestWriteReuse checks what Write keeps and what it replaces when the
// directory already has files in it.
func TestWriteReuse(t *testing.T) {
	files := []string{CACertFile, CAKeyFile, CertFile, KeyFile}
	for _, tc := range []struct {
		name string
		// prepare changes dir, which holds the output of Write(Options{Dir: dir}).
		prepare func(t *testing.T, dir string)
		opts    Options
		// changed are the files the second Write must replace; the others must
		// stay byte for byte the same.
		changed []string
	}{
		{
			name:    "idempotent",
			prepare: func(*testing.T, string) {},
		},
		{
			name:    "subset of hosts",
			prepare: func(*testing.T, string) {},
			opts:    Options{Hosts: []string{"localhost", "::1"}},
		},
		{
			name:    "new host",
			prepare: func(*testing.T, string) {},
			opts:    Options{Hosts: append(DefaultHosts(), "webhook.example")},
			changed: []string{CertFile, KeyFile},
		},
		{
			name: "expiring serving certificate",
			prepare: func(t *testing.T, dir string) {
				ca, err := LoadCA(dir)
				if err != nil {
					t.Fatal(err)
				}
				certPEM, keyPEM, err := ca.Issue(DefaultHosts(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, KeyFile, keyPEM)
				writeTestFile(t, dir, CertFile, certPEM)
			},
			changed: []string{CertFile, KeyFile},
		},
		{
			name: "serving certificate from another CA",
			prepare: func(t *testing.T, dir string) {
				other, err := NewCA(0)
				if err != nil {
					t.Fatal(err)
				}
				certPEM, keyPEM, err := other.Issue(DefaultHosts(), 0)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, KeyFile, keyPEM)
				writeTestFile(t, dir, CertFile, certPEM)
			},
			changed: []string{CertFile, KeyFile},
		},
		{
			name: "mismatched serving key",
			prepare: func(t *testing.T, dir string) {
				ca, err := LoadCA(dir)
				if err != nil {
					t.Fatal(err)
				}
				_, keyPEM, err := ca.Issue(DefaultHosts(), 0)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, KeyFile, keyPEM)
			},
			changed: []string{CertFile, KeyFile},
		},
		{
			name: "serving pair missing",
			prepare: func(t *testing.T, dir string) {
				for _, name := range []string{CertFile, KeyFile} {
					if err := os.Remove(filepath.Join(dir, name)); err != nil {
						t.Fatal(err)
					}
				}
			},
			changed: []string{CertFile, KeyFile},
		},
		{
			name: "CA key missing",
			prepare: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
					t.Fatal(err)
				}
			},
			changed: files,
		},
		{
			name: "expiring CA",
			prepare: func(t *testing.T, dir string) {
				// Made 30 days ago, it expires in an hour.
				ca, err := newCA(time.Now().Add(-30*24*time.Hour), 30*24*time.Hour+time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, CAKeyFile, ca.KeyPEM)
				writeTestFile(t, dir, CACertFile, ca.CertPEM)
			},
			changed: files,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(Options{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, dir)
			before := map[string][]byte{}
			for _, name := range files {
				before[name], _ = os.ReadFile(filepath.Join(dir, name))
			}

			tc.opts.Dir = dir
			if err := Write(tc.opts); err != nil {
				t.Fatal(err)
			}

			for _, name := range files {
				want := !contains(tc.changed, name)
				if got := bytes.Equal(before[name], readFile(t, dir, name)); got != want {
					t.Errorf("%s unchanged = %v, want %v", name, got, want)
				}
			}
			ca, err := LoadCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
			if err != nil {
				t.Fatal(err)
			}
			hosts := tc.opts.Hosts
			if hosts == nil {
				hosts = DefaultHosts()
			}
			for _, host := range hosts {
				if err := verify(pair.Leaf, ca.Pool(), host); err != nil {
					t.Errorf("%s: %v", host, err)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		opts    Options
	}{
		{
			name: "corrupt CA is not overwritten",
			prepare: func(t *testing.T, dir string) {
				writeTestFile(t, dir, CACertFile, []byte("garbage"))
				writeTestFile(t, dir, CAKeyFile, []byte("garbage"))
			},
		},
		{
			name: "CA key does not match",
			prepare: func(t *testing.T, dir string) {
				a, err := NewCA(0)
				if err != nil {
					t.Fatal(err)
				}
				b, err := NewCA(0)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, CACertFile, a.CertPEM)
				writeTestFile(t, dir, CAKeyFile, b.KeyPEM)
			},
		},
		{
			name:    "no hosts",
			prepare: func(*testing.T, string) {},
			opts:    Options{Hosts: []string{}},
		},
		{
			name:    "negative validity",
			prepare: func(*testing.T, string) {},
			opts:    Options{Validity: -time.Hour},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, dir)
			tc.opts.Dir = dir
			if err := Write(tc.opts); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(filepath.Join(dir, CertFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s written despite the error", CertFile)
			}
		})
	}
}

func TestLoadCAMissing(t *testing.T) {
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadCA(empty dir) = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadCANotCA refuses a serving pair stored as a CA: Issue would make
// certificates that no client accepts.
func TestLoadCANotCA(t *testing.T) {
	ca, err := NewCA(0)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeTestFile(t, dir, CACertFile, certPEM)
	writeTestFile(t, dir, CAKeyFile, keyPEM)
	if _, err := LoadCA(dir); err == nil {
		t.Fatal("no error")
	}
}

// TestWriteShortValidity: a certificate shorter-lived than the 24h renewal
// window is renewed at two thirds of its life, not on every run.
func TestWriteShortValidity(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Validity: 6 * time.Hour}
	if err := Write(opts); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, dir, CertFile)
	if err := Write(opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, readFile(t, dir, CertFile)) {
		t.Fatal("serving certificate reissued")
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Until(ca.Cert.NotAfter); got < 11*time.Hour || got > 12*time.Hour {
		t.Errorf("CA valid for %v more, want twice the serving validity", got)
	}
}
