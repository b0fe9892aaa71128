package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

const evalUsage = `Usage: dittofs-webhook eval [-f FILE|DIR|-]... [--old FILE]... [-o yaml|json|patch] [--validate strict|warn|false] [--recreate] [--manage] [flags]

Runs the mutating and then the validating webhook on manifests, offline, with
the server's own code, as the apiserver calls them: prints the documents as the
webhooks leave them, each DittoFS StatefulSet's warnings and violations on
stderr, and exits 0 when all are allowed, 1 when any is denied, 2 on
unreadable input.

Input is YAML (multi-document, ---) or JSON; a List is evaluated item by item.
Documents other than StatefulSets labelled ` + policies.LabelServer + `
pass through unchanged. Each StatefulSet is first checked as
kubectl apply --validate=strict has the apiserver check it (unknown fields,
duplicate fields, values of the wrong type). Stored objects (kubectl get -o
yaml) are reported with what is at risk, and unlabelled ones with how to bring
them under management: --manage adds the label to every unlabelled
StatefulSet of the input (its name as value) before evaluating.

  kubectl kustomize overlays/prod | dittofs-webhook eval -f - >/dev/null
  dittofs-webhook eval -f sts.yaml --old <(kubectl get statefulset fs -o yaml)
  kubectl get sts -A -l ` + policies.LabelServer + ` -o yaml | dittofs-webhook eval --recreate -f - >recreate.yaml
  kubectl get sts fs -o yaml | dittofs-webhook eval --recreate --manage -f - >recreate.yaml

Flags:
`

// evalFlags are the flags of `eval`.
type evalFlags struct {
	files    stringList
	old      stringList
	output   string
	validate string
	recreate bool
	manage   bool
	policy   *policyFlags
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func newEvalFlags(stderr io.Writer) (*flag.FlagSet, *evalFlags) {
	f := &evalFlags{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), evalUsage)
		fs.PrintDefaults()
	}
	fs.Var(&f.files, "f", "manifest `FILE`, DIR (its *.yaml, *.yml and *.json files in lexical order) or - for stdin; repeatable (default -)")
	fs.Var(&f.old, "old", "`FILE` of stored objects (as kubectl get -o yaml prints them): an input StatefulSet of the same namespace and name is evaluated as an UPDATE of it; repeatable")
	fs.StringVar(&f.output, "o", "yaml", "output: yaml (the documents after mutation), json (one JSON document per input document) or patch (each StatefulSet's JSON patch)")
	fs.StringVar(&f.validate, "validate", "strict", "check each StatefulSet as kubectl apply --validate=strict has the apiserver do: strict (report, exit 1), warn (report only) or false (skip)")
	fs.BoolVar(&f.recreate, "recreate", false, "print, for each managed StatefulSet without a cache template, the manifest to create it again, and on stderr the steps that lose nothing")
	fs.BoolVar(&f.manage, "manage", false, "label every unlabelled StatefulSet of the input "+policies.LabelServer+"=NAME before evaluating, as if its manifest had the label: with --recreate, the printed manifest and steps bring it under management")
	f.policy = addPolicyFlags(fs)
	return fs, f
}

func eval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags, f := newEvalFlags(stderr)
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	switch {
	case flags.NArg() > 0:
		fmt.Fprintf(stderr, "eval: unexpected arguments %q: name the manifests with -f\n", flags.Args())
		return 2
	case f.output != offline.FormatYAML && f.output != offline.FormatJSON && f.output != offline.FormatPatch:
		fmt.Fprintf(stderr, "eval: -o must be yaml, json or patch, got %q\n", f.output)
		return 2
	case f.recreate && f.output == offline.FormatPatch:
		fmt.Fprintln(stderr, "eval: --recreate prints manifests: -o yaml or json")
		return 2
	}
	validate := offline.Validation(f.validate)
	switch validate {
	case offline.ValidateStrict, offline.ValidateWarn, offline.ValidateFalse:
	default:
		fmt.Fprintf(stderr, "eval: --validate must be strict, warn or false, got %q\n", f.validate)
		return 2
	}
	opts, err := f.policy.options()
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return 2
	}
	in, err := offline.Read(offline.ReadOptions{Files: f.files, Old: f.old, Stdin: stdin, Manage: f.manage})
	if err != nil {
		return inputError(stderr, "eval", err)
	}
	admitter := &admission.Admitter{Policy: opts}
	if f.recreate {
		r := offline.Recreate(in, admitter, validate)
		if err := offline.WriteRecreate(stdout, stderr, r, f.output); err != nil {
			fmt.Fprintf(stderr, "eval: writing the output: %v\n", err)
			return 2
		}
		return r.ExitCode()
	}
	r := offline.Eval(in, admitter, validate)
	if err := offline.WriteEval(stdout, stderr, r, f.output); err != nil {
		fmt.Fprintf(stderr, "eval: writing the output: %v\n", err)
		return 2
	}
	return r.ExitCode()
}

// inputError prints every problem of unreadable input, each prefixed with
// the command's name, and returns exit code 2.
func inputError(stderr io.Writer, cmd string, err error) int {
	var ie *offline.InputError
	if !errors.As(err, &ie) {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 2
	}
	for _, m := range ie.Messages {
		fmt.Fprintf(stderr, "%s: %s\n", cmd, m)
	}
	return 2
}
