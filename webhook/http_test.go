package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dittofs/dittofs-webhook/policies"

	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

func newTestHandler(admit func(*admission.Request) admission.Response) (*Handler, *Metrics) {
	m := NewMetrics(prometheus.NewRegistry())
	if admit == nil {
		admit = (&admission.Admitter{Policy: policies.DefaultOptions()}).Mutate
	}
	return &Handler{Webhook: "mutate", Admit: admit, Metrics: m, Log: discardLog}, m
}

// review builds an AdmissionReview body around a request.
func review(req map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	return b
}

func stsRequest(op string, object any) map[string]any {
	return map[string]any{
		"uid":       "uid-1",
		"kind":      map[string]any{"group": "apps", "version": "v1", "kind": "StatefulSet"},
		"resource":  map[string]any{"group": "apps", "version": "v1", "resource": "statefulsets"},
		"name":      "fs",
		"namespace": "default",
		"operation": op,
		"object":    object,
	}
}

type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
			Reason  string `json:"reason"`
		} `json:"status"`
		Patch     []byte `json:"patch"`
		PatchType string `json:"patchType"`
	} `json:"response"`
}

// TestHostileInput sends every malformed or misdirected request of SPEC §4,
// and worse, and checks the status, the metric, and that the same handler
// then still answers a good request.
func TestHostileInput(t *testing.T) {
	good := review(stsRequest("CREATE", map[string]any{"metadata": map[string]any{"name": "fs"}}))
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	hugeArray := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","junk":[` + strings.Repeat("1,", 500000) + `1]}}`
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantStatus  int
		wantReason  string // bad_requests_total label, "" for none
		wantCode    int32  // response.status.code on HTTP 200
		wantAllowed bool
	}{
		{name: "GET", method: http.MethodGet, wantStatus: 405, wantReason: reasonMethod},
		{name: "PUT", method: http.MethodPut, body: good, wantStatus: 405, wantReason: reasonMethod},
		{name: "text/plain", contentType: "text/plain", body: good, wantStatus: 415, wantReason: reasonContentType},
		{name: "no content type", contentType: "-", body: good, wantStatus: 415, wantReason: reasonContentType},
		{name: "json with charset", contentType: "application/json; charset=utf-8", body: good, wantStatus: 200, wantAllowed: true},
		{name: "body over 7 MiB", body: append([]byte(`{"a":"`), bytes.Repeat([]byte("x"), MaxBodyBytes)...), wantStatus: 413, wantReason: reasonTooLarge},
		{name: "body of exactly 7 MiB", body: padTo(good, MaxBodyBytes), wantStatus: 200, wantAllowed: true},
		{name: "empty body", body: []byte{}, wantStatus: 400, wantReason: reasonNotReview},
		{name: "not JSON", body: []byte("hello"), wantStatus: 400, wantReason: reasonNotReview},
		{name: "JSON null", body: []byte("null"), wantStatus: 400, wantReason: reasonNotReview},
		{name: "truncated", body: good[:len(good)/2], wantStatus: 400, wantReason: reasonNotReview},
		{name: "deeply nested", body: []byte(deep), wantStatus: 400, wantReason: reasonNotReview},
		// A request without an operation is no CREATE or UPDATE: allowed.
		{name: "huge array", body: []byte(hugeArray), wantStatus: 200, wantAllowed: true},
		{name: "v1beta1 review", body: []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`), wantStatus: 400, wantReason: reasonNotReview},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantStatus: 400, wantReason: reasonNotReview},
		{name: "uid not a string", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}`), wantStatus: 400, wantReason: reasonNotReview},
		{name: "invalid UTF-8", body: review(stsRequest("CREATE", map[string]any{"metadata": map[string]any{"name": "fs\xff\xfe", "labels": map[string]any{"dittofs.com/server": "\xc3"}}})), wantStatus: 200, wantAllowed: true},
		{name: "duplicate keys", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","kind":"AdmissionReview","request":{"uid":"u","uid":"v","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"operation":"CREATE","object":{"metadata":{"name":"x"}}}}`), wantStatus: 400, wantReason: reasonNotReview},
		{name: "duplicate member deep in the object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"operation":"CREATE","object":{"metadata":{"name":"x"},"spec":{"template":{"spec":{"containers":[{"env":[{"name":"A","name":"B"}]}]}}}}}}`), wantStatus: 400, wantReason: reasonNotReview},
		{name: "invalid UTF-8 in a string", body: []byte("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"apps\",\"version\":\"v1\",\"kind\":\"StatefulSet\"},\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"name\":\"fs\xff\"}}}}"), wantStatus: 400, wantReason: reasonNotReview},
		{name: "object null", body: review(stsRequest("CREATE", nil)), wantStatus: 200, wantCode: 400, wantReason: "bad_object"},
		{name: "object a string", body: review(stsRequest("CREATE", "sts")), wantStatus: 200, wantCode: 400, wantReason: "bad_object"},
		{name: "object with a bad volumeClaimTemplate", body: review(stsRequest("CREATE", map[string]any{"spec": map[string]any{"volumeClaimTemplates": []any{map[string]any{"spec": "x"}}}})), wantStatus: 200, wantCode: 400, wantReason: "bad_object"},
		// The apiserver decodes and schema-checks every object before admission:
		// fields the policies do not read are not checked again (SPEC §4).
		{name: "replicas a string (a field the policies never read)", body: review(stsRequest("CREATE", labelled(map[string]any{"spec": map[string]any{"replicas": "three"}}))), wantStatus: 200, wantAllowed: true},
		{name: "replicas not an integer", body: review(stsRequest("CREATE", labelled(map[string]any{"spec": map[string]any{"replicas": 1.5}}))), wantStatus: 200, wantAllowed: true},
		{name: "container image a number", body: review(stsRequest("CREATE", labelled(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "dittofs", "image": 5}}}}}}))), wantStatus: 200, wantAllowed: true},
		{name: "bad quantity in a container's limits", body: review(stsRequest("CREATE", labelled(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "dittofs", "resources": map[string]any{"limits": map[string]any{"memory": "lots"}}}}}}}}))), wantStatus: 200, wantAllowed: true},
		{name: "bad timestamp in metadata", body: review(stsRequest("CREATE", labelled(map[string]any{"metadata": map[string]any{"creationTimestamp": "yesterday"}}))), wantStatus: 200, wantAllowed: true},
		{name: "unknown fields are not errors", body: review(stsRequest("CREATE", labelled(map[string]any{"spec": map[string]any{"fromTheFuture": map[string]any{"x": 1}, "template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "dittofs", "newField": true}}}}}}))), wantStatus: 200, wantAllowed: true},
		{name: "wrong kind", body: review(map[string]any{"uid": "u", "operation": "CREATE", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"}, "object": map[string]any{}}), wantStatus: 200, wantCode: 400, wantReason: "wrong_kind"},
		{name: "DELETE with no object", body: review(map[string]any{"uid": "u", "operation": "DELETE", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "StatefulSet"}}), wantStatus: 200, wantAllowed: true},
		{name: "subresource of another kind", body: review(map[string]any{"uid": "u", "operation": "UPDATE", "subResource": "scale", "kind": map[string]any{"group": "autoscaling", "version": "v1", "kind": "Scale"}}), wantStatus: 200, wantAllowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, m := newTestHandler(nil)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, MutatePath, bytes.NewReader(tc.body))
			switch tc.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantReason != "" {
				if got := testutil.ToFloat64(m.badRequests.WithLabelValues(tc.wantReason)); got != 1 {
					t.Errorf("dittofs_webhook_bad_requests_total{reason=%q} = %v, want 1", tc.wantReason, got)
				}
			}
			if tc.wantStatus != 200 {
				if body := w.Body.String(); strings.Count(strings.TrimSpace(body), "\n") != 0 || len(body) > 1024 {
					t.Errorf("reason is not one short line: %q", body)
				}
			} else {
				var rr reviewResponse
				if err := json.Unmarshal(w.Body.Bytes(), &rr); err != nil {
					t.Fatalf("response is not JSON: %v", err)
				}
				if rr.APIVersion != "admission.k8s.io/v1" || rr.Kind != "AdmissionReview" {
					t.Errorf("response is %s %s", rr.APIVersion, rr.Kind)
				}
				if rr.Response.Allowed != tc.wantAllowed {
					t.Errorf("allowed = %v, want %v (%+v)", rr.Response.Allowed, tc.wantAllowed, rr.Response.Status)
				}
				if tc.wantCode != 0 && (rr.Response.Status == nil || rr.Response.Status.Code != tc.wantCode) {
					t.Errorf("status = %+v, want code %d", rr.Response.Status, tc.wantCode)
				}
			}
			// The server keeps serving.
			r = httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(good))
			r.Header.Set("Content-Type", "application/json")
			w = httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Fatalf("good request after %s: status %d", tc.name, w.Code)
			}
		})
	}
}

// padTo pads a JSON object body with spaces (valid JSON whitespace) to n bytes.
func padTo(body []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, body)
	for i := len(body); i < n; i++ {
		out[i] = ' '
	}
	return out
}

func TestPanicIsRecovered(t *testing.T) {
	h, m := newTestHandler(func(*admission.Request) admission.Response { panic("boom") })
	body := review(stsRequest("CREATE", map[string]any{}))
	for i := 1; i <= 2; i++ {
		r := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500", w.Code)
		}
		if !strings.Contains(w.Body.String(), "uid-1") {
			t.Errorf("500 body does not name the uid: %q", w.Body)
		}
		if got := testutil.ToFloat64(m.panics); got != float64(i) {
			t.Errorf("panics_total = %v, want %d", got, i)
		}
	}
}

func TestResponseEchoesUIDAndOmitsEmptyPatch(t *testing.T) {
	h, _ := newTestHandler(nil)
	// Unmanaged: allowed, no patch and no patchType.
	body := review(stsRequest("CREATE", map[string]any{"metadata": map[string]any{"name": "plain"}}))
	r := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	raw, _ := io.ReadAll(w.Body)
	var rr struct{ Response map[string]any }
	if err := json.Unmarshal(raw, &rr); err != nil {
		t.Fatal(err)
	}
	resp := rr.Response
	if resp["uid"] != "uid-1" || resp["allowed"] != true {
		t.Errorf("response = %v", resp)
	}
	for _, k := range []string{"patch", "patchType", "status"} {
		if _, ok := resp[k]; ok {
			t.Errorf("response has %q: %s", k, raw)
		}
	}
}

// labelled adds the dittofs.com/server label to an object's metadata, so the
// object is one the policies would look at if it decoded.
func labelled(obj map[string]any) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	md["labels"] = map[string]any{"dittofs.com/server": "fs"}
	return obj
}
