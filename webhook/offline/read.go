package offline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one object of the input: a top-level document or an item of a
// List.
type Document struct {
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
	items  []*Document
	isList bool
}

// JSON is the document as JSON, as read.
func (d *Document) JSON() []byte { return d.json }

func (d *Document) isStatefulSet() bool {
	return d.apiVersion == "apps/v1" && d.kind == "StatefulSet"
}

// reader reads the -f and --old arguments, collecting every error.
type reader struct {
	stdin     io.Reader
	usedStdin bool
	errs      *InputError
}

func (r *reader) fail(format string, args ...any) { r.errs.add(format, args...) }

// readArg reads a -f or --old argument: a file, a directory's manifests, or
// stdin. Errors are reported with r.fail.
func (r *reader) readArg(name string) []*Document {
	if name == "-" {
		if r.usedStdin {
			r.fail("-: stdin can be read only once")
			return nil
		}
		r.usedStdin = true
		data, err := readBounded(r.stdin, MaxInputBytes)
		if err != nil {
			r.fail("reading stdin: %v", err)
			return nil
		}
		return r.parse(displayName(name), data)
	}
	fi, err := os.Stat(name)
	if err != nil {
		r.fail("%s", pathError(err))
		return nil
	}
	if !fi.IsDir() {
		return r.readFile(name)
	}
	entries, err := os.ReadDir(name)
	if err != nil {
		r.fail("%s", pathError(err))
		return nil
	}
	var docs []*Document
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
		docs = append(docs, r.readFile(p)...)
	}
	if !found {
		r.fail("%s: no *.yaml, *.yml or *.json file in the directory", name)
	}
	return docs
}

func (r *reader) readFile(name string) []*Document {
	f, err := os.Open(name)
	if err != nil {
		r.fail("%s", pathError(err))
		return nil
	}
	defer f.Close()
	data, err := readBounded(f, MaxInputBytes)
	if err != nil {
		r.fail("%s", pathError(&fs.PathError{Op: "read", Path: name, Err: err}))
		return nil
	}
	return r.parse(name, data)
}

// MaxInputBytes bounds one input (a file or stdin): far above what
// `kubectl get statefulsets -A -o yaml` prints for the largest clusters, and
// small enough that a wrong pipe (a disk image, /dev/zero) fails at once
// instead of exhausting memory.
const MaxInputBytes = 256 << 20

// readBounded reads all of r, failing once it passes limit bytes.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("input larger than %d bytes", limit)
	}
	return data, nil
}

func (r *reader) parse(name string, data []byte) []*Document {
	docs, err := Parse(name, data)
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	return docs
}

// Parse reads the documents of one input named name in messages: a stream
// of JSON values when it starts with {, else a YAML stream split as kubectl
// splits it.
func Parse(name string, data []byte) ([]*Document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJSON(name, data)
	}
	return parseYAML(name, data)
}

// parseJSON reads a stream of JSON values. Duplicate member names are left
// for the strict check to report, as the apiserver's decoder would.
func parseJSON(name string, data []byte) ([]*Document, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	var docs []*Document
	for {
		raw, err := dec.ReadValue()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			off := dec.InputOffset()
			var se *jsontext.SyntacticError
			if errors.As(err, &se) {
				off = se.ByteOffset
				err = se.Err
			}
			return nil, fmt.Errorf("%s:%d: json: %v", name, lineAt(data, off), err)
		}
		end := dec.InputOffset()
		start := end - int64(len(raw))
		d, err := newDocument(fmt.Sprintf("%s:%d", name, lineAt(data, start)), nil, bytes.Clone(raw))
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// yamlLineErr finds the line go-yaml reports in an error.
var yamlLineErr = regexp.MustCompile(`^(?:error converting YAML to JSON: )?yaml: line (\d+): (.*)$`)

// parseYAML reads a YAML stream split into documents as kubectl splits it
// (k8s.io/apimachinery's YAML reader: lines starting with --- followed by
// nothing or a comment). Empty documents are skipped.
func parseYAML(name string, data []byte) ([]*Document, error) {
	var docs []*Document
	// The reader drops carriage returns: so do the positions below.
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	off := 0
	for {
		chunk, err := rd.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: yaml: %v", name, lineAt(data, int64(off)), err)
		}
		// The reader returns the document's lines as they are in data, after
		// a separator that followed another one.
		pos := off + max(bytes.Index(data[off:], chunk), 0)
		off = pos + len(chunk)
		for bytes.HasPrefix(chunk, []byte("---")) {
			n := bytes.IndexByte(chunk, '\n') + 1
			if n == 0 {
				n = len(chunk)
			}
			chunk, pos = chunk[n:], pos+n
		}
		line := lineAt(data, int64(pos))
		j, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, yamlError(name, line, err)
		}
		if string(j) == "null" {
			continue
		}
		d, err := newDocument(fmt.Sprintf("%s:%d", name, line), chunk, j)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

// yamlError places a YAML error of a document starting at line in its file.
func yamlError(name string, line int, err error) error {
	msg := firstLine(err.Error())
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Errorf("%s:%d: yaml: %s", name, line+n-1, m[2])
	}
	return fmt.Errorf("%s:%d: yaml: %s", name, line, strings.TrimPrefix(strings.TrimPrefix(msg, "error converting YAML to JSON: "), "yaml: "))
}

// typeMeta is the part of a document that says what it is.
type typeMeta struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Items      jsontext.Value `json:"items"`
}

// newDocument makes a document of one object, and of the items of a List.
func newDocument(where string, text, data []byte) (*Document, error) {
	var tm typeMeta
	if err := json.Unmarshal(data, &tm, jsontext.AllowDuplicateNames(true)); err != nil {
		var se *json.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" {
			return nil, fmt.Errorf("%s: %s is not a string", where, strings.TrimPrefix(string(se.JSONPointer), "/"))
		}
		return nil, fmt.Errorf("%s: not a Kubernetes object (a mapping with apiVersion and kind)", where)
	}
	d := &Document{where: where, json: data, apiVersion: tm.APIVersion, kind: tm.Kind}
	if text != nil {
		d.text = withNewline(text)
	}
	// kind: List, or a typed list (StatefulSetList) as the API serves it.
	isArray := tm.Items.Kind() == '['
	if tm.Kind != "List" && !(strings.HasSuffix(tm.Kind, "List") && isArray) {
		return d, nil
	}
	if !isArray {
		return nil, fmt.Errorf("%s: a %s without an items array", where, tm.Kind)
	}
	var items []jsontext.Value
	if err := json.Unmarshal(tm.Items, &items, jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, fmt.Errorf("%s: items: %v", where, err)
	}
	d.isList = true
	d.items = make([]*Document, 0, len(items))
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

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
