// Package benchkit holds what the load and end-to-end benchmarks share: the
// request bodies and the check that two answers agree, building and running
// the three servers (dittofs-webhook, the controller-runtime peer and the
// floor), the flags and set-up of both commands, and reading CPU and memory
// from /proc.
package benchkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// Bodies are the benchmark request bodies, derived as benchReviews in
// webhook/bench_test.go derives them.
type Bodies struct {
	// Create is the ~6 KB CREATE of webhook/testdata/bench-create.json: a
	// labelled StatefulSet that needs the full mutation (M1–M4).
	Create []byte
	// Validate is the review the apiserver sends the validating webhook after
	// applying dittofs-webhook's patch to Create.
	Validate []byte
	// Large is Create with ~1,100 env vars in the DittoFS container (~100 KB).
	Large []byte
	// Object is Create's request.object.
	Object []byte
}

// LoadBodies reads webhook/testdata/bench-create.json and derives the others.
func LoadBodies(repoRoot string) (*Bodies, error) {
	create, err := os.ReadFile(filepath.Join(repoRoot, "webhook", "testdata", "bench-create.json"))
	if err != nil {
		return nil, err
	}
	var rv map[string]any
	if err := json.Unmarshal(create, &rv); err != nil {
		return nil, err
	}
	req := rv["request"].(map[string]any)
	obj, _ := json.Marshal(req["object"])

	h := webhook.NewRouter(&admission.Admitter{Policy: policies.DefaultOptions()},
		webhook.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	resp, _, err := Post(InProcess(h), InProcessURL+webhook.MutatePath, create)
	if err != nil {
		return nil, err
	}
	mutated, err := ApplyPatch(obj, resp.Response.Patch)
	if err != nil {
		return nil, err
	}
	var m any
	_ = json.Unmarshal(mutated, &m)
	req["object"] = m
	validate, _ := json.Marshal(rv)

	_ = json.Unmarshal(obj, &m)
	c := m.(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	env := c["env"].([]any)
	for i := 0; len(env) < 1100; i++ {
		env = append(env, map[string]any{"name": "DITTOFS_EXTRA_SETTING_XXXXXXXX" + string(rune('A'+i%26)), "value": strings.Repeat("v", 40)})
	}
	c["env"] = env
	req["object"] = m
	large, _ := json.Marshal(rv)
	return &Bodies{Create: create, Validate: validate, Large: large, Object: obj}, nil
}

// InProcessURL is the base URL of an InProcess client's handler.
const InProcessURL = "http://in-process"

// InProcess is a client that sends every request to h, in process.
func InProcess(h http.Handler) *http.Client {
	return &http.Client{Transport: handlerTransport{h}}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

// Post sends the review body to url and decodes the v1 AdmissionReview
// answer; it returns the raw answer too.
func Post(c *http.Client, url string, body []byte) (*admissionv1.AdmissionReview, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, out, fmt.Errorf("%s: status %d: %.300s", url, resp.StatusCode, out)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rv); err != nil || rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" || rv.Response == nil {
		return nil, out, fmt.Errorf("%s: not a v1 AdmissionReview answer (%v): %.300s", url, err, out)
	}
	return &rv, out, nil
}

// ApplyPatch applies a JSON patch as the apiserver does (evanphx/json-patch v4).
func ApplyPatch(doc, patch []byte) ([]byte, error) {
	if len(patch) == 0 {
		return doc, nil
	}
	p, err := jsonpatchv4.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

// Agree checks that dittofs-webhook's and the peer's answers to the review
// body are the same as far as the apiserver is concerned: both for the
// request's uid, the same verdict (and code), and, when allowed, the same
// StatefulSet once each patch is applied. It describes the answers in a line.
func Agree(body []byte, ours, peer *admissionv1.AdmissionResponse) (string, error) {
	var req admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &req); err != nil {
		return "", err
	}
	if ours.UID != req.Request.UID || peer.UID != req.Request.UID {
		return "", fmt.Errorf("uids %q and %q, want %q", ours.UID, peer.UID, req.Request.UID)
	}
	if ours.Allowed != peer.Allowed || !ours.Allowed && code(ours) != code(peer) {
		return "", fmt.Errorf("dittofs-webhook allowed=%v (%v), the peer allowed=%v (%v)", ours.Allowed, ours.Result, peer.Allowed, peer.Result)
	}
	line := fmt.Sprintf("both allowed=%v, %d vs %d patch operations, %d vs %d warnings", ours.Allowed,
		countOps(ours.Patch), countOps(peer.Patch), len(ours.Warnings), len(peer.Warnings))
	if !ours.Allowed {
		return line, nil
	}
	obj := req.Request.Object.Raw
	a, err := ApplyPatch(obj, ours.Patch)
	if err != nil {
		return "", fmt.Errorf("applying dittofs-webhook's patch: %w", err)
	}
	b, err := ApplyPatch(obj, peer.Patch)
	if err != nil {
		return "", fmt.Errorf("applying the peer's patch: %w", err)
	}
	same, diffs, err := sameStatefulSet(a, b)
	if err != nil || !same {
		return "", fmt.Errorf("the patched objects differ (%v): %v", err, diffs)
	}
	line += ", the patched objects equal"
	if len(diffs) > 0 {
		line += fmt.Sprintf("; as JSON they differ only where the apiserver makes them equal: %v", diffs)
	}
	return line, nil
}

func code(r *admissionv1.AdmissionResponse) int32 {
	if r.Result == nil {
		return 0
	}
	return r.Result.Code
}

func countOps(patch []byte) int {
	var ops []json.RawMessage
	_ = json.Unmarshal(patch, &ops)
	return len(ops)
}

// sameStatefulSet reports whether two StatefulSet documents are the same
// object as the apiserver stores it on CREATE: equal as typed apps/v1 objects
// once status is dropped (the apiserver resets it). diffs lists where the JSON
// differs all the same (e.g. a typed round trip writing an empty status).
func sameStatefulSet(a, b []byte) (same bool, diffs []string, err error) {
	var ma, mb any
	if err := errors.Join(json.Unmarshal(a, &ma), json.Unmarshal(b, &mb)); err != nil {
		return false, nil, err
	}
	if reflect.DeepEqual(ma, mb) {
		return true, nil, nil
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return false, nil, err
	}
	for _, op := range ops {
		v, _ := json.Marshal(op.Value)
		diffs = append(diffs, fmt.Sprintf("%s %s %.80s", op.Operation, op.Path, v))
	}
	var sa, sb appsv1.StatefulSet
	if err := errors.Join(json.Unmarshal(a, &sa), json.Unmarshal(b, &sb)); err != nil {
		return false, diffs, err
	}
	sa.Status, sb.Status = appsv1.StatefulSetStatus{}, appsv1.StatefulSetStatus{}
	return equality.Semantic.DeepEqual(&sa, &sb), diffs, nil
}
