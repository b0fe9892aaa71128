package certmanager

import (
	"context"
	"fmt"
	"strings"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

// loadWorkers kubectl processes run back to back: steady admission traffic
// without starving the 2-core machine the control plane shares.
const loadWorkers = 2

// startLoad is steady admission traffic through kubectl: each attempt is a
// server-side dry-run create of a labelled StatefulSet, which the apiserver
// sends to both webhooks (sideEffects: None allows dry runs), and which must
// come back mutated. kubeconfig names the kube-apiserver.
func startLoad(kubeconfig, ns string) *e2ekit.Load {
	return e2ekit.StartLoad(context.Background(), "admissions attempted (kubectl create --dry-run=server, each through both webhooks)", loadWorkers, 0,
		func(ctx context.Context, worker, _ int) error {
			r := kubectlOn(kubeconfig, statefulSet(fmt.Sprintf("load-%d", worker), true), "-n", ns, "create", "--dry-run=server", "-f", "-",
				"-o", "jsonpath={.spec.volumeClaimTemplates[*].metadata.name}")
			switch {
			case !r.ok():
				return fmt.Errorf("%v: %s", r.err, strings.TrimSpace(r.stderr))
			case r.stdout != "metadata content cache":
				return fmt.Errorf("not mutated: volumeClaimTemplates %q", r.stdout)
			}
			return nil
		})
}
