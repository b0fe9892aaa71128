package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests/e2e/bench/internal/benchkit"
	dwebhook "github.com/dittofs/dittofs-webhook/webhook"
	dadmission "github.com/dittofs/dittofs-webhook/webhook/admission"
)

// The peer must be a fair comparison: on every benchmark body, and on the SPEC cases below, it must reach the same
// verdict as dittofs-webhook and, when it allows, produce the same object.
func TestPeerAgrees(t *testing.T) {
	b, err := benchkit.LoadBodies(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ours := httptest.NewServer(dwebhook.NewRouter(&dadmission.Admitter{Policy: policies.DefaultOptions()},
		dwebhook.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler)))
	defer ours.Close()
	mw, vw := webhooks()
	mux := http.NewServeMux()
	mux.Handle(dwebhook.MutatePath, mw)
	mux.Handle(dwebhook.ValidatePath, vw)
	peer := httptest.NewServer(mux)
	defer peer.Close()

	type ops = []jsonpatch.Operation
	op, obj := jsonpatch.NewOperation, "/request/object"
	mutate, validate := dwebhook.MutatePath, dwebhook.ValidatePath
	for _, tc := range []struct {
		name, path string
		body       []byte
		tweak      ops // applied to body
		allowed    bool
	}{
		{"bench create", mutate, b.Create, nil, true},
		{"bench validate", validate, b.Validate, nil, true},
		{"no annotations: default size, metadata's class", mutate, b.Create,
			ops{op("remove", obj+"/metadata/annotations", nil)}, true},
		{"bad cache-size annotation", mutate, b.Create,
			ops{op("add", obj+"/metadata/annotations/dittofs.com~1cache-size", "lots")}, false},
		{"retention Delete, whenScaled unset", mutate, b.Create,
			ops{op("add", obj+"/spec/persistentVolumeClaimRetentionPolicy", map[string]any{"whenDeleted": "Delete"})}, true},
		{"unlabelled", mutate, b.Create, ops{op("remove", obj+"/metadata/labels/dittofs.com~1server", nil)}, true},
		{"create without mutation is invalid", validate, b.Create, nil, false},
		{"validate without content", validate, b.Validate, ops{op("test", obj+"/spec/volumeClaimTemplates/1/metadata/name",
			"content"), op("remove", obj+"/spec/volumeClaimTemplates/1", nil)}, false},
		{"delete", mutate, b.Create, ops{op("replace", "/request/operation", "DELETE")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := dadmission.ApplyPatch(tc.body, tc.tweak)
			if err != nil {
				t.Fatal(err)
			}
			a, err := benchkit.Post(ours.Client(), ours.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			p, err := benchkit.Post(peer.Client(), peer.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := benchkit.Agree(body, a, p); err != nil {
				t.Fatal(err)
			}
			denied422 := a.Result != nil && a.Result.Code == http.StatusUnprocessableEntity
			if a.Allowed != tc.allowed || !tc.allowed && !denied422 {
				t.Fatalf("allowed %v (%v), want %v (a denial with code 422)", a.Allowed, a.Result, tc.allowed)
			}
		})
	}
}
