package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dittofs/dittofs-webhook/tests"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

// fixturesDir is the admission-review fixture suite (tests/README.md).
const fixturesDir = "../../tests/fixtures"

// evalOutcome is what eval printed for one StatefulSet.
type evalOutcome struct {
	code     int
	object   []byte                // -o json
	patch    []jsonpatch.Operation // -o patch
	warnings []string
	causes   []metav1.StatusCause // the denied: lines
}

// evalFixtureObject runs eval on a fixture's request object, as an UPDATE
// against its oldObject when it has one, with the fixture's server options.
func evalFixtureObject(t *testing.T, f tests.Fixture, req *tests.ReviewRequest) evalOutcome {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// What the apiserver sends is already decoded and schema-checked, and
	// the fixtures hold fields from a future Kubernetes on purpose.
	args := []string{"--validate=false", "-f", write("object.json", req.Object)}
	if req.Operation == "UPDATE" {
		args = append(args, "--old", write("old.json", req.OldObject))
	}
	if o := f.Options; o != nil {
		if o.DefaultCacheSize != "" {
			args = append(args, "--default-cache-size", o.DefaultCacheSize)
		}
		if o.CacheMountPath != "" {
			args = append(args, "--cache-mount-path", o.CacheMountPath)
		}
	}
	asJSON := runEval(append(args, "-o", "json"), nil)
	out := evalOutcome{code: asJSON.code, object: []byte(asJSON.stdout)}
	if out.code == 2 {
		return out
	}
	asPatch := runEval(append(args, "-o", "patch"), nil)
	if asPatch.code != asJSON.code || asPatch.stderr != asJSON.stderr {
		t.Fatalf("-o patch and -o json disagree: exit %d/%d, stderr %q/%q",
			asPatch.code, asJSON.code, asPatch.stderr, asJSON.stderr)
	}
	var p offline.PatchOutput
	if err := json.Unmarshal([]byte(asPatch.stdout), &p); err != nil {
		t.Fatalf("-o patch: %v\n%s", err, asPatch.stdout)
	}
	out.patch = p.Patch
	for _, l := range strings.Split(strings.TrimSuffix(asJSON.stderr, "\n"), "\n") {
		if l == "" {
			continue
		}
		_, rest, ok := strings.Cut(l, ": ") // "statefulset ns/name: "
		switch {
		case ok && strings.HasPrefix(rest, "at risk: "):
			// The fixtures' objects are as the apiserver sends them: stored
			// objects, which eval reports on.
		case ok && strings.HasPrefix(rest, "warning: "):
			out.warnings = append(out.warnings, strings.TrimPrefix(rest, "warning: "))
		case ok && strings.HasPrefix(rest, "denied: "):
			d := strings.TrimPrefix(rest, "denied: ")
			field, msg, _ := strings.Cut(d, ": ")
			out.causes = append(out.causes, metav1.StatusCause{Type: causeType(msg), Field: field, Message: msg})
		default:
			t.Fatalf("unexpected stderr line %q", l)
		}
	}
	return out
}

// Every fixture of the suite that writes an apps/v1 StatefulSet goes through
// eval, which must reach the fixture's verdict and mutated object: the server
// and eval can never disagree.
//
//   - A mutate fixture: eval's object, patch, warnings and, when the mutating
//     webhook denies, causes are the fixture's; with thenValidate (the
//     validating webhook on the patched object, as the apiserver calls it),
//     eval's final verdict and causes are thenValidate's.
//   - A validate fixture whose object the mutating webhook leaves as it is (the
//     apiserver's object after mutation): eval's verdict, causes and warnings
//     are the fixture's. Other validate fixtures send the validating webhook
//     an object the mutating one would have changed first: eval, which runs
//     both, cannot be compared with them.
//   - A fixture the server answers with code 400 (an object that does not
//     decode): eval reports it denied and exits 1.
//
// Other operations, subresources, other kinds and protocol cases never reach
// eval.
func TestEvalAgreesWithFixtures(t *testing.T) {
	if _, err := os.Stat(fixturesDir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no fixture suite in %s", fixturesDir)
	}
	fixtures, err := tests.LoadFixtures(fixturesDir)
	if err != nil {
		t.Errorf("fixtures that do not load are not compared: %v", err)
	}
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
			got := evalFixtureObject(t, f, req)
			exp := &f.Expect
			if exp.Code == 400 {
				if got.code != 1 {
					t.Errorf("the server refuses the object (code 400); eval exit %d, want 1", got.code)
				}
				compared++
				return
			}
			if got.code == 2 {
				t.Fatalf("eval refused the input (exit 2); the server answers allowed=%v", *exp.Allowed)
			}
			var problems []string
			switch f.Webhook {
			case tests.WebhookMutate:
				problems = compareMutate(exp, req, got)
			case tests.WebhookValidate:
				opts, err := f.PolicyOptions()
				if err != nil {
					t.Fatal(err)
				}
				r, err := admission.NewRequest(req.Operation, req.Object, oldOf(req))
				if err != nil {
					t.Fatal(err)
				}
				m := (&admission.Admitter{Policy: opts}).Mutate(r)
				if !m.Allowed || len(m.Patch) > 0 {
					t.Skip("the mutating webhook would change or deny this object first")
				}
				problems = compareValidate(exp, req, got, len(m.Warnings))
			}
			for _, p := range problems {
				t.Errorf("%s: %s", f.Path, p)
			}
			compared++
		})
	}
	t.Logf("%d of %d fixtures compared with eval", compared, len(fixtures))
	if compared == 0 {
		t.Error("no fixture compared")
	}
}

func oldOf(req *tests.ReviewRequest) []byte {
	if req.Operation != "UPDATE" {
		return nil
	}
	return req.OldObject
}

func compareMutate(exp *tests.Expect, req *tests.ReviewRequest, got evalOutcome) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if !*exp.Allowed {
		// The apiserver stops at the mutating webhook's denial.
		if got.code != 1 {
			add("the mutating webhook denies; eval exit %d, want 1", got.code)
		}
		if exp.Causes != nil {
			p = append(p, tests.CheckCauses(exp.Causes, got.causes)...)
		}
		if !sameJSON(got.object, req.Object) {
			add("a denied object is printed unchanged; got %s", got.object)
		}
		return append(p, tests.CheckWarnings(exp, got.warnings)...)
	}
	switch exp.Patch {
	case "none":
		if len(got.patch) > 0 {
			add("want no patch, eval's is %v", got.patch)
		}
	case "some":
		if len(got.patch) == 0 {
			add("want a patch, eval has none")
		}
	}
	if len(got.patch) > 0 {
		p = append(p, tests.CheckPatchScope(req.Object, got.object, got.patch)...)
	}
	if exp.Object != nil {
		p = append(p, tests.CheckObject(exp.Object, got.object, oldOf(req))...)
	}
	tv := exp.ThenValidate
	if tv == nil {
		// eval's warnings are the mutating webhook's and then the validating
		// one's: those the fixture wants must be among them.
		e := *exp
		e.NoWarnings, e.WarningCount = false, nil
		return append(p, tests.CheckWarnings(&e, got.warnings)...)
	}
	if want := boolCode(*tv.Allowed); got.code != want {
		add("the validating webhook answers allowed=%v on the patched object; eval exit %d, want %d",
			*tv.Allowed, got.code, want)
	}
	if tv.Causes != nil {
		p = append(p, tests.CheckCauses(tv.Causes, got.causes)...)
	}
	both := tests.Expect{Warnings: append(append([]string(nil), exp.Warnings...), tv.Warnings...)}
	both.NoWarnings = exp.NoWarnings && tv.NoWarnings
	if exp.WarningCount != nil && tv.WarningCount != nil {
		n := *exp.WarningCount + *tv.WarningCount
		both.WarningCount = &n
	}
	return append(p, tests.CheckWarnings(&both, got.warnings)...)
}

// compareValidate compares eval with a validate fixture whose object the
// mutating webhook leaves unchanged, with mutateWarnings warnings of its own.
func compareValidate(exp *tests.Expect, req *tests.ReviewRequest, got evalOutcome, mutateWarnings int) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if want := boolCode(*exp.Allowed); got.code != want {
		add("the validating webhook answers allowed=%v; eval exit %d, want %d", *exp.Allowed, got.code, want)
	}
	if len(got.patch) > 0 || !sameJSON(got.object, req.Object) {
		add("eval changed the object: %v", got.patch)
	}
	if exp.Causes != nil {
		p = append(p, tests.CheckCauses(exp.Causes, got.causes)...)
	}
	e := *exp
	if mutateWarnings > 0 {
		e.NoWarnings = false
		if e.WarningCount != nil {
			n := *e.WarningCount + mutateWarnings
			e.WarningCount = &n
		}
	}
	return append(p, tests.CheckWarnings(&e, got.warnings)...)
}

// causeType reads a cause's type back from its message, which starts with the
// field error type's text ("Required value: ...", `Invalid value: "x": ...`).
func causeType(msg string) metav1.CauseType {
	for _, t := range []field.ErrorType{field.ErrorTypeRequired, field.ErrorTypeInvalid, field.ErrorTypeForbidden,
		field.ErrorTypeNotSupported, field.ErrorTypeDuplicate, field.ErrorTypeNotFound, field.ErrorTypeTooLong,
		field.ErrorTypeTooMany, field.ErrorTypeInternal, field.ErrorTypeTypeInvalid} {
		if strings.HasPrefix(msg, t.String()+":") {
			return metav1.CauseType(t)
		}
	}
	return ""
}

func boolCode(allowed bool) int {
	if allowed {
		return 0
	}
	return 1
}

// sameJSON is JSON equality: no patch between a and b.
func sameJSON(a, b []byte) bool {
	ops, err := jsonpatch.CreatePatch(a, b)
	return err == nil && len(ops) == 0
}
