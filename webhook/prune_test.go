package webhook

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// referencePrune is prune written the obvious way on encoding/json's generic
// decoding, against which prune is fuzzed.
func referencePrune(in []byte, shape pruneNode) (any, error) {
	if err := json.Unmarshal(in, new(any)); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return filterGeneric(v, shape), nil
}

func filterGeneric(v any, n pruneNode) any {
	if n == nil {
		return v
	}
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, child := range t {
			if c, ok := n[k]; ok {
				out[k] = filterGeneric(child, c)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i := range t {
			out[i] = filterGeneric(t[i], n)
		}
		return out
	}
	return v
}

func decodeGeneric(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("pruned output is not JSON: %v\n%s", err, b)
	}
	return v
}

func pruneSeeds(f *testing.F) {
	fuzzSeeds(f)
	for _, s := range []string{
		`{"a":1}`, `[]`, `{}`, `"x"`, `1e5`, `-0.5E+3`, `01`, `1.`, `-`, `tru`, `nul`, `{"a":}`, `{"a" 1}`, `[1,]`, `{,}`,
		`{"apiVersion":"x","kind":"y","request":{"uid":"\u0075","object":{"metadata":{"name":"a\"b"},"spec":[1,{"template":2}]}}}`,
		`{"request":{"object":{"spec":{"template":{"spec":{"containers":[{"name":"n","env":[1,2]},"str",null]}}}}}}`,
		`{"request":{"obj\u0065ct":{"metadata":{"labels":{"a":"b"}}},"object":null}}`,
		"{\"a\":\"\x01\"}", `{"a":"\x"}`, `{"a":"\ud800"}`, "\"\xff\xfe\"", ` {"a" : [ 1 , 2 ] } `, `{"a":1} x`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzPrune: prune accepts exactly the documents encoding/json accepts, and
// keeps exactly the members the shape names — compared with the same
// filtering done on encoding/json's generic decoding.
func FuzzPrune(f *testing.F) {
	pruneSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := prune(in, reviewShape, nil)
		want, werr := referencePrune(in, reviewShape)
		if (err == nil) != (werr == nil) || (err == nil) != json.Valid(in) {
			t.Fatalf("prune error %v, encoding/json error %v, json.Valid %v for %q", err, werr, json.Valid(in), in)
		}
		if err != nil {
			return
		}
		if g := decodeGeneric(t, got); !reflect.DeepEqual(g, want) {
			t.Fatalf("pruned %s\nwant   %v\ngot    %v", got, want, g)
		}
	})
}

// TestShapesMatchDecoder keeps reviewShape in step with the structs it feeds:
// every JSON member name of reviewJSON and statefulSetJSON must be kept by
// the shape, or the decoder would silently see it absent.
func TestShapesMatchDecoder(t *testing.T) {
	var check func(t reflect.Type, n pruneNode, path string, tt *testing.T)
	check = func(typ reflect.Type, n pruneNode, path string, tt *testing.T) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || n == nil {
			return
		}
		if typ.PkgPath() != reflect.TypeOf(reviewJSON{}).PkgPath() && typ.Name() != "" {
			return // a Kubernetes type, decoded whole
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			child, ok := n[name]
			if !ok {
				tt.Errorf("the shape drops %s.%s, which the decoder reads", path, name)
				continue
			}
			check(f.Type, child, path+"."+name, tt)
		}
	}
	check(reflect.TypeOf(reviewJSON{}), reviewShape, "review", t)
	check(reflect.TypeOf(statefulSetJSON{}), statefulSetShape, "object", t)
}
