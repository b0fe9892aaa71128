package webhook

import (
	"encoding/base64"
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// appendReview appends the admission.k8s.io/v1 AdmissionReview carrying r for
// the request uid to dst. The bytes are exactly those of encoding/json
// marshalling the response as the apiserver's types declare it (a test holds
// the two together), written without reflection: marshalling the review and
// then, once more, each patch operation's MarshalJSON output (which
// encoding/json re-scans to compact) was a quarter of a request's CPU.
func (r *Response) appendReview(dst []byte, uid types.UID) ([]byte, error) {
	dst = append(dst, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":`...)
	dst = appendString(dst, string(uid))
	if r.Allowed {
		dst = append(dst, `,"allowed":true`...)
	} else {
		dst = append(dst, `,"allowed":false`...)
	}
	if r.Result != nil {
		st, err := json.Marshal(r.Result)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"status":`...)
		dst = append(dst, st...)
	}
	if len(r.Patch) > 0 {
		patch, err := r.appendPatch(nil)
		if err != nil {
			return nil, err
		}
		// AdmissionResponse.Patch is []byte: JSON carries it in base64.
		dst = append(dst, `,"patch":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, patch)
		dst = append(dst, `","patchType":"JSONPatch"`...)
	}
	if len(r.AuditAnnotations) > 0 {
		dst = append(dst, `,"auditAnnotations":{`...)
		keys := make([]string, 0, len(r.AuditAnnotations))
		for k := range r.AuditAnnotations {
			keys = append(keys, k)
		}
		slices.Sort(keys) // encoding/json's order
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, r.AuditAnnotations[k])
		}
		dst = append(dst, '}')
	}
	if len(r.Warnings) > 0 {
		dst = append(dst, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, w)
		}
		dst = append(dst, ']')
	}
	return append(dst, "}}"...), nil
}

// appendPatch appends r.Patch as a JSON array of RFC 6902 operations, as
// jsonpatch.Operation.MarshalJSON writes each: "value" is always present for
// add and replace (null when nil) and omitted when nil otherwise.
func (r *Response) appendPatch(dst []byte) ([]byte, error) {
	dst = append(dst, '[')
	for i := range r.Patch {
		op := &r.Patch[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"op":`...)
		dst = appendString(dst, op.Operation)
		dst = append(dst, `,"path":`...)
		dst = appendString(dst, op.Path)
		if op.Value != nil || op.Operation == "add" || op.Operation == "replace" {
			v, err := json.Marshal(op.Value)
			if err != nil {
				return nil, err
			}
			dst = append(dst, `,"value":`...)
			dst = append(dst, v...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}

// appendString appends s as a JSON string, escaped as encoding/json escapes
// it. Almost every string here (uids, paths, rule messages) is printable
// ASCII with nothing to escape; the rest is left to encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
