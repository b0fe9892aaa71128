package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

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
		if err := json.Unmarshal(d.JSON(), &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// hasOutputFlag reports whether args choose an output format.
// hasOutputFlag reports whether args choose what is printed: an output
// format, or --recreate (the manifests of what needs recreating only).
func hasOutputFlag(args []string) bool {
	for _, a := range args {
		if a == "-o" || a == "--o" || strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--o=") || strings.TrimLeft(a, "-") == "recreate" {
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

// Re-applying the unchanged manifest against the object the webhook stored
// yields that object, with nothing to say (SPEC §2 U1, U2).
func TestEvalCarryOverYieldsStoredObject(t *testing.T) {
	var c *scriptCase
	for _, sc := range evalCases(t) {
		if sc.name == "eval-old-carry-over" {
			c = &sc
		}
	}
	if c == nil {
		t.Fatal("no script eval-old-carry-over")
	}
	stored, err := os.ReadFile(filepath.Join(c.dir, "stored.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.run(t)
	if got.code != 0 || got.stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing", got.code, got.stderr)
	}
	if g, w := objects(t, "stdout", []byte(got.stdout)), objects(t, "stored.yaml", stored); !reflect.DeepEqual(g, w) {
		t.Errorf("re-applied manifest:\n%s\nwant the stored object:\n%s", got.stdout, stored)
	}
}

// eval run on its own output changes nothing: the mutating webhook is
// idempotent and unchanged documents are printed as they were read.
func TestEvalIdempotent(t *testing.T) {
	for _, c := range evalCases(t) {
		t.Run(c.name, func(t *testing.T) {
			first := c.run(t)
			if first.code != 0 || hasOutputFlag(c.args) {
				t.Skip("not an allowed case printing YAML")
			}
			// The same flags (--old, policy), the output as the input.
			second := runEval(withoutInputs(c.args), []byte(first.stdout))
			if second.code != 0 || second.stdout != first.stdout {
				t.Errorf("eval of its own output: exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s", second.code, second.stdout, first.stdout, second.stderr)
			}
		})
	}
}

// -o yaml and -o json print the same objects.
func TestEvalOutputsAgree(t *testing.T) {
	for _, c := range evalCases(t) {
		t.Run(c.name, func(t *testing.T) {
			asYAML := c.run(t)
			if asYAML.code == 2 || hasOutputFlag(c.args) {
				t.Skip("unreadable input, or an output format chosen")
			}
			asJSON := runEval(append(slices.Clip(c.args), "-o", "json"), c.stdin)
			if asJSON.code != asYAML.code || asJSON.stderr != asYAML.stderr {
				t.Errorf("-o json: exit %d, stderr %q; -o yaml: exit %d, stderr %q", asJSON.code, asJSON.stderr, asYAML.code, asYAML.stderr)
			}
			y, j := objects(t, "yaml", []byte(asYAML.stdout)), objects(t, "json", []byte(asJSON.stdout))
			if !reflect.DeepEqual(y, j) {
				t.Errorf("-o yaml and -o json differ:\n%s\n%s", asYAML.stdout, asJSON.stdout)
			}
			// JSON output is indented, one document per input document.
			if n := len(y); n > 0 && strings.Count(asJSON.stdout, "\n}\n") != n {
				t.Errorf("-o json: want %d documents each ending in a line '}':\n%s", n, asJSON.stdout)
			}
		})
	}
}

const labelledSTS = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: fs
  namespace: prod
  labels:
    dittofs.com/server: fs
spec:
  template:
    spec:
      containers:
      - name: dittofs
  volumeClaimTemplates:
  - metadata:
      name: metadata
    spec:
      resources:
        requests:
          storage: 1Gi
  - metadata:
      name: content
    spec:
      resources:
        requests:
          storage: 1Gi
`

// Command-line and input errors: exit 2, a message naming the problem, and
// nothing on stdout (a pipeline never gets half an output).
func TestEvalUsageErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sts := write("sts.yaml", labelledSTS)
	other := write("other.yaml", strings.ReplaceAll(labelledSTS, "name: fs", "name: other"))
	noNS := write("no-ns.yaml", strings.ReplaceAll(labelledSTS, "  namespace: prod\n", ""))
	twice := write("twice.yaml", labelledSTS+"---\n"+strings.ReplaceAll(labelledSTS, "namespace: prod", "namespace: dev"))
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"positional argument", []string{sts}, "", "unexpected arguments"},
		{"unknown flag", []string{"--kubeconfig", "x"}, "", "flag provided but not defined"},
		{"bad default cache size", []string{"--default-cache-size", "0", "-f", sts}, "", "--default-cache-size must be a positive quantity"},
		{"relative mount path", []string{"--cache-mount-path", "cache", "-f", sts}, "", "--cache-mount-path"},
		{"stdin twice", []string{"-f", "-", "-f", "-"}, labelledSTS, "stdin can be read only once"},
		{"directory without manifests", []string{"-f", empty}, "", "no *.yaml, *.yml or *.json file"},
		{"old matches no input", []string{"-f", sts, "--old", other}, "", "no StatefulSet of the input has the namespace and name of prod/other"},
		{"old missing", []string{"-f", sts, "--old", filepath.Join(dir, "nope.yaml")}, "", "nope.yaml: no such file or directory"},
		{"old empty", []string{"-f", sts, "--old", write("empty.yaml", "# nothing\n")}, "", "no StatefulSet in it"},
		{"old ambiguous without namespace", []string{"-f", noNS, "--old", twice}, "", "could be any of 2 objects"},
		{"old twice the same", []string{"-f", sts, "--old", sts, "--old", sts}, "", "is there 2 times"},
		{"not an object", []string{}, "- a\n- b\n", "<stdin>:1: not a Kubernetes object"},
		{"json stream error", []string{}, "{\"kind\": \"ConfigMap\"}\n{\"kind\": \"ConfigMap\",\n\"data\": }\n", "<stdin>:3: json: invalid character '}'"},
		{"yaml error in second document", []string{}, "kind: ConfigMap\n---\n# comment\nkind: ConfigMap\n data: x\n", "<stdin>:5: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runEval(tc.args, []byte(tc.stdin))
			if got.code != 2 || !strings.Contains(got.stderr, tc.want) || got.stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want 2, %q and no output", got.code, got.stderr, got.stdout, tc.want)
			}
		})
	}
}

func TestEvalInputForms(t *testing.T) {
	t.Run("help", func(t *testing.T) {
		got := runEval([]string{"-h"}, nil)
		if got.code != 0 || !strings.Contains(got.stderr, "Usage: dittofs-webhook eval") || !strings.Contains(got.stderr, "-old FILE") {
			t.Errorf("exit %d, stderr %q", got.code, got.stderr)
		}
	})
	t.Run("both flag forms", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "sts.yaml")
		if err := os.WriteFile(p, []byte(labelledSTS), 0o644); err != nil {
			t.Fatal(err)
		}
		a := runEval([]string{"-f", p, "-o", "json"}, nil)
		b := runEval([]string{"--f=" + p, "--o=json"}, nil)
		if a.code != 0 || a != b {
			t.Errorf("-f/-o and --f=/--o= differ: %+v, %+v", a, b)
		}
	})
	t.Run("namespace-less manifest matches the stored object", func(t *testing.T) {
		dir := t.TempDir()
		stored := runEval(nil, []byte(labelledSTS))
		p := filepath.Join(dir, "stored.yaml")
		if err := os.WriteFile(p, []byte(stored.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		got := runEval([]string{"--old", p}, []byte(strings.ReplaceAll(labelledSTS, "  namespace: prod\n", "")))
		if got.code != 0 || got.stderr != "" || !strings.Contains(got.stdout, "name: cache") {
			t.Errorf("exit %d, stderr %q, stdout:\n%s", got.code, got.stderr, got.stdout)
		}
		patch := runEval([]string{"--old", p, "-o", "patch"}, []byte(labelledSTS))
		if !strings.Contains(patch.stdout, `"operation": "UPDATE"`) {
			t.Errorf("not an UPDATE: %s", patch.stdout)
		}
	})
	t.Run("CRLF and a byte-order mark", func(t *testing.T) {
		in := "\xef\xbb\xbf" + strings.ReplaceAll("kind: ConfigMap\n---\n"+labelledSTS, "\n", "\r\n")
		got := runEval(nil, []byte(in))
		// Lines end as kubectl's splitter leaves them: without the CR.
		if got.code != 0 || !strings.HasPrefix(got.stdout, "kind: ConfigMap\n---\n") || !strings.Contains(got.stdout, "name: cache") {
			t.Errorf("exit %d, stderr %q, stdout:\n%q", got.code, got.stderr, got.stdout)
		}
	})
	t.Run("leading separator and comments", func(t *testing.T) {
		in := "# rendered by kustomize\n---\n" + "kind: ConfigMap # trailing\n---   # next\n--- \nkind: Secret\n"
		got := runEval(nil, []byte(in))
		if want := "kind: ConfigMap # trailing\n---\nkind: Secret\n"; got.code != 0 || got.stdout != want {
			t.Errorf("exit %d, stderr %q, stdout %q; want %q", got.code, got.stderr, got.stdout, want)
		}
	})
}
