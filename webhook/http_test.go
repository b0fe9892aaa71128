package webhook

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// newTestHandler is the handler of a webhook ("mutate" or "validate") with
// its own metrics; admit defaults to the policies' mutation.
func newTestHandler(webhook string, admit func(*admission.Request) admission.Response) (*Handler, *Metrics) {
	m := NewMetrics(prometheus.NewRegistry())
	if admit == nil {
		admit = (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate
	}
	return &Handler{Webhook: webhook, Admit: admit, Metrics: m, Log: discardLog}, m
}

// serve sends body to h as the apiserver does (POST, application/json).
func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decodeResponse is the AdmissionResponse of w, with a Result (empty if none).
func decodeResponse(w *httptest.ResponseRecorder) (*admissionv1.AdmissionResponse, error) {
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil || rv.Response == nil {
		return nil, fmt.Errorf("response is not an AdmissionReview (%v): %s", err, w.Body)
	}
	if rv.Response.Result == nil {
		rv.Response.Result = &metav1.Status{}
	}
	return rv.Response, nil
}

// reviewOf is the review of a StatefulSet CREATE whose object is obj as JSON.
func reviewOf(obj any) []byte {
	b, _ := json.Marshal(obj)
	return tests.NewReview("uid-1", "CREATE", b, nil)
}

// TestHostileInput: requests beyond the protocol-* and always-* fixtures' get
// the status and metric wanted, and the handler still answers a good one.
func TestHostileInput(t *testing.T) {
	good := reviewOf(map[string]any{"metadata": map[string]any{"name": "fs"}})
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	envelope := func(request string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + request + `}`)
	}
	sts := `"kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"operation":"CREATE"`
	labelled := func(spec string) []byte {
		meta := `{"labels":{"dittofs.com/server":"fs"},"creationTimestamp":"yesterday"}`
		return reviewOf(json.RawMessage(`{"metadata":` + meta + `,"spec":` + spec + `}`))
	}
	container := func(c string) string { return `{"template":{"spec":{"containers":[{"name":"dittofs",` + c + `}]}}}` }
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantStatus  int
		wantReason  string // bad_requests_total label, "" for none
		wantCode    int32  // response.status.code on HTTP 200
	}{
		{name: "PUT", method: http.MethodPut, body: good, wantStatus: 405, wantReason: reasonMethod},
		{name: "no content type", contentType: "-", body: good, wantStatus: 415, wantReason: reasonContentType},
		{name: "empty body", body: []byte{}, wantStatus: 400, wantReason: reasonNotReview},
		{name: "JSON null", body: []byte("null"), wantStatus: 400, wantReason: reasonNotReview},
		{name: "truncated", body: good[:len(good)/2], wantStatus: 400, wantReason: reasonNotReview},
		{name: "deeply nested", body: []byte(deep), wantStatus: 400, wantReason: reasonNotReview},
		// A request without an operation is no CREATE or UPDATE: allowed.
		{name: "huge array", body: envelope(`{"uid":"u","junk":[` + strings.Repeat("1,", 500000) + `1]}`), wantStatus: 200},
		{"uid not a string", "", "", envelope(`{"uid":5}`), 400, reasonNotReview, 0},
		{"duplicate keys", "", "", envelope(`{"uid":"u","uid":"v",` + sts + `,"object":{}}`), 400, reasonNotReview, 0},
		{"duplicate member deep in the object", "", "", envelope(`{"uid":"u",` + sts + `,"object":{"spec":` +
			container(`"env":[{"name":"A","name":"B"}]`) + `}}`), 400, reasonNotReview, 0},
		{"invalid UTF-8 in a string", "", "", envelope(`{"uid":"u",` + sts + `,"object":{"metadata":{"name":"fs` +
			"\xff" + `"}}}`), 400, reasonNotReview, 0},
		{name: "invalid UTF-8 replaced by encoding/json", body: reviewOf(map[string]any{"metadata": map[string]any{
			"name": "fs\xff\xfe"}}), wantStatus: 200},
		{name: "object null", body: reviewOf(nil), wantStatus: 200, wantCode: 400, wantReason: "bad_object"},
		{name: "object a string", body: reviewOf("sts"), wantStatus: 200, wantCode: 400, wantReason: "bad_object"},
		{"a volumeClaimTemplate's spec a string", "", "",
			reviewOf(json.RawMessage(`{"spec":{"volumeClaimTemplates":[{"spec":"x"}]}}`)), 200, "bad_object", 400},
		// The apiserver decodes and schema-checks every object before admission:
		// fields the policies do not read are not checked again (SPEC §4); any
		// of these checked would deny.
		{name: "replicas a string, a bad timestamp", body: labelled(`{"replicas":"three"}`), wantStatus: 200},
		{name: "replicas not an integer, image a number, a bad quantity in a container's limits", wantStatus: 200,
			body: labelled(`{"replicas":1.5,` + container(`"image":5,"resources":{"limits":{"memory":"lots"}}`)[1:])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m := newTestHandler(tests.WebhookMutate, nil)
			r := httptest.NewRequest(cmp.Or(tc.method, http.MethodPost), MutatePath, bytes.NewReader(tc.body))
			if tc.contentType != "-" {
				r.Header.Set("Content-Type", "application/json")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			if got := testutil.ToFloat64(m.badRequests.WithLabelValues(tc.wantReason)); tc.wantReason != "" && got != 1 {
				t.Errorf("dittofs_webhook_bad_requests_total{reason=%q} = %v, want 1", tc.wantReason, got)
			}
			if tc.wantStatus != 200 {
				if body := w.Body.String(); strings.Count(strings.TrimSpace(body), "\n") != 0 || len(body) > 1024 {
					t.Errorf("reason is not one short line: %q", body)
				}
			} else if r := tests.Must(decodeResponse(w))(t); r.Result.Code != tc.wantCode || r.Allowed != (tc.wantCode == 0) {
				t.Errorf("allowed %v, status %+v; want code %d", r.Allowed, r.Result, tc.wantCode)
			}
			if w := serve(h, good); w.Code != 200 {
				t.Fatalf("good request after %s: status %d", tc.name, w.Code)
			}
		})
	}
}

func TestPanicIsRecovered(t *testing.T) {
	h, m := newTestHandler(tests.WebhookMutate, func(*admission.Request) admission.Response { panic("boom") })
	for i := 1; i <= 2; i++ {
		w := serve(h, emptyReview("uid-1"))
		if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "uid-1") {
			t.Fatalf("status %d, want 500 naming the uid: %q", w.Code, w.Body)
		}
		if got := testutil.ToFloat64(m.panics); got != float64(i) {
			t.Errorf("panics_total = %v, want %d", got, i)
		}
	}
}

// TestPooledBodiesStayApart: bodies are read into pooled buffers, so concurrent
// requests of different sizes must each get the answer to their own body (uid,
// cache size), never one from a buffer another request still uses.
func TestPooledBodiesStayApart(t *testing.T) {
	h, _ := newTestHandler("mutate", nil)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			uid, size := fmt.Sprintf("uid-%d", i), fmt.Sprintf("%dGi", i+1)
			obj, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "fs",
				"labels":      map[string]string{"dittofs.com/server": "fs"},
				"annotations": map[string]string{"dittofs.com/cache-size": size, "pad": strings.Repeat("x", i*512)}}})
			for range 20 {
				r, err := decodeResponse(serve(h, tests.NewReview(uid, "CREATE", obj, nil)))
				if err != nil || r.UID != types.UID(uid) || !bytes.Contains(r.Patch, []byte(`"storage":"`+size+`"`)) {
					t.Errorf("request %s (cache size %s) got %+v (%v)", uid, size, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// fuzzSeeds are whole request bodies: the benchmark review and every review
// of the fixture suite in tests/fixtures.
func fuzzSeeds(f *testing.F) {
	if b, err := os.ReadFile("testdata/bench-create.json"); err == nil {
		f.Add(b)
	}
	for _, fx := range tests.Must(tests.LoadFixtures("../tests/fixtures"))(f) {
		// The review as wrapped, without a protocol case's padding or body.
		if len(fx.Review) > 0 {
			f.Add([]byte(fx.Review))
		}
	}
	f.Add([]byte(`{}`))
	f.Add(tests.NewReview("u", "UPDATE", []byte(`{"metadata":{"labels":{"dittofs.com/server":""}}}`),
		[]byte(`{"metadata":{"labels":{"dittofs.com/server":""}},"spec":{"volumeClaimTemplates":[{"metadata":{"name":"cache"}}]}}`)))
}

// FuzzHandler: whatever the body, no panic reaches the recovery, and every
// answer is a 400 or a 200 review passing tests.Expect.Check with a status
// exactly when denied. (Idempotence is FuzzPolicies' and TestFixtures'.)
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

var benchAdmitter = &admission.Admitter{Policy: policies.DefaultOptions()}

// benchReviews returns the benchmark bodies: a ~6 KB CREATE that needs every
// mutation, the validate request of its patched object, and a ~100 KB CREATE.
func benchReviews(tb testing.TB) (create, validate, large []byte) {
	tb.Helper()
	create = tests.Must(os.ReadFile("testdata/bench-create.json"))(tb)
	fx := tests.Fixture{Review: create}
	req := tests.Must(fx.Request())(tb)
	patch := benchAdmitter.Mutate(tests.Must(admission.DecodeReview(create))(tb)).Patch
	validate = sortedKeys(tests.Must(fx.WithObject(tests.Must(admission.ApplyPatch(req.Object, patch))(tb), ""))(tb))
	var env []jsonpatch.Operation
	for i := range 1095 { // the DittoFS container has 5
		v := map[string]string{"name": fmt.Sprintf("DITTOFS_EXTRA_SETTING_%09d", i), "value": strings.Repeat("v", 40)}
		env = append(env, jsonpatch.NewOperation("add", "/spec/template/spec/containers/0/env/-", v))
	}
	large = sortedKeys(tests.Must(fx.WithObject(tests.Must(admission.ApplyPatch(req.Object, env))(tb), ""))(tb))
	return create, validate, large
}

// sortedKeys re-encodes b with sorted keys, as docs/performance.md measured it.
func sortedKeys(b []byte) []byte {
	var v any
	_ = json.Unmarshal(b, &v)
	b, _ = json.Marshal(v)
	return b
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
		tests.Must(admission.DecodeReview(create))(b)
	}
}
