package manifests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TestDockerfile checks, with BuildKit's own parser, what the built image
// cannot tell (TestImage checks the rest on the image): the base images are
// build args whose defaults are the public images (make image passes local
// stand-ins), and the go build step caches the modules and the build cache.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile line %v: %s", w.Location, w.Short)
	}
	lex := shell.NewLex('\\')
	var globalArgs []string // NAME=VALUE, as the ARGs before the first FROM define them
	var froms []string      // each stage's base image, expanded
	var goBuilds []*parser.Node
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "arg":
			for a := n.Next; a != nil && len(froms) == 0; a = a.Next {
				if name, value, ok := strings.Cut(a.Value, "="); ok {
					v, _, err := lex.ProcessWord(value, shell.EnvsFromSlice(globalArgs))
					if err != nil {
						t.Fatalf("Dockerfile line %d: %v", n.StartLine, err)
					}
					globalArgs = append(globalArgs, name+"="+v)
				}
			}
		case "from":
			base, _, err := lex.ProcessWord(n.Next.Value, shell.EnvsFromSlice(globalArgs))
			if err != nil {
				t.Fatalf("Dockerfile line %d: %v", n.StartLine, err)
			}
			froms = append(froms, base)
		case "run":
			if regexp.MustCompile(`\bgo\s+build\b`).MatchString(n.Original) {
				goBuilds = append(goBuilds, n)
			}
		}
	}
	expect(t, "base images (builder, runtime)", froms, []string{"golang:1.26", "gcr.io/distroless/static-debian12:nonroot"})
	if len(goBuilds) != 1 {
		t.Fatalf("Dockerfile has %d RUN instructions with `go build`, want 1", len(goBuilds))
	}
	for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
		if !slices.ContainsFunc(goBuilds[0].Flags, func(f string) bool {
			return strings.HasPrefix(f, "--mount=") && strings.Contains(f, "type=cache") && strings.Contains(f, "target="+target)
		}) {
			t.Errorf("the go build RUN has no cache mount on %s (flags %q)", target, goBuilds[0].Flags)
		}
	}
}

// TestDockerignore checks that the build context keeps every file the
// binary's build reads, matching .dockerignore as BuildKit does
// (moby/patternmatcher).
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	ignored := func(file string) bool {
		m, err := pm.MatchesOrParentMatches(file)
		if err != nil {
			t.Fatalf(".dockerignore on %s: %v", file, err)
		}
		return m
	}

	files := []string{"go.mod", "go.sum"}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", serverPkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderrOf(err))
	}
	root, _ := filepath.Abs(repoRoot)
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			rel, _ := filepath.Rel(root, filepath.Join(p.Dir, f))
			files = append(files, filepath.ToSlash(rel))
		}
	}
	for _, f := range files {
		if ignored(f) {
			t.Errorf(".dockerignore leaves %s, which the build reads, out of the context", f)
		}
	}
	for _, f := range []string{".git/HEAD", "tests/manifests/go.mod", "deploy/default/kustomization.yaml"} {
		if !ignored(f) {
			t.Errorf(".dockerignore keeps %s in the build context", f)
		}
	}
}
