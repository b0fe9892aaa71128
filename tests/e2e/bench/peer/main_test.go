package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests/e2e/bench/internal/benchkit"
	dwebhook "github.com/dittofs/dittofs-webhook/webhook"
	dadmission "github.com/dittofs/dittofs-webhook/webhook/admission"
)

// The peer must be a fair comparison: on every benchmark body, and on the
// SPEC cases below, it must reach the same verdict as dittofs-webhook and,
// when it allows, produce the same object.
func TestPeerAgrees(t *testing.T) {
	repo, err := benchkit.FindRepo()
	if err != nil {
		t.Fatal(err)
	}
	b, err := benchkit.LoadBodies(repo)
	if err != nil {
		t.Fatal(err)
	}
	ours := httptest.NewServer(dwebhook.NewRouter(&dadmission.Admitter{Policy: policies.DefaultOptions()},
		dwebhook.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler)))
	defer ours.Close()
	defaulter, validator := handlers()
	mux := http.NewServeMux()
	mux.Handle(dwebhook.MutatePath, &webhook.Admission{Handler: defaulter})
	mux.Handle(dwebhook.ValidatePath, &webhook.Admission{Handler: validator})
	peer := httptest.NewServer(mux)
	defer peer.Close()

	// edit returns body with f applied to its request and request.object.
	edit := func(body []byte, f func(req, obj map[string]any)) []byte {
		var rv map[string]any
		if err := json.Unmarshal(body, &rv); err != nil {
			t.Fatal(err)
		}
		req := rv["request"].(map[string]any)
		f(req, req["object"].(map[string]any))
		out, _ := json.Marshal(rv)
		return out
	}
	meta := func(obj map[string]any) map[string]any { return obj["metadata"].(map[string]any) }
	var stored map[string]any // what the apiserver stored on CREATE
	edit(b.Validate, func(_, obj map[string]any) { stored = obj })

	mutate, validate := dwebhook.MutatePath, dwebhook.ValidatePath
	for _, tc := range []struct {
		name, path string
		body       []byte
		allowed    bool
	}{
		{"bench create", mutate, b.Create, true},
		{"bench validate", validate, b.Validate, true},
		{"bench large", mutate, b.Large, true},
		{"no annotations: default size, metadata's class", mutate, edit(b.Create, func(_, obj map[string]any) {
			delete(meta(obj), "annotations")
		}), true},
		{"bad cache-size annotation", mutate, edit(b.Create, func(_, obj map[string]any) {
			meta(obj)["annotations"].(map[string]any)["dittofs.com/cache-size"] = "lots"
		}), false},
		{"retention Delete, whenScaled unset", mutate, edit(b.Create, func(_, obj map[string]any) {
			obj["spec"].(map[string]any)["persistentVolumeClaimRetentionPolicy"] = map[string]any{"whenDeleted": "Delete"}
		}), true},
		{"unlabelled", mutate, edit(b.Create, func(_, obj map[string]any) {
			delete(meta(obj)["labels"].(map[string]any), "dittofs.com/server")
		}), true},
		{"create without mutation is invalid", validate, b.Create, false},
		{"validate without content", validate, edit(b.Validate, func(_, obj map[string]any) {
			spec := obj["spec"].(map[string]any)
			var kept []any
			for _, v := range spec["volumeClaimTemplates"].([]any) {
				if meta(v.(map[string]any))["name"] != "content" {
					kept = append(kept, v)
				}
			}
			spec["volumeClaimTemplates"] = kept
		}), false},
		{"update re-applying the original manifest", mutate, edit(b.Create, func(req, _ map[string]any) {
			req["operation"], req["oldObject"] = "UPDATE", stored
		}), true},
		{"delete", mutate, edit(b.Create, func(req, _ map[string]any) { req["operation"] = "DELETE" }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, err := benchkit.Post(ours.Client(), ours.URL+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := benchkit.Post(peer.Client(), peer.URL+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := benchkit.Agree(tc.body, a.Response, p.Response); err != nil {
				t.Fatal(err)
			}
			denied422 := a.Response.Result != nil && a.Response.Result.Code == http.StatusUnprocessableEntity
			if a.Response.Allowed != tc.allowed || !tc.allowed && !denied422 {
				t.Fatalf("allowed %v (%v), want %v (a denial with code 422)", a.Response.Allowed, a.Response.Result, tc.allowed)
			}
		})
	}
}
