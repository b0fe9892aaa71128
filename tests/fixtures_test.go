package tests

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook"
)

// fixtureDir holds the suite; see README.md.
const fixtureDir = "fixtures"

// TestFixtures sends every fixture to the real server (webhook.Run over TLS)
// and checks every expectation; a mutated object sent again must get no patch
// (idempotence, reinvocationPolicy: IfNeeded). Every file must load (strict
// decoding keeps a typo from checking nothing), no two with the same uid.
func TestFixtures(t *testing.T) {
	fixtures, servers, uids := Must(LoadFixtures(fixtureDir))(t), newServerPool(t), map[string]string{}
	if entries, err := os.ReadDir(fixtureDir); err != nil || len(entries) != len(fixtures) {
		t.Errorf("%d files in %s (%v) but %d fixtures: every file must be a *.yaml fixture",
			len(entries), fixtureDir, err, len(fixtures))
	}
	for _, f := range fixtures {
		if req, err := f.Request(); err == nil && req != nil && req.UID != "" {
			if prev, ok := uids[req.UID]; ok {
				t.Errorf("%s and %s share the request uid %s", prev, f.Name, req.UID)
			}
			uids[req.UID] = f.Name
		}
		t.Run(f.Name, func(t *testing.T) { runFixture(t, servers.get(Must(f.PolicyOptions())(t)), f) })
	}
	t.Run("coverage", func(t *testing.T) { servers.checkCoverage(t) })
}

func runFixture(t *testing.T, s *testServer, f Fixture) {
	req, _ := f.Request()
	before := s.scrape(t)
	status, body := s.send(t, f.Webhook, f.Body(), f.Raw)
	a, err := ParseAnswer(req, status, body)
	if err != nil {
		t.Fatalf("%s: %v\nanswer: %s", f.Path, err, clip(body))
	}
	for _, p := range f.Expect.Check(f.Webhook, req, a) {
		t.Errorf("%s: %s", f.Path, p)
	}
	after := s.scrape(t)
	for sel, want := range f.Expect.Metrics {
		if b, n := Must(SumMetric(before, sel))(t), Must(SumMetric(after, sel))(t); n-b != want {
			t.Errorf("%s: metric %s increased by %v, want %v", f.Path, sel, n-b, want)
		}
	}
	if t.Failed() {
		t.Logf("answer: %s", clip(body))
		if len(a.Patch) > 0 {
			p, _ := json.Marshal(a.Patch)
			t.Logf("patch: %s", p)
		}
		return
	}
	resp := a.Response()
	if resp == nil || !resp.Allowed {
		return
	}

	// resend sends the mutated object to wh as the apiserver does: to the
	// mutating webhook again on reinvocation, then to the validating one.
	resend := func(wh, uidSuffix string) (*ReviewRequest, *Answer) {
		next := *req
		next.UID, next.Object = req.UID+uidSuffix, a.Object
		status, body := s.send(t, wh, Must(f.WithObject(a.Object, next.UID))(t), nil)
		return &next, Must(ParseAnswer(&next, status, body))(t)
	}
	if f.Webhook == WebhookMutate && len(a.Patch) > 0 { // the mutator's output gets no patch
		_, a2 := resend(WebhookMutate, "-again")
		if r := a2.Response(); a2.HTTPStatus != 200 || r == nil || !r.Allowed || len(r.Patch) > 0 {
			t.Errorf("%s: idempotence: the mutated object, sent again, must be allowed without a patch; got HTTP %d %s",
				f.Path, a2.HTTPStatus, clip(a2.Body))
		}
	}
	if tv := f.Expect.ThenValidate; tv != nil {
		next, a3 := resend(WebhookValidate, "-validate")
		for _, p := range tv.Check(WebhookValidate, next, a3) {
			t.Errorf("%s: thenValidate: %s", f.Path, p)
		}
		if t.Failed() {
			t.Logf("validating answer: %s", clip(a3.Body))
		}
	}
}

// testServer is one webhook.Run serving on loopback ports.
type testServer struct {
	base, metrics string
	client        *http.Client
}

// serverPool starts one server per set of policy options, on first use, and
// stops them all when the test ends.
type serverPool struct {
	t       *testing.T
	vol     *SecretVolume
	servers map[string]*testServer
}

func newServerPool(t *testing.T) *serverPool {
	vol := NewSecretVolume(t, filepath.Join(t.TempDir(), "tls"))
	vol.Write(t, vol.Issue(t))
	return &serverPool{t: t, vol: vol, servers: map[string]*testServer{}}
}

func (p *serverPool) get(opts policies.Options) *testServer {
	key := opts.DefaultCacheSize.String() + " " + opts.CacheMountPath + " " + string(opts.Action)
	if p.servers[key] == nil {
		p.servers[key] = startServer(p.t, p.vol, opts)
	}
	return p.servers[key]
}

// checkCoverage requires that the suite made every rule, mutation and
// protocol refusal happen at least once.
func (p *serverPool) checkCoverage(t *testing.T) {
	var all []Sample
	for _, s := range p.servers {
		all = append(all, s.scrape(t)...)
	}
	var want []string // the fixtures' every verdict, mutation, refusal and operation
	for _, r := range policies.Rules {
		for _, a := range []policies.Action{policies.Deny, policies.Warn} {
			want = append(want, fmt.Sprintf("dittofs_webhook_violations_total{rule=%q,action=%q}", r, a))
		}
	}
	for _, m := range policies.Mutations {
		want = append(want, fmt.Sprintf("dittofs_webhook_mutations_total{mutation=%q}", m))
	}
	for _, r := range []string{"method_not_allowed", "unsupported_media_type", "body_too_large",
		"not_admission_review", "wrong_kind", "bad_object"} {
		want = append(want, fmt.Sprintf("dittofs_webhook_bad_requests_total{reason=%q}", r))
	}
	for _, op := range []string{"CREATE", "UPDATE", "DELETE"} {
		for _, wh := range []string{WebhookMutate, WebhookValidate} {
			want = append(want, fmt.Sprintf("dittofs_webhook_admission_requests_total{webhook=%q,operation=%q}", wh, op))
		}
	}
	for _, sel := range want {
		if n, _ := SumMetric(all, sel); n == 0 {
			t.Errorf("no fixture made %s happen", sel)
		}
	}
}

func startServer(t *testing.T, vol *SecretVolume, opts policies.Options) *testServer {
	s := &testServer{client: vol.Client()}
	t.Cleanup(s.client.CloseIdleConnections)
	StartRun(t, func(ctx context.Context, ready func()) error {
		return webhook.Run(ctx, webhook.Options{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0",
			CertFile: vol.CertFile(), KeyFile: vol.KeyFile(), TLSMinVersion: tls.VersionTLS12, Policy: opts,
			ShutdownTimeout: 5 * time.Second, Ready: func(a, m net.Addr) {
				s.base, s.metrics = "https://"+a.String(), "http://"+m.String()
				ready()
			}})
	})
	return s
}

// send posts body to a webhook, or sends it as raw says, and returns the HTTP
// status and body.
func (s *testServer) send(t *testing.T, wh string, body []byte, raw *Raw) (int, []byte) {
	t.Helper()
	path := webhook.MutatePath
	if wh == WebhookValidate {
		path = webhook.ValidatePath
	}
	if raw == nil {
		raw = &Raw{}
	}
	req := Must(http.NewRequest(cmp.Or(raw.Method, "POST"), s.base+path, bytes.NewReader(body)))(t)
	if raw.Chunked {
		req.ContentLength = -1 // sent chunked
	}
	req.Header.Set("Content-Type", cmp.Or(raw.ContentType, "application/json"))
	resp := Must(s.client.Do(req))(t)
	defer resp.Body.Close()
	return resp.StatusCode, Must(io.ReadAll(resp.Body))(t)
}

func (s *testServer) scrape(t *testing.T) []Sample { return Scrape(t, s.metrics+"/metrics") }

// TestMutationPaths: every mutation ID of policies has the paths it may
// patch in mutationPaths, so that a new mutation cannot go unchecked.
func TestMutationPaths(t *testing.T) {
	want := slices.Sorted(slices.Values(policies.Mutations))
	if d := gocmp.Diff(want, slices.Sorted(maps.Keys(mutationPaths))); d != "" {
		t.Errorf("mutationPaths (check.go) lacks or has extra mutations (-policies.Mutations +mutationPaths):\n%s", d)
	}
}

// TestEnvelopeOptions: the request.options a fixture's envelope carries are
// what the kube-apiserver fills in for kubectl's request of each operation.
func TestEnvelopeOptions(t *testing.T) {
	const meta = `"apiVersion":"meta.k8s.io/v1"`
	for op, want := range map[string]string{
		"CREATE":  `{"kind":"CreateOptions",` + meta + `,"fieldManager":"kubectl","fieldValidation":"Strict"}`,
		"UPDATE":  `{"kind":"UpdateOptions",` + meta + `,"fieldManager":"kubectl","fieldValidation":"Strict"}`,
		"DELETE":  `{"kind":"DeleteOptions",` + meta + `,"propagationPolicy":"Background"}`,
		"CONNECT": ``,
	} {
		var rv admissionv1.AdmissionReview
		must(t, json.Unmarshal(NewReview("u", op, nil, nil), &rv))
		if got := string(rv.Request.Options.Raw); got != want {
			t.Errorf("%s: options %s, want %s", op, got, want)
		}
	}
}
