package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// referenceDecode is what decodeFast must mean: encoding/json decoding the
// review into reviewJSON, after pruning it to the members the server reads
// (so that names match exactly, as decodeFast matches them; prune is itself
// fuzzed against encoding/json's generic decoding in FuzzPrune).
func referenceDecode(body []byte) (*Request, error) {
	pruned, err := prune(body, reviewShape, nil)
	if err != nil {
		return nil, errNotReview
	}
	var rv reviewJSON
	err = json.Unmarshal(pruned, &rv)
	req, rerr := requestFromReview(&rv, err, nil)
	if rerr == nil && req.ObjectErr == nil {
		req.ObjectErr = typedDecodeError(body)
	}
	return req, rerr
}

// typedDecodeError is what the apiserver's decoder (case-sensitive
// encoding/json) says of the request's object and oldObject decoded whole
// into apps/v1 StatefulSets: a value of the wrong type in a field the
// policies never read still makes the object one that does not decode.
func typedDecodeError(body []byte) error {
	var rv struct {
		Request struct {
			Object    json.RawMessage `json:"object"`
			OldObject json.RawMessage `json:"oldObject"`
		} `json:"request"`
	}
	if utiljson.Unmarshal(body, &rv) != nil {
		return nil // judged by the pruned decoding
	}
	for _, raw := range []json.RawMessage{rv.Request.Object, rv.Request.OldObject} {
		if len(raw) == 0 {
			continue
		}
		if err := utiljson.Unmarshal(raw, &appsv1.StatefulSet{}); err != nil {
			return err
		}
	}
	return nil
}

// hasDuplicateKeys reports whether some object of a valid document repeats a
// member name. encoding/json merges a repeated array member into the first
// one's elements; decodeFast lets the last one win. Neither happens with an
// apiserver, so the comparison leaves such documents out.
func hasDuplicateKeys(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	var dup func() bool
	dup = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			keys := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				key, _ := k.(string)
				if keys[key] || dup() {
					return true
				}
				keys[key] = true
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if dup() {
					return true
				}
			}
			_, _ = dec.Token()
		}
		return false
	}
	return dup()
}

// FuzzDecodeFast holds the hand-written decoder to encoding/json: the same
// documents refused, the same errors classified the same way (review or
// object), and the same request — typed objects, raw cache template — decoded.
func FuzzDecodeFast(f *testing.F) {
	pruneSeeds(f)
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"operation":"UPDATE","object":{"metadata":{"labels":{"dittofs.com/server":null,"\u00e9":"x"}},"spec":{"volumeClaimTemplates":[null,5,{"metadata":{"name":"cache"},"spec":{"storageClassName":null,"resources":{"requests":{"storage":"5Gi","cpu":1}}}}],"template":{"spec":{"volumes":[{"name":"cache","emptyDir":null},{"name":"x","emptyDir":{"medium":"Memory"}}],"containers":[{"name":"c","volumeMounts":null}]}}}},"oldObject":{"spec":{"volumeClaimTemplates":[{"metadata":{"name":"cache"},"spec":{"resources":{"requests":{"storage":"x"}}}}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"spec":{"template":{"spec":{"volumes":"x"}}}},"dryRun":true}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"labels":5}},"uid":7}}`))
	for _, obj := range []string{
		`{"spec":{"replicas":"three"}}`, `{"spec":{"replicas":1.5}}`, `{"spec":{"replicas":3000000000}}`, `{"spec":{"replicas":1e400}}`,
		`{"spec":{"serviceName":7,"minReadySeconds":null}}`, `{"metadata":{"creationTimestamp":"yesterday","generation":-1}}`,
		`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":5,"ports":[{"containerPort":"80"}]}]}}}}`,
		`{"spec":{"template":{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"lots"}}}]}}}}`,
		`{"spec":{"template":{"metadata":{"labels":[]},"spec":{"volumes":[{"name":"v","emptyDir":{"sizeLimit":"x"}}]}}}}`,
		`{"spec":{"updateStrategy":{"rollingUpdate":{"maxUnavailable":true}},"volumeClaimTemplates":[{"metadata":{"name":"cache"},"spec":{"accessModes":"ReadWriteOnce"}}]}}`,
		`{"spec":{"template":{"spec":{"containers":[{"name":"c","volumeMounts":[{"name":"m","mountPath":"/m","readOnly":"yes"}]}]}}},"status":{"replicas":1}}`,
		`{"metadata":{"managedFields":[{"fieldsV1":{"f:spec":{}},"time":"2026-01-01T00:00:00Z"}]},"spec":{"replicas":3,"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","x":1}}}`,
	} {
		f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"operation":"CREATE","object":` + obj + `}}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gerr := decodeReview(body)
		want, werr := referenceDecode(body)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("decodeFast error %v, encoding/json error %v, for %q", gerr, werr, body)
		}
		if gerr != nil {
			if errors.Is(gerr, errNotReview) != errors.Is(werr, errNotReview) {
				t.Fatalf("errors classified differently: %v vs %v", gerr, werr)
			}
			return
		}
		if hasDuplicateKeys(body) {
			return
		}
		if (got.ObjectErr == nil) != (want.ObjectErr == nil) {
			t.Fatalf("object error %v vs encoding/json's %v for %q", got.ObjectErr, want.ObjectErr, body)
		}
		if got.UID != want.UID || got.Kind != want.Kind || got.Operation != want.Operation || got.SubResource != want.SubResource {
			t.Fatalf("request fields differ:\n got %+v\nwant %+v", got, want)
		}
		if got.ObjectErr != nil {
			return // answered 400 on the strength of the fields compared above
		}
		same := got.Resource == want.Resource && got.Name == want.Name && got.Namespace == want.Namespace &&
			got.DryRun == want.DryRun && got.objectHasSpec == want.objectHasSpec &&
			equality.Semantic.DeepEqual(got.Object, want.Object) && equality.Semantic.DeepEqual(got.OldObject, want.OldObject) &&
			bytes.Equal(got.OldCacheTemplate, want.OldCacheTemplate)
		if !same {
			t.Fatalf("decoded differently for %q:\n got %+v\n     %+v\nwant %+v\n     %+v", body, got, got.Object, want, want.Object)
		}
	})
}
