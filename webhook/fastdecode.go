package webhook

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// decodeFast decodes an AdmissionReview into reviewJSON in one pass over the
// body, without reflection: the members the server reads are decoded, every
// other value is only validated. It means what encoding/json.Unmarshal of the
// same document into reviewJSON means, with member names matched exactly (the
// apiserver's decoder is case-sensitive too): FuzzDecodeFast holds it to
// that. A syntax error is returned at once; a value of the wrong JSON type is
// skipped, the rest decoded, and the first such error (in document order)
// returned as a *typeError — encoding/json's behaviour, which lets the answer
// to a request with a bad object still carry its uid.
//
// Why not encoding/json: on a 6 KB StatefulSet it spends ~5× the time of the
// rest of the request (scanning twice, reflecting over every member).
func decodeFast(body []byte) (*reviewJSON, error) {
	d := &decoder{scanner: scanner{in: body}}
	rv := &reviewJSON{}
	d.ws()
	d.object("", func(key []byte) {
		switch string(key) {
		case "apiVersion":
			d.string("", "apiVersion", &rv.APIVersion)
		case "kind":
			d.string("", "kind", &rv.Kind)
		case "request":
			switch {
			case d.null():
				rv.Request = nil
			case d.i < len(d.in) && d.in[d.i] != '{':
				d.mismatch("request", "an object")
			default:
				if rv.Request == nil {
					rv.Request = &requestJSON{}
				}
				d.request("request", rv.Request)
			}
		default:
			d.skip()
		}
	})
	return rv, d.finish()
}

// decodeStatefulSetFast decodes one StatefulSet document (for eval).
func decodeStatefulSetFast(data []byte) (*statefulSetJSON, error) {
	d := &decoder{scanner: scanner{in: data}}
	s := &statefulSetJSON{}
	d.ws()
	d.statefulSet("", s)
	return s, d.finish()
}

// typeError is a JSON value of the wrong type for the member at Field, said
// in terms of the manifest: "spec.volumeClaimTemplates: object where an array
// is expected".
type typeError struct {
	Field string
	Value string // the JSON type found
	Want  string // what was expected, with its article
}

func (e *typeError) Error() string {
	field := strings.TrimPrefix(e.Field, ".")
	if field == "" {
		return fmt.Sprintf("%s where %s is expected", e.Value, e.Want)
	}
	return fmt.Sprintf("%s: %s where %s is expected", field, e.Value, e.Want)
}

type decoder struct {
	scanner
	syntaxErr error
	typeErr   *typeError
}

func (d *decoder) finish() error {
	if d.syntaxErr == nil {
		d.ws()
		if d.i != len(d.in) {
			d.syntaxErr = d.errorf("invalid character %q after top-level value", d.in[d.i])
		}
	}
	if d.syntaxErr != nil {
		return d.syntaxErr
	}
	if d.typeErr != nil {
		return d.typeErr
	}
	return nil
}

// failed reports whether decoding must stop (a syntax error).
func (d *decoder) failed() bool { return d.syntaxErr != nil }

func (d *decoder) fail(err error) {
	if d.syntaxErr == nil {
		d.syntaxErr = err
	}
}

// mismatch records a value of the wrong type and skips it.
func (d *decoder) mismatch(path, want string) {
	if d.typeErr == nil {
		d.typeErr = &typeError{Field: path, Value: d.kindAhead(), Want: want}
	}
	d.skip()
}

func (d *decoder) kindAhead() string {
	if d.i >= len(d.in) {
		return "end"
	}
	switch c := d.in[d.i]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	}
	return "number"
}

func (d *decoder) skip() {
	if d.failed() {
		return
	}
	if err := d.skipValue(0); err != nil {
		d.fail(err)
	}
}

// null consumes a null and reports whether there was one.
func (d *decoder) null() bool {
	if d.failed() || d.i >= len(d.in) || d.in[d.i] != 'n' {
		return false
	}
	if err := d.literal("null"); err != nil {
		d.fail(err)
	}
	return true
}

// object calls member for each member of an object, positioned at its value;
// member must consume the value. null is no object and no error; another
// type is a mismatch.
func (d *decoder) object(path string, member func(key []byte)) {
	if d.failed() || d.null() {
		return
	}
	if d.i >= len(d.in) || d.in[d.i] != '{' {
		if d.i >= len(d.in) {
			d.fail(d.errorf("unexpected end of input"))
			return
		}
		d.mismatch(path, "an object")
		return
	}
	if d.open('}') {
		return
	}
	for {
		raw, special, err := d.key()
		if err != nil {
			d.fail(err)
			return
		}
		key := raw[1 : len(raw)-1]
		if special { // escapes, or invalid UTF-8 to replace: encoding/json's rules
			var k string
			if err := json.Unmarshal(raw, &k); err != nil {
				d.fail(d.errorf("bad object key: %v", err))
				return
			}
			key = []byte(k)
		}
		member(key)
		if d.failed() {
			return
		}
		if done, err := d.next('}'); done || err != nil {
			d.fail(err)
			return
		}
	}
}

// What array found.
const (
	foundArray = iota
	foundNull
	foundOther // a value of another type, recorded as a mismatch
)

// array calls elem for each element of an array and says what it found.
func (d *decoder) array(path string, elem func()) int {
	if d.failed() {
		return foundOther
	}
	if d.null() {
		return foundNull
	}
	if d.i >= len(d.in) || d.in[d.i] != '[' {
		if d.i >= len(d.in) {
			d.fail(d.errorf("unexpected end of input"))
		} else {
			d.mismatch(path, "an array")
		}
		return foundOther
	}
	if d.open(']') {
		return foundArray
	}
	for !d.failed() {
		elem()
		if d.failed() {
			break
		}
		if done, err := d.next(']'); done || err != nil {
			d.fail(err)
			break
		}
	}
	return foundArray
}

// slice decodes an array member of element type T with elem, giving it
// encoding/json's value: the elements (non-nil for []), nil for null, and the
// member unchanged for a value of another type. A repeated member starts
// afresh (last one wins).
func slice[T any](d *decoder, path string, old []T, elem func(d *decoder, path string, e *T)) []T {
	var got []T
	switch d.array(path, func() {
		got = append(got, *new(T))
		elem(d, path, &got[len(got)-1])
	}) {
	case foundArray:
		if got == nil {
			got = []T{}
		}
		return got
	case foundNull:
		return nil
	}
	return old
}

// string decodes the member name of the object at parent, a JSON string,
// into *dst; null leaves it unchanged. The path is only spelt out for an
// error, so the common case allocates nothing for it.
func (d *decoder) string(parent, name string, dst *string) {
	if d.failed() || d.null() {
		return
	}
	if d.i >= len(d.in) || d.in[d.i] != '"' {
		d.mismatch(join(parent, name), "a string")
		return
	}
	start := d.i
	special, err := d.str()
	if err != nil {
		d.fail(err)
		return
	}
	raw := d.in[start:d.i]
	if !special {
		*dst = intern(raw[1 : len(raw)-1])
		return
	}
	// Escapes or non-ASCII (invalid UTF-8 becomes U+FFFD): encoding/json's rules.
	if err := json.Unmarshal(raw, dst); err != nil {
		d.fail(err)
	}
}

// intern returns b as a string, without allocating for the values every
// request repeats (its kind, resource and operation; the object's apiVersion
// and kind).
func intern(b []byte) string {
	switch string(b) { // compiled to comparisons: no conversion is allocated
	case "apps":
		return "apps"
	case "v1":
		return "v1"
	case "StatefulSet":
		return "StatefulSet"
	case "statefulsets":
		return "statefulsets"
	case "apps/v1":
		return "apps/v1"
	case "CREATE":
		return "CREATE"
	case "UPDATE":
		return "UPDATE"
	}
	return string(b)
}

// clip shortens a value quoted in an error: a hostile body could make it
// megabytes long.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// member names a string member and where it goes.
type member struct {
	name string
	dst  *string
}

// stringFields decodes an object of which only string members are read;
// the others are checked against sh, the object's shape (nil: not checked).
func (d *decoder) stringFields(path string, sh *shape, members ...member) {
	d.object(path, func(k []byte) {
		for _, f := range members {
			if string(k) == f.name {
				d.string(path, f.name, f.dst)
				return
			}
		}
		d.skipAs(sh.field(k), path, k)
	})
}

// stringMap decodes an object of strings; null sets it to nil; an existing
// map is added to, as encoding/json does for a repeated member.
func (d *decoder) stringMap(path string, dst *map[string]string) {
	if d.failed() {
		return
	}
	if d.null() {
		*dst = nil
		return
	}
	if d.i < len(d.in) && d.in[d.i] == '{' && *dst == nil {
		*dst = map[string]string{}
	}
	d.object(path, func(key []byte) {
		k, v := string(key), ""
		d.string(path, k, &v)
		(*dst)[k] = v
	})
}

func (d *decoder) request(path string, r *requestJSON) {
	d.object(path, func(key []byte) {
		switch string(key) {
		case "uid":
			uid := string(r.UID)
			d.string("request", "uid", &uid)
			r.UID = types.UID(uid)
		case "kind":
			d.stringFields("request.kind", nil, member{"group", &r.Kind.Group}, member{"version", &r.Kind.Version}, member{"kind", &r.Kind.Kind})
		case "resource":
			d.stringFields("request.resource", nil, member{"group", &r.Resource.Group}, member{"version", &r.Resource.Version}, member{"resource", &r.Resource.Resource})
		case "subResource":
			d.string("request", "subResource", &r.SubResource)
		case "name":
			d.string("request", "name", &r.Name)
		case "namespace":
			d.string("request", "namespace", &r.Namespace)
		case "operation":
			d.string("request", "operation", &r.Operation)
		case "dryRun":
			switch {
			case d.null():
				r.DryRun = nil
			case d.i < len(d.in) && (d.in[d.i] == 't' || d.in[d.i] == 'f'):
				b := d.in[d.i] == 't'
				lit := "false"
				if b {
					lit = "true"
				}
				if err := d.literal(lit); err != nil {
					d.fail(err)
				}
				r.DryRun = &b
			default:
				d.mismatch("request.dryRun", "a boolean")
			}
		case "object":
			r.Object = d.statefulSetPtr("request.object", r.Object)
		case "oldObject":
			r.OldObject = d.statefulSetPtr("request.oldObject", r.OldObject)
		default:
			d.skip()
		}
	})
}

func (d *decoder) statefulSetPtr(path string, s *statefulSetJSON) *statefulSetJSON {
	if d.null() {
		return nil
	}
	if d.i < len(d.in) && d.in[d.i] != '{' {
		d.mismatch(path, "an object")
		return s
	}
	if s == nil {
		s = &statefulSetJSON{}
	}
	d.statefulSet(path, s)
	return s
}

func (d *decoder) statefulSet(path string, s *statefulSetJSON) {
	d.object(path, func(key []byte) {
		switch string(key) {
		case "apiVersion":
			d.string(path, "apiVersion", &s.APIVersion)
		case "kind":
			d.string(path, "kind", &s.Kind)
		case "metadata":
			mp := path + ".metadata"
			d.object(mp, func(k []byte) {
				m := &s.Metadata
				switch string(k) {
				case "name":
					d.string(mp, "name", &m.Name)
				case "generateName":
					d.string(mp, "generateName", &m.GenerateName)
				case "namespace":
					d.string(mp, "namespace", &m.Namespace)
				case "labels":
					d.stringMap(mp+".labels", &m.Labels)
				case "annotations":
					d.stringMap(mp+".annotations", &m.Annotations)
				default:
					d.skipAs(shapes().meta.field(k), mp, k)
				}
			})
		case "spec":
			if d.null() {
				s.Spec = nil
				return
			}
			if d.i < len(d.in) && d.in[d.i] != '{' {
				d.mismatch(path+".spec", "an object")
				return
			}
			if s.Spec == nil {
				s.Spec = &specJSON{}
			}
			d.spec(path+".spec", s.Spec)
		default:
			d.skipAs(shapes().sts.field(key), path, key)
		}
	})
}

func (d *decoder) spec(path string, sp *specJSON) {
	d.object(path, func(key []byte) {
		switch string(key) {
		case "template":
			d.object(path+".template", func(k []byte) {
				if string(k) != "spec" {
					d.skipAs(shapes().template.field(k), path+".template", k)
					return
				}
				d.podSpec(path+".template.spec", &sp.Template.Spec)
			})
		case "volumeClaimTemplates":
			sp.VolumeClaimTemplates = slice(d, path+".volumeClaimTemplates", sp.VolumeClaimTemplates, (*decoder).claimTemplate)
		case "persistentVolumeClaimRetentionPolicy":
			p := path + ".persistentVolumeClaimRetentionPolicy"
			if d.null() {
				sp.PersistentVolumeClaimRetentionPolicy = nil
				return
			}
			if d.i < len(d.in) && d.in[d.i] != '{' {
				d.mismatch(p, "an object")
				return
			}
			if sp.PersistentVolumeClaimRetentionPolicy == nil {
				sp.PersistentVolumeClaimRetentionPolicy = &retentionJSON{}
			}
			rp := sp.PersistentVolumeClaimRetentionPolicy
			d.stringFields(p, shapes().retention, member{"whenDeleted", &rp.WhenDeleted}, member{"whenScaled", &rp.WhenScaled})
		default:
			d.skipAs(shapes().spec.field(key), path, key)
		}
	})
}

func (d *decoder) podSpec(path string, ps *podSpecJSON) {
	d.object(path, func(key []byte) {
		switch string(key) {
		case "volumes":
			ps.Volumes = slice(d, path+".volumes", ps.Volumes, (*decoder).volume)
		case "containers":
			ps.Containers = slice(d, path+".containers", ps.Containers, (*decoder).container)
		default:
			d.skipAs(shapes().pod.field(key), path, key)
		}
	})
}

func (d *decoder) volume(path string, v *volumeJSON) {
	d.object(path, func(k []byte) {
		switch string(k) {
		case "name":
			d.string(path, "name", &v.Name)
		case "emptyDir":
			switch {
			case d.null():
				v.EmptyDir = nil
			case d.i < len(d.in) && d.in[d.i] == '{':
				if v.EmptyDir == nil {
					v.EmptyDir = &struct{}{}
				}
				d.skipAs(shapes().volume.field(k), path, k) // its members are not the policies' business
			default:
				d.mismatch(path+".emptyDir", "an object")
			}
		default:
			d.skipAs(shapes().volume.field(k), path, k)
		}
	})
}

func (d *decoder) container(path string, c *containerJSON) {
	d.object(path, func(k []byte) {
		switch string(k) {
		case "name":
			d.string(path, "name", &c.Name)
		case "volumeMounts":
			c.VolumeMounts = slice(d, path+".volumeMounts", c.VolumeMounts, (*decoder).volumeMount)
		default:
			d.skipAs(shapes().container.field(k), path, k)
		}
	})
}

func (d *decoder) volumeMount(path string, m *volumeMountJSON) {
	d.stringFields(path, shapes().mount, member{"name", &m.Name}, member{"mountPath", &m.MountPath})
}

// claimTemplate decodes one volumeClaimTemplate, keeping its bytes. Errors
// inside it are the template's (claimTemplateJSON.err), not the review's.
func (d *decoder) claimTemplate(_ string, c *claimTemplateJSON) {
	start := d.i
	inner := &decoder{scanner: scanner{in: d.in, i: d.i}}
	inner.claimTemplateBody(c)
	if inner.syntaxErr != nil {
		d.fail(inner.syntaxErr)
		return
	}
	d.i = inner.i
	c.raw = d.in[start:d.i]
	if inner.typeErr != nil {
		c.err = inner.typeErr
	}
}

func (d *decoder) claimTemplateBody(c *claimTemplateJSON) {
	d.object("volumeClaimTemplate", func(key []byte) {
		switch string(key) {
		case "metadata":
			d.stringFields("metadata", shapes().claim.field(key), member{"name", &c.Metadata.Name})
		case "spec":
			d.object("spec", func(k []byte) {
				switch string(k) {
				case "storageClassName":
					if d.null() {
						c.Spec.StorageClassName = nil
						return
					}
					var s string
					if d.i < len(d.in) && d.in[d.i] == '"' {
						d.string("spec", "storageClassName", &s)
						c.Spec.StorageClassName = &s
						return
					}
					d.mismatch("spec.storageClassName", "a string")
				case "resources":
					d.object("spec.resources", func(k []byte) {
						if string(k) != "requests" {
							d.skipAs(shapes().claimResources.field(k), "spec.resources", k)
							return
						}
						if d.null() {
							c.Spec.Resources.Requests = nil
							return
						}
						if d.i < len(d.in) && d.in[d.i] == '{' && c.Spec.Resources.Requests == nil {
							c.Spec.Resources.Requests = map[corev1.ResourceName]resource.Quantity{}
						}
						d.object("spec.resources.requests", func(name []byte) {
							start := d.i
							d.skip()
							if d.failed() {
								return
							}
							var q resource.Quantity
							if err := q.UnmarshalJSON(d.in[start:d.i]); err != nil {
								if d.typeErr == nil {
									d.typeErr = &typeError{Field: "spec.resources.requests." + string(name), Value: clip(string(d.in[start:d.i])), Want: "a quantity such as 5Gi"}
								}
								return
							}
							c.Spec.Resources.Requests[corev1.ResourceName(name)] = q
						})
					})
				default:
					d.skipAs(shapes().claimSpec.field(k), "spec", k)
				}
			})
		default:
			d.skipAs(shapes().claim.field(key), "", key)
		}
	})
}

// maxDepth bounds nesting as encoding/json does.
const maxDepth = 10000

// scanner validates and skips JSON, byte by byte; errors are syntax errors.
type scanner struct {
	in []byte
	i  int
}

func (p *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *scanner) ws() {
	for p.i < len(p.in) {
		switch p.in[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// open steps over the opening bracket at p.i and the white space after it;
// at once the closing bracket end it steps over that too and reports empty.
func (p *scanner) open(end byte) (empty bool) {
	p.i++
	p.ws()
	if p.i < len(p.in) && p.in[p.i] == end {
		p.i++
		return true
	}
	return false
}

// key reads an object member's name and the colon after it, leaving p.i at
// the value. raw keeps the quotes; special says the name must be decoded (see
// str).
func (p *scanner) key() (raw []byte, special bool, err error) {
	p.ws()
	if p.i >= len(p.in) || p.in[p.i] != '"' {
		return nil, false, p.errorf("looking for beginning of object key string")
	}
	start := p.i
	if special, err = p.str(); err != nil {
		return nil, false, err
	}
	raw = p.in[start:p.i]
	p.ws()
	if p.i >= len(p.in) || p.in[p.i] != ':' {
		return nil, false, p.errorf("after object key")
	}
	p.i++
	p.ws()
	return raw, special, nil
}

// next steps over what follows a member or element: a comma (more to come)
// or the closing bracket end (done).
func (p *scanner) next(end byte) (done bool, err error) {
	p.ws()
	if p.i >= len(p.in) {
		return false, p.errorf("unexpected end of input")
	}
	switch p.in[p.i] {
	case ',':
		p.i++
		p.ws()
		return false, nil
	case end:
		p.i++
		return true, nil
	}
	return false, p.errorf("invalid character %q after a member or element", p.in[p.i])
}

// skipValue validates and steps over one value.
func (p *scanner) skipValue(depth int) error {
	if p.i >= len(p.in) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.in[p.i]; {
	case c == '"':
		_, err := p.str()
		return err
	case c == '{' || c == '[':
		if depth+1 > maxDepth {
			return p.errorf("exceeded max depth")
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if p.open(end) {
			return nil
		}
		for {
			if c == '{' {
				if _, _, err := p.key(); err != nil {
					return err
				}
			}
			if err := p.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := p.next(end); done || err != nil {
				return err
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		return p.errorf("invalid character %q looking for beginning of value", c)
	}
}

func (p *scanner) literal(lit string) error {
	if len(p.in)-p.i < len(lit) || string(p.in[p.i:p.i+len(lit)]) != lit {
		return p.errorf("invalid literal")
	}
	p.i += len(lit)
	return nil
}

// str steps over a string starting at its opening quote. special reports
// escapes or bytes outside ASCII: such a string must be decoded by
// encoding/json's rules (unescaping, invalid UTF-8 replaced by U+FFFD); any
// other is its bytes between the quotes.
//
// Strings are most of a StatefulSet's bytes, so str looks at 8 bytes at a time
// while none of them can end the string or make it special (SWAR: a byte
// equal to c is a zero byte of v^(c×lsb); (x-lsb)&^x sets the high bit of a
// zero byte, v-0x20×lsb that of a byte below 0x20, and v that of a byte
// above 0x7f). A hit may be a false positive only above a true one, where the
// lowest hit is exact.
func (p *scanner) str() (special bool, err error) {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	p.i++ // "
	for p.i < len(p.in) {
		if p.i+8 <= len(p.in) {
			v := binary.LittleEndian.Uint64(p.in[p.i:])
			q, b := v^(lsb*'"'), v^(lsb*'\\')
			m := ((q-lsb)&^q | (b-lsb)&^b | (v - lsb*0x20) | v) & msb
			if m == 0 {
				p.i += 8
				continue
			}
			p.i += bits.TrailingZeros64(m) >> 3 // the first hit is a true one
		}
		c := p.in[p.i]
		switch {
		case c == '"':
			p.i++
			return special, nil
		case c == '\\':
			special = true
			p.i++
			if p.i >= len(p.in) {
				return false, p.errorf("unexpected end of input in string")
			}
			switch p.in[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.in)-p.i < 5 {
					return false, p.errorf("bad \\u escape")
				}
				if _, err := strconv.ParseUint(string(p.in[p.i+1:p.i+5]), 16, 16); err != nil {
					return false, p.errorf("bad \\u escape")
				}
				p.i += 5
			default:
				return false, p.errorf("invalid escape %q in string", p.in[p.i])
			}
		case c < 0x20:
			return false, p.errorf("invalid control character in string")
		case c >= utf8.RuneSelf:
			special = true // invalid UTF-8 is accepted and replaced by the decoder, as encoding/json does
			p.i++
		default:
			p.i++
		}
	}
	return false, p.errorf("unexpected end of input in string")
}

func (p *scanner) number() error {
	start := p.i
	if p.in[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.in) && p.in[p.i] >= '0' && p.in[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.i < len(p.in) && p.in[p.i] == '0':
		p.i++
	case digits() == 0:
		return p.errorf("invalid number %q", p.in[start:p.i])
	}
	if p.i < len(p.in) && p.in[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	if p.i < len(p.in) && (p.in[p.i] == 'e' || p.in[p.i] == 'E') {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '+' || p.in[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	return nil
}
