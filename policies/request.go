package policies

import (
	"fmt"

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
	Object *StatefulSet
	// OldObject is the stored StatefulSet on UPDATE, nil on CREATE.
	OldObject *StatefulSet
}

// Action is what the validating webhook does with a violation
// (--validation-action).
type Action string

// The validation actions: deny enforces; warn allows with a warning, for a
// report-only rollout (as Kyverno's Audit or Gatekeeper's warn).
const (
	Deny Action = "deny"
	Warn Action = "warn"
)

// Options are the server-wide settings of the policies.
type Options struct {
	// DefaultCacheSize is the size of an injected cache volumeClaimTemplate
	// without the cache-size annotation (--default-cache-size, 5Gi).
	DefaultCacheSize resource.Quantity
	// CacheMountPath is where the DittoFS container mounts the cache
	// (--cache-mount-path, /data/cache).
	CacheMountPath string
	// Action is what a violation gets (--validation-action, deny; empty means
	// deny). Under warn,
	// what would be denied is allowed with a warning, and the mutating
	// webhook injects no cache where it would have denied.
	Action Action
}

// DefaultOptions returns the documented defaults of SPEC §5.
func DefaultOptions() Options {
	return Options{
		DefaultCacheSize: resource.MustParse("5Gi"),
		CacheMountPath:   "/data/cache",
		Action:           Deny,
	}
}

// Validate reports whether the options can be used.
func (o Options) Validate() error {
	if o.DefaultCacheSize.Sign() <= 0 {
		return fmt.Errorf("default cache size must be a positive quantity such as 5Gi, got %q", o.DefaultCacheSize.String())
	}
	if len(o.CacheMountPath) == 0 || o.CacheMountPath[0] != '/' {
		return fmt.Errorf("cache mount path must be an absolute path, got %q", o.CacheMountPath)
	}
	if o.Action != "" && o.Action != Deny && o.Action != Warn {
		return fmt.Errorf("validation action must be deny or warn, got %q", o.Action)
	}
	return nil
}

// warnOnly reports whether violations are allowed with a warning.
func (o Options) warnOnly() bool { return o.Action == Warn }
