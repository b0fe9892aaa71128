package node

import (
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// certManagerModule holds cert-manager's CRDs: the release of tests/tools/certmanager.
const certManagerModule = "github.com/cert-manager/cert-manager@v1.21.2"

// result is what a kubectl run printed and how it exited.
type result = framework.Result

// runKubectl runs the built kubectl as the e2e admin.
func runKubectl(stdin string, args ...string) result { return env.Kubectl.Run(stdin, args...) }

// mustKubectl runs kubectl for a test; a failure fails it.
func mustKubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return env.Kubectl.Must(t, stdin, args...)
}

// ensureNamespace creates the namespace ns unless it exists.
func ensureNamespace(t testing.TB, ns string) {
	t.Helper()
	if r := runKubectl("", "get", "namespace", ns); !r.OK() {
		mustKubectl(t, "", "create", "namespace", ns)
	}
}

// eventually retries kubectl until it succeeds or timeout passes: for what lags behind (kubectl's discovery of new
// CRDs, a controller's work).
func eventually(t testing.TB, timeout time.Duration, stdin string, args ...string) result {
	t.Helper()
	var r result
	framework.Eventually(t, timeout, "kubectl succeeds", env.ControllersAlive, func() (bool, string) {
		r = runKubectl(stdin, args...)
		return r.OK(), r.String()
	})
	t.Log(r.Brief())
	return r
}
