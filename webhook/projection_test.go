package webhook

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
)

// TestProjection guards the projection of decode.go: the server decodes only
// the fields the policies read (statefulSetJSON). For every object and
// oldObject of the fixture suite (tests/fixtures, read directly: this package
// must not import tests), the policies must give exactly the same outcome —
// patch, warnings, errors, audit — on the projection as on the object decoded
// whole into an apps/v1 StatefulSet. A policy that starts reading a field the
// projection skips fails here.
func TestProjection(t *testing.T) {
	files, err := filepath.Glob("../tests/fixtures/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in ../tests/fixtures")
	}
	optionSets := []policies.Options{
		policies.DefaultOptions(),
		// A mount path some fixture objects already use, so M4's conflict
		// check runs on real objects too.
		{DefaultCacheSize: resource.MustParse("1Gi"), CacheMountPath: "/data/content"},
	}
	compared := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		review, req := fixtureReview(t, file)
		if req == nil {
			continue // a protocol fixture without a request
		}
		t.Run(name, func(t *testing.T) {
			var objects [][]byte
			for _, o := range [][]byte{req.Object, req.OldObject} {
				if len(o) > 0 && string(o) != "null" {
					objects = append(objects, o)
				}
			}
			// The review as the server decodes it, with its own operation.
			if op := req.Operation; (op == "CREATE" || op == "UPDATE") && len(objects) > 0 {
				// A protocol fixture's review may be refused as a whole
				// (another apiVersion): then only its objects are compared.
				decoded, err := decodeReview(review)
				full, fullErr := fullRequest(policies.Operation(op), req.Object, req.OldObject)
				if err == nil && (decoded.ObjectErr != nil) != (fullErr != nil) {
					t.Fatalf("decodeReview error %v, full decode error %v", decoded.ObjectErr, fullErr)
				}
				if err == nil && decoded.ObjectErr == nil && decoded.Object != nil {
					projected := policies.Request{Operation: policies.Operation(op), Object: decoded.Object, OldObject: decoded.OldObject, OldCacheTemplate: decoded.OldCacheTemplate}
					for _, opts := range optionSets {
						compareOutcomes(t, "review "+op, projected, full, opts)
						compared++
					}
				}
			}
			// Each object alone as a CREATE, and the pair as an UPDATE.
			runs := []struct {
				op       policies.Operation
				obj, old []byte
			}{}
			for _, o := range objects {
				runs = append(runs, struct {
					op       policies.Operation
					obj, old []byte
				}{policies.Create, o, nil})
			}
			if len(objects) == 2 {
				runs = append(runs, struct {
					op       policies.Operation
					obj, old []byte
				}{policies.Update, objects[0], objects[1]})
			}
			for _, r := range runs {
				projected, projErr := NewRequest(string(r.op), r.obj, r.old)
				full, fullErr := fullRequest(r.op, r.obj, r.old)
				if (projErr != nil) != (fullErr != nil) {
					t.Errorf("%s: projection error %v, full decode error %v", r.op, projErr, fullErr)
					continue
				}
				if projErr != nil {
					continue
				}
				p := policies.Request{Operation: r.op, Object: projected.Object, OldObject: projected.OldObject, OldCacheTemplate: projected.OldCacheTemplate}
				for _, opts := range optionSets {
					compareOutcomes(t, string(r.op), p, full, opts)
					compared++
				}
			}
		})
	}
	if compared < 100 {
		t.Errorf("only %d comparisons: did the fixtures move?", compared)
	}
}

type fixtureRequest struct {
	Operation string          `json:"operation"`
	Object    json.RawMessage `json:"object"`
	OldObject json.RawMessage `json:"oldObject"`
}

// fixtureReview reads a fixture's review (JSON) and its request, if any.
func fixtureReview(t *testing.T, file string) ([]byte, *fixtureRequest) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var fx struct {
		Review json.RawMessage `json:"review"`
	}
	if err := json.Unmarshal(js, &fx); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(fx.Review) == 0 {
		return nil, nil
	}
	var rv struct {
		Request *fixtureRequest `json:"request"`
	}
	if json.Unmarshal(fx.Review, &rv) != nil {
		return fx.Review, nil
	}
	return fx.Review, rv.Request
}

// fullRequest decodes object and oldObject whole into typed StatefulSets. The
// raw cache template is found without the projection: by name, in the
// oldObject's volumeClaimTemplates.
func fullRequest(op policies.Operation, object, oldObject []byte) (policies.Request, error) {
	req := policies.Request{Operation: op}
	var obj appsv1.StatefulSet
	if err := json.Unmarshal(object, &obj); err != nil {
		return req, err
	}
	req.Object = &obj
	if len(oldObject) == 0 || string(oldObject) == "null" {
		return req, nil
	}
	var old appsv1.StatefulSet
	if err := json.Unmarshal(oldObject, &old); err != nil {
		return req, err
	}
	req.OldObject = &old
	var generic struct {
		Spec struct {
			VolumeClaimTemplates []json.RawMessage `json:"volumeClaimTemplates"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(oldObject, &generic); err != nil {
		return req, err
	}
	for _, v := range generic.Spec.VolumeClaimTemplates {
		var named struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if json.Unmarshal(v, &named) == nil && named.Metadata.Name == policies.CacheVolume {
			req.OldCacheTemplate = v
			break
		}
	}
	return req, nil
}

// compareOutcomes runs both policies on both requests and requires the same
// outcome.
func compareOutcomes(t *testing.T, what string, projected, full policies.Request, opts policies.Options) {
	t.Helper()
	pm, fm := policies.Mutate(projected, opts), policies.Mutate(full, opts)
	pp, err1 := json.Marshal(pm.Patch)
	fp, err2 := json.Marshal(fm.Patch)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshalling the patches: %v %v", err1, err2)
	}
	if !bytes.Equal(pp, fp) {
		t.Errorf("%s: Mutate patches differ\nprojection: %s\nfull:       %s", what, pp, fp)
	}
	same(t, what+": Mutate warnings", pm.Warnings, fm.Warnings)
	same(t, what+": Mutate applied", pm.Applied, fm.Applied)
	same(t, what+": Mutate audit", pm.Audit, fm.Audit)
	same(t, what+": Mutate errors", errorStrings(pm.Errs), errorStrings(fm.Errs))

	pv, fv := policies.Validate(projected), policies.Validate(full)
	same(t, what+": Validate errors", errorStrings(pv.Errs), errorStrings(fv.Errs))
	same(t, what+": Validate existing", errorStrings(pv.Existing), errorStrings(fv.Existing))
	same(t, what+": Validate warnings", pv.Warnings, fv.Warnings)
}

func errorStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Error())
	}
	return out
}

func same(t *testing.T, what string, projected, full any) {
	t.Helper()
	if !reflect.DeepEqual(projected, full) {
		t.Errorf("%s differ\nprojection: %#v\nfull:       %#v", what, projected, full)
	}
}
