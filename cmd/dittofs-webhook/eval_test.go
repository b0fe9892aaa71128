package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

type evalResult struct {
	stdout, stderr string
	code           int
}

func runEval(args []string, stdin []byte) evalResult {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"eval"}, args...), bytes.NewReader(stdin), &stdout, &stderr)
	return evalResult{stdout.String(), stderr.String(), code}
}

// objects returns the objects of a YAML or JSON stream as generic values.
func objects(t *testing.T, name string, data []byte) []any {
	t.Helper()
	docs, err := offline.Parse(name, data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out := make([]any, len(docs))
	for i, d := range docs {
		out[i] = decoded(t, d.JSON())
	}
	return out
}

// hasOutputFlag reports whether args choose what is printed: an output
// format, or --recreate (the manifests of what needs recreating only).
func hasOutputFlag(args []string) bool {
	for _, a := range args {
		if a == "-o" || a == "--o" || strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--o=") ||
			strings.TrimLeft(a, "-") == "recreate" {
			return true
		}
	}
	return false
}

// withoutInputs returns args without their -f flags: the input is then stdin.
func withoutInputs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-f" || a == "--f":
			i++
		case strings.HasPrefix(a, "-f=") || strings.HasPrefix(a, "--f="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// TestEvalCasesAgain runs each eval script's command again: with -o json it
// prints the same objects as YAML, indented, one document per input document,
// with the same exit code and stderr; and when allowed, eval run on its own
// output (same flags: --old, policy) changes nothing, as the mutating webhook
// is idempotent and unchanged documents are printed as they were read.
func TestEvalCasesAgain(t *testing.T) {
	for _, c := range evalCases(t) {
		t.Run(c.name, func(t *testing.T) {
			asYAML := c.run(t)
			if asYAML.code == 2 || hasOutputFlag(c.args) {
				t.Skip("unreadable input, or an output format chosen")
			}
			asJSON := runEval(append(slices.Clip(c.args), "-o", "json"), c.stdin)
			if asJSON.code != asYAML.code || asJSON.stderr != asYAML.stderr {
				t.Errorf("-o json: exit %d, stderr %q; -o yaml: exit %d, stderr %q",
					asJSON.code, asJSON.stderr, asYAML.code, asYAML.stderr)
			}
			y, j := objects(t, "yaml", []byte(asYAML.stdout)), objects(t, "json", []byte(asJSON.stdout))
			if d := cmp.Diff(y, j); d != "" {
				t.Errorf("-o yaml and -o json differ (-yaml +json):\n%s", d)
			}
			if n := len(y); n > 0 && strings.Count(asJSON.stdout, "\n}\n") != n {
				t.Errorf("-o json: want %d documents each ending in a line '}':\n%s", n, asJSON.stdout)
			}
			if asYAML.code != 0 {
				return
			}
			again := runEval(withoutInputs(c.args), []byte(asYAML.stdout))
			if again.code != 0 || again.stdout != asYAML.stdout {
				t.Errorf("eval of its own output: exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s",
					again.code, again.stdout, asYAML.stdout, again.stderr)
			}
		})
	}
}

// TestEvalCRLF: a byte-order mark and CRLF line ends (which a txtar case
// cannot hold) are read; lines end as kubectl's splitter leaves them, without
// the CR.
func TestEvalCRLF(t *testing.T) {
	sts := "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: fs\n  labels:\n    dittofs.com/server: fs\n"
	got := runEval(nil, []byte("\xef\xbb\xbf"+strings.ReplaceAll("kind: ConfigMap\n---\n"+sts, "\n", "\r\n")))
	if got.code != 1 || !strings.HasPrefix(got.stdout, "kind: ConfigMap\n---\n") ||
		!strings.Contains(got.stdout, "name: cache") {
		t.Errorf("exit %d, stderr %q, stdout:\n%q", got.code, got.stderr, got.stdout)
	}
}
