package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
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
	return requestFromReview(&rv, err)
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
