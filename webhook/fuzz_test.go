package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"

	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// fuzzSeeds are whole request bodies: the benchmark review and every review
// of the fixture suite in tests/fixtures.
func fuzzSeeds(f *testing.F) {
	if b, err := os.ReadFile("testdata/bench-create.json"); err == nil {
		f.Add(b)
	}
	fixtures, err := tests.LoadFixtures("../tests/fixtures")
	if err != nil {
		f.Fatal(err)
	}
	for _, fx := range fixtures {
		// The review as the loader wraps it, without a protocol case's
		// padding or replacement body.
		if len(fx.Review) > 0 {
			f.Add([]byte(fx.Review))
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"object":{"metadata":{"labels":{"dittofs.com/server":""}}},"oldObject":{"metadata":{"labels":{"dittofs.com/server":""}},"spec":{"volumeClaimTemplates":[{"metadata":{"name":"cache"}}]}}}}`))
}

// FuzzHandler sends arbitrary bodies to both webhooks. Whatever the body: no
// panic reaches the recovery (a panic is a bug even if recovered), every
// answer is a 200 AdmissionReview echoing the uid or a one-line 400, and a
// patch applies (with the apiserver's patch library) to the object it was
// computed for and is idempotent.
func FuzzHandler(f *testing.F) {
	fuzzSeeds(f)
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	mh, mm := newTestHandler(a.Mutate)
	vh, vm := newTestHandler(a.Validate)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []*Handler{mh, vh} {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if p := testutil.ToFloat64(mm.panics) + testutil.ToFloat64(vm.panics); p != 0 {
				t.Fatalf("handler panicked on %q", body)
			}
			switch w.Code {
			case http.StatusOK:
			case http.StatusBadRequest:
				continue
			default:
				t.Fatalf("status %d", w.Code)
			}
			var rr reviewResponse
			if err := json.Unmarshal(w.Body.Bytes(), &rr); err != nil {
				t.Fatalf("200 response is not JSON: %v", err)
			}
			req, err := admission.DecodeReview(body)
			if err != nil {
				t.Fatalf("200 for a body that does not decode: %v", err)
			}
			if rr.Response.UID != string(req.UID) {
				t.Fatalf("uid %q, want %q", rr.Response.UID, req.UID)
			}
			// The answer is a v1 AdmissionReview as the apiserver decodes it.
			var typed admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &typed); err != nil || typed.Response == nil || typed.APIVersion != "admission.k8s.io/v1" || typed.Kind != "AdmissionReview" {
				t.Fatalf("200 response is not a v1 AdmissionReview (%v): %s", err, w.Body)
			}
			if typed.Response.Allowed != (typed.Response.Result == nil) || (len(typed.Response.Patch) > 0) != (typed.Response.PatchType != nil) {
				t.Fatalf("inconsistent response: %s", w.Body)
			}
			if len(rr.Response.Patch) == 0 {
				continue
			}
			checkPatchApplies(t, body, rr.Response.Patch, a)
		}
	})
}

// checkPatchApplies applies the patch to the request's object and mutates the
// result again: no second patch may come back.
func checkPatchApplies(t *testing.T, body, patch []byte, a *admission.Admitter) {
	t.Helper()
	var rv struct {
		Request map[string]json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(body, &rv); err != nil {
		t.Fatal(err)
	}
	var ops []jsonpatchOp
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch is not a JSON patch: %v", err)
	}
	patched, err := admission.ApplyPatch(rv.Request["object"], toOps(ops))
	if err != nil {
		t.Fatalf("patch does not apply: %v\npatch: %s", err, patch)
	}
	rv.Request["object"] = patched
	again, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": rv.Request})
	req, err := admission.DecodeReview(again)
	if err != nil {
		t.Fatalf("patched review does not decode: %v", err)
	}
	if resp := a.Mutate(req); len(resp.Patch) > 0 {
		p, _ := json.Marshal(resp.Patch)
		t.Fatalf("not idempotent: second patch %s\nfirst patch %s", p, patch)
	}
}
