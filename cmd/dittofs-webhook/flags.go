package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

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

// parseFlags parses a subcommand's flags. -h prints its usage (exit 0); a
// flag that is not defined or lacks its value is one line naming it and
// where the flags are listed (exit 2), not the flag package's error followed
// by the whole usage. ok is false when the command must exit with code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	out, usage := fs.Output(), fs.Usage
	if usage == nil { // the flag package's default usage
		usage = func() {
			fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return 0, false
	case err != nil:
		fmt.Fprintf(out, "%s: %v (dittofs-webhook %s -h lists the flags)\n", fs.Name(), err, fs.Name())
		return 2, false
	}
	return 0, true
}
