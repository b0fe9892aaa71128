package manifests

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

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

func podman(t *testing.T, stdin io.Reader, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("podman", args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestImage checks the built image, not the Dockerfile's text (SPEC §6): its
// config as a kubelet reads it, a file system with no shell, a static
// binary, and `version` printing the build's version.
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
	if err := json.Unmarshal(podman(t, nil, "image", "inspect", img), &inspect); err != nil || len(inspect) != 1 {
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
	for _, p := range []string{"9443/tcp", "8080/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("port %s is not exposed (%v)", p, cfg.ExposedPorts)
		}
	}
	_, tag, _ := strings.Cut(img, ":")
	if cfg.Labels["org.opencontainers.image.title"] != "dittofs-webhook" || cfg.Labels["org.opencontainers.image.version"] != tag {
		t.Errorf("labels %v: want title dittofs-webhook and version %q", cfg.Labels, tag)
	}

	// `version` through the entrypoint, as `podman run IMAGE version`.
	if out := string(podman(t, nil, "run", "--rm", "--read-only", "--cap-drop=all", img, "version")); !strings.HasPrefix(out, "dittofs-webhook "+tag+" ") {
		t.Errorf("podman run %s version printed %q, want the build's version %q", img, out, tag)
	}

	// The file system: no shell, and a static binary.
	ctr := strings.TrimSpace(string(podman(t, nil, "create", img)))
	defer podman(t, nil, "rm", ctr)
	fs := tar.NewReader(bytes.NewReader(podman(t, nil, "export", ctr)))
	var binary []byte
	for {
		h, err := fs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimPrefix(path.Clean(h.Name), "/")
		switch base := path.Base(name); {
		case base == "sh" || base == "bash" || base == "busybox" || base == "ash" || base == "dash":
			t.Errorf("the image has a shell: %s", name)
		case name == "/dittofs-webhook":
			if binary, err = io.ReadAll(fs); err != nil {
				t.Fatal(err)
			}
		}
	}
	if binary == nil {
		t.Fatal("no /dittofs-webhook in the image")
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("/dittofs-webhook is not ELF: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/dittofs-webhook has a program interpreter: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("/dittofs-webhook needs shared libraries %v", libs)
	}
}
