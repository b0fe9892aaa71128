package webhook

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// A shape says which JSON values decode into a Go type, as the apiserver's
// decoder (encoding/json with case-sensitive member names) decodes them. The
// fast decoder reads only the fields the policies need; the rest of a
// StatefulSet is checked against its shape while it is skipped, so an object
// that would not decode as an apps/v1 StatefulSet — `replicas: "three"` — is
// refused with code 400 (SPEC §4) without building it.
type shape struct {
	kind   shapeKind
	bits   int               // of a number
	fields map[string]*shape // of a struct, by JSON member name
	elem   *shape            // of a slice, or a map's values
	typ    reflect.Type      // of a type that decodes itself
	// custom checks a value of a type that decodes itself, without
	// reflection; nil: decode it into a new typ.
	custom func(raw []byte) error
}

// knownTypes are the types of a StatefulSet that decode themselves, checked
// by calling their own UnmarshalJSON on a value that does not escape: going
// through reflection and a decoder for each (every container's resources,
// every managedFields entry) cost more than the rest of the check.
var knownTypes = map[reflect.Type]func(raw []byte) error{
	reflect.TypeFor[resource.Quantity](): func(raw []byte) error {
		var q resource.Quantity
		return q.UnmarshalJSON(raw)
	},
	reflect.TypeFor[metav1.Time](): func(raw []byte) error {
		if len(raw) > 1 && raw[0] == '"' && !bytes.ContainsAny(raw[1:len(raw)-1], `\"`) {
			_, err := time.Parse(time.RFC3339, string(raw[1:len(raw)-1]))
			return err
		}
		var t metav1.Time
		return t.UnmarshalJSON(raw)
	},
	reflect.TypeFor[intstr.IntOrString](): func(raw []byte) error {
		if raw[0] == '"' {
			return nil // any string (a valid one: the scanner has checked it)
		}
		var v intstr.IntOrString
		return v.UnmarshalJSON(raw)
	},
	// Both keep whatever JSON they are given.
	reflect.TypeFor[metav1.FieldsV1]():      nil,
	reflect.TypeFor[runtime.RawExtension](): nil,
}

type shapeKind uint8

const (
	shapeAny shapeKind = iota
	shapeString
	shapeBool
	shapeInt
	shapeUint
	shapeFloat
	shapeBytes // base64 in a JSON string
	shapeStruct
	shapeMap
	shapeSlice
	shapeCustom // json.Unmarshaler (Quantity, Time, IntOrString, ...): ask it
)

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// shapeOf derives the shape of t; seen ends recursion through recursive types.
func shapeOf(t reflect.Type, seen map[reflect.Type]*shape) *shape {
	if s, ok := seen[t]; ok {
		return s
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := seen[t]; ok {
		return s
	}
	s := &shape{}
	seen[t] = s
	if c, ok := knownTypes[t]; ok {
		if c == nil {
			s.kind = shapeAny
		} else {
			s.kind, s.custom = shapeCustom, c
		}
		return s
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		s.kind, s.typ = shapeCustom, t
		return s
	}
	switch t.Kind() {
	case reflect.String:
		s.kind = shapeString
	case reflect.Bool:
		s.kind = shapeBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s.kind, s.bits = shapeInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		s.kind, s.bits = shapeUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		s.kind, s.bits = shapeFloat, t.Bits()
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(unmarshalerType) {
			s.kind = shapeBytes
			break
		}
		s.kind, s.elem = shapeSlice, shapeOf(t.Elem(), seen)
	case reflect.Map:
		if t.Key().Kind() != reflect.String { // none in a StatefulSet; let the decoder judge
			s.kind, s.typ = shapeCustom, t
			break
		}
		s.kind, s.elem = shapeMap, shapeOf(t.Elem(), seen)
	case reflect.Struct:
		s.kind, s.fields = shapeStruct, map[string]*shape{}
		addFields(s.fields, t, seen)
	case reflect.Interface:
		s.kind = shapeAny
	default: // chan, func, array, complex: none in a StatefulSet
		s.kind, s.typ = shapeCustom, t
	}
	return s
}

// addFields adds the JSON members of struct t, promoting those of embedded
// structs without a name (`json:",inline"`) as encoding/json does.
func addFields(fields map[string]*shape, t reflect.Type, seen map[reflect.Type]*shape) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(fields, ft, seen)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := fields[name]; !dup { // the outer field wins
			fields[name] = shapeOf(f.Type, seen)
		}
	}
}

// field returns the shape of member name, nil for a member the type does
// not have (ignored by the decoder, so anything goes).
func (s *shape) field(name []byte) *shape {
	if s == nil || s.kind != shapeStruct {
		return nil
	}
	return s.fields[string(name)]
}

// skipAs skips the value at d.i, recording a type error (the first, as
// elsewhere) if it would not decode into sh; path names the value for that
// error and is only spelt out then.
func (d *decoder) skipAs(sh *shape, parent string, name []byte) {
	if sh == nil || sh.kind == shapeAny {
		d.skip()
		return
	}
	if d.failed() {
		return
	}
	if e := d.check(sh, 0); e != nil && d.typeErr == nil {
		e.Field = join(parent, joinSegment(string(name), e.Field))
		d.typeErr = e
	}
}

// joinSegment prefixes the path found below a member with the member.
func joinSegment(seg, below string) string {
	switch {
	case below == "":
		return seg
	case below[0] == '[':
		return seg + below
	}
	return seg + "." + below
}

// check validates and skips one value, returning a type error (its Field
// relative to the value) if it does not fit sh. A syntax error stops the
// decoder as skip does.
func (d *decoder) check(sh *shape, depth int) *typeError {
	if d.i >= len(d.in) {
		d.fail(d.errorf("unexpected end of input"))
		return nil
	}
	if d.in[d.i] == 'n' || sh == nil || sh.kind == shapeAny { // null fits every type
		if err := d.skipValue(depth); err != nil {
			d.fail(err)
		}
		return nil
	}
	start, found := d.i, d.kindAhead()
	mismatch := func(want string) *typeError {
		if err := d.skipValue(depth); err != nil {
			d.fail(err)
			return nil
		}
		return &typeError{Value: found, Want: want}
	}
	switch sh.kind {
	case shapeString:
		if found != "string" {
			return mismatch("a string")
		}
	case shapeBool:
		if found != "bool" {
			return mismatch("a boolean")
		}
	case shapeInt, shapeUint, shapeFloat:
		if found != "number" {
			return mismatch("a number")
		}
		if err := d.number(); err != nil {
			d.fail(err)
			return nil
		}
		if !numberFits(sh, string(d.in[start:d.i])) {
			return &typeError{Value: "number " + clip(string(d.in[start:d.i])), Want: "a number that fits " + numberType(sh)}
		}
		return nil
	case shapeBytes:
		if found != "string" {
			return mismatch("a base64 string")
		}
		if err := d.skipValue(depth); err != nil {
			d.fail(err)
			return nil
		}
		var s string
		if json.Unmarshal(d.in[start:d.i], &s) == nil {
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return &typeError{Value: "a string that is not base64", Want: "base64"}
			}
		}
		return nil
	case shapeCustom:
		if err := d.skipValue(depth); err != nil {
			d.fail(err)
			return nil
		}
		raw := d.in[start:d.i]
		var err error
		if sh.custom != nil {
			err = sh.custom(raw)
		} else {
			err = utiljson.Unmarshal(raw, reflect.New(sh.typ).Interface())
		}
		if err != nil {
			return &typeError{Value: clip(string(raw)), Want: "a valid value (" + oneLine(err.Error()) + ")"}
		}
		return nil
	case shapeStruct, shapeMap:
		if found != "object" {
			return mismatch("an object")
		}
		return d.checkMembers(sh, depth)
	case shapeSlice:
		if found != "array" {
			return mismatch("an array")
		}
		return d.checkElements(sh.elem, depth)
	}
	if err := d.skipValue(depth); err != nil {
		d.fail(err)
	}
	return nil
}

// checkMembers checks an object's members against sh (a struct's fields or a
// map's values), returning the first mismatch below it. It steps through the
// object itself rather than through d.object's callback: every skipped member
// of every request comes here, and the closure cost validate ~15%.
func (d *decoder) checkMembers(sh *shape, depth int) *typeError {
	if depth+1 > maxDepth {
		d.fail(d.errorf("exceeded max depth"))
		return nil
	}
	if d.open('}') {
		return nil
	}
	var first *typeError
	for {
		raw, special, err := d.key()
		if err != nil {
			d.fail(err)
			return nil
		}
		key := raw[1 : len(raw)-1]
		if special {
			var k string
			if err := json.Unmarshal(raw, &k); err != nil {
				d.fail(d.errorf("bad object key: %v", err))
				return nil
			}
			key = []byte(k)
		}
		child := sh.elem
		if sh.kind == shapeStruct {
			child = sh.fields[string(key)]
		}
		if e := d.check(child, depth+1); e != nil && first == nil {
			e.Field = joinSegment(string(key), e.Field)
			first = e
		}
		if d.failed() {
			return nil
		}
		if done, err := d.next('}'); done || err != nil {
			d.fail(err)
			return first
		}
	}
}

// checkElements checks an array's elements against elem (see checkMembers).
func (d *decoder) checkElements(elem *shape, depth int) *typeError {
	if depth+1 > maxDepth {
		d.fail(d.errorf("exceeded max depth"))
		return nil
	}
	if d.open(']') {
		return nil
	}
	var first *typeError
	for i := 0; ; i++ {
		if e := d.check(elem, depth+1); e != nil && first == nil {
			e.Field = joinSegment("["+strconv.Itoa(i)+"]", e.Field)
			first = e
		}
		if d.failed() {
			return nil
		}
		if done, err := d.next(']'); done || err != nil {
			d.fail(err)
			return first
		}
	}
}

// numberFits reports whether encoding/json decodes the JSON number n into
// a number of sh's kind and size: integers must be written as integers.
func numberFits(sh *shape, n string) bool {
	var err error
	switch sh.kind {
	case shapeInt:
		_, err = strconv.ParseInt(n, 10, sh.bits)
	case shapeUint:
		_, err = strconv.ParseUint(n, 10, sh.bits)
	default:
		_, err = strconv.ParseFloat(n, sh.bits)
	}
	return err == nil
}

func numberType(sh *shape) string {
	switch sh.kind {
	case shapeInt:
		return "int" + strconv.Itoa(sh.bits)
	case shapeUint:
		return "uint" + strconv.Itoa(sh.bits)
	}
	return "float" + strconv.Itoa(sh.bits)
}

// stsShapes are the shapes of the objects the fast decoder walks into.
type stsShapes struct {
	sts, meta, spec, template, retention, pod, volume, container, mount *shape
	claim, claimSpec, claimResources                                    *shape
}

var shapes = sync.OnceValue(func() *stsShapes {
	sts := shapeOf(reflect.TypeFor[appsv1.StatefulSet](), map[reflect.Type]*shape{})
	spec := sts.fields["spec"]
	template := spec.fields["template"]
	pod := template.fields["spec"]
	claim := spec.fields["volumeClaimTemplates"].elem
	claimSpec := claim.fields["spec"]
	return &stsShapes{
		sts: sts, meta: sts.fields["metadata"], spec: spec, template: template,
		retention: spec.fields["persistentVolumeClaimRetentionPolicy"],
		pod:       pod, volume: pod.fields["volumes"].elem, container: pod.fields["containers"].elem,
		mount: pod.fields["containers"].elem.fields["volumeMounts"].elem,
		claim: claim, claimSpec: claimSpec, claimResources: claimSpec.fields["resources"],
	}
})
