package offline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"gomodules.xyz/jsonpatch/v2"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/policies"
)

// The output formats of eval.
const (
	FormatYAML  = "yaml"
	FormatJSON  = "json"
	FormatPatch = "patch"
)

// PatchOutput is one StatefulSet in `eval -o patch`.
type PatchOutput struct {
	StatefulSet string                `json:"statefulset"`
	Operation   string                `json:"operation"`
	Allowed     bool                  `json:"allowed"`
	Patch       []jsonpatch.Operation `json:"patch"`
}

// WriteEval prints r: on stderr the notes (strict check, management, what is
// at risk), on stdout the documents as the webhooks leave them in format
// (yaml, json or patch), then on stderr each StatefulSet's warnings and
// violations. Nothing is written to stdout when it cannot all be rendered.
func WriteEval(stdout, stderr io.Writer, r *EvalResult, format string) error {
	out, err := renderDocuments(r, format)
	if err != nil {
		return err
	}
	var notes bytes.Buffer
	writeNotes(&notes, r, "")
	if _, err := stderr.Write(notes.Bytes()); err != nil {
		return err
	}
	if _, err := stdout.Write(out); err != nil {
		return err
	}
	var report bytes.Buffer
	for _, o := range r.Outcomes {
		writeVerdict(&report, o, "")
	}
	_, err = stderr.Write(report.Bytes())
	return err
}

// WriteRecreate prints r as `eval --recreate` does: the manifests on
// stdout (a YAML stream or JSON documents), and on stderr a shell script —
// the notes and refusals as # comments, then the steps of
// policies.Script.
func WriteRecreate(stdout, stderr io.Writer, r *RecreateResult, format string) error {
	var out bytes.Buffer
	for _, o := range r.Recreate {
		var err error
		if format == FormatJSON {
			err = json.Indent(&out, o.Evaluation.Object, "", "  ")
			out.WriteByte('\n')
		} else {
			if out.Len() > 0 {
				out.WriteString("---\n")
			}
			err = writeYAML(&out, o.Evaluation.Object)
		}
		if err != nil {
			return err
		}
	}
	var script bytes.Buffer
	writeNotes(&script, r.EvalResult, "# ")
	for _, o := range r.Refused {
		fmt.Fprintf(&script, "# statefulset %s: cannot be recreated as it is; fix what follows first:\n", o.Name)
		writeVerdict(&script, o, "# ")
	}
	switch {
	case len(r.Recreate) > 0:
		for _, l := range policies.Script(r.Recreations(), RecreateFile) {
			script.WriteString(l + "\n")
		}
	case len(r.Refused) == 0 && r.unmanaged() == 0:
		script.WriteString("# nothing to recreate: every managed StatefulSet has a persistent cache\n")
	case len(r.Refused) == 0:
		fmt.Fprintf(&script, "# nothing to recreate: no managed StatefulSet lacks a persistent cache; %d StatefulSet(s) of the input are not managed (labelled %s): see above, or run again with --manage\n", r.unmanaged(), policies.LabelServer)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return err
	}
	_, err := stderr.Write(script.Bytes())
	return err
}

// writeNotes writes the strict check's findings, the management notes and
// what is at risk, each line starting with comment.
func writeNotes(w *bytes.Buffer, r *EvalResult, comment string) {
	for _, o := range r.Outcomes {
		for _, p := range o.Problems {
			fmt.Fprintf(w, "%sstatefulset %s: %s: strict decoding error: %s (--validate=%s)\n", comment, o.Name, o.Where(), p, r.Validate)
		}
		if o.Management != "" {
			fmt.Fprintf(w, "%sstatefulset %s: %s\n", comment, o.Name, o.Management)
		}
		for _, risk := range o.Risks {
			fmt.Fprintf(w, "%sstatefulset %s: at risk: %s\n", comment, o.Name, risk)
		}
	}
}

// writeVerdict writes a StatefulSet's warnings and violations.
func writeVerdict(w *bytes.Buffer, o *Outcome, comment string) {
	prefix := comment + "statefulset " + o.Name + ": "
	if o.Err != nil {
		fmt.Fprintf(w, "%sdenied: %v\n", prefix, o.Err)
		return
	}
	if o.Evaluation == nil {
		return
	}
	for _, warning := range o.Evaluation.Warnings() {
		fmt.Fprintf(w, "%swarning: %s\n", prefix, warning)
	}
	st := o.Evaluation.Denial()
	if st == nil {
		return
	}
	if st.Details == nil || len(st.Details.Causes) == 0 {
		fmt.Fprintf(w, "%sdenied: %s\n", prefix, st.Message)
		return
	}
	for _, c := range st.Details.Causes {
		if c.Field != "" {
			fmt.Fprintf(w, "%sdenied: %s: %s\n", prefix, c.Field, c.Message)
		} else {
			fmt.Fprintf(w, "%sdenied: %s\n", prefix, c.Message)
		}
	}
}

// renderDocuments renders the documents after evaluation in format.
func renderDocuments(r *EvalResult, format string) ([]byte, error) {
	var buf bytes.Buffer
	switch format {
	case FormatYAML:
		for i, d := range r.Input.Documents {
			if i > 0 {
				buf.WriteString("---\n")
			}
			if !r.changed(d) && d.text != nil {
				buf.Write(d.text)
				continue
			}
			b, err := r.result(d)
			if err == nil {
				err = writeYAML(&buf, b)
			}
			if err != nil {
				return nil, err
			}
		}
	case FormatJSON:
		for _, d := range r.Input.Documents {
			b, err := r.result(d)
			if err != nil {
				return nil, err
			}
			if err := json.Indent(&buf, b, "", "  "); err != nil {
				return nil, err
			}
			buf.WriteByte('\n')
		}
	case FormatPatch:
		for _, o := range r.Outcomes {
			p := PatchOutput{StatefulSet: o.Name, Operation: "CREATE", Patch: []jsonpatch.Operation{}}
			if o.Old != nil {
				p.Operation = "UPDATE"
			}
			// The label --manage added, then the webhook's patch: what
			// turns the input into the output.
			p.Patch = append(p.Patch, o.Labelled...)
			if ev := o.Evaluation; ev != nil {
				p.Allowed = ev.Allowed()
				if ev.Changed() {
					p.Patch = append(p.Patch, ev.Mutation.Patch...)
				}
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return nil, err
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
	default:
		return nil, fmt.Errorf("unknown output format %q", format)
	}
	return buf.Bytes(), nil
}

// changed reports whether the document, or an item of it, was patched.
func (r *EvalResult) changed(d *Document) bool {
	if o := r.byDoc[d]; o != nil && (o.Labelled != nil || o.Evaluation != nil && o.Evaluation.Changed()) {
		return true
	}
	for _, it := range d.items {
		if r.changed(it) {
			return true
		}
	}
	return false
}

// result is the document after evaluation, as JSON.
func (r *EvalResult) result(d *Document) ([]byte, error) {
	if !r.changed(d) {
		return d.json, nil
	}
	if !d.isList {
		if o := r.byDoc[d]; o.Evaluation != nil {
			return o.Evaluation.Object, nil
		}
		return d.json, nil // labelled (--manage), then denied: as read
	}
	var list map[string]jsontext.Value
	if err := jsonv2.Unmarshal(d.json, &list, jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, err
	}
	items := make([]json.RawMessage, len(d.items))
	for i, it := range d.items {
		b, err := r.result(it)
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

// writeYAML writes a JSON document as YAML.
func writeYAML(buf *bytes.Buffer, doc []byte) error {
	y, err := yaml.JSONToYAML(doc)
	if err != nil {
		return err
	}
	buf.Write(y)
	return nil
}
