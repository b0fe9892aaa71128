package policies

import (
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
		{"non-ASCII key", field.NewPath("x").Key("ünï/cödé~"), "/x/ünï~1cödé~0"},
		{"tildes and slashes in a row", field.NewPath("x").Key("~~//"), "/x/~0~0~1~1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pointer(tc.path); got != tc.want {
				t.Errorf("pointer(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}
