package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook"
)

const evalUsage = `Usage: dittofs-webhook eval [-f FILE|DIR|-]... [--old FILE]... [-o yaml|json|patch] [flags]

Runs the mutating and then the validating webhook on manifests, offline, with
the server's own code, as the apiserver calls them: prints the documents as the
webhooks leave them, each DittoFS StatefulSet's warnings and violations on
stderr, and exits 0 when all are allowed, 1 when any is denied, 2 on
unreadable input.

Input is YAML (multi-document, ---) or JSON; a List is evaluated item by item.
Documents other than StatefulSets labelled ` + policies.LabelServer + `
pass through unchanged.

  kubectl kustomize overlays/prod | dittofs-webhook eval -f - >/dev/null
  dittofs-webhook eval -f sts.yaml --old <(kubectl get statefulset fs -o yaml)

Flags:
`

// evalFlags are the flags of `eval`.
type evalFlags struct {
	files            stringList
	old              stringList
	output           string
	defaultCacheSize string
	cacheMountPath   string
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
	fs.StringVar(&f.defaultCacheSize, "default-cache-size", "5Gi", "as serve's flag: size of an injected cache volumeClaimTemplate without the "+policies.AnnotationCacheSize+" annotation")
	fs.StringVar(&f.cacheMountPath, "cache-mount-path", "/data/cache", "as serve's flag: where the DittoFS container mounts the cache")
	return fs, f
}

// policy turns the policy flags into options, checked as serve checks them.
func (f *evalFlags) policy() (policies.Options, error) {
	var o policies.Options
	q, err := resource.ParseQuantity(f.defaultCacheSize)
	if err != nil || q.Sign() <= 0 {
		return o, fmt.Errorf("--default-cache-size must be a positive quantity such as 5Gi, got %q", f.defaultCacheSize)
	}
	o.DefaultCacheSize = q
	o.CacheMountPath = f.cacheMountPath
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("--cache-mount-path: %w", err)
	}
	return o, nil
}

// errInput marks errors already printed: eval exits 2.
var errInput = errors.New("unreadable input")

func eval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags, f := newEvalFlags(stderr)
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "eval: unexpected arguments %q: name the manifests with -f\n", flags.Args())
		return 2
	}
	if f.output != "yaml" && f.output != "json" && f.output != "patch" {
		fmt.Fprintf(stderr, "eval: -o must be yaml, json or patch, got %q\n", f.output)
		return 2
	}
	opts, err := f.policy()
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return 2
	}
	if len(f.files) == 0 {
		f.files = stringList{"-"}
	}
	e := &evaluator{admitter: &webhook.Admitter{Policy: opts}, stdin: stdin, stderr: stderr}
	if err := e.load(f.files, f.old); err != nil {
		return 2
	}
	if err := e.evaluate(); err != nil {
		return 2
	}
	if err := e.write(stdout, f.output); err != nil {
		fmt.Fprintf(stderr, "eval: writing the output: %v\n", err)
		return 2
	}
	e.report()
	if e.denied {
		return 1
	}
	return 0
}

// document is one object of the input: a top-level document or an item of a
// List.
type document struct {
	// where names the document in messages: file:line, and the item.
	where string
	// text is the document's original text when it was read as YAML.
	text []byte
	// json is the document as JSON, as read.
	json []byte
	// apiVersion and kind; an item of a typed list (StatefulSetList) without
	// them has those of its list.
	apiVersion, kind string
	// items are the items of a List, nil for any other document.
	items  []*document
	isList bool

	// For an apps/v1 StatefulSet: its name, what eval made of it, and the
	// stored object it updates (nil for a CREATE).
	name string
	ev   *webhook.Evaluation
	old  *document
}

func (d *document) isStatefulSet() bool {
	return d.apiVersion == "apps/v1" && d.kind == "StatefulSet"
}

// changed reports whether the document, or an item of it, was patched.
func (d *document) changed() bool {
	if d.ev != nil && d.ev.Changed() {
		return true
	}
	for _, it := range d.items {
		if it.changed() {
			return true
		}
	}
	return false
}

// result is the document after evaluation, as JSON.
func (d *document) result() ([]byte, error) {
	if !d.changed() {
		return d.json, nil
	}
	if !d.isList {
		return d.ev.Object, nil
	}
	var list map[string]json.RawMessage
	if err := json.Unmarshal(d.json, &list); err != nil {
		return nil, err
	}
	items := make([]json.RawMessage, len(d.items))
	for i, it := range d.items {
		b, err := it.result()
		if err != nil {
			return nil, err
		}
		items[i] = b
	}
	b, err := webhook.MarshalJSON(items)
	if err != nil {
		return nil, err
	}
	list["items"] = b
	return webhook.MarshalJSON(list)
}

type evaluator struct {
	admitter  *webhook.Admitter
	stdin     io.Reader
	stderr    io.Writer
	usedStdin bool
	failed    bool

	docs   []*document // the top-level documents of the input, in order
	sts    []*document // every apps/v1 StatefulSet, list items included, in order
	old    []*document // the StatefulSets of --old
	denied bool
}

// fail prints an input error; eval exits 2 once everything is read.
func (e *evaluator) fail(format string, args ...any) {
	fmt.Fprintf(e.stderr, "eval: "+format+"\n", args...)
	e.failed = true
}

// load reads the inputs and the --old files, and pairs each input StatefulSet
// with its stored object. Every error is printed before it returns.
func (e *evaluator) load(files, old []string) error {
	for _, name := range files {
		e.docs = append(e.docs, e.readArg(name)...)
	}
	var oldDocs []*document
	for _, name := range old {
		docs := e.readArg(name)
		if len(docs) == 0 && !e.failed {
			e.fail("--old %s: no StatefulSet in it", name)
		}
		oldDocs = append(oldDocs, docs...)
	}
	if e.failed {
		return errInput
	}
	if len(e.docs) == 0 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = displayName(f)
		}
		e.fail("no Kubernetes object in %s: nothing to evaluate", strings.Join(names, ", "))
		return errInput
	}
	e.sts = flatten(e.docs, nil)
	for _, d := range e.sts {
		e.nameOf(d, "")
	}
	for _, d := range flatten(oldDocs, func(d *document) {
		e.fail("--old %s: a %s, not an apps/v1 StatefulSet", d.where, kindString(d))
	}) {
		e.nameOf(d, "--old ")
		e.old = append(e.old, d)
	}
	if e.failed {
		return errInput
	}
	e.pair()
	if e.failed {
		return errInput
	}
	return nil
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

// nameOf checks that a StatefulSet decodes as the server decodes it and
// records its namespace/name.
func (e *evaluator) nameOf(d *document, flagName string) {
	req, err := webhook.NewRequest("CREATE", d.json, nil)
	if err != nil {
		e.fail("%s%s: statefulset %s does not decode: %s", flagName, d.where, looseName(d.json), decodeError(err))
		return
	}
	sts := req.Object
	name := sts.Name
	if name == "" {
		name = sts.GenerateName
	}
	if sts.Namespace != "" {
		name = sts.Namespace + "/" + name
	}
	d.name = name
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
	for _, d := range e.sts {
		ns, name := nsName(d.name)
		var exact, loose []*document
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
			e.fail("--old: statefulset %s is there %d times (%s and %s)", d.name, len(exact), exact[0].where, exact[1].where)
		case len(exact) == 1:
			d.old = exact[0]
		case len(loose) > 1:
			e.fail("--old: statefulset %s (%s) could be any of %d objects of that name: give the namespace", d.name, d.where, len(loose))
		case len(loose) == 1:
			d.old = loose[0]
		}
		matched = matched || d.old != nil
	}
	if !matched {
		names := make([]string, len(e.old))
		for i, o := range e.old {
			names[i] = o.name
		}
		e.fail("--old: no StatefulSet of the input has the namespace and name of %s: an UPDATE is evaluated against the stored version of the same object", strings.Join(names, ", "))
	}
}

// evaluate runs both webhooks on every StatefulSet.
func (e *evaluator) evaluate() error {
	for _, d := range e.sts {
		op, old := "CREATE", []byte(nil)
		if d.old != nil {
			op, old = "UPDATE", d.old.json
		}
		ev, err := e.admitter.Evaluate(op, d.json, old)
		if err != nil {
			e.fail("%s: statefulset %s: %v", d.where, d.name, err)
			continue
		}
		d.ev = ev
		if !ev.Allowed() {
			e.denied = true
		}
	}
	if e.failed {
		return errInput
	}
	return nil
}

// report prints each StatefulSet's warnings and violations on stderr.
func (e *evaluator) report() {
	for _, d := range e.sts {
		prefix := "statefulset " + d.name + ": "
		for _, w := range d.ev.Warnings() {
			fmt.Fprintf(e.stderr, "%swarning: %s\n", prefix, w)
		}
		st := d.ev.Denial()
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
			if !d.changed() && d.text != nil {
				buf.Write(d.text)
				continue
			}
			b, err := d.result()
			if err != nil {
				return err
			}
			y, err := yaml.JSONToYAML(b)
			if err != nil {
				return err
			}
			buf.Write(y)
		}
	case "json":
		for _, d := range e.docs {
			b, err := d.result()
			if err != nil {
				return err
			}
			if err := json.Indent(&buf, b, "", "  "); err != nil {
				return err
			}
			buf.WriteByte('\n')
		}
	case "patch":
		for _, d := range e.sts {
			p := patchOut{StatefulSet: d.name, Operation: "CREATE", Allowed: d.ev.Allowed(), Patch: []jsonpatch.Operation{}}
			if d.old != nil {
				p.Operation = "UPDATE"
			}
			if d.ev.Changed() {
				p.Patch = d.ev.Mutation.Patch
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

// readArg reads a -f or --old argument: a file, a directory's manifests, or
// stdin. Errors are printed and flagged.
func (e *evaluator) readArg(name string) []*document {
	if name == "-" {
		if e.usedStdin {
			e.fail("-: stdin can be read only once")
			return nil
		}
		e.usedStdin = true
		data, err := io.ReadAll(e.stdin)
		if err != nil {
			e.fail("reading stdin: %v", err)
			return nil
		}
		return e.parse(displayName(name), data)
	}
	fi, err := os.Stat(name)
	if err != nil {
		e.fail("%s", pathError(err))
		return nil
	}
	if !fi.IsDir() {
		return e.readFile(name)
	}
	entries, err := os.ReadDir(name)
	if err != nil {
		e.fail("%s", pathError(err))
		return nil
	}
	var docs []*document
	found := false
	for _, ent := range entries { // sorted by name
		switch filepath.Ext(ent.Name()) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		p := filepath.Join(name, ent.Name())
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		found = true
		docs = append(docs, e.readFile(p)...)
	}
	if !found {
		e.fail("%s: no *.yaml, *.yml or *.json file in the directory", name)
	}
	return docs
}

func (e *evaluator) readFile(name string) []*document {
	data, err := os.ReadFile(name)
	if err != nil {
		e.fail("%s", pathError(err))
		return nil
	}
	return e.parse(name, data)
}

// parse reads the documents of one input: a stream of JSON values when it
// starts with {, else a YAML stream.
func (e *evaluator) parse(name string, data []byte) []*document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []*document
	var err error
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		docs, err = parseJSON(name, data)
	} else {
		docs, err = parseYAML(name, data)
	}
	if err != nil {
		e.fail("%v", err)
		return nil
	}
	return docs
}

// parseJSON reads a stream of JSON objects.
func parseJSON(name string, data []byte) ([]*document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []*document
	for {
		start := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			var se *json.SyntaxError
			off := dec.InputOffset()
			if errors.As(err, &se) {
				off = se.Offset
			} else if errors.Is(err, io.ErrUnexpectedEOF) {
				off = int64(len(data))
			}
			return nil, fmt.Errorf("%s:%d: json: %v", name, lineAt(data, off), err)
		}
		// The line of the value, past the whitespace before it.
		off := start + int64(len(data[start:])-len(bytes.TrimLeft(data[start:], " \t\r\n")))
		d, err := newDocument(fmt.Sprintf("%s:%d", name, lineAt(data, off)), nil, raw)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// yamlLineErr finds the line go-yaml reports in an error.
var yamlLineErr = regexp.MustCompile(`^(?:error converting YAML to JSON: )?yaml: line (\d+): (.*)$`)

// parseYAML reads a YAML stream: documents separated by lines that start with
// --- followed by nothing or a comment, as kubectl splits them (or ..., the
// end of a document, which kubectl's splitter does not know but which would
// otherwise hide what follows). Empty documents are skipped.
func parseYAML(name string, data []byte) ([]*document, error) {
	var docs []*document
	add := func(chunk []byte, line int) error {
		j, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			msg := firstLine(err.Error())
			if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
				n, _ := strconv.Atoi(m[1])
				return fmt.Errorf("%s:%d: yaml: %s", name, line+n-1, m[2])
			}
			return fmt.Errorf("%s:%d: yaml: %s", name, line, strings.TrimPrefix(msg, "yaml: "))
		}
		if string(j) == "null" {
			return nil
		}
		d, err := newDocument(fmt.Sprintf("%s:%d", name, line), chunk, j)
		if err != nil {
			return err
		}
		docs = append(docs, d)
		return nil
	}
	start, startLine, line := 0, 1, 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		line++
		l := data[off:next]
		if bytes.HasPrefix(l, []byte("---")) || bytes.HasPrefix(l, []byte("...")) {
			rest := strings.TrimSpace(string(l[3:]))
			if rest == "" || rest[0] == '#' {
				if err := add(data[start:off], startLine); err != nil {
					return nil, err
				}
				start, startLine = next, line+1
			}
		}
		off = next
	}
	if err := add(data[start:], startLine); err != nil {
		return nil, err
	}
	return docs, nil
}

// typeMeta is the part of a document that says what it is.
type typeMeta struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Items      json.RawMessage `json:"items"`
}

// newDocument makes a document of one object, and of the items of a List.
func newDocument(where string, text, data []byte) (*document, error) {
	var tm typeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("%s: %s is not a string", where, te.Field)
		}
		return nil, fmt.Errorf("%s: not a Kubernetes object (a mapping with apiVersion and kind)", where)
	}
	d := &document{where: where, json: data, apiVersion: tm.APIVersion, kind: tm.Kind}
	if text != nil {
		d.text = withNewline(text)
	}
	// kind: List, or a typed list (StatefulSetList) as the API serves it.
	isArray := len(tm.Items) > 0 && tm.Items[0] == '['
	if tm.Kind != "List" && !(strings.HasSuffix(tm.Kind, "List") && isArray) {
		return d, nil
	}
	if !isArray {
		return nil, fmt.Errorf("%s: a %s without an items array", where, tm.Kind)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(tm.Items, &items); err != nil {
		return nil, fmt.Errorf("%s: items: %v", where, err)
	}
	d.isList = true
	d.items = make([]*document, 0, len(items))
	for i, raw := range items {
		it, err := newDocument(fmt.Sprintf("%s items[%d]", where, i), nil, raw)
		if err != nil {
			return nil, err
		}
		if it.kind == "" && it.apiVersion == "" && tm.Kind != "List" {
			it.apiVersion, it.kind = tm.APIVersion, strings.TrimSuffix(tm.Kind, "List")
		}
		d.items = append(d.items, it)
	}
	return d, nil
}

// withNewline ends text with a newline, for documents joined by ---.
func withNewline(text []byte) []byte {
	if len(text) > 0 && text[len(text)-1] == '\n' {
		return text
	}
	return append(text[:len(text):len(text)], '\n')
}

func kindString(d *document) string {
	if d.apiVersion == "" {
		return d.kind
	}
	return d.apiVersion + " " + d.kind
}

// displayName names an input in messages.
func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// pathError says which file could not be read and why, without the name of
// the system call.
func pathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// looseName names a StatefulSet that may not decode: namespace/name if its
// metadata reads, else "(unnamed)".
func looseName(data []byte) string {
	var m struct {
		Metadata struct {
			Name, Namespace string
		}
	}
	_ = json.Unmarshal(data, &m)
	switch {
	case m.Metadata.Name == "":
		return "(unnamed)"
	case m.Metadata.Namespace == "":
		return m.Metadata.Name
	}
	return m.Metadata.Namespace + "/" + m.Metadata.Name
}

// decodeError says why a StatefulSet does not decode, in terms of the
// manifest (webhook's decoder names the field and the JSON types).
func decodeError(err error) string {
	return strings.TrimPrefix(firstLine(err.Error()), "object.")
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
