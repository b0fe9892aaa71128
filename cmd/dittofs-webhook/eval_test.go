package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dittofs/dittofs-webhook/webhook/offline"
)

var update = flag.Bool("update", false, "rewrite the golden files of tests/eval from the current output")

// evalCasesDir holds the golden cases of eval: one directory per case with
//
//	args      the arguments after "eval", one a line (# comments, blank lines skipped)
//	stdin     fed to stdin when present (stdin.yaml, stdin.json or stdin)
//	stdout    the expected stdout
//	stderr    the expected stderr
//	exitcode  the expected exit code
//
// and the input files the arguments name, relative to the case directory (the
// test runs there). go test ./cmd/dittofs-webhook -run TestEvalGolden -update
// rewrites stdout, stderr and exitcode.
const evalCasesDir = "../../tests/eval"

type evalResult struct {
	stdout, stderr string
	code           int
}

func readArgs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		args = append(args, l)
	}
	return args
}

// runEvalCase runs eval in the case directory dir.
func runEvalCase(t *testing.T, dir string) evalResult {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	args := readArgs(t, filepath.Join(abs, "args"))
	var stdin []byte
	for _, name := range []string{"stdin.yaml", "stdin.json", "stdin"} {
		if b, err := os.ReadFile(filepath.Join(abs, name)); err == nil {
			stdin = b
			break
		}
	}
	t.Chdir(abs)
	return runEval(args, stdin)
}

func runEval(args []string, stdin []byte) evalResult {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"eval"}, args...), bytes.NewReader(stdin), &stdout, &stderr)
	return evalResult{stdout.String(), stderr.String(), code}
}

func evalCases(t *testing.T) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(evalCasesDir, "*", "args"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatalf("no golden cases in %s", evalCasesDir)
	}
	dirs := make([]string, len(matches))
	for i, m := range matches {
		// Absolute: each case runs in its own directory (t.Chdir).
		if dirs[i], err = filepath.Abs(filepath.Dir(m)); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

func TestEvalGolden(t *testing.T) {
	for _, dir := range evalCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runEvalCase(t, dir)
			golden := map[string]string{
				"stdout":   got.stdout,
				"stderr":   got.stderr,
				"exitcode": strconv.Itoa(got.code) + "\n",
			}
			for _, name := range []string{"stdout", "stderr", "exitcode"} {
				path := filepath.Join(dir, name)
				if *update {
					if err := os.WriteFile(path, []byte(golden[name]), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run the test with -update to write it)", err)
				}
				if golden[name] != string(want) {
					t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, golden[name], want)
				}
			}
		})
	}
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
	dir := filepath.Join(evalCasesDir, "old-carry-over")
	stored, err := os.ReadFile(filepath.Join(dir, "stored.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := runEvalCase(t, dir)
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
	for _, dir := range evalCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			first := runEvalCase(t, dir)
			if first.code != 0 || hasOutputFlag(readArgs(t, filepath.Join(dir, "args"))) {
				t.Skip("not an allowed case printing YAML")
			}
			// The same flags (--old, policy), the output as the input.
			second := runEval(withoutInputs(readArgs(t, filepath.Join(dir, "args"))), []byte(first.stdout))
			if second.code != 0 || second.stdout != first.stdout {
				t.Errorf("eval of its own output: exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s", second.code, second.stdout, first.stdout, second.stderr)
			}
		})
	}
}

// -o yaml and -o json print the same objects.
func TestEvalOutputsAgree(t *testing.T) {
	for _, dir := range evalCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			args := readArgs(t, filepath.Join(dir, "args"))
			asYAML := runEvalCase(t, dir)
			if asYAML.code == 2 || hasOutputFlag(args) {
				t.Skip("unreadable input, or an output format chosen")
			}
			var stdin []byte
			for _, name := range []string{"stdin.yaml", "stdin.json", "stdin"} {
				if b, err := os.ReadFile(name); err == nil {
					stdin = b
					break
				}
			}
			asJSON := runEval(append(args, "-o", "json"), stdin)
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
