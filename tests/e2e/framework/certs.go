package framework

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ServedCertificate dials addr as the kube-apiserver calls a webhook (for
// serverName, trusting only roots) and returns the leaf certificate served.
func ServedCertificate(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots})
	HaltIfStopping()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// CertPool is a pool of the certificates of a PEM bundle.
func CertPool(t testing.TB, pemCerts []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemCerts) {
		t.Fatalf("no certificate in the bundle %q", pemCerts)
	}
	return p
}

// ParseCertificate parses the first PEM block of certPEM.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// PodReady reports whether the pod runs and its Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	ready := func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue }
	return p.Status.Phase == corev1.PodRunning && slices.ContainsFunc(p.Status.Conditions, ready)
}

// Steps are the steps of a scenario whose later steps depend on the earlier.
type Steps []struct {
	Name string
	Run  func(t *testing.T)
}

// Run runs the steps as subtests in order and stops at the first that fails.
func (steps Steps) Run(t *testing.T) {
	t.Helper()
	for _, s := range steps {
		if !t.Run(s.Name, s.Run) {
			t.Fatalf("%q failed: the later steps depend on it", s.Name)
		}
	}
}
