package main

import (
	"flag"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dittofs/dittofs-webhook/policies"
)

// policyFlags are the policy settings serve and eval share, so eval can be
// told exactly what the deployed server is told.
type policyFlags struct {
	defaultCacheSize string
	cacheMountPath   string
}

func addPolicyFlags(fs *flag.FlagSet) *policyFlags {
	f := &policyFlags{}
	d := policies.DefaultOptions()
	fs.StringVar(&f.defaultCacheSize, "default-cache-size", d.DefaultCacheSize.String(), "size of an injected cache volumeClaimTemplate without the "+policies.AnnotationCacheSize+" annotation")
	fs.StringVar(&f.cacheMountPath, "cache-mount-path", d.CacheMountPath, "where the DittoFS container mounts the cache")
	return f
}

// options turns the flags into policy options; a bad value is an error at
// start, never a surprise later.
func (f *policyFlags) options() (policies.Options, error) {
	o := policies.DefaultOptions()
	q, err := resource.ParseQuantity(f.defaultCacheSize)
	if err != nil || q.Sign() <= 0 {
		return o, fmt.Errorf("--default-cache-size must be a positive quantity such as 5Gi, got %q", f.defaultCacheSize)
	}
	o.DefaultCacheSize, o.CacheMountPath = q, f.cacheMountPath
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("--cache-mount-path: %w", err)
	}
	return o, nil
}
