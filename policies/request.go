package policies

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Operation is the admission operation a policy is evaluated for.
type Operation string

// The operations the policies act on; every other one is allowed untouched.
const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
)

// Request is what the policies see of one admission request.
type Request struct {
	Operation Operation
	// Object is the StatefulSet being written.
	Object *appsv1.StatefulSet
	// OldObject is the stored StatefulSet on UPDATE, nil on CREATE.
	OldObject *appsv1.StatefulSet
	// OldCacheTemplate is OldObject's cache volumeClaimTemplate exactly as the
	// apiserver sent it. A carry-over (U1) copies these bytes rather than the
	// typed value, so fields this build does not know survive: the apiserver
	// rejects any change to volumeClaimTemplates on UPDATE. Nil means the typed
	// value is used.
	OldCacheTemplate json.RawMessage
}

// Options are the server-wide settings of the mutating policy.
type Options struct {
	// DefaultCacheSize is the size of an injected cache volumeClaimTemplate
	// without the cache-size annotation (--default-cache-size, 5Gi).
	DefaultCacheSize resource.Quantity
	// CacheMountPath is where the DittoFS container mounts the cache
	// (--cache-mount-path, /data/cache).
	CacheMountPath string
}

// DefaultOptions returns the documented defaults of SPEC §5.
func DefaultOptions() Options {
	return Options{
		DefaultCacheSize: resource.MustParse("5Gi"),
		CacheMountPath:   "/data/cache",
	}
}

// Validate reports whether the options can be used to mutate objects.
func (o Options) Validate() error {
	if o.DefaultCacheSize.Sign() <= 0 {
		return fmt.Errorf("default cache size must be a positive quantity, got %q", o.DefaultCacheSize.String())
	}
	if len(o.CacheMountPath) == 0 || o.CacheMountPath[0] != '/' {
		return fmt.Errorf("cache mount path must be an absolute path, got %q", o.CacheMountPath)
	}
	return nil
}
