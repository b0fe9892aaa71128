package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// TestWarnOnlyRollout is the report-only rollout of SPEC §3 on the real
// apiserver: the webhooks pointed at a server run with --validation-action
// warn, a StatefulSet the enforcing server denies (no content template) is
// created, kubectl prints one warning per violation starting with its rule
// ID, the mutating webhook still gives it its cache, and the server counts
// the violation as action="warn"; pointed back at the enforcing server, the
// same manifest is denied.
func TestWarnOnlyRollout(t *testing.T) {
	nocontent := stsManifest{name: "nocontent", managed: true, vcts: userVCTs()[:1]}.yaml()
	warn, restore := withWarnOnlyServer(t, nocontent)

	ns := newNamespace(t)
	r := mustKubectl(t, nocontent, "create", "-n", ns, "-f", "-")
	requireWarning(t, r, "content-storage: spec.volumeClaimTemplates: Required value", "denied under deny")
	if n := len(r.Warnings()); n != 1 {
		t.Errorf("%d warnings, want one (content-storage):\n%s", n, r)
	}
	requireVCTs(t, mustGetSTS(t, ns, "nocontent"), "metadata", "cache")

	samples := tests.Scrape(t, "http://"+warn.metrics+"/metrics")
	// The dry runs above were counted too: at least one, and never as deny.
	violations := map[string]float64{}
	for _, s := range samples {
		if s.Name == "dittofs_webhook_violations_total" && s.Labels["rule"] == "content-storage" {
			violations[s.Labels["action"]] = s.Value
		}
	}
	if deny, ok := violations["deny"]; violations["warn"] < 1 || !ok || deny != 0 {
		t.Errorf("content-storage violations by action %v, want warn ≥ 1 and deny 0 (present)", violations)
	}

	// Enforcing again: the same manifest is denied.
	restore()
	again := stsManifest{name: "nocontent-2", managed: true, vcts: userVCTs()[:1]}.yaml()
	requireDenied(t, kubectl(t, again, "create", "-n", ns, "-f", "-"), "content-storage")
}

// withWarnOnlyServer starts a server with --validation-action warn and
// points the webhooks at it, until restore (or the end of the test) points
// them back at the enforcing server. probe is a manifest the enforcing
// server denies and the warn server allows: the new configuration takes
// effect asynchronously, so until a server-side dry run of probe is
// allowed, the enforcing server still answers.
func withWarnOnlyServer(t *testing.T, probe string) (warn *server, restore func()) {
	t.Helper()
	warn, err := startServer(env.artifacts, env.server.proc.Cmd.Path, env.tlsDir, "--validation-action", "warn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := warn.stop(serverStopTimeout); err != nil {
			t.Error(err)
		}
	})
	mustKubectl(t, strings.ReplaceAll(string(env.webhooks), env.server.listen, warn.listen), "replace", "-f", "-")
	restore = webhooksBack(t, "replace")
	framework.Eventually(t, time.Minute, "the webhooks point at the warn server", nil, func() (bool, string) {
		r := runKubectl(probe, "create", "--dry-run=server", "-n", probeNamespace, "-f", "-")
		return r.OK(), r.String()
	})
	return warn, restore
}
