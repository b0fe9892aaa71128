package node

import (
	"strings"
	"testing"
)

// TestUninstall checks the README's uninstall against this cluster: the reason for its order (configurations left
// without their server block labelled StatefulSets), then its commands. It runs last (the file sorts last):
// nothing is installed after it.
func TestUninstall(t *testing.T) {
	// The pods go away (here: scaled to 0) while the configurations are still there: failurePolicy Fail blocks
	// labelled StatefulSets.
	mustKubectl(t, "", "-n", installNamespace, "scale", "deployment/"+deploymentName, "--replicas=0")
	mustKubectl(t, "", "-n", installNamespace, "wait", "--for=delete", "pod", "-l", webhookSelector, "--timeout=2m")
	blocked := runKubectl(statefulSet("while-down", true), "-n", userNamespace, "create", "-f", "-")
	if blocked.OK() || !strings.Contains(blocked.Stderr, "failed calling webhook") {
		t.Errorf("with the configurations left and no server, a labelled StatefulSet was not refused:\n%s", blocked)
	}
	// The README: configurations first, then the rest. (--wait=false: no namespace controller runs here to finish
	// deleting the namespaces.)
	mustKubectl(t, "", "delete", "mutatingwebhookconfiguration", webhookConfigName)
	mustKubectl(t, "", "delete", "validatingwebhookconfiguration", webhookConfigName)
	mustKubectl(t, statefulSet("after-uninstall", true), "-n", userNamespace, "create", "-f", "-")
	mustKubectl(t, "", "delete", "-k", "deploy/default", "--ignore-not-found", "--wait=false")
	for _, kind := range []string{"certificate/" + servingCertificate, "certificate/" + caCertificate, "issuer/dittofs-webhook-ca", "issuer/dittofs-webhook-selfsigned", "service/" + serviceName, "deployment/dittofs-webhook"} {
		if r := runKubectl("", "-n", installNamespace, "get", kind, "--ignore-not-found", "-o", "name"); !r.OK() || r.Stdout != "" {
			t.Errorf("%s is still there after the uninstall: %s", kind, r)
		}
	}
	// The user's StatefulSet created through the webhook stays as it was.
	got := mustKubectl(t, "", "-n", userNamespace, "get", "statefulset", "through-service", "-o",
		"jsonpath={.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}/{.spec.persistentVolumeClaimRetentionPolicy.whenScaled}")
	if got.Stdout != "Retain/Retain" {
		t.Errorf("the user's StatefulSet after the uninstall: retention %q", got.Stdout)
	}
}
