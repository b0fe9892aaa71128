package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// env is the environment TestMain sets up before the tests and tears down after; tests only read it.
var env harness

type harness struct {
	repoRoot  string // the dittofs-webhook repository
	artifacts string // logs, binaries, certificates; kept when something failed
	*framework.ControlPlane
	tlsDir string // the server's certificate, laid out like a mounted Secret
	caPEM  []byte // the development CA: the caBundle of the webhooks
	server *server
	// webhooks are deploy/default's webhook configurations with only
	// clientConfig replaced, as YAML for `kubectl create -f -`.
	webhooks []byte
}

// controllers make a StatefulSet's pods and PVCs and apply its retention
// policy, delete (or orphan) what an owner's deletion leaves, and let a
// deleted PVC go once no pod uses it. No others: without the ServiceAccount
// admission plugin pods need no ServiceAccount.
var controllers = []string{
	"statefulset-controller", "garbage-collector-controller", "persistentvolumeclaim-protection-controller",
}

const (
	probeNamespace    = "e2e-probe"
	serverStopTimeout = 30 * time.Second // its --shutdown-timeout is 25 s
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode (needs etcd, kube-apiserver and a few minutes)")
		os.Exit(0)
	}
	os.Exit(framework.Main(m, framework.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready: func() string {
			return fmt.Sprintf("kube-apiserver %s, server on %s", env.Config.Host, env.server.listen)
		},
		OnFailure: func() { env.server.proc.PrintLogTail(os.Stderr, 60) },
	}))
}

func (h *harness) setUp() error {
	ctrllog.SetLogger(funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, "envtest:", prefix, args)
	}, funcr.Options{}))
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	h.repoRoot = root
	if h.artifacts, err = framework.WorkDir("dittofs-webhook-e2e-"); err != nil {
		return err
	}
	assets, err := framework.BuildTool(root, "build.sh") // etcd, kube-apiserver, kube-controller-manager, kubectl
	if err != nil {
		return err
	}
	// The server compiles while etcd and kube-apiserver start.
	built := make(chan error, 1)
	go func() { built <- h.buildServer() }()
	h.ControlPlane, err = framework.StartControlPlane(framework.ControlPlaneOptions{
		RepoRoot: root, Dir: h.artifacts, Bin: assets, Controllers: controllers,
	})
	if err := errors.Join(<-built, err); err != nil {
		return err
	}
	if err := h.makeCertificates(); err != nil {
		return err
	}
	if h.server, err = h.startServer(); err != nil {
		return err
	}
	return h.installWebhooks()
}

// buildServer builds the real dittofs-webhook and dev-certs binaries.
func (h *harness) buildServer() error {
	cmd := exec.Command("go", "build", "-o", h.bin("")+string(filepath.Separator),
		"./cmd/dittofs-webhook", "./certs/dev-certs")
	cmd.Dir = h.repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/dittofs-webhook ./certs/dev-certs: %w\n%s", err, out)
	}
	return nil
}

// bin is where buildServer puts the binary name.
func (h *harness) bin(name string) string { return filepath.Join(h.artifacts, "bin", name) }

// stop stops the controllers, the server (checking that SIGTERM makes it
// exit 0) and the control plane. Safe on a partly set-up harness.
func (h *harness) stop() error {
	err := h.ControlPlane.StopControllers() // else they only log the apiserver's going
	if h.server != nil {
		err = errors.Join(err, h.server.stop(serverStopTimeout))
	}
	return errors.Join(err, h.ControlPlane.Stop())
}
