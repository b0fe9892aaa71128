package manifests

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

const (
	serverPkgDir = "cmd/dittofs-webhook" // relative to repoRoot
	versionVar   = "github.com/dittofs/dittofs-webhook/webhook.Version"
	testVersion  = "v0.0.0-manifests-test"
)

// instruction is one Dockerfile instruction as BuildKit's parser reads it:
// continuation lines joined, comments dropped.
type instruction struct {
	line  int      // first line
	cmd   string   // upper case: FROM, RUN, ...
	args  string   // the rest of the instruction, flags (--mount=...) included
	flags []string // the instruction's flags: --mount=..., --platform=...
	next  []string // its arguments without the flags: a RUN's command line is one
}

type dockerfile struct {
	instructions []instruction
}

// readDockerfile parses the Dockerfile with BuildKit's own parser (the one
// docker build, buildx and, for its syntax, buildah follow).
func readDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile line %v: %s", w.Location, w.Short)
	}
	var df dockerfile
	for _, n := range res.AST.Children {
		_, args, _ := strings.Cut(strings.TrimSpace(n.Original), " ")
		in := instruction{line: n.StartLine, cmd: strings.ToUpper(n.Value), args: strings.TrimSpace(args), flags: n.Flags}
		for a := n.Next; a != nil; a = a.Next {
			in.next = append(in.next, a.Value)
		}
		df.instructions = append(df.instructions, in)
	}
	return &df
}

// stages splits the instructions at each FROM; stage 0 holds the global ARGs.
func (df *dockerfile) stages() [][]instruction {
	out := [][]instruction{nil}
	for _, in := range df.instructions {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], in)
	}
	return out
}

// argDefaults returns the default value of every ARG.
func (df *dockerfile) argDefaults() map[string]string {
	vars := map[string]string{}
	for _, in := range df.instructions {
		if in.cmd != "ARG" {
			continue
		}
		for _, a := range in.next {
			name, value, _ := strings.Cut(a, "=")
			if _, seen := vars[name]; !seen || value != "" {
				vars[name] = strings.Trim(value, `"`)
			}
		}
	}
	return vars
}

// goBuild is the `go build` command of the Dockerfile.
type goBuild struct {
	run    instruction
	mounts []string // RUN --mount options
	env    []string // NAME=VALUE before `go`, expanded
	flags  []string // build flags, -o and its value removed, expanded
	pkgs   []string
}

// buildVars are the values the test gives the Dockerfile's variables: the
// image is always linux, on this machine's architecture so the binary runs.
func buildVars(df *dockerfile) map[string]string {
	vars := df.argDefaults()
	vars["VERSION"] = testVersion
	vars["TARGETOS"] = "linux"
	vars["TARGETARCH"] = runtime.GOARCH
	return vars
}

func parseGoBuild(t *testing.T, df *dockerfile) goBuild {
	t.Helper()
	vars := buildVars(df)
	expand := func(s string) string {
		return os.Expand(s, func(name string) string {
			v, ok := vars[name]
			if !ok {
				t.Fatalf("Dockerfile go build uses $%s, which is no ARG", name)
			}
			return v
		})
	}
	var runs []instruction
	for _, in := range df.instructions {
		if in.cmd == "RUN" && regexp.MustCompile(`\bgo\s+build\b`).MatchString(in.args) {
			runs = append(runs, in)
		}
	}
	if len(runs) != 1 {
		t.Fatalf("Dockerfile has %d RUN instructions with `go build`, want 1", len(runs))
	}
	gb := goBuild{run: runs[0]}
	for _, f := range runs[0].flags {
		if m, ok := strings.CutPrefix(f, "--mount="); ok {
			gb.mounts = append(gb.mounts, m)
		}
	}
	// BuildKit's shell lexer splits the command line into words (quotes,
	// backslashes); the variables are left for expand, which knows the ARGs.
	lex := shell.NewLex('\\')
	lex.SkipUnsetEnv = true
	words, err := lex.ProcessWords(strings.Join(runs[0].next, " "), shell.EnvsFromSlice(nil))
	if err != nil {
		t.Fatalf("Dockerfile line %d: %v", runs[0].line, err)
	}
	// The command list may chain several commands: take the go build one.
	var cmd []string
	for _, w := range words {
		if w == "&&" || w == ";" || w == "||" {
			if slices.Contains(cmd, "build") {
				break
			}
			cmd = nil
			continue
		}
		cmd = append(cmd, w)
	}
	i := 0
	for ; i < len(cmd) && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(cmd[i]); i++ {
		gb.env = append(gb.env, expand(cmd[i]))
	}
	if len(cmd) < i+2 || cmd[i] != "go" || cmd[i+1] != "build" {
		t.Fatalf("Dockerfile line %d: cannot find `[ENV=VALUE...] go build` in %q", runs[0].line, runs[0].args)
	}
	valueFlags := []string{"-o", "-ldflags", "-gcflags", "-asmflags", "-tags", "-mod", "-p", "-buildmode",
		"-installsuffix", "-pkgdir", "-modfile", "-overlay", "-pgo", "-toolexec", "-exec", "-C"}
	args := cmd[i+2:]
	for j := 0; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "-o" || a == "--o":
			j++ // the output is the test's own
		case strings.HasPrefix(a, "-o="):
		case strings.HasPrefix(a, "-"):
			gb.flags = append(gb.flags, expand(a))
			if slices.Contains(valueFlags, strings.TrimPrefix(a, "-")) || slices.Contains(valueFlags, a) {
				if j+1 < len(args) {
					j++
					gb.flags = append(gb.flags, expand(args[j]))
				}
			}
		default:
			gb.pkgs = append(gb.pkgs, expand(a))
		}
	}
	return gb
}

func TestDockerfile(t *testing.T) {
	df := readDockerfile(t)
	stages := df.stages()
	if len(stages) != 3 {
		t.Fatalf("Dockerfile has %d stages, want 2 (builder, runtime)", len(stages)-1)
	}
	vars := df.argDefaults()
	from := func(stage []instruction) string {
		// An ARG default may name another ARG (BUILDER_IMAGE=golang:${GO_VERSION}).
		s := stage[0].args
		for range 3 {
			s = os.Expand(s, func(k string) string { return vars[k] })
		}
		f := strings.Fields(s)
		f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
		return f[0]
	}
	final := stages[2]
	last := func(cmd string) string {
		v := ""
		for _, in := range final {
			if in.cmd == cmd {
				v = in.args
			}
		}
		return v
	}

	t.Run("base images", func(t *testing.T) {
		expect(t, "builder image", from(stages[1]), "golang:1.26")
		expect(t, "runtime image", from(final), "gcr.io/distroless/static-debian12:nonroot")
	})

	t.Run("go build", func(t *testing.T) {
		gb := parseGoBuild(t, df)
		if !slices.Contains(gb.env, "CGO_ENABLED=0") {
			t.Errorf("go build env %q lacks CGO_ENABLED=0: distroless/static has no libc", gb.env)
		}
		if !slices.Contains(gb.flags, "-trimpath") {
			t.Errorf("go build flags %q lack -trimpath", gb.flags)
		}
		ldflags := ""
		for i, f := range gb.flags {
			if f == "-ldflags" && i+1 < len(gb.flags) {
				ldflags = gb.flags[i+1]
			} else if v, ok := strings.CutPrefix(f, "-ldflags="); ok {
				ldflags = v
			}
		}
		for _, want := range []string{"-s", "-w", "-X", versionVar + "=" + testVersion} {
			if !slices.Contains(strings.Fields(ldflags), want) {
				t.Errorf("go build -ldflags %q lack %q", ldflags, want)
			}
		}
		expect(t, "packages built", gb.pkgs, []string{"./" + serverPkgDir})
		for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
			if !slices.ContainsFunc(gb.mounts, func(m string) bool {
				return strings.Contains(m, "type=cache") && strings.Contains(m, "target="+target)
			}) {
				t.Errorf("the go build RUN has no cache mount on %s (mounts %q)", target, gb.mounts)
			}
		}
	})

	t.Run("runtime stage", func(t *testing.T) {
		expect(t, "USER", last("USER"), "65532:65532")
		expect(t, "ENTRYPOINT", last("ENTRYPOINT"), `["/dittofs-webhook"]`)
		expect(t, "CMD", last("CMD"), `["serve"]`)
		copied := false
		for _, in := range final {
			if in.cmd == "COPY" && strings.HasPrefix(in.args, "--from=") && strings.HasSuffix(in.args, " /dittofs-webhook") {
				copied = true
			}
		}
		if !copied {
			t.Errorf("the runtime stage does not COPY --from the builder to /dittofs-webhook, the ENTRYPOINT")
		}
	})

	t.Run("the Deployment runs the image as its USER, on its ports", func(t *testing.T) {
		in := loadInstall(t, render(t, "deploy/default"))
		user := fmt.Sprintf("%d:%d", *in.container.SecurityContext.RunAsUser, *in.container.SecurityContext.RunAsGroup)
		expect(t, "container runAsUser:runAsGroup", user, last("USER"))
		exposed := strings.Fields(last("EXPOSE"))
		for _, flag := range []string{"listen", "metrics-listen"} {
			if p := fmt.Sprint(in.flagPort(t, flag)); !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
				t.Errorf("EXPOSE %q lacks the --%s port %s", exposed, flag, p)
			}
		}
		if in.container.Command != nil {
			t.Errorf("the Deployment overrides the image ENTRYPOINT with %q", in.container.Command)
		}
	})
}

// The server binary, built once as the Dockerfile builds it.
var server struct {
	once sync.Once
	dir  string
	path string
	err  error
	log  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.dir != "" {
		os.RemoveAll(server.dir)
	}
	os.Exit(code)
}

// serverPackageExists reports whether cmd/dittofs-webhook has Go code yet.
func serverPackageExists() bool {
	files, _ := filepath.Glob(filepath.Join(repoRoot, serverPkgDir, "*.go"))
	return slices.ContainsFunc(files, func(f string) bool { return !strings.HasSuffix(f, "_test.go") })
}

// buildServer builds the server with the Dockerfile's go build command and
// returns the binary, skipping the test while the package does not exist.
func buildServer(t *testing.T) string {
	t.Helper()
	if !serverPackageExists() {
		t.Skip(serverPkgDir + " has no Go code yet")
	}
	gb := parseGoBuild(t, readDockerfile(t))
	server.once.Do(func() {
		server.dir, server.err = os.MkdirTemp("", "dittofs-webhook-manifests-")
		if server.err != nil {
			return
		}
		server.path = filepath.Join(server.dir, "dittofs-webhook")
		args := append([]string{"build"}, gb.flags...)
		args = append(append(args, "-o", server.path), gb.pkgs...)
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot
		// As in the image build: no workspace, the Dockerfile's environment last.
		cmd.Env = append(append(os.Environ(), "GOWORK=off"), gb.env...)
		out, err := cmd.CombinedOutput()
		server.log = fmt.Sprintf("%s %s\n%s", strings.Join(gb.env, " "), strings.Join(cmd.Args, " "), out)
		if err != nil {
			server.err = fmt.Errorf("%v", err)
		}
	})
	if server.err != nil {
		t.Fatalf("build as the Dockerfile does: %v\n%s", server.err, server.log)
	}
	return server.path
}

func TestStaticBinary(t *testing.T) {
	bin := buildServer(t)
	t.Logf("built with: %s", server.log)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("not an ELF binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it needs a dynamic loader, which distroless/static lacks", p.Type)
		}
	}
	for _, s := range []string{".interp", ".dynamic"} {
		if f.Section(s) != nil {
			t.Errorf("the binary has a %s section: it is dynamically linked", s)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary imports shared libraries %q", libs)
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("read build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	expect(t, "build setting CGO_ENABLED", settings["CGO_ENABLED"], "0")
	expect(t, "build setting -trimpath", settings["-trimpath"], "true")

	if runtime.GOOS != "linux" {
		t.Skipf("cannot run a linux binary on %s", runtime.GOOS)
	}
	t.Run("version is stamped by -ldflags -X", func(t *testing.T) {
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("dittofs-webhook version: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), testVersion) {
			t.Errorf("dittofs-webhook version printed %q, not the version %s the Dockerfile stamps into %s", out, testVersion, versionVar)
		}
	})
}

// TestDeploymentFlagsExist asks the real binary for its serve flags: every
// flag the Deployment passes must be one of them.
func TestDeploymentFlagsExist(t *testing.T) {
	bin := buildServer(t)
	if runtime.GOOS != "linux" {
		t.Skipf("cannot run a linux binary on %s", runtime.GOOS)
	}
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput() // exit status varies with the flag library
	in := loadInstall(t, render(t, "deploy/default"))
	for _, a := range in.container.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `(\s|=|$)`).Match(out) {
			t.Errorf("the Deployment passes --%s, which `dittofs-webhook serve --help` does not list:\n%s", name, out)
		}
	}
}

// TestDockerignore checks that the build context keeps every file the
// binary's build reads.
func TestDockerignore(t *testing.T) {
	patterns := readDockerignore(t)
	files := []string{"go.mod", "go.sum"}
	if serverPackageExists() {
		cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./"+serverPkgDir)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
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
	}
	for _, f := range files {
		if p := dockerignored(patterns, f); p != "" {
			t.Errorf(".dockerignore pattern %q leaves %s, which the build reads, out of the context", p, f)
		}
	}
	for _, f := range []string{".git/HEAD", "tests/manifests/go.mod", "deploy/default/kustomization.yaml"} {
		if dockerignored(patterns, f) == "" {
			t.Errorf(".dockerignore keeps %s in the build context", f)
		}
	}
}

func readDockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// dockerignored returns the pattern that excludes path (slash-separated,
// relative to the context), or "" when it stays in the context. Like Docker:
// the last matching pattern wins, "!" re-includes, a pattern matching a
// directory excludes what is under it, "**" matches any number of
// directories.
func dockerignored(patterns []string, path string) string {
	excludedBy := ""
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		pat := strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := regexp.MustCompile("^" + globToRegexp(pat) + "(/.*)?$")
		if re.MatchString(path) {
			if neg {
				excludedBy = ""
			} else {
				excludedBy = p
			}
		}
	}
	return excludedBy
}

func globToRegexp(g string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch c := g[i]; {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}
