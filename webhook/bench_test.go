package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

var benchAdmitter = &admission.Admitter{Policy: policies.DefaultOptions()}

// benchReviews returns the benchmark bodies: a ~6 KB labelled StatefulSet that
// needs the full mutation (CREATE), the validate request the apiserver sends
// after applying the patch, and a ~100 KB one (1,100 env vars).
func benchReviews(tb testing.TB) (create, validate, large []byte) {
	tb.Helper()
	create = must(os.ReadFile("testdata/bench-create.json"))(tb)
	fx := tests.Fixture{Review: create}
	req := must(fx.Request())(tb)
	patch := benchAdmitter.Mutate(must(admission.DecodeReview(create))(tb)).Patch
	validate = sortedKeys(must(fx.WithObject(must(admission.ApplyPatch(req.Object, patch))(tb), ""))(tb))
	var env []jsonpatch.Operation
	for i := range 1095 { // the DittoFS container has 5
		v := map[string]string{"name": fmt.Sprintf("DITTOFS_EXTRA_SETTING_%09d", i), "value": strings.Repeat("v", 40)}
		env = append(env, jsonpatch.NewOperation("add", "/spec/template/spec/containers/0/env/-", v))
	}
	large = sortedKeys(must(fx.WithObject(must(admission.ApplyPatch(req.Object, env))(tb), ""))(tb))
	return create, validate, large
}

// sortedKeys re-encodes a review with its keys sorted, as the bodies of
// docs/performance.md's figures were written.
func sortedKeys(b []byte) []byte {
	var v any
	_ = json.Unmarshal(b, &v)
	b, _ = json.Marshal(v)
	return b
}

// must(f())(tb) is f's value; an error of f fails tb.
func must[T any](v T, err error) func(testing.TB) T {
	return func(tb testing.TB) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
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
	benchHandler(b, tests.WebhookMutate, benchAdmitter.Mutate, create)
}

func BenchmarkValidate(b *testing.B) {
	_, validate, _ := benchReviews(b)
	benchHandler(b, tests.WebhookValidate, benchAdmitter.Validate, validate)
}

func BenchmarkMutateLarge(b *testing.B) {
	_, _, large := benchReviews(b)
	benchHandler(b, tests.WebhookMutate, benchAdmitter.Mutate, large)
}

func BenchmarkDecodeReview(b *testing.B) {
	create, _, _ := benchReviews(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(create)))
	for b.Loop() {
		must(admission.DecodeReview(create))(b)
	}
}
