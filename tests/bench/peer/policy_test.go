package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests/bench/internal/benchkit"
	dwebhook "github.com/dittofs/dittofs-webhook/webhook"
	dadmission "github.com/dittofs/dittofs-webhook/webhook/admission"
)

// The peer must be a fair comparison: on every benchmark body, and on the
// SPEC cases below, it must reach the same verdict as dittofs-webhook and,
// when it mutates, produce the same object.

func handlers(t *testing.T) (ours, peer http.Handler) {
	t.Helper()
	ours = dwebhook.NewRouter(&dadmission.Admitter{Policy: policies.DefaultOptions()},
		dwebhook.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	dec := admission.NewDecoder(scheme)
	mux := http.NewServeMux()
	mux.Handle(dwebhook.MutatePath, &webhook.Admission{Handler: &StatefulSetDefaulter{Decoder: dec, DefaultCacheSize: resource.MustParse("5Gi"), CacheMountPath: "/data/cache"}})
	mux.Handle(dwebhook.ValidatePath, &webhook.Admission{Handler: &StatefulSetValidator{Decoder: dec}})
	return ours, mux
}

func benchBodies(t *testing.T) *benchkit.Bodies {
	t.Helper()
	create, err := os.ReadFile("../testdata/bench-create.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := benchkit.DeriveBodies(create)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns body with f applied to its decoded review.
func edit(t *testing.T, body []byte, f func(req map[string]any)) []byte {
	t.Helper()
	var rv map[string]any
	if err := json.Unmarshal(body, &rv); err != nil {
		t.Fatal(err)
	}
	f(rv["request"].(map[string]any))
	out, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(req map[string]any) map[string]any { return req["object"].(map[string]any) }
func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func requestObject(t *testing.T, body []byte) []byte {
	t.Helper()
	var rv struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(body, &rv); err != nil {
		t.Fatal(err)
	}
	return rv.Request.Object
}

func apply(t *testing.T, doc, patch []byte) []byte {
	t.Helper()
	if len(patch) == 0 {
		return doc
	}
	p, err := jsonpatch5.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPeerAgrees(t *testing.T) {
	ours, peer := handlers(t)
	b := benchBodies(t)
	cases := []struct {
		name, path string
		body       []byte
		allowed    bool
	}{
		{"bench create", dwebhook.MutatePath, b.Create, true},
		{"bench validate", dwebhook.ValidatePath, b.Validate, true},
		{"bench large", dwebhook.MutatePath, b.Large, true},
		{"no annotations: default size, metadata's class", dwebhook.MutatePath, edit(t, b.Create, func(r map[string]any) {
			delete(dig(obj(r), "metadata"), "annotations")
		}), true},
		{"bad cache-size annotation", dwebhook.MutatePath, edit(t, b.Create, func(r map[string]any) {
			dig(obj(r), "metadata", "annotations")["dittofs.com/cache-size"] = "lots"
		}), false},
		{"unlabelled", dwebhook.MutatePath, edit(t, b.Create, func(r map[string]any) {
			delete(dig(obj(r), "metadata", "labels"), "dittofs.com/server")
		}), true},
		{"create without mutation is invalid", dwebhook.ValidatePath, b.Create, false},
		{"validate without content", dwebhook.ValidatePath, edit(t, b.Validate, func(r map[string]any) {
			spec := dig(obj(r), "spec")
			vcts := spec["volumeClaimTemplates"].([]any)
			var kept []any
			for _, v := range vcts {
				if v.(map[string]any)["metadata"].(map[string]any)["name"] != "content" {
					kept = append(kept, v)
				}
			}
			spec["volumeClaimTemplates"] = kept
		}), false},
		{"update re-applying the original manifest", dwebhook.MutatePath, edit(t, b.Create, func(r map[string]any) {
			r["operation"] = "UPDATE"
			var stored map[string]any
			_ = json.Unmarshal(requestObject(t, b.Validate), &stored)
			r["oldObject"] = stored
		}), true},
		{"delete", dwebhook.MutatePath, edit(t, b.Create, func(r map[string]any) { r["operation"] = "DELETE" }), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := benchkit.Review(ours, tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			p, err := benchkit.Review(peer, tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if a.Response.Allowed != tc.allowed || p.Response.Allowed != tc.allowed {
				t.Fatalf("allowed: dittofs-webhook %v, peer %v, want %v (peer: %+v)", a.Response.Allowed, p.Response.Allowed, tc.allowed, p.Response.Status)
			}
			if !tc.allowed {
				if a.Response.Status.Code != 422 || p.Response.Status.Code != 422 {
					t.Fatalf("denial codes: %d and %d, want 422", a.Response.Status.Code, p.Response.Status.Code)
				}
				return
			}
			o := requestObject(t, tc.body)
			same, diffs, err := benchkit.SameStatefulSet(apply(t, o, a.Response.Patch), apply(t, o, p.Response.Patch))
			if err != nil {
				t.Fatal(err)
			}
			if !same {
				t.Fatalf("patched objects differ: %s", strings.Join(diffs, "; "))
			}
		})
	}
}
