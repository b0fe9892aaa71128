package webhook

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"

	"github.com/dittofs/dittofs-webhook/policies"

	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// evalCases are StatefulSets for Evaluate, with the stored object on UPDATE.
var evalCases = []struct {
	name, op, object, old string
	allowed, changed      bool
}{
	{
		name: "create, mutated and allowed", op: "CREATE", allowed: true, changed: true,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","namespace":"ns","labels":{"dittofs.com/server":"fs"}},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs","image":"x"}],"volumes":[{"name":"cache","emptyDir":{}}]}},
			"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete","whenScaled":"Retain"},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"storageClassName":"fast","resources":{"requests":{"storage":"1Gi"}}}},
			{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"10Gi"}}}}]}}`,
	},
	{
		name: "create, denied by the validating webhook", op: "CREATE", allowed: false, changed: true,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":""}},
			"spec":{"template":{"spec":{"containers":[{"name":"a"},{"name":"b"}]}},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{}}]}}`,
	},
	{
		name: "create, denied by the mutating webhook", op: "CREATE", allowed: false, changed: false,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":""},"annotations":{"dittofs.com/cache-size":"-1Gi"}},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs"}]}}}}`,
	},
	{
		name: "create without a spec", op: "CREATE", allowed: false, changed: true,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":""}}}`,
	},
	{
		name: "unmanaged", op: "CREATE", allowed: true, changed: false,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},"spec":{"template":{"spec":{"containers":[{"name":"db"}]}}}}`,
	},
	{
		name: "update, carry-over", op: "UPDATE", allowed: true, changed: true,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":"fs"}},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs"}]}},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},
			{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"10Gi"}}}}]}}`,
		old: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":"fs"}},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs","volumeMounts":[{"name":"cache","mountPath":"/data/cache"}]}]}},
			"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},
			{"metadata":{"name":"cache"},"spec":{"resources":{"requests":{"storage":"5Gi"}},"futureField":{"kept":true}},"status":{"phase":"Pending"}},
			{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"10Gi"}}}}]}}`,
	},
	{
		name: "update, label being added", op: "UPDATE", allowed: false, changed: true,
		object: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":"fs"}},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs"}]}},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},
			{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"10Gi"}}}}]}}`,
		old: `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs"},
			"spec":{"template":{"spec":{"containers":[{"name":"dittofs"}]}},
			"volumeClaimTemplates":[{"metadata":{"name":"metadata"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}},
			{"metadata":{"name":"content"},"spec":{"resources":{"requests":{"storage":"10Gi"}}}}]}}`,
	},
}

// serverAnswer is what the server says over HTTP to one AdmissionReview.
type serverAnswer struct {
	Allowed  bool     `json:"allowed"`
	Patch    []byte   `json:"patch"`
	Warnings []string `json:"warnings"`
	Status   *struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

func askServer(t *testing.T, h http.Handler, path, op string, object, old []byte) serverAnswer {
	t.Helper()
	req := map[string]any{
		"uid":       "u1",
		"kind":      map[string]string{"group": "apps", "version": "v1", "kind": "StatefulSet"},
		"resource":  map[string]string{"group": "apps", "version": "v1", "resource": "statefulsets"},
		"operation": op,
		"object":    json.RawMessage(object),
	}
	if op == "UPDATE" {
		req["oldObject"] = json.RawMessage(old)
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", path, w.Code, w.Body)
	}
	var out struct {
		Response serverAnswer `json:"response"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out.Response
}

func canonical(t *testing.T, doc []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	return v
}

// Evaluate gives the verdict, warnings, patch and object the server gives when
// the apiserver sends the object to the mutating webhook, applies its patch,
// and sends the result to the validating webhook.
func TestEvaluateAgreesWithServer(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	h := NewRouter(a, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	for _, tc := range evalCases {
		t.Run(tc.name, func(t *testing.T) {
			object, old := []byte(tc.object), []byte(tc.old)
			if tc.old == "" {
				old = nil
			}
			ev, err := a.Evaluate(tc.op, object, old)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Allowed() != tc.allowed || ev.Changed() != tc.changed {
				t.Errorf("allowed %v, changed %v; want %v, %v (warnings %q, denial %+v)", ev.Allowed(), ev.Changed(), tc.allowed, tc.changed, ev.Warnings(), ev.Denial())
			}

			// The server, as the apiserver calls it.
			m := askServer(t, h, MutatePath, tc.op, object, old)
			if m.Allowed != ev.Mutation.Allowed {
				t.Fatalf("mutate: server allowed %v, Evaluate %v", m.Allowed, ev.Mutation.Allowed)
			}
			var serverPatch []jsonpatch.Operation
			if len(m.Patch) > 0 {
				if err := json.Unmarshal(m.Patch, &serverPatch); err != nil {
					t.Fatal(err)
				}
			}
			evPatch, _ := json.Marshal(ev.Mutation.Patch)
			if len(ev.Mutation.Patch) == 0 {
				evPatch = nil
			}
			if !bytes.Equal(m.Patch, evPatch) {
				t.Errorf("patch: server %s, Evaluate %s", m.Patch, evPatch)
			}
			if !m.Allowed {
				if ev.Validation != nil || !reflect.DeepEqual(m.Warnings, nilIfEmpty(ev.Warnings())) {
					t.Errorf("denied by the mutating webhook: server warnings %q, Evaluate %q (validation %v)", m.Warnings, ev.Warnings(), ev.Validation)
				}
				if m.Status == nil || ev.Denial() == nil || m.Status.Message != ev.Denial().Message {
					t.Errorf("denial: server %+v, Evaluate %+v", m.Status, ev.Denial())
				}
				return
			}
			patched, err := admission.ApplyPatch(object, serverPatch)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(canonical(t, patched), canonical(t, ev.Object)) {
				t.Errorf("object: server %s, Evaluate %s", patched, ev.Object)
			}
			v := askServer(t, h, ValidatePath, tc.op, patched, old)
			if v.Allowed != ev.Allowed() {
				t.Errorf("validate: server allowed %v, Evaluate %v", v.Allowed, ev.Allowed())
			}
			if want := append(append([]string(nil), m.Warnings...), v.Warnings...); !reflect.DeepEqual(nilIfEmpty(want), nilIfEmpty(ev.Warnings())) {
				t.Errorf("warnings: server %q, Evaluate %q", want, ev.Warnings())
			}
			if !v.Allowed && (v.Status == nil || ev.Denial() == nil || v.Status.Message != ev.Denial().Message) {
				t.Errorf("denial: server %+v, Evaluate %+v", v.Status, ev.Denial())
			}
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// The carried-over cache template is the stored one, byte for byte, fields
// this build does not know included.
func TestEvaluateCarriesOverVerbatim(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	for _, tc := range evalCases {
		if tc.name != "update, carry-over" {
			continue
		}
		ev, err := a.Evaluate(tc.op, []byte(tc.object), []byte(tc.old))
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Warnings()) != 0 {
			t.Errorf("warnings on a re-apply: %q", ev.Warnings())
		}
		var got struct {
			Spec struct {
				VolumeClaimTemplates []json.RawMessage `json:"volumeClaimTemplates"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(ev.Object, &got); err != nil {
			t.Fatal(err)
		}
		if n := len(got.Spec.VolumeClaimTemplates); n != 3 {
			t.Fatalf("%d templates, want 3: %s", n, ev.Object)
		}
		if c := string(got.Spec.VolumeClaimTemplates[1]); !strings.Contains(c, `"futureField":{"kept":true}`) || !strings.Contains(c, `"status":{"phase":"Pending"}`) {
			t.Errorf("carried-over template %s is not the stored one, at its position", c)
		}
	}
}

func TestEvaluateErrors(t *testing.T) {
	a := &admission.Admitter{Policy: policies.DefaultOptions()}
	sts := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"fs","labels":{"dittofs.com/server":""}}}`
	for _, tc := range []struct {
		name, op, object, old, want string
	}{
		{"object does not decode", "CREATE", `{"metadata":{"labels":[]}}`, "", "does not decode"},
		{"old object does not decode", "UPDATE", sts, `{"spec":{"volumeClaimTemplates":{}}}`, "does not decode"},
		{"update without old object", "UPDATE", sts, "", "needs the old object"},
		{"not a StatefulSet", "CREATE", `{"apiVersion":"v1","kind":"Service","metadata":{"labels":{"dittofs.com/server":""}}}`, "", "not an apps/v1 StatefulSet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old []byte
			if tc.old != "" {
				old = []byte(tc.old)
			}
			_, err := a.Evaluate(tc.op, []byte(tc.object), old)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
