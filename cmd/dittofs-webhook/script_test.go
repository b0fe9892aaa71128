package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of tests/eval's scripts from the current output")

// scriptsDir holds the command's CLI cases, one testscript file each; their
// form is in tests/README.md ("The CLI cases"). -update rewrites their outputs.
const scriptsDir = "../../tests/eval"

// reportEpoch is SOURCE_DATE_EPOCH in the scripts: audit -o report's
// timestamps (2026-01-01T00:00:00Z).
const reportEpoch = "1767225600"

// TestMain puts the command in $PATH as the test binary itself, for the
// scripts and for the reliability tests that run it as a process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"dittofs-webhook": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 scriptsDir,
		UpdateScripts:       *update,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv(sourceDateEpoch, reportEpoch)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"exits": cmdExits},
	})
}

// cmdExits is `exits CODE PROGRAM ARGS...`: runs the program as exec does
// (stdin, then stdout and stderr for cmp) and requires exit status CODE,
// which exec and ! exec cannot tell apart beyond zero and non-zero.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	var ee *exec.ExitError
	switch err := ts.Exec(args[1], args[2:]...); {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// scriptCase is a tests/eval script whose eval command line is read back,
// for the tests that run eval's cases again in other ways.
type scriptCase struct {
	name, dir string // dir holds the archive's files
	args      []string
	stdin     []byte // the stdin file's content, nil without one
}

// evalCases reads the eval scripts and extracts each one's files in a
// directory of its own.
func evalCases(t *testing.T) []scriptCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(scriptsDir, "eval-*.txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no eval scripts in %s (%v)", scriptsDir, err)
	}
	var cases []scriptCase
	for _, p := range paths {
		ar, err := txtar.ParseFile(p)
		must(t, err)
		c := scriptCase{name: strings.TrimSuffix(filepath.Base(p), ".txtar"), dir: t.TempDir()}
		must(t, txtar.Write(ar, c.dir))
		for _, l := range strings.Split(string(ar.Comment), "\n") {
			switch f := strings.Fields(l); {
			case len(f) == 2 && f[0] == "stdin":
				c.stdin, err = os.ReadFile(filepath.Join(c.dir, f[1]))
				must(t, err)
			case len(f) >= 4 && f[0] == "exits" && f[2] == "dittofs-webhook" && f[3] == "eval":
				c.args = f[4:]
			}
		}
		if c.args == nil {
			t.Fatalf("%s: no `exits CODE dittofs-webhook eval ARGS` line", p)
		}
		cases = append(cases, c)
	}
	return cases
}

// run runs eval in the case's directory.
func (c scriptCase) run(t *testing.T) evalResult {
	t.Helper()
	t.Chdir(c.dir)
	return runEval(c.args, c.stdin)
}
