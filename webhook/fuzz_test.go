package webhook

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

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
	f.Add(tests.NewReview("u", "UPDATE", []byte(`{"metadata":{"labels":{"dittofs.com/server":""}}}`),
		[]byte(`{"metadata":{"labels":{"dittofs.com/server":""}},"spec":{"volumeClaimTemplates":[{"metadata":{"name":"cache"}}]}}`)))
}

// FuzzHandler sends arbitrary bodies to both webhooks. Whatever the body: no
// panic reaches the recovery (a panic is a bug even if recovered), every
// answer is a one-line 400 or a 200 AdmissionReview that passes the checks
// every fixture's answer passes (tests.Expect.Check: the uid echoed, patch
// and patchType together, no patch on a denial or from the validating
// webhook, a patch that applies and touches only SPEC §2's paths), and a
// status exactly when denied. (Idempotence is FuzzPolicies' and TestFixtures'.)
func FuzzHandler(f *testing.F) {
	fuzzSeeds(f)
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	mh, mm := newTestHandler(tests.WebhookMutate, a.Mutate)
	vh, vm := newTestHandler(tests.WebhookValidate, a.Validate)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []*Handler{mh, vh} {
			w := serve(h, body)
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
			if _, err := admission.DecodeReview(body); err != nil {
				t.Fatalf("200 for a body that does not decode: %v", err)
			}
			req, err := (&tests.Fixture{Review: body}).Request()
			if err != nil || req == nil {
				t.Fatalf("200 for a body without a request: %v", err)
			}
			ans, err := tests.ParseAnswer(req, w.Code, w.Body.Bytes())
			if err != nil {
				t.Fatalf("%v: %s", err, w.Body)
			}
			// The apiserver always sends a spec; without one the patch adds
			// it (TestPatchAppliesWithoutSpec), outside SPEC §2's paths.
			var obj struct{ Spec map[string]any }
			if json.Unmarshal(req.Object, &obj) != nil || obj.Spec == nil {
				req.Object = nil
			}
			for _, p := range (&tests.Expect{}).Check(h.Webhook, req, ans) {
				t.Error(p)
			}
			if resp := ans.Response(); resp.Allowed != (resp.Result == nil) {
				t.Errorf("allowed %v with status %+v", resp.Allowed, resp.Result)
			}
		}
	})
}
