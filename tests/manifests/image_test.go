package manifests

import (
	"archive/tar"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

const serverPkg = "github.com/dittofs/dittofs-webhook/cmd/dittofs-webhook"

// imageUnderTest is the image `make image` built (podman reads CONTAINERS_CONF).
func imageUnderTest(t *testing.T) string {
	t.Helper()
	img := os.Getenv("IMAGE")
	if img == "" {
		t.Skip("IMAGE is not set: run `make manifests` (it builds the image with `make image` first)")
	}
	return img
}

func podman(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("podman", args...).Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderrOf(err))
	}
	return out
}

func stderrOf(err error) []byte {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.Stderr
	}
	return nil
}

// serverBinary exports a container (never started): its binary and paths.
func serverBinary(t *testing.T) (string, []string) {
	t.Helper()
	img := imageUnderTest(t)
	if runtime.GOOS != "linux" {
		t.Skipf("cannot run a linux binary on %s", runtime.GOOS)
	}
	ctr := strings.TrimSpace(string(podman(t, "create", img)))
	t.Cleanup(func() { podman(t, "rm", ctr) })
	dir := t.TempDir()
	bin, archive := filepath.Join(dir, "dittofs-webhook"), filepath.Join(dir, "fs.tar")
	podman(t, "export", "-o", archive, ctr)
	f, err := os.Open(archive)
	fatalIf(t, err)
	defer f.Close()
	var files []string
	for fs := tar.NewReader(f); ; {
		h, err := fs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		fatalIf(t, err)
		files = append(files, "/"+strings.TrimPrefix(path.Clean(h.Name), "/"))
		if files[len(files)-1] == "/dittofs-webhook" && h.Typeflag == tar.TypeReg {
			out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			fatalIf(t, err)
			_, err = io.Copy(out, fs)
			fatalIf(t, errors.Join(err, out.Close()))
		}
	}
	if !slices.Contains(files, "/dittofs-webhook") {
		t.Fatalf("no /dittofs-webhook in %s", img)
	}
	return bin, files
}

// TestImage checks the built image (SPEC §6), not the Dockerfile's text.
func TestImage(t *testing.T) {
	img := imageUnderTest(t)
	var cfg struct {
		User            string
		Entrypoint, Cmd []string
		ExposedPorts    map[string]*struct{}
		Labels          map[string]string
	}
	fatalIf(t, json.Unmarshal(podman(t, "image", "inspect", "--format", "{{json .Config}}", img), &cfg))
	_, tag, _ := strings.Cut(img, ":")
	// A numeric user, so runAsNonRoot can verify it.
	diff(t, "user, entrypoint, cmd, title and version labels",
		[]any{"65532:65532", []string{"/dittofs-webhook"}, []string{"serve"}, "dittofs-webhook", tag},
		[]any{cfg.User, cfg.Entrypoint, cfg.Cmd, cfg.Labels["org.opencontainers.image.title"], cfg.Labels["org.opencontainers.image.version"]})

	in := loadInstall(t, render(t, "deploy/default"))
	for _, flag := range []string{"listen", "metrics-listen"} {
		if p := fmt.Sprintf("%d/tcp", in.flagPort(t, flag)); cfg.ExposedPorts[p] == nil {
			t.Errorf("the image exposes %v, not the --%s port %s", cfg.ExposedPorts, flag, p)
		}
	}

	// Through the entrypoint; the Dockerfile's -ldflags -X stamps the version.
	if out := string(podman(t, "run", "--rm", "--network=none", "--read-only", "--cap-drop=all", img, "version")); !strings.HasPrefix(out, "dittofs-webhook "+tag+" ") {
		t.Errorf("podman run %s version printed %q, want the build's version %q", img, out, tag)
	}

	bin, files := serverBinary(t)
	for _, name := range files {
		if slices.Contains([]string{"sh", "bash", "busybox", "ash", "dash"}, path.Base(name)) {
			t.Errorf("the image has a shell: %s", name)
		}
	}

	t.Run("static binary, built as the Dockerfile says", func(t *testing.T) {
		f, err := elf.Open(bin)
		fatalIf(t, err)
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("/dittofs-webhook has a %v program header: it needs a dynamic loader, which distroless/static lacks", p.Type)
			}
		}
		// -ldflags -s -w: no symbol table, no DWARF.
		for _, s := range f.Sections {
			if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				t.Errorf("/dittofs-webhook has section %q: not built with -ldflags \"-s -w\"", s.Name)
			}
		}
		info, err := buildinfo.ReadFile(bin)
		fatalIf(t, err)
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		diff(t, "main package, build settings CGO_ENABLED, -trimpath, GOOS, GOARCH",
			[]string{serverPkg, "0", "true", "linux", runtime.GOARCH},
			[]string{info.Path, settings["CGO_ENABLED"], settings["-trimpath"], settings["GOOS"], settings["GOARCH"]})
	})

	t.Run("every flag the Deployment passes is one `serve --help` lists", func(t *testing.T) {
		out, _ := exec.Command(bin, "serve", "--help").CombinedOutput() // exit status varies with the flag library
		for _, a := range in.container.Args[1:] {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `(\s|=|$)`).Match(out) {
				t.Errorf("the Deployment passes --%s, which `dittofs-webhook serve --help` does not list:\n%s", name, out)
			}
		}
	})
}

// TestDockerfile: what the image cannot tell, the base images (build args
// defaulting to the public ones) and the go build's cache mounts.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	fatalIf(t, err)
	defer f.Close()
	res, err := parser.Parse(f)
	fatalIf(t, err)
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile line %v: %s", w.Location, w.Short)
	}
	lex := shell.NewLex('\\')
	var globalArgs, froms []string // NAME=VALUE of the ARGs before the first FROM; each stage's base, expanded
	expand := func(word string) string {
		v, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(globalArgs))
		if err != nil {
			t.Fatalf("Dockerfile: %s: %v", word, err)
		}
		return v
	}
	var goBuilds []*parser.Node
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "arg":
			for a := n.Next; a != nil && len(froms) == 0; a = a.Next {
				if name, value, ok := strings.Cut(a.Value, "="); ok {
					globalArgs = append(globalArgs, name+"="+expand(value))
				}
			}
		case "from":
			if !strings.HasPrefix(n.Next.Value, "$") { // SPEC §6: the base images are build args
				t.Errorf("Dockerfile line %d: FROM %s is not a build arg", n.StartLine, n.Next.Value)
			}
			froms = append(froms, expand(n.Next.Value))
		case "run":
			if regexp.MustCompile(`\bgo\s+build\b`).MatchString(n.Original) {
				goBuilds = append(goBuilds, n)
			}
		}
	}
	diff(t, "base images (builder, runtime)", []string{"golang:1.26", "gcr.io/distroless/static-debian12:nonroot"}, froms)
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

// TestDockerignore: the build context keeps every file the build reads.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	fatalIf(t, err)
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	fatalIf(t, err)
	pm, err := patternmatcher.New(patterns)
	fatalIf(t, err)
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}} {{end}}`+
			`{{range .EmbedFiles}}{{$.Dir}}/{{.}} {{end}}{{end}}`, serverPkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderrOf(err))
	}
	root, _ := filepath.Abs(repoRoot)
	want := map[string]bool{"go.mod": false, "go.sum": false, // false: kept in the context
		".git/HEAD": true, "tests/manifests/go.mod": true, "deploy/default/kustomization.yaml": true}
	for _, f := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(root, f)
		want[filepath.ToSlash(rel)] = false
	}
	for f, ignore := range want {
		if m, err := pm.MatchesOrParentMatches(f); err != nil || m != ignore {
			t.Errorf(".dockerignore leaves %s out of the build context: %v, want %v (%v)", f, m, ignore, err)
		}
	}
}
