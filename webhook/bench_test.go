package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// benchReviews returns the benchmark bodies: a ~6 KB labelled StatefulSet that
// needs the full mutation (CREATE), the validate request the apiserver sends
// after applying the patch, and a ~100 KB one (many env vars).
func benchReviews(tb testing.TB) (create, validate, large []byte) {
	tb.Helper()
	create, err := os.ReadFile("testdata/bench-create.json")
	if err != nil {
		tb.Fatal(err)
	}
	var rv map[string]any
	if err := json.Unmarshal(create, &rv); err != nil {
		tb.Fatal(err)
	}
	req := rv["request"].(map[string]any)
	obj, _ := json.Marshal(req["object"])
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	r, err := admission.DecodeReview(create)
	if err != nil {
		tb.Fatal(err)
	}
	mutated, err := admission.ApplyPatch(obj, a.Mutate(r).Patch)
	if err != nil {
		tb.Fatal(err)
	}
	var m any
	_ = json.Unmarshal(mutated, &m)
	req["object"] = m
	validate, _ = json.Marshal(rv)

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
	large, _ = json.Marshal(rv)
	return create, validate, large
}

// benchHandler measures the handler of webhook, admitting with admit, on body.
func benchHandler(b *testing.B, webhook string, admit func(*admission.Request) admission.Response, body []byte) {
	b.Helper()
	h, _ := newTestHandler(webhook, admit)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	rdr := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/", rdr)
	req.Header.Set("Content-Type", "application/json")
	for b.Loop() {
		rdr.Reset(body)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func BenchmarkMutate(b *testing.B) {
	create, _, _ := benchReviews(b)
	benchHandler(b, tests.WebhookMutate, (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate, create)
}

func BenchmarkValidate(b *testing.B) {
	_, validate, _ := benchReviews(b)
	benchHandler(b, tests.WebhookValidate, (&admission.Admitter{Policy: policies.DefaultOptions()}).Validate, validate)
}

func BenchmarkMutateLarge(b *testing.B) {
	_, _, large := benchReviews(b)
	benchHandler(b, tests.WebhookMutate, (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate, large)
}

func BenchmarkDecodeReview(b *testing.B) {
	create, _, _ := benchReviews(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(create)))
	for b.Loop() {
		if _, err := admission.DecodeReview(create); err != nil {
			b.Fatal(err)
		}
	}
}
