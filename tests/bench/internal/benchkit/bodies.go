// Package benchkit holds what the load and end-to-end benchmarks share: the
// request bodies, building and running the three servers (dittofs-webhook,
// the controller-runtime peer and the floor), and reading their CPU and
// memory from /proc.
package benchkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Bodies are the benchmark request bodies, derived exactly as benchReviews in
// webhook/bench_test.go derives them.
type Bodies struct {
	// Create is the ~6 KB CREATE of a labelled StatefulSet that needs the full
	// mutation (M1–M4), for the mutate path.
	Create []byte
	// Validate is the review the apiserver sends the validating webhook after
	// applying the mutating webhook's patch to Create.
	Validate []byte
	// Large is Create's object with ~1,100 env vars (~100 KB), for the mutate path.
	Large []byte
	// Object is Create's request.object.
	Object []byte
}

// LoadBodies reads testdata/bench-create.json of this module (a copy of
// webhook/testdata/bench-create.json) and derives the others. It returns a
// note when the copy differs from the lead's file.
func LoadBodies(repoRoot string) (*Bodies, string, error) {
	create, err := os.ReadFile(filepath.Join(repoRoot, "tests", "bench", "testdata", "bench-create.json"))
	if err != nil {
		return nil, "", err
	}
	note := ""
	if lead, err := os.ReadFile(filepath.Join(repoRoot, "webhook", "testdata", "bench-create.json")); err == nil && !bytes.Equal(lead, create) {
		note = "tests/bench/testdata/bench-create.json differs from webhook/testdata/bench-create.json: copy it again"
	}
	b, err := DeriveBodies(create)
	return b, note, err
}

// DeriveBodies derives the validate and large bodies from the create body.
func DeriveBodies(create []byte) (*Bodies, error) {
	var rv map[string]any
	if err := json.Unmarshal(create, &rv); err != nil {
		return nil, err
	}
	req := rv["request"].(map[string]any)
	obj, _ := json.Marshal(req["object"])

	// The patch of dittofs-webhook's own mutating handler, as in benchReviews.
	h := webhook.NewRouter(&admission.Admitter{Policy: policies.DefaultOptions()},
		webhook.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	resp, err := Review(h, webhook.MutatePath, create)
	if err != nil {
		return nil, err
	}
	mutated, err := admission.ApplyPatch(obj, resp.PatchOps)
	if err != nil {
		return nil, err
	}
	var m any
	_ = json.Unmarshal(mutated, &m)
	req["object"] = m
	validate, _ := json.Marshal(rv)

	// Large: the same object with ~1,000 more env vars in the DittoFS container.
	req["object"] = nil
	_ = json.Unmarshal(obj, &m)
	c := m.(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	env := c["env"].([]any)
	for i := 0; len(env) < 1100; i++ {
		env = append(env, map[string]any{"name": "DITTOFS_EXTRA_SETTING_" + strings.Repeat("X", 8) + string(rune('A'+i%26)), "value": strings.Repeat("v", 40)})
	}
	c["env"] = env
	req["object"] = m
	large, _ := json.Marshal(rv)
	return &Bodies{Create: create, Validate: validate, Large: large, Object: obj}, nil
}

// ReviewResponse is the part of an AdmissionReview response the checks read.
type ReviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID       string   `json:"uid"`
		Allowed   bool     `json:"allowed"`
		Patch     []byte   `json:"patch"`
		PatchType *string  `json:"patchType"`
		Warnings  []string `json:"warnings"`
		Status    *struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
	PatchOps []jsonpatch.Operation `json:"-"`
}

// ParseReviewResponse decodes an AdmissionReview response body.
func ParseReviewResponse(body []byte) (*ReviewResponse, error) {
	var r ReviewResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("response is not an AdmissionReview: %w", err)
	}
	if len(r.Response.Patch) > 0 {
		if err := json.Unmarshal(r.Response.Patch, &r.PatchOps); err != nil {
			return nil, fmt.Errorf("patch: %w", err)
		}
	}
	return &r, nil
}

// Review sends body to path of an in-process handler.
func Review(h http.Handler, path string, body []byte) (*ReviewResponse, error) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", w.Code, w.Body)
	}
	return ParseReviewResponse(w.Body.Bytes())
}

// Post sends body to url with c and parses the AdmissionReview response.
func Post(c *http.Client, url string, body []byte) (*ReviewResponse, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, out, fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, out)
	}
	r, err := ParseReviewResponse(out)
	return r, out, err
}

// PatchString renders a base64-free description of a response, for messages.
func PatchString(r *ReviewResponse) string {
	if len(r.Response.Patch) == 0 {
		return "no patch"
	}
	return string(r.Response.Patch)
}
