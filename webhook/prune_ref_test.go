package webhook

import (
	"encoding/json"
)

// A pruneNode says which members of a JSON object to keep: a member whose
// name is a key is kept, pruned by the child node; a nil child keeps the
// member's value whole, byte for byte. On an array the node applies to each
// element. Names match exactly, as the apiserver's case-sensitive decoder
// matches them (encoding/json alone would also accept "Spec" for "spec").
type pruneNode map[string]pruneNode

// prune is the tests' reference for decodeFast: it keeps the members the
// server reads, matched exactly, so that encoding/json decoding the result
// into reviewJSON means what decodeFast must mean (FuzzDecodeFast), and is
// itself checked against encoding/json's generic decoding (FuzzPrune).
//
// reviewShape is what the server reads of an AdmissionReview; it mirrors
// reviewJSON and statefulSetJSON, and a test keeps them in step.
var reviewShape = pruneNode{
	"apiVersion": nil,
	"kind":       nil,
	"request": {
		"uid": nil, "subResource": nil, "name": nil, "namespace": nil,
		// Objects of strings are pruned to their members too: encoding/json
		// would match "Version" to version, decodeFast does not.
		"kind":      {"group": nil, "version": nil, "kind": nil},
		"resource":  {"group": nil, "version": nil, "resource": nil},
		"operation": nil, "dryRun": nil, "object": statefulSetShape, "oldObject": statefulSetShape,
	},
}

// statefulSetShape is what the server reads of a StatefulSet (statefulSetJSON).
var statefulSetShape = pruneNode{
	"apiVersion": nil,
	"kind":       nil,
	"metadata":   {"name": nil, "generateName": nil, "namespace": nil, "labels": nil, "annotations": nil},
	"spec": {
		"volumeClaimTemplates":                 nil,
		"persistentVolumeClaimRetentionPolicy": {"whenDeleted": nil, "whenScaled": nil},
		"template": {"spec": {
			"volumes":    {"name": nil, "emptyDir": nil},
			"containers": {"name": nil, "volumeMounts": {"name": nil, "mountPath": nil}},
		}},
	},
}

// prune validates the JSON document in and appends to out a copy holding only
// the members shape names. Decoding the small copy with encoding/json is
// several times cheaper than decoding the whole document: a StatefulSet's
// containers (env, probes, resources) and managedFields are most of its bytes
// and none of the policies' business. Skipped values are still validated, so
// malformed JSON is refused exactly as before.
func prune(in []byte, shape pruneNode, out []byte) ([]byte, error) {
	p := pruner{scanner: scanner{in: in}, out: out}
	p.ws()
	if err := p.value(shape, true, 0); err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.in) {
		return nil, p.errorf("invalid character %q after top-level value", p.in[p.i])
	}
	return p.out, nil
}

// pruner walks with the server's own scanner (validation and skipping), so
// only the pruning is the reference's.
type pruner struct {
	scanner
	out []byte
}

func (p *pruner) value(n pruneNode, emit bool, depth int) error {
	if p.i >= len(p.in) {
		return p.errorf("unexpected end of input")
	}
	if emit && n == nil {
		start := p.i
		if err := p.value(nil, false, depth); err != nil {
			return err
		}
		p.out = append(p.out, p.in[start:p.i]...)
		return nil
	}
	switch {
	case !emit:
		return p.skipValue(depth)
	case p.in[p.i] == '{':
		return p.object(n, depth+1)
	case p.in[p.i] == '[':
		return p.array(n, depth+1)
	default:
		// A scalar where the shape expects an object: kept, for the decoder
		// to report with its path.
		return p.value(nil, true, depth)
	}
}

// object and array copy a container pruned by n (value skips, without
// copying, what is not emitted).
func (p *pruner) object(n pruneNode, depth int) error {
	if depth > maxDepth {
		return p.errorf("exceeded max depth")
	}
	p.out = append(p.out, '{')
	if p.open('}') {
		p.out = append(p.out, '}')
		return nil
	}
	first := true
	for {
		rawKey, special, err := p.key()
		if err != nil {
			return err
		}
		key := string(rawKey[1 : len(rawKey)-1])
		if special {
			if err := json.Unmarshal(rawKey, &key); err != nil {
				return p.errorf("bad object key: %v", err)
			}
		}
		child, keep := n[key]
		if keep {
			if !first {
				p.out = append(p.out, ',')
			}
			first = false
			p.out = append(p.out, rawKey...)
			p.out = append(p.out, ':')
		}
		if err := p.value(child, keep, depth); err != nil {
			return err
		}
		if done, err := p.next('}'); done || err != nil {
			p.out = append(p.out, '}')
			return err
		}
	}
}

func (p *pruner) array(n pruneNode, depth int) error {
	if depth > maxDepth {
		return p.errorf("exceeded max depth")
	}
	p.out = append(p.out, '[')
	if p.open(']') {
		p.out = append(p.out, ']')
		return nil
	}
	for {
		if err := p.value(n, true, depth); err != nil {
			return err
		}
		done, err := p.next(']')
		if done || err != nil {
			p.out = append(p.out, ']')
			return err
		}
		p.out = append(p.out, ',')
	}
}

// claimTemplateShape is what decodeFast reads of a volumeClaimTemplate.
var claimTemplateShape = pruneNode{
	"metadata": {"name": nil},
	"spec":     {"storageClassName": nil, "resources": {"requests": nil}},
}

// UnmarshalJSON is encoding/json's way to decodeFast's result for one
// template (the tests' reference): exact names, the bytes kept, and an error
// kept in the template rather than aborting the review.
func (c *claimTemplateJSON) UnmarshalJSON(data []byte) error {
	type plain claimTemplateJSON // without this method
	var p plain
	pruned, err := prune(data, claimTemplateShape, nil)
	if err == nil {
		err = json.Unmarshal(pruned, &p)
	}
	p.err = err
	p.raw = data
	*c = claimTemplateJSON(p)
	return nil
}
