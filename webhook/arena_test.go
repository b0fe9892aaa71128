package webhook

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/dittofs/dittofs-webhook/policies"
)

// TestArenaRequestsStayApart sends many different reviews through both
// handlers at once. Each request builds its typed objects in a pooled arena
// that the next request reuses; every answer must still be the one the same
// review gets with objects of its own (decodeReview, no arena), byte for
// byte. Run with -race (make race) it also shows no arena is shared while
// in use.
func TestArenaRequestsStayApart(t *testing.T) {
	a := &Admitter{Policy: policies.DefaultOptions()}
	mh, _ := newTestHandler(a.Mutate)
	vh, _ := newTestHandler(a.Validate)
	vh.Webhook = "validate"

	rng := rand.New(rand.NewPCG(1, 2))
	type call struct {
		h    *Handler
		body []byte
		want []byte
	}
	var calls []call
	for len(calls) < 200 {
		seed := make([]byte, 40)
		for i := range seed {
			seed[i] = byte(rng.IntN(256))
		}
		g := &gen{b: seed}
		obj, old := g.statefulSet(), g.statefulSet()
		req := stsRequest("UPDATE", obj)
		req["oldObject"] = old
		if rng.IntN(2) == 0 {
			req = stsRequest("CREATE", obj)
		}
		body := review(req)
		for _, h := range []*Handler{mh, vh} {
			r, err := decodeReview(body)
			if err != nil {
				t.Fatal(err)
			}
			resp := h.Admit(r)
			want, err := resp.appendReview(nil, r.UID)
			if err != nil {
				t.Fatal(err)
			}
			calls = append(calls, call{h, body, want})
		}
	}

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 3 * len(calls) {
				c := calls[(i*7+w*31)%len(calls)]
				r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.body))
				r.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, r)
				if !bytes.Equal(rec.Body.Bytes(), c.want) {
					var got, want any
					_ = json.Unmarshal(rec.Body.Bytes(), &got)
					_ = json.Unmarshal(c.want, &want)
					t.Errorf("answer differs from the one without an arena:\n got %v\nwant %v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}
