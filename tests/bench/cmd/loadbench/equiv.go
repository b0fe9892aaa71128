package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"

	jsonpatch5 "github.com/evanphx/json-patch/v5"

	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	"github.com/dittofs/dittofs-webhook/webhook"
)

// checkEquivalence sends every benchmark body to dittofs-webhook and the
// peer (and the floor) and requires the same verdict and, for the mutate
// bodies, the same object once each patch is applied the way the apiserver
// applies it (evanphx/json-patch, as the apiserver does).
func checkEquivalence(spec func(serverDef) benchkit.ServerSpec, pool *x509.CertPool, bodies *benchkit.Bodies, scenarios []scenario) ([]string, error) {
	var lines []string
	defs := []serverDef{
		{label: "dittofs-webhook", kind: benchkit.Ditto, logLevel: "warn"},
		{label: "controller-runtime", kind: benchkit.Peer, logLevel: "warn"},
		{label: "floor", kind: benchkit.Floor},
	}
	var srvs []*benchkit.Server
	defer func() {
		for _, s := range srvs {
			_ = s.Stop()
		}
	}()
	for _, d := range defs {
		sp := spec(d)
		sp.CPU = "" // not measured here
		s, err := benchkit.Start(sp)
		if err != nil {
			return nil, err
		}
		srvs = append(srvs, s)
	}
	client := benchkit.NewClient(pool, 2)
	defer client.CloseIdleConnections()

	for _, sc := range scenarios {
		var uid string
		var req struct {
			Request struct {
				UID    string          `json:"uid"`
				Object json.RawMessage `json:"object"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.body, &req); err != nil {
			return nil, err
		}
		uid = req.Request.UID
		var resps []*benchkit.ReviewResponse
		for _, s := range srvs {
			r, _, err := benchkit.Post(client, s.URL(sc.path), sc.body)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", s.Label, sc.name, err)
			}
			if r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview" || (r.Response.UID != uid && s.Spec.Kind != benchkit.Floor) {
				return nil, fmt.Errorf("%s, %s: not a v1 AdmissionReview response for uid %s: %s %s uid %q", s.Label, sc.name, uid, r.APIVersion, r.Kind, r.Response.UID)
			}
			resps = append(resps, r)
		}
		ours, peer := resps[0], resps[1]
		if ours.Response.Allowed != peer.Response.Allowed {
			return nil, fmt.Errorf("%s: dittofs-webhook allowed=%v, the peer allowed=%v", sc.name, ours.Response.Allowed, peer.Response.Allowed)
		}
		if !resps[2].Response.Allowed {
			return nil, fmt.Errorf("%s: the floor did not allow", sc.name)
		}
		if sc.path != webhook.MutatePath {
			if len(ours.Response.Patch) > 0 || len(peer.Response.Patch) > 0 {
				return nil, fmt.Errorf("%s: a validating answer carries a patch", sc.name)
			}
			lines = append(lines, fmt.Sprintf("%s: both allowed=%v, no patch, warnings %d vs %d", sc.name, ours.Response.Allowed,
				len(ours.Response.Warnings), len(peer.Response.Warnings)))
			continue
		}
		a, err := applyPatch(req.Request.Object, ours.Response.Patch)
		if err != nil {
			return nil, fmt.Errorf("%s: applying dittofs-webhook's patch: %w", sc.name, err)
		}
		b, err := applyPatch(req.Request.Object, peer.Response.Patch)
		if err != nil {
			return nil, fmt.Errorf("%s: applying the peer's patch: %w", sc.name, err)
		}
		same, diffs, err := benchkit.SameStatefulSet(a, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
		if !same {
			return nil, fmt.Errorf("%s: the patched objects differ: %v", sc.name, diffs)
		}
		line := fmt.Sprintf("%s: both allowed=%v; patched objects equal (%d patch ops vs the peer's %d; warnings %d vs %d)",
			sc.name, ours.Response.Allowed, len(ours.PatchOps), len(peer.PatchOps), len(ours.Response.Warnings), len(peer.Response.Warnings))
		if len(diffs) > 0 {
			line += fmt.Sprintf("; as JSON they differ only where the apiserver makes them equal: %v", diffs)
		}
		lines = append(lines, line)
	}
	return lines, nil
}

func applyPatch(doc, patch []byte) ([]byte, error) {
	if len(patch) == 0 {
		return doc, nil
	}
	p, err := jsonpatch5.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}
