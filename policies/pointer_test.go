package policies

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestPointer(t *testing.T) {
	spec := field.NewPath("spec")
	for _, tc := range []struct {
		name string
		path *field.Path
		want string
	}{
		{"child", spec.Child("persistentVolumeClaimRetentionPolicy").Child("whenDeleted"), "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted"},
		{"index", spec.Child("volumeClaimTemplates").Index(2), "/spec/volumeClaimTemplates/2"},
		{"index 0", spec.Child("template").Child("spec").Child("volumes").Index(0), "/spec/template/spec/volumes/0"},
		{"nested index", spec.Child("template").Child("spec").Child("containers").Index(10).Child("volumeMounts"), "/spec/template/spec/containers/10/volumeMounts"},
		{"append", spec.Child("volumeClaimTemplates").Key("-"), "/spec/volumeClaimTemplates/-"},
		{"root child", field.NewPath("metadata"), "/metadata"},
		{"slash in key", field.NewPath("metadata").Child("annotations").Key("dittofs.com/cache-size"), "/metadata/annotations/dittofs.com~1cache-size"},
		{"tilde in key", field.NewPath("metadata").Child("labels").Key("a~b"), "/metadata/labels/a~0b"},
		{"tilde then slash", field.NewPath("x").Key("~/"), "/x/~0~1"},
		{"escaped-looking key", field.NewPath("x").Key("a~1b"), "/x/a~01b"},
		{"only slashes", field.NewPath("x").Key("//"), "/x/~1~1"},
		{"dots in key", field.NewPath("metadata").Child("labels").Key("app.kubernetes.io/name"), "/metadata/labels/app.kubernetes.io~1name"},
		{"empty key", field.NewPath("x").Key(""), "/x/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pointer(tc.path); got != tc.want {
				t.Errorf("pointer(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// TestPointerSegmentRoundTrip decodes escaped segments the RFC 6901 way (~1
// first, then ~0) and requires the original back.
func TestPointerSegmentRoundTrip(t *testing.T) {
	unescape := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	for _, seg := range []string{"", "a", "~", "/", "~0", "~1", "~01", "/~", "~/", "a/b~c/d", "~~//", "dittofs.com/container", "ünï/cödé~"} {
		esc := escapePointerSegment(seg)
		if strings.Contains(esc, "/") {
			t.Errorf("escapePointerSegment(%q) = %q still holds a /", seg, esc)
		}
		if got := unescape(esc); got != seg {
			t.Errorf("escapePointerSegment(%q) = %q, which decodes to %q", seg, esc, got)
		}
	}
}
