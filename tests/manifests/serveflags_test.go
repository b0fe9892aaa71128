package manifests

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// serveFlags are the flags of `dittofs-webhook serve` (SPEC §5), with a check.
var serveFlags = map[string]func(string) error{
	"listen":             listenAddr,
	"tls-cert-file":      absPath,
	"tls-key-file":       absPath,
	"tls-min-version":    oneOf("1.2", "1.3"),
	"metrics-listen":     listenAddr,
	"default-cache-size": positiveQuantity,
	"cache-mount-path":   absPath,
	"shutdown-timeout":   positiveDuration,
	"log-format":         oneOf("json", "text"),
	"log-level":          oneOf("debug", "info", "warn", "error"),
	"enable-http2":       oneOf("true", "false"),
	"validation-action":  oneOf("deny", "warn"),
	// The install drains (issue 22): 0 would turn it off.
	"shutdown-drain-period": positiveDuration,
}

// optionalServeFlags may be left out; the others are spelled out.
var optionalServeFlags = map[string]bool{"enable-http2": true}

// parseServeArgs parses args as `serve --flag=value ...` and returns every
// problem: an unknown or repeated flag, one not --name=value, a bad value.
func parseServeArgs(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	if len(args) == 0 || args[0] != "serve" {
		return flags, []string{fmt.Sprintf("args %q must start with the serve subcommand", args)}
	}
	var problems []string
	for _, a := range args[1:] {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !hasValue && name == "enable-http2" {
			value, hasValue = "true", true
		}
		check, known := serveFlags[name]
		_, dup := flags[name]
		switch {
		case !strings.HasPrefix(a, "--"):
			problems = append(problems, fmt.Sprintf("argument %q is not a --flag", a))
		case !hasValue:
			problems = append(problems, fmt.Sprintf("flag %q must be written --%s=VALUE", a, name))
		case !known:
			problems = append(problems, fmt.Sprintf("--%s is not a flag of `dittofs-webhook serve` (SPEC §5)", name))
		case dup:
			problems = append(problems, fmt.Sprintf("--%s is given twice", name))
		}
		if known && hasValue {
			if err := check(value); err != nil {
				problems = append(problems, fmt.Sprintf("--%s=%s: %v", name, value, err))
			}
			flags[name] = value
		}
	}
	return flags, problems
}

func listenAddr(v string) error {
	_, err := listenPort(v)
	return err
}

func absPath(v string) error {
	if !path.IsAbs(v) || path.Clean(v) != v {
		return errors.New("want a clean absolute path")
	}
	return nil
}

func positiveQuantity(v string) error {
	q, err := resource.ParseQuantity(v)
	return positive(q.Sign(), err)
}

func positiveDuration(v string) error {
	d, err := time.ParseDuration(v)
	return positive(int(d), err)
}

func positive(sign int, err error) error {
	if err == nil && sign <= 0 {
		err = errors.New("want a positive value")
	}
	return err
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("want one of %q", values)
		}
		return nil
	}
}
