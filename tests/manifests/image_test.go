package manifests

import (
	"archive/tar"
	"bytes"
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
	"sync"
	"testing"
)

// serverPkg is the main package the image's binary is built from.
const serverPkg = "github.com/dittofs/dittofs-webhook/cmd/dittofs-webhook"

// imageUnderTest is the image `make image` built (IMAGE, set by make
// manifests); podman reads CONTAINERS_CONF (tests/tools/containers.conf).
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

// stderrOf is what a failed exec.Cmd.Output printed on stderr.
func stderrOf(err error) []byte {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.Stderr
	}
	return nil
}

// imageFS is the image's file system, read once per test binary: the paths
// in it, and its /dittofs-webhook copied out, so that every test runs the
// binary the image ships.
var imageFS struct {
	once  sync.Once
	dir   string   // holds the binary; removed by TestMain
	files []string // absolute paths in the image
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imageFS.dir != "" {
		os.RemoveAll(imageFS.dir)
	}
	os.Exit(code)
}

// readImageFS returns the image's file paths and the path of its binary,
// copied out.
func readImageFS(t *testing.T) (bin string, files []string) {
	t.Helper()
	img := imageUnderTest(t)
	imageFS.once.Do(func() { imageFS.err = exportImage(img) })
	if imageFS.err != nil {
		t.Fatalf("reading the file system of %s: %v", img, imageFS.err)
	}
	bin = filepath.Join(imageFS.dir, "dittofs-webhook")
	if !slices.Contains(imageFS.files, "/dittofs-webhook") {
		t.Fatalf("no /dittofs-webhook in %s", img)
	}
	return bin, imageFS.files
}

// exportImage streams `podman export` of a container of img (never started)
// into imageFS.
func exportImage(img string) error {
	dir, err := os.MkdirTemp("", "dittofs-webhook-image-")
	if err != nil {
		return err
	}
	imageFS.dir = dir
	out, err := exec.Command("podman", "create", img).Output()
	if err != nil {
		return fmt.Errorf("podman create: %v\n%s", err, stderrOf(err))
	}
	ctr := strings.TrimSpace(string(out))
	defer exec.Command("podman", "rm", ctr).Run()
	cmd := exec.Command("podman", "export", ctr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	readErr := func() error {
		fs := tar.NewReader(stdout)
		for {
			h, err := fs.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			name := "/" + strings.TrimPrefix(path.Clean(h.Name), "/")
			imageFS.files = append(imageFS.files, name)
			if name == "/dittofs-webhook" {
				if err := copyFile(filepath.Join(dir, "dittofs-webhook"), fs); err != nil {
					return err
				}
			}
		}
	}()
	io.Copy(io.Discard, stdout) // let podman finish writing on a read error
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("podman export: %v\n%s", err, stderr.String())
	}
	return readErr
}

// copyFile writes what r holds to a new executable file name.
func copyFile(name string, r io.Reader) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}

// serverBinary returns the image's binary, to run on this machine.
func serverBinary(t *testing.T) string {
	t.Helper()
	bin, _ := readImageFS(t)
	if runtime.GOOS != "linux" {
		t.Skipf("cannot run a linux binary on %s", runtime.GOOS)
	}
	return bin
}

// TestImage checks the built image, not the Dockerfile's text (SPEC §6): its
// config as a kubelet reads it, a file system with no shell, a static
// binary built as the Dockerfile says, and `version` printing the build's
// version.
func TestImage(t *testing.T) {
	img := imageUnderTest(t)
	var inspect []struct {
		ID     string `json:"Id"`
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		}
	}
	if err := json.Unmarshal(podman(t, "image", "inspect", img), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect %s: %v", img, err)
	}
	cfg := inspect[0].Config
	t.Logf("image %s: id %s, user %s, entrypoint %v, ports %v", img, inspect[0].ID, cfg.User, cfg.Entrypoint, cfg.ExposedPorts)
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (numeric, so runAsNonRoot can verify it)", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/dittofs-webhook"}) || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %v cmd %v, want [/dittofs-webhook] [serve]", cfg.Entrypoint, cfg.Cmd)
	}
	_, tag, _ := strings.Cut(img, ":")
	if cfg.Labels["org.opencontainers.image.title"] != "dittofs-webhook" || cfg.Labels["org.opencontainers.image.version"] != tag {
		t.Errorf("labels %v: want title dittofs-webhook and version %q", cfg.Labels, tag)
	}

	t.Run("the Deployment runs it as its user, with its entrypoint, on its ports", func(t *testing.T) {
		in := loadInstall(t, render(t, "deploy/default"))
		sc := in.container.SecurityContext
		expect(t, "container runAsUser:runAsGroup", fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup), cfg.User)
		if in.container.Command != nil {
			t.Errorf("the Deployment overrides the image ENTRYPOINT with %q", in.container.Command)
		}
		for _, flag := range []string{"listen", "metrics-listen"} {
			p := fmt.Sprintf("%d/tcp", in.flagPort(t, flag))
			if _, ok := cfg.ExposedPorts[p]; !ok {
				t.Errorf("the image exposes %v, not the --%s port %s", cfg.ExposedPorts, flag, p)
			}
		}
	})

	// `version` through the entrypoint, as `podman run IMAGE version`: the
	// Dockerfile's -ldflags -X stamps it (-trimpath keeps -ldflags out of
	// the build info).
	if out := string(podman(t, "run", "--rm", "--network=none", "--read-only", "--cap-drop=all", img, "version")); !strings.HasPrefix(out, "dittofs-webhook "+tag+" ") {
		t.Errorf("podman run %s version printed %q, want the build's version %q", img, out, tag)
	}

	bin, files := readImageFS(t)
	for _, name := range files {
		if slices.Contains([]string{"sh", "bash", "busybox", "ash", "dash"}, path.Base(name)) {
			t.Errorf("the image has a shell: %s", name)
		}
	}

	t.Run("static binary, built as the Dockerfile says", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("/dittofs-webhook is not ELF: %v", err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("/dittofs-webhook has a %v program header: it needs a dynamic loader, which distroless/static lacks", p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("/dittofs-webhook needs shared libraries %v", libs)
		}
		// -ldflags -s -w: no symbol table, no DWARF.
		var debug []string
		for _, s := range f.Sections {
			if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				debug = append(debug, s.Name)
			}
		}
		if len(debug) > 0 {
			t.Errorf("/dittofs-webhook has sections %q: not built with -ldflags \"-s -w\"", debug)
		}
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatalf("read build info: %v", err)
		}
		expect(t, "main package", info.Path, serverPkg)
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": runtime.GOARCH} {
			expect(t, "build setting "+k, settings[k], v)
		}
	})
}

// TestDeploymentFlagsExist asks the image's binary for its serve flags:
// every flag the Deployment passes must be one of them.
func TestDeploymentFlagsExist(t *testing.T) {
	bin := serverBinary(t)
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput() // exit status varies with the flag library
	in := loadInstall(t, render(t, "deploy/default"))
	for _, a := range in.container.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `(\s|=|$)`).Match(out) {
			t.Errorf("the Deployment passes --%s, which `dittofs-webhook serve --help` does not list:\n%s", name, out)
		}
	}
}
