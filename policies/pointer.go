package policies

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// pointer turns a field path built by this package into an RFC 6901 JSON
// pointer: "spec.volumeClaimTemplates[2]" becomes "/spec/volumeClaimTemplates/2".
// Each segment is escaped (~ as ~0, / as ~1). It is meant for the paths this
// package builds, whose child names hold no '.' or '['; keys ([key]) may hold
// anything but ']'.
func pointer(p *field.Path) string {
	s := p.String()
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		var seg string
		switch s[0] {
		case '.':
			s = s[1:]
			continue
		case '[':
			end := strings.IndexByte(s, ']')
			seg, s = s[1:end], s[end+1:]
		default:
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			seg, s = s[:end], s[end:]
		}
		b.WriteByte('/')
		b.WriteString(escapePointerSegment(seg))
	}
	return b.String()
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapePointerSegment(seg string) string {
	if !strings.ContainsAny(seg, "~/") {
		return seg
	}
	return pointerEscaper.Replace(seg)
}
