package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

// fixturesDir is the admission-review fixture suite (tests/README.md).
const fixturesDir = "../../tests/fixtures"

// evalOutcome is what eval printed for one StatefulSet, or what the server
// answers for it.
type evalOutcome struct {
	Code   int
	Object any // -o json, decoded
	Patch  any // -o patch, decoded
	// Verdict are the "warning: ..." and "denied: FIELD: MESSAGE" lines.
	Verdict []string
}

// evalFixtureObject runs eval on a fixture's request object, as an UPDATE
// against its oldObject when it has one, with the fixture's server options.
func evalFixtureObject(t *testing.T, f tests.Fixture, req *tests.ReviewRequest) evalOutcome {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, data, 0o644))
		return p
	}
	opts, err := f.PolicyOptions()
	must(t, err)
	// What the apiserver sends is already decoded and schema-checked, and
	// the fixtures hold fields from a future Kubernetes on purpose.
	args := []string{"--validate=false", "-f", write("object.json", req.Object),
		"--default-cache-size", opts.DefaultCacheSize.String(), "--cache-mount-path", opts.CacheMountPath}
	if req.Operation == "UPDATE" {
		args = append(args, "--old", write("old.json", req.OldObject))
	}
	asJSON := runEval(append(args, "-o", "json"), nil)
	asPatch := runEval(append(args, "-o", "patch"), nil)
	if asPatch.code != asJSON.code || asPatch.stderr != asJSON.stderr {
		t.Fatalf("-o patch and -o json disagree: exit %d/%d, stderr %q/%q",
			asPatch.code, asJSON.code, asPatch.stderr, asJSON.stderr)
	}
	var p offline.PatchOutput
	if err := json.Unmarshal([]byte(asPatch.stdout), &p); err != nil {
		t.Fatalf("-o patch: %v\n%s", err, asPatch.stdout)
	}
	out := evalOutcome{Code: asJSON.code, Object: decoded(t, []byte(asJSON.stdout)), Patch: normal(t, p.Patch)}
	for _, l := range strings.Split(strings.TrimSuffix(asJSON.stderr, "\n"), "\n") {
		// "statefulset ns/name: "; what is at risk is eval's own note on the
		// stored objects the fixtures send.
		if _, rest, _ := strings.Cut(l, ": "); l != "" && !strings.HasPrefix(rest, "at risk: ") {
			out.Verdict = append(out.Verdict, rest)
		}
	}
	return out
}

// serverOutcome is what eval must print for the fixture's request: the
// mutating webhook's answer, its patch applied, and the validating webhook's
// answer on the result, as the apiserver calls them. TestFixtures (package
// tests) checks these answers against the fixture. It calls the webhooks'
// Mutate and Validate, not Admitter.Evaluate: eval itself runs Evaluate, and
// the point is that the two entry points agree.
func serverOutcome(t *testing.T, f tests.Fixture, req *tests.ReviewRequest) evalOutcome {
	t.Helper()
	opts, err := f.PolicyOptions()
	must(t, err)
	a, old := &admission.Admitter{Policy: opts}, req.OldObject
	if req.Operation != "UPDATE" {
		old = nil
	}
	r, err := admission.NewRequest(req.Operation, req.Object, old)
	must(t, err)
	out := evalOutcome{Object: decoded(t, req.Object), Patch: normal(t, []jsonpatch.Operation{})}
	resp := a.Mutate(r)
	if resp.Allowed {
		out.Patch = normal(t, append([]jsonpatch.Operation{}, resp.Patch...))
		obj, err := admission.ApplyPatch(req.Object, resp.Patch)
		must(t, err)
		out.Object = decoded(t, obj)
		r, err = admission.NewRequest(req.Operation, obj, old)
		must(t, err)
		v := a.Validate(r)
		resp.Warnings, resp.Allowed, resp.Result = append(resp.Warnings, v.Warnings...), v.Allowed, v.Result
	}
	for _, w := range resp.Warnings {
		out.Verdict = append(out.Verdict, "warning: "+w)
	}
	if !resp.Allowed {
		out.Code = 1
		for _, c := range resp.Result.Details.Causes {
			out.Verdict = append(out.Verdict, "denied: "+c.Field+": "+c.Message)
		}
	}
	return out
}

// TestEvalAgreesWithFixtures: every fixture of the suite that writes an
// apps/v1 StatefulSet goes through eval, which must print the server's
// verdict, warnings, causes, patch and object (serverOutcome): the server and
// eval can never disagree. A fixture the server answers with code 400 (an
// object that does not decode) eval reports denied with exit 1. Other
// operations, subresources, other kinds and protocol cases never reach eval.
func TestEvalAgreesWithFixtures(t *testing.T) {
	fixtures, err := tests.LoadFixtures(fixturesDir)
	must(t, err)
	compared := 0
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			req, err := f.Request()
			switch {
			case f.Expect.Status() != 200 || err != nil || req == nil:
				t.Skip("a protocol case")
			case req.Kind.Group != "apps" || req.Kind.Version != "v1" || req.Kind.Kind != "StatefulSet":
				t.Skip("not an apps/v1 StatefulSet: eval passes it through")
			case (req.Operation != "CREATE" && req.Operation != "UPDATE") || req.SubResource != "":
				t.Skip("not a write of the object: eval evaluates manifests")
			case f.Options != nil && f.Options.ValidationAction != "":
				t.Skip("--validation-action is a serve flag: eval enforces")
			}
			compared++
			if f.Expect.Code == 400 {
				if got := evalFixtureObject(t, f, req); got.Code != 1 {
					t.Errorf("the server refuses the object (code 400); eval exit %d, want 1", got.Code)
				}
				return
			}
			if d := cmp.Diff(serverOutcome(t, f, req), evalFixtureObject(t, f, req)); d != "" {
				t.Errorf("%s: eval (+) differs from the server (-):\n%s", f.Path, d)
			}
		})
	}
	if t.Logf("%d of %d fixtures compared with eval", compared, len(fixtures)); compared == 0 {
		t.Error("no fixture compared")
	}
}

func decoded(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// normal is v as JSON decodes it, for comparing a patch with its JSON form.
func normal(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return decoded(t, b)
}
