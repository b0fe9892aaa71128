package manifests

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// serveFlags are the flags of `dittofs-webhook serve` (SPEC §5), each with a
// check of a value the Deployment may pass.
var serveFlags = map[string]func(string) error{
	"listen":             checkListenAddr,
	"tls-cert-file":      checkAbsPath,
	"tls-key-file":       checkAbsPath,
	"tls-min-version":    oneOf("1.2", "1.3"),
	"metrics-listen":     checkListenAddr,
	"default-cache-size": checkPositiveQuantity,
	"cache-mount-path":   checkAbsPath,
	"shutdown-timeout":   checkPositiveDuration,
	"log-format":         oneOf("json", "text"),
	"log-level":          oneOf("debug", "info", "warn", "error"),
	"enable-http2":       oneOf("true", "false"),
	"validation-action":  oneOf("deny", "warn"),

	// The install drains (issue 22): 0 would turn it off.
	"shutdown-drain-period": checkPositiveDuration,
}

// optionalServeFlags may be left out of the Deployment's args: every other
// flag is spelled out so the manifest shows what runs.
var optionalServeFlags = map[string]bool{"enable-http2": true}

// parseServeArgs parses a container's args as `serve --flag=value ...` and
// returns the flags, and every problem found: a first argument other than
// serve, an unknown or repeated flag, a flag not in --name=value form, an
// invalid value.
func parseServeArgs(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	var problems []string
	if len(args) == 0 || args[0] != "serve" {
		return flags, []string{fmt.Sprintf("args %q must start with the serve subcommand", args)}
	}
	for _, a := range args[1:] {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !strings.HasPrefix(a, "--"):
			problems = append(problems, fmt.Sprintf("argument %q is not a --flag", a))
			continue
		case !hasValue && name == "enable-http2":
			value = "true"
		case !hasValue:
			// --flag value pairs would make the next assertions guess which
			// argument belongs to which flag.
			problems = append(problems, fmt.Sprintf("flag %q must be written --%s=VALUE", a, name))
			continue
		}
		check, ok := serveFlags[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("--%s is not a flag of `dittofs-webhook serve` (SPEC §5)", name))
			continue
		}
		if _, dup := flags[name]; dup {
			problems = append(problems, fmt.Sprintf("--%s is given twice", name))
		}
		if err := check(value); err != nil {
			problems = append(problems, fmt.Sprintf("--%s=%s: %v", name, value, err))
		}
		flags[name] = value
	}
	return flags, problems
}

func checkListenAddr(v string) error {
	_, err := listenPort(v)
	return err
}

func checkAbsPath(v string) error {
	if !path.IsAbs(v) || path.Clean(v) != v {
		return fmt.Errorf("want a clean absolute path")
	}
	return nil
}

func checkPositiveQuantity(v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return err
	}
	if q.Sign() <= 0 {
		return fmt.Errorf("want a positive quantity")
	}
	return nil
}

func checkPositiveDuration(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("want a positive duration")
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		for _, ok := range values {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strconv.Quote(strings.Join(values, "|")))
	}
}
