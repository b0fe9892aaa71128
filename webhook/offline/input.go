package offline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
)

// InputError is every reason the input could not be read (the commands exit
// 2), one message each, in the order they were found.
type InputError struct {
	Messages []string
}

func (e *InputError) Error() string { return strings.Join(e.Messages, "; ") }

func (e *InputError) add(format string, args ...any) {
	e.Messages = append(e.Messages, fmt.Sprintf(format, args...))
}

// ReadOptions say what Read reads.
type ReadOptions struct {
	// Files are the -f arguments: files, directories (their *.yaml, *.yml
	// and *.json files in lexical order) or - for Stdin; none means stdin.
	Files []string
	// Old are the --old arguments: stored objects an input StatefulSet of
	// the same namespace and name is an UPDATE of.
	Old   []string
	Stdin io.Reader
	// Manage labels every unlabelled StatefulSet of the input
	// dittofs.com/server=NAME, as if its manifest had the label.
	Manage bool
}

// Input is what was read: the documents in order and the apps/v1
// StatefulSets among them (list items included), each paired with its
// stored object when Old named one.
type Input struct {
	Documents    []*Document
	StatefulSets []*StatefulSet
	byDoc        map[*Document]*StatefulSet
}

// StatefulSet is an apps/v1 StatefulSet of the input, decoded both as the
// policies read it and whole, as the apiserver decodes it.
type StatefulSet struct {
	doc *Document
	// Name is namespace/name (generateName without a name, "(unnamed)"
	// without either).
	Name string
	// View is what the policies read; nil when it does not decode
	// (DecodeErr says why).
	View      *policies.StatefulSet
	DecodeErr error
	// Typed is the whole object, as the apiserver decodes it.
	Typed *appsv1.StatefulSet
	// Problems are what the strict check found (kubectl apply
	// --validate=strict): unknown fields, duplicate fields, wrong types.
	Problems []string
	// Labelled is the patch Manage applied to the input: the label.
	Labelled []jsonpatch.Operation
	// Old is the stored object it updates; nil for a CREATE.
	Old *StatefulSet
	// json is the object the webhooks are sent: as read, deduplicated,
	// labelled.
	json []byte
}

// Where names the object in messages: file:line, and the item of a List.
func (s *StatefulSet) Where() string { return s.doc.where }

// Stored reports whether s is an object the apiserver returned (kubectl get
// -o yaml), not a manifest.
func (s *StatefulSet) Stored() bool {
	return s.Typed.UID != "" || s.Typed.ResourceVersion != ""
}

// Managed reports whether s carries the dittofs.com/server label (after
// Manage).
func (s *StatefulSet) Managed() bool { return s.View != nil && policies.IsManaged(s.View) }

// Replicas is spec.replicas, 1 when unset (the API's default).
func (s *StatefulSet) Replicas() int32 {
	if s.Typed.Spec.Replicas != nil {
		return *s.Typed.Spec.Replicas
	}
	return 1
}

// Recreation is the procedure that gives s a cache template.
func (s *StatefulSet) Recreation() policies.Recreation {
	return policies.RecreationOf(s.View, s.Replicas())
}

// Read reads the inputs and the Old files, and pairs each input StatefulSet
// with its stored object. The error, an *InputError, holds every problem.
func Read(o ReadOptions) (*Input, error) {
	errs := &InputError{}
	r := reader{stdin: o.Stdin, errs: errs}
	files := o.Files
	if len(files) == 0 {
		files = []string{"-"}
	}
	in := &Input{byDoc: map[*Document]*StatefulSet{}}
	for _, name := range files {
		in.Documents = append(in.Documents, r.readArg(name)...)
	}
	var oldDocs []*Document
	for _, name := range o.Old {
		docs := r.readArg(name)
		if len(docs) == 0 && len(errs.Messages) == 0 {
			errs.add("--old %s: no StatefulSet in it", name)
		}
		oldDocs = append(oldDocs, docs...)
	}
	if len(errs.Messages) > 0 {
		return nil, errs
	}
	if len(in.Documents) == 0 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = displayName(f)
		}
		errs.add("no Kubernetes object in %s: nothing to evaluate", strings.Join(names, ", "))
		return nil, errs
	}
	for _, d := range flatten(in.Documents, nil) {
		s := newStatefulSet(d)
		if o.Manage {
			label(s, errs)
		}
		in.StatefulSets = append(in.StatefulSets, s)
		in.byDoc[d] = s
	}
	var old []*StatefulSet
	for _, d := range flatten(oldDocs, func(d *Document) {
		errs.add("--old %s: a %s, not an apps/v1 StatefulSet", d.where, kindString(d))
	}) {
		old = append(old, newStatefulSet(d))
	}
	if len(errs.Messages) == 0 {
		pair(in.StatefulSets, old, errs)
	}
	if len(errs.Messages) > 0 {
		return nil, errs
	}
	return in, nil
}

// newStatefulSet decodes a StatefulSet document both as the policies read it
// and whole, as the apiserver decodes it, with the strict check on the way.
func newStatefulSet(d *Document) *StatefulSet {
	s := &StatefulSet{doc: d, Typed: new(appsv1.StatefulSet)}
	strict, err := sigsjson.UnmarshalStrict(d.json, s.Typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	duplicates := false
	for _, p := range strict {
		s.Problems = append(s.Problems, p.Error())
		duplicates = duplicates || strings.HasPrefix(p.Error(), "duplicate field")
	}
	if err != nil {
		s.Problems = append(s.Problems, withFieldPath(d.json, err))
	}
	if d.text != nil {
		// YAML to JSON keeps the last of duplicate keys: find them first.
		if _, err := yaml.YAMLToJSONStrict(d.text); err != nil {
			s.Problems = append(s.Problems, "duplicate field: "+strings.TrimSpace(strings.ReplaceAll(withoutYAMLHeader(err.Error()), "\n", " ")))
		}
	}
	data := d.json
	if duplicates {
		// Duplicate names: the apiserver keeps the last value, and sends
		// the webhooks an object without them.
		var v any
		if sigsjson.UnmarshalCaseSensitivePreserveInts(data, &v) == nil {
			data, _ = marshalJSON(v)
		}
	}
	s.View, s.DecodeErr = admission.DecodeStatefulSet(data, "")
	s.json = data
	m := s.Typed.ObjectMeta
	if s.View != nil {
		m.Name, m.GenerateName, m.Namespace = s.View.Metadata.Name, s.View.Metadata.GenerateName, s.View.Metadata.Namespace
	}
	s.Name = m.Name
	if s.Name == "" {
		s.Name = m.GenerateName
	}
	if s.Name == "" {
		s.Name = "(unnamed)"
	}
	if m.Namespace != "" {
		s.Name = m.Namespace + "/" + s.Name
	}
	return s
}

// withFieldPath is the strict decoder's error, named by its field path. A
// type mismatch names its field already; an error a value's own decoder
// returns (a quantity that does not parse, a bad time) does not, so the
// document is decoded again with go-json-experiment/json, whose errors carry
// the JSON pointer, and its path is used when it failed on the same error.
func withFieldPath(data []byte, err error) string {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	var fe sigsjson.FieldError
	if errors.As(err, &fe) {
		return msg
	}
	var sts appsv1.StatefulSet
	var se *jsonv2.SemanticError
	e := jsonv2.Unmarshal(data, &sts, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if !errors.As(e, &se) || se.JSONPointer == "" || se.Err == nil || se.Err.Error() != err.Error() {
		return msg
	}
	var p strings.Builder
	for tok := range se.JSONPointer.Tokens() {
		if _, nerr := strconv.Atoi(tok); nerr == nil && p.Len() > 0 {
			fmt.Fprintf(&p, "[%s]", tok)
			continue
		}
		if p.Len() > 0 {
			p.WriteByte('.')
		}
		p.WriteString(tok)
	}
	return p.String() + ": " + msg
}

// label gives an unlabelled StatefulSet the server label (Manage), as if its
// manifest had it; the strict check's findings stay those of the input.
func label(s *StatefulSet, errs *InputError) {
	patch := policies.ManagePatch(s.View)
	if patch == nil {
		return
	}
	b, err := admission.ApplyPatch(s.json, patch)
	if err != nil {
		errs.add("%s: --manage cannot label it: %v", s.doc.where, err)
		return
	}
	s.json, s.Labelled = b, patch
	s.View, s.DecodeErr = admission.DecodeStatefulSet(b, "")
}

// flatten returns the apps/v1 StatefulSets of docs and of their lists, in
// order; other reports every other object, when not nil.
func flatten(docs []*Document, other func(*Document)) []*Document {
	var out []*Document
	for _, d := range docs {
		switch {
		case d.isList:
			out = append(out, flatten(d.items, other)...)
		case d.isStatefulSet():
			out = append(out, d)
		case other != nil:
			other(d)
		}
	}
	return out
}

// pair makes each input StatefulSet an UPDATE of the old StatefulSet of the
// same namespace and name. A namespace missing on one side (a manifest that
// relies on kubectl's namespace) matches any, when only one object of that name
// is on the other side. Old objects matching no input are an error, unless
// some other old object matched: a dump of a whole namespace may hold
// StatefulSets the input does not.
func pair(sts, old []*StatefulSet, errs *InputError) {
	if len(old) == 0 {
		return
	}
	nsName := func(s string) (string, string) {
		if i := strings.IndexByte(s, '/'); i >= 0 {
			return s[:i], s[i+1:]
		}
		return "", s
	}
	matched := false
	for _, s := range sts {
		ns, name := nsName(s.Name)
		var exact, loose []*StatefulSet
		for _, o := range old {
			ons, oname := nsName(o.Name)
			if oname != name {
				continue
			}
			if ons == ns {
				exact = append(exact, o)
			} else if ons == "" || ns == "" {
				loose = append(loose, o)
			}
		}
		switch {
		case len(exact) > 1:
			errs.add("--old: statefulset %s is there %d times (%s and %s)", s.Name, len(exact), exact[0].doc.where, exact[1].doc.where)
		case len(exact) == 1:
			s.Old = exact[0]
		case len(loose) > 1:
			errs.add("--old: statefulset %s (%s) could be any of %d objects of that name: give the namespace", s.Name, s.doc.where, len(loose))
		case len(loose) == 1:
			s.Old = loose[0]
		}
		matched = matched || s.Old != nil
	}
	if !matched {
		names := make([]string, len(old))
		for i, o := range old {
			names[i] = o.Name
		}
		errs.add("--old: no StatefulSet of the input has the namespace and name of %s: an UPDATE is evaluated against the stored version of the same object", strings.Join(names, ", "))
	}
}

// marshalJSON is json.Marshal without HTML escaping: a manifest printed back
// to its user keeps "<", ">" and "&" as written, as kubectl prints them.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// withoutYAMLHeader is a strict YAML error without its conversion and
// "unmarshal errors:" headers.
func withoutYAMLHeader(s string) string {
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	return strings.TrimPrefix(s, "yaml: unmarshal errors:")
}

func kindString(d *Document) string {
	if d.apiVersion == "" {
		return d.kind
	}
	return d.apiVersion + " " + d.kind
}
