package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// ApplyPatch applies an RFC 6902 JSON patch of add, remove and replace
// operations — the ones the mutating webhook emits — to a JSON document, the
// way the apiserver does. eval uses it to print mutated manifests, and the
// tests to check a patch by its result rather than its text. Numbers are kept
// as written (json.Number), so nothing but the patched paths changes.
func ApplyPatch(doc []byte, ops []jsonpatch.Operation) ([]byte, error) {
	if len(ops) == 0 {
		return doc, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	for _, op := range ops {
		var err error
		root, err = applyOp(root, op)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Operation, op.Path, err)
		}
	}
	return MarshalJSON(root)
}

// MarshalJSON is json.Marshal without HTML escaping: a manifest printed
// back to its user keeps "<", ">" and "&" as written, as kubectl prints them.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func applyOp(root any, op jsonpatch.Operation) (any, error) {
	var value any
	if op.Operation == "add" || op.Operation == "replace" {
		// Round-trip the value so the document holds plain JSON types.
		b, err := json.Marshal(op.Value)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
	} else if op.Operation != "remove" {
		return nil, fmt.Errorf("unsupported operation")
	}
	if op.Path == "" {
		if op.Operation == "remove" {
			return nil, fmt.Errorf("cannot remove the whole document")
		}
		return value, nil
	}
	if !strings.HasPrefix(op.Path, "/") {
		return nil, fmt.Errorf("path must start with /")
	}
	segs := strings.Split(op.Path[1:], "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return setIn(root, segs, op.Operation, value)
}

// setIn returns container with the operation applied at segs.
func setIn(container any, segs []string, op string, value any) (any, error) {
	key, last := segs[0], len(segs) == 1
	switch c := container.(type) {
	case map[string]any:
		child, ok := c[key]
		if last {
			switch {
			case op == "add":
				c[key] = value
			case !ok:
				return nil, fmt.Errorf("member %q not found", key)
			case op == "remove":
				delete(c, key)
			default:
				c[key] = value
			}
			return c, nil
		}
		if !ok {
			return nil, fmt.Errorf("member %q not found", key)
		}
		v, err := setIn(child, segs[1:], op, value)
		if err != nil {
			return nil, err
		}
		c[key] = v
		return c, nil
	case []any:
		if last && op == "add" && key == "-" {
			return append(c, value), nil
		}
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i > len(c) || (i == len(c) && !(last && op == "add")) {
			return nil, fmt.Errorf("index %q out of range (length %d)", key, len(c))
		}
		if !last {
			v, err := setIn(c[i], segs[1:], op, value)
			if err != nil {
				return nil, err
			}
			c[i] = v
			return c, nil
		}
		switch op {
		case "add":
			c = append(c, nil)
			copy(c[i+1:], c[i:])
			c[i] = value
		case "remove":
			c = append(c[:i], c[i+1:]...)
		default:
			c[i] = value
		}
		return c, nil
	default:
		return nil, fmt.Errorf("cannot index %T with %q", container, key)
	}
}
