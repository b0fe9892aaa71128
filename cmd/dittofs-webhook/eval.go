package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

const evalUsage = `Usage: dittofs-webhook eval [-f FILE|DIR|-]... [--old FILE]... [-o yaml|json|patch] [--validate strict|warn|false] [--recreate] [--manage] [flags]

Runs the mutating and then the validating webhook on manifests, offline, with
the server's own code, as the apiserver calls them: prints the documents as the
webhooks leave them, each DittoFS StatefulSet's warnings and violations on
stderr, and exits 0 when all are allowed, 1 when any is denied, 2 on
unreadable input.

Input is YAML (multi-document, ---) or JSON; a List is evaluated item by item.
Documents other than StatefulSets labelled ` + policies.LabelServer + `
pass through unchanged. Each StatefulSet is first checked as
kubectl apply --validate=strict has the apiserver check it (unknown fields,
duplicate fields, values of the wrong type). Stored objects (kubectl get -o
yaml) are reported with what is at risk, and unlabelled ones with how to bring
them under management: --manage adds the label to every unlabelled
StatefulSet of the input (its name as value) before evaluating.

  kubectl kustomize overlays/prod | dittofs-webhook eval -f - >/dev/null
  dittofs-webhook eval -f sts.yaml --old <(kubectl get statefulset fs -o yaml)
  kubectl get sts -A -l ` + policies.LabelServer + ` -o yaml | dittofs-webhook eval --recreate -f - >recreate.yaml
  kubectl get sts fs -o yaml | dittofs-webhook eval --recreate --manage -f - >recreate.yaml

Flags:
`

// evalFlags are the flags of `eval`.
type evalFlags struct {
	files    stringList
	old      stringList
	output   string
	validate string
	recreate bool
	manage   bool
	policy   *policyFlags
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func newEvalFlags(stderr io.Writer) (*flag.FlagSet, *evalFlags) {
	f := &evalFlags{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), evalUsage)
		fs.PrintDefaults()
	}
	fs.Var(&f.files, "f", "manifest `FILE`, DIR (its *.yaml, *.yml and *.json files in lexical order) or - for stdin; repeatable (default -)")
	fs.Var(&f.old, "old", "`FILE` of stored objects (as kubectl get -o yaml prints them): an input StatefulSet of the same namespace and name is evaluated as an UPDATE of it; repeatable")
	fs.StringVar(&f.output, "o", "yaml", "output: yaml (the documents after mutation), json (one JSON document per input document) or patch (each StatefulSet's JSON patch)")
	fs.StringVar(&f.validate, "validate", "strict", "check each StatefulSet as kubectl apply --validate=strict has the apiserver do: strict (report, exit 1), warn (report only) or false (skip)")
	fs.BoolVar(&f.recreate, "recreate", false, "print, for each managed StatefulSet without a cache template, the manifest to create it again, and on stderr the steps that lose nothing")
	fs.BoolVar(&f.manage, "manage", false, "label every unlabelled StatefulSet of the input "+policies.LabelServer+"=NAME before evaluating, as if its manifest had the label: with --recreate, the printed manifest and steps bring it under management")
	f.policy = addPolicyFlags(fs)
	return fs, f
}

func eval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags, f := newEvalFlags(stderr)
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case flags.NArg() > 0:
		fmt.Fprintf(stderr, "eval: unexpected arguments %q: name the manifests with -f\n", flags.Args())
		return 2
	case f.output != "yaml" && f.output != "json" && f.output != "patch":
		fmt.Fprintf(stderr, "eval: -o must be yaml, json or patch, got %q\n", f.output)
		return 2
	case f.recreate && f.output == "patch":
		fmt.Fprintln(stderr, "eval: --recreate prints manifests: -o yaml or json")
		return 2
	case f.validate != "strict" && f.validate != "warn" && f.validate != "false":
		fmt.Fprintf(stderr, "eval: --validate must be strict, warn or false, got %q\n", f.validate)
		return 2
	}
	opts, err := f.policy.options()
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return 2
	}
	if len(f.files) == 0 {
		f.files = stringList{"-"}
	}
	e := &evaluator{admitter: &admission.Admitter{Policy: opts}, stderr: stderr, validate: f.validate, manage: f.manage, recreating: f.recreate}
	e.reader = reader{stdin: stdin, fail: e.fail}
	if e.load(f.files, f.old); e.failed {
		return 2
	}
	if f.recreate {
		// stderr is a script then: everything but the steps is a comment.
		e.comment = "# "
		e.check()
		return e.recreate(stdout, f.output)
	}
	e.check()
	e.evaluate()
	if err := e.write(stdout, f.output); err != nil {
		fmt.Fprintf(stderr, "eval: writing the output: %v\n", err)
		return 2
	}
	e.report(e.sts)
	if e.denied {
		return 1
	}
	return 0
}

// statefulSet is an apps/v1 StatefulSet of the input and what eval made of it.
type statefulSet struct {
	*document
	name  string                // namespace/name
	view  *policies.StatefulSet // what the policies read; nil if it does not decode
	typed *appsv1.StatefulSet   // the whole object, as the apiserver decodes it
	// problems are what the strict check found; decodeErr why the view
	// does not decode.
	problems  []string
	decodeErr error
	// labelled is the patch --manage applied to the input: the label.
	labelled []jsonpatch.Operation
	old      *statefulSet // the stored object it updates (nil: a CREATE)
	ev       *admission.Evaluation
	evalErr  error
}

type evaluator struct {
	admitter *admission.Admitter
	reader   reader
	stderr   io.Writer
	validate string
	failed   bool
	comment  string // starts every report line ("# " under --recreate)
	// manage labels unlabelled input StatefulSets; recreating is --recreate.
	manage, recreating bool

	docs   []*document    // the top-level documents of the input, in order
	sts    []*statefulSet // every apps/v1 StatefulSet, list items included, in order
	byDoc  map[*document]*statefulSet
	old    []*statefulSet // the StatefulSets of --old
	denied bool
}

// fail prints an input error; eval exits 2 once everything is read.
func (e *evaluator) fail(format string, args ...any) {
	fmt.Fprintf(e.stderr, "eval: "+format+"\n", args...)
	e.failed = true
}

// load reads the inputs and the --old files, and pairs each input StatefulSet
// with its stored object. Every error is printed (e.failed).
func (e *evaluator) load(files, old []string) {
	for _, name := range files {
		e.docs = append(e.docs, e.reader.readArg(name)...)
	}
	var oldDocs []*document
	for _, name := range old {
		docs := e.reader.readArg(name)
		if len(docs) == 0 && !e.failed {
			e.fail("--old %s: no StatefulSet in it", name)
		}
		oldDocs = append(oldDocs, docs...)
	}
	if e.failed {
		return
	}
	if len(e.docs) == 0 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = displayName(f)
		}
		e.fail("no Kubernetes object in %s: nothing to evaluate", strings.Join(names, ", "))
		return
	}
	e.byDoc = map[*document]*statefulSet{}
	for _, d := range flatten(e.docs, nil) {
		s := newStatefulSet(d)
		if e.manage {
			e.label(s)
		}
		e.sts = append(e.sts, s)
		e.byDoc[d] = s
	}
	for _, d := range flatten(oldDocs, func(d *document) {
		e.fail("--old %s: a %s, not an apps/v1 StatefulSet", d.where, kindString(d))
	}) {
		e.old = append(e.old, newStatefulSet(d))
	}
	if !e.failed {
		e.pair()
	}
}

// newStatefulSet decodes a StatefulSet document both as the policies read it
// and whole, as the apiserver decodes it.
func newStatefulSet(d *document) *statefulSet {
	s := &statefulSet{document: d, typed: new(appsv1.StatefulSet)}
	strict, err := sigsjson.UnmarshalStrict(d.json, s.typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	duplicates := false
	for _, p := range strict {
		s.problems = append(s.problems, p.Error())
		duplicates = duplicates || strings.HasPrefix(p.Error(), "duplicate field")
	}
	if err != nil {
		s.problems = append(s.problems, strings.TrimPrefix(err.Error(), "json: "))
	}
	if d.text != nil {
		// YAML to JSON keeps the last of duplicate keys: find them first.
		if _, err := yaml.YAMLToJSONStrict(d.text); err != nil {
			s.problems = append(s.problems, "duplicate field: "+strings.TrimSpace(strings.ReplaceAll(withoutYAMLHeader(err.Error()), "\n", " ")))
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
	s.view, s.decodeErr = admission.DecodeStatefulSet(data, "")
	s.json = data
	m := s.typed.ObjectMeta
	if s.view != nil {
		m.Name, m.GenerateName, m.Namespace = s.view.Metadata.Name, s.view.Metadata.GenerateName, s.view.Metadata.Namespace
	}
	s.name = m.Name
	if s.name == "" {
		s.name = m.GenerateName
	}
	if s.name == "" {
		s.name = "(unnamed)"
	}
	if m.Namespace != "" {
		s.name = m.Namespace + "/" + s.name
	}
	return s
}

// label gives an unlabelled StatefulSet the server label (--manage), as if
// its manifest had it; the strict check's findings stay those of the input.
func (e *evaluator) label(s *statefulSet) {
	patch := policies.ManagePatch(s.view)
	if patch == nil {
		return
	}
	b, err := admission.ApplyPatch(s.json, patch)
	if err != nil {
		e.fail("%s: --manage cannot label it: %v", s.where, err)
		return
	}
	s.json, s.labelled = b, patch
	s.view, s.decodeErr = admission.DecodeStatefulSet(b, "")
}

// flatten returns the apps/v1 StatefulSets of docs and of their lists, in
// order; other reports every other object, when not nil.
func flatten(docs []*document, other func(*document)) []*document {
	var out []*document
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

// pair makes each input StatefulSet an UPDATE of the --old StatefulSet of the
// same namespace and name. A namespace missing on one side (a manifest that
// relies on kubectl's namespace) matches any, when only one object of that name
// is on the other side. --old objects matching no input are an error, unless
// some other --old object matched: a dump of a whole namespace may hold
// StatefulSets the input does not.
func (e *evaluator) pair() {
	if len(e.old) == 0 {
		return
	}
	nsName := func(s string) (string, string) {
		if i := strings.IndexByte(s, '/'); i >= 0 {
			return s[:i], s[i+1:]
		}
		return "", s
	}
	matched := false
	for _, s := range e.sts {
		ns, name := nsName(s.name)
		var exact, loose []*statefulSet
		for _, o := range e.old {
			ons, oname := nsName(o.name)
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
			e.fail("--old: statefulset %s is there %d times (%s and %s)", s.name, len(exact), exact[0].where, exact[1].where)
		case len(exact) == 1:
			s.old = exact[0]
		case len(loose) > 1:
			e.fail("--old: statefulset %s (%s) could be any of %d objects of that name: give the namespace", s.name, s.where, len(loose))
		case len(loose) == 1:
			s.old = loose[0]
		}
		matched = matched || s.old != nil
	}
	if !matched {
		names := make([]string, len(e.old))
		for i, o := range e.old {
			names[i] = o.name
		}
		e.fail("--old: no StatefulSet of the input has the namespace and name of %s: an UPDATE is evaluated against the stored version of the same object", strings.Join(names, ", "))
	}
}

// check reports what the strict check found (--validate), and what is at
// risk in stored objects.
func (e *evaluator) check() {
	comment := e.comment
	for _, s := range e.sts {
		if e.validate != "false" {
			for _, p := range s.problems {
				fmt.Fprintf(e.stderr, "%sstatefulset %s: %s: strict decoding error: %s (--validate=%s)\n", comment, s.name, s.where, p, e.validate)
			}
			if len(s.problems) > 0 && e.validate == "strict" {
				e.denied = true
			}
		}
		if n := e.management(s); n != "" {
			fmt.Fprintf(e.stderr, "%sstatefulset %s: %s\n", comment, s.name, n)
		}
		for _, r := range s.atRisk() {
			fmt.Fprintf(e.stderr, "%sstatefulset %s: at risk: %s\n", comment, s.name, r)
		}
	}
}

// stored reports whether s is an object the apiserver returned (kubectl get
// -o yaml), not a manifest.
func (s *statefulSet) stored() bool {
	return s.typed.UID != "" || s.typed.ResourceVersion != ""
}

// management says how an unlabelled StatefulSet comes under management: in
// the at-risk report of stored objects and under --recreate, as both are
// where a user looks for what the webhooks do not cover; "" for the rest,
// and for an UPDATE (--old), which is judged as the webhooks judge it.
func (e *evaluator) management(s *statefulSet) string {
	if s.view == nil || s.old != nil || !(s.stored() || e.recreating) {
		return ""
	}
	ns := nsFlag(s)
	if s.labelled != nil {
		label := fmt.Sprintf("%s=%s", policies.LabelServer, s.view.Metadata.Labels[policies.LabelServer])
		if policies.HasCacheTemplate(s.view) && s.stored() {
			return fmt.Sprintf("labelled %s (--manage); it has a cache template, so it can be labelled in place: kubectl label statefulset %s %s%s", label, s.view.Metadata.Name, label, ns)
		}
		return fmt.Sprintf("labelled %s (--manage)", label)
	}
	if policies.IsManaged(s.view) {
		return ""
	}
	n := fmt.Sprintf("not managed: no %s label, so the webhooks neither give it a persistent cache nor check its storage; ", policies.LabelServer)
	if policies.HasCacheTemplate(s.view) {
		return n + fmt.Sprintf("it has a cache template, so it can be labelled in place: kubectl label statefulset %s %s=%s%s", s.view.Metadata.Name, policies.LabelServer, s.view.Metadata.Name, ns)
	}
	return n + fmt.Sprintf("it has no cache template, so labelling it in place is denied (an update cannot add the cache): add the label to its manifest and run eval --recreate on that, or run eval --recreate --manage on this input, which adds the label (%s=NAME) to the manifest it prints", policies.LabelServer)
}

// atRisk says what a stored managed StatefulSet (one the apiserver returned)
// puts at risk.
func (s *statefulSet) atRisk() []string {
	if s.view == nil || !policies.IsManaged(s.view) || !s.stored() {
		return nil
	}
	var risks []string
	if !policies.HasCacheTemplate(s.view) {
		risks = append(risks, fmt.Sprintf("no persistent cache: no %q volumeClaimTemplate, so the write-ahead log is lost whenever a pod restarts; it cannot be added in place: `dittofs-webhook eval --recreate` prints the steps to recreate the StatefulSet without losing data", policies.CacheVolume))
	}
	rp := s.view.Spec.RetentionPolicy
	if rp == nil { // the API defaults both fields to Retain
		rp = &policies.RetentionPolicy{}
	}
	for _, f := range []struct{ name, value, what string }{
		{"whenDeleted", rp.WhenDeleted, "deleting the StatefulSet deletes its PVCs and their data"},
		{"whenScaled", rp.WhenScaled, "scaling it down deletes the PVCs of the removed pods"},
	} {
		if f.value != policies.Retain && f.value != "" {
			risks = append(risks, fmt.Sprintf("persistentVolumeClaimRetentionPolicy.%s is %s: %s; any update through the webhook sets it to Retain", f.name, f.value, f.what))
		}
	}
	return risks
}

// evaluate runs both webhooks on every StatefulSet.
func (e *evaluator) evaluate() {
	for _, s := range e.sts {
		op, old := "CREATE", []byte(nil)
		if s.old != nil {
			op, old = "UPDATE", s.old.json
		}
		switch {
		case s.decodeErr != nil:
			s.evalErr = fmt.Errorf("%s: does not decode as an apps/v1 StatefulSet: %v", s.where, s.decodeErr)
		case s.old != nil && s.old.decodeErr != nil:
			s.evalErr = fmt.Errorf("--old %s: the stored object does not decode as an apps/v1 StatefulSet: %v", s.old.where, s.old.decodeErr)
		default:
			s.ev, s.evalErr = e.admitter.Evaluate(op, s.json, old)
		}
		if s.evalErr != nil || !s.ev.Allowed() {
			e.denied = true
		}
	}
}

// report prints the StatefulSets' warnings and violations on stderr.
func (e *evaluator) report(list []*statefulSet) {
	for _, s := range list {
		prefix := e.comment + "statefulset " + s.name + ": "
		if s.evalErr != nil {
			fmt.Fprintf(e.stderr, "%sdenied: %v\n", prefix, s.evalErr)
			continue
		}
		for _, w := range s.ev.Warnings() {
			fmt.Fprintf(e.stderr, "%swarning: %s\n", prefix, w)
		}
		st := s.ev.Denial()
		if st == nil {
			continue
		}
		if st.Details == nil || len(st.Details.Causes) == 0 {
			fmt.Fprintf(e.stderr, "%sdenied: %s\n", prefix, st.Message)
			continue
		}
		for _, c := range st.Details.Causes {
			if c.Field != "" {
				fmt.Fprintf(e.stderr, "%sdenied: %s: %s\n", prefix, c.Field, c.Message)
			} else {
				fmt.Fprintf(e.stderr, "%sdenied: %s\n", prefix, c.Message)
			}
		}
	}
}

// changed reports whether the document, or an item of it, was patched.
func (e *evaluator) changed(d *document) bool {
	if s := e.byDoc[d]; s != nil && (s.labelled != nil || s.ev != nil && s.ev.Changed()) {
		return true
	}
	for _, it := range d.items {
		if e.changed(it) {
			return true
		}
	}
	return false
}

// result is the document after evaluation, as JSON.
func (e *evaluator) result(d *document) ([]byte, error) {
	if !e.changed(d) {
		return d.json, nil
	}
	if !d.isList {
		if s := e.byDoc[d]; s.ev != nil {
			return s.ev.Object, nil
		}
		return d.json, nil // labelled (--manage), then denied
	}
	var list map[string]jsontext.Value
	if err := jsonv2.Unmarshal(d.json, &list, jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, err
	}
	items := make([]json.RawMessage, len(d.items))
	for i, it := range d.items {
		b, err := e.result(it)
		if err != nil {
			return nil, err
		}
		items[i] = b
	}
	b, err := marshalJSON(items)
	if err != nil {
		return nil, err
	}
	list["items"] = b
	return marshalJSON(list)
}

// patchOut is one StatefulSet in -o patch.
type patchOut struct {
	StatefulSet string                `json:"statefulset"`
	Operation   string                `json:"operation"`
	Allowed     bool                  `json:"allowed"`
	Patch       []jsonpatch.Operation `json:"patch"`
}

// write prints the output in the given format.
func (e *evaluator) write(w io.Writer, format string) error {
	var buf bytes.Buffer
	switch format {
	case "yaml":
		for i, d := range e.docs {
			if i > 0 {
				buf.WriteString("---\n")
			}
			if !e.changed(d) && d.text != nil {
				buf.Write(d.text)
				continue
			}
			b, err := e.result(d)
			if err == nil {
				err = writeYAML(&buf, b)
			}
			if err != nil {
				return err
			}
		}
	case "json":
		for _, d := range e.docs {
			b, err := e.result(d)
			if err != nil {
				return err
			}
			if err := json.Indent(&buf, b, "", "  "); err != nil {
				return err
			}
			buf.WriteByte('\n')
		}
	case "patch":
		for _, s := range e.sts {
			p := patchOut{StatefulSet: s.name, Operation: "CREATE", Patch: []jsonpatch.Operation{}}
			if s.old != nil {
				p.Operation = "UPDATE"
			}
			// The label --manage added, then the webhook's patch: what
			// turns the input into the output.
			p.Patch = append(p.Patch, s.labelled...)
			if s.ev != nil {
				p.Allowed = s.ev.Allowed()
				if s.ev.Changed() {
					p.Patch = append(p.Patch, s.ev.Mutation.Patch...)
				}
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// writeYAML writes a JSON document as YAML.
func writeYAML(buf *bytes.Buffer, doc []byte) error {
	y, err := yaml.JSONToYAML(doc)
	if err != nil {
		return err
	}
	buf.Write(y)
	return nil
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

func kindString(d *document) string {
	if d.apiVersion == "" {
		return d.kind
	}
	return d.apiVersion + " " + d.kind
}
