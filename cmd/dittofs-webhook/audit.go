package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/dittofs/dittofs-webhook/policies"
	"github.com/dittofs/dittofs-webhook/webhook/admission"
	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

const auditUsage = `Usage: dittofs-webhook audit [-f FILE|DIR|-]... [-o text|report|junit] [--manage] [flags]

Judges what is already running: each StatefulSet labelled ` + policies.LabelServer + ` of
the input, as stored, with the validating webhook's rules and rule IDs, and
what the mutating webhook would still change on its next update. Needs no
cluster access of its own: the input is what kubectl get statefulsets -A -o
yaml (or -o json) prints, and any manifests. Unlabelled StatefulSets are
skipped and counted; --manage judges them as if labelled. Exit 0 when every
audited StatefulSet passes, 1 when any fails, 2 on unreadable input.

  kubectl get sts -A -o yaml | dittofs-webhook audit
  kubectl get sts -A -o yaml | dittofs-webhook audit -o report | kubectl apply -f -
  kubectl get sts -A -o yaml | dittofs-webhook audit -o junit >audit.xml

Flags:
`

// sourceDateEpoch is the reproducible-builds variable that fixes the
// reports' timestamps (seconds since the epoch), for goldens and pipelines
// that diff reports.
const sourceDateEpoch = "SOURCE_DATE_EPOCH"

func audit(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var files stringList
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage)
		fs.PrintDefaults()
	}
	fs.Var(&files, "f", "`FILE` of stored objects or manifests, DIR (its *.yaml, *.yml and *.json files in lexical order) or - for stdin; repeatable (default -)")
	output := fs.String("o", offline.FormatText, "output: text (one line per StatefulSet), report (OpenReports openreports.io/v1alpha1 Reports, for kubectl apply) or junit (JUnit XML, one test case per StatefulSet and rule)")
	manage := fs.Bool("manage", false, "judge every unlabelled StatefulSet as if it were labelled "+policies.LabelServer+"=NAME")
	policy := addPolicyFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	switch *output {
	case offline.FormatText, offline.FormatReport, offline.FormatJUnit:
	default:
		fmt.Fprintf(stderr, "audit: -o must be text, report or junit, got %q\n", *output)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "audit: unexpected arguments %q: name the input with -f\n", fs.Args())
		return 2
	}
	opts, err := policy.options()
	if err != nil {
		fmt.Fprintf(stderr, "audit: %v\n", err)
		return 2
	}
	now, err := reportTime()
	if err != nil {
		fmt.Fprintf(stderr, "audit: %v\n", err)
		return 2
	}
	in, err := offline.Read(offline.ReadOptions{Files: files, Stdin: stdin, Manage: *manage})
	if err != nil {
		return inputError(stderr, "audit", err)
	}
	r, err := offline.Audit(in, &admission.Admitter{Policy: opts})
	if err != nil {
		return inputError(stderr, "audit", err)
	}
	switch *output {
	case offline.FormatText:
		err = offline.WriteAuditText(stdout, r)
	case offline.FormatReport:
		err = offline.WriteAuditReport(stdout, r, now)
	case offline.FormatJUnit:
		err = offline.WriteAuditJUnit(stdout, r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "audit: writing the output: %v\n", err)
		return 2
	}
	fmt.Fprintln(stderr, offline.Summary(r))
	return r.ExitCode()
}

// reportTime is when the reports say the results were found: now, or
// SOURCE_DATE_EPOCH when set.
func reportTime() (time.Time, error) {
	v, ok := os.LookupEnv(sourceDateEpoch)
	if !ok {
		return time.Now(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s must be seconds since the epoch, got %q", sourceDateEpoch, v)
	}
	return time.Unix(sec, 0), nil
}
