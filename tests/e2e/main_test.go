package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

// env is the running environment every test uses. TestMain fills it before any
// test runs and tears it down after the last; tests only read it.
var env harness

type harness struct {
	repoRoot  string // the dittofs-webhook repository
	artifacts string // logs, binaries, certificates; kept when something failed

	assets     string // KUBEBUILDER_ASSETS: etcd, kube-apiserver, kube-controller-manager, kubectl
	kubectlBin string
	kubeconfig string // an admin user (system:masters), for kubectl
	cacheDir   string // kubectl's discovery cache
	restConfig *rest.Config
	testEnv    *envtest.Environment

	controllerManager *controllerManager

	devCertsBin string
	tlsDir      string // the server's certificate, laid out like a mounted Secret
	caPEM       []byte // the development CA: the caBundle of the webhooks

	server *server

	// webhooks is what the harness installed: the Mutating and Validating
	// WebhookConfigurations of deploy/default with only clientConfig
	// replaced, as a v1 List (JSON) for `kubectl create -f -`.
	webhooks []byte
}

// stopping is set when the watchdog is tearing everything down on a signal
// or a timeout: from then on nothing talks to the dying apiserver (see
// haltIfStopping), so no test reports the teardown as its own failure.
var stopping atomic.Bool

// haltIfStopping blocks the calling goroutine for good once the watchdog is
// tearing down: the process is about to exit.
func haltIfStopping() {
	if stopping.Load() {
		select {}
	}
}

const (
	probeNamespace = "e2e-probe"
	// serverStopTimeout bounds the server's graceful shutdown (its
	// --shutdown-timeout is 25 s by default, but nothing is in flight then).
	serverStopTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode (needs etcd, kube-apiserver and a few minutes)")
		os.Exit(0)
	}
	os.Exit(run(m))
}

// run is TestMain's body. Ctrl-C, a SIGTERM, or `go test -timeout` running
// out would otherwise leave etcd, kube-apiserver and the server running:
// envtest starts them in their own process groups (e2ekit.Main stops them).
func run(m *testing.M) int {
	return e2ekit.Main(m, e2ekit.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready: func() string {
			return fmt.Sprintf("kube-apiserver %s, server on %s", env.restConfig.Host, env.server.listen)
		},
		OnFailure: func() { env.server.printLogTail(os.Stderr, 60) },
		Stopping:  &stopping,
	})
}

func (h *harness) setUp() error {
	ctrllog.SetLogger(funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, "envtest:", prefix, args)
	}, funcr.Options{}))

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "dittofs-webhook")); err != nil {
		return fmt.Errorf("the repository root should be two levels up from tests/e2e: %w", err)
	}
	h.repoRoot = root
	if dir := os.Getenv("E2E_ARTIFACTS"); dir != "" {
		h.artifacts = dir
		err = os.MkdirAll(dir, 0o755)
	} else {
		h.artifacts, err = os.MkdirTemp("", "dittofs-webhook-e2e-")
	}
	if err != nil {
		return err
	}

	if err := h.buildControlPlane(); err != nil {
		return err
	}
	// The server compiles while etcd and kube-apiserver start.
	built := make(chan error, 1)
	go func() { built <- h.buildServer() }()
	startErr := h.startControlPlane()
	if err := <-built; err != nil {
		return err
	}
	if startErr != nil {
		return startErr
	}
	if err := h.startControllerManager(); err != nil {
		return err
	}
	if err := h.makeCertificates(); err != nil {
		return err
	}
	if h.server, err = startServer(h.artifacts, filepath.Join(h.artifacts, "bin", "dittofs-webhook"), h.tlsDir); err != nil {
		return err
	}
	if err := h.installWebhooks(); err != nil {
		return err
	}
	return nil
}

// buildControlPlane runs tests/tools/build.sh, which builds etcd,
// kube-apiserver, kube-controller-manager and kubectl (of $KUBE_VERSION, the
// newest by default) from their Go modules once and prints the folder.
func (h *harness) buildControlPlane() error {
	t0 := time.Now()
	cmd := exec.Command("bash", filepath.Join(h.repoRoot, "tests", "tools", "build.sh"))
	cmd.Stderr = os.Stderr // a cold build takes minutes: show its progress
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tests/tools/build.sh: %w", err)
	}
	h.assets = strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(h.assets, '\n'); i >= 0 {
		h.assets = h.assets[i+1:]
	}
	h.kubectlBin = filepath.Join(h.assets, "kubectl")
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		if _, err := os.Stat(filepath.Join(h.assets, b)); err != nil {
			return fmt.Errorf("tests/tools/build.sh printed %q, which has no %s: %w", h.assets, b, err)
		}
	}
	fmt.Printf("e2e: control-plane binaries in %s (%s)\n", h.assets, time.Since(t0).Round(time.Millisecond))
	return nil
}

// buildServer builds the real dittofs-webhook and dev-certs binaries from the
// repository, as a user would.
func (h *harness) buildServer() error {
	t0 := time.Now()
	bin := filepath.Join(h.artifacts, "bin")
	cmd := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/dittofs-webhook", "./certs/dev-certs")
	cmd.Dir = h.repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/dittofs-webhook ./certs/dev-certs: %w\n%s", err, out)
	}
	h.devCertsBin = filepath.Join(bin, "dev-certs")
	fmt.Printf("e2e: built dittofs-webhook and dev-certs (%s)\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

func (h *harness) startControlPlane() error {
	t0 := time.Now()
	apiLog, err := os.Create(filepath.Join(h.artifacts, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	etcdLog, err := os.Create(filepath.Join(h.artifacts, "etcd.log"))
	if err != nil {
		return err
	}
	useExisting := false
	h.testEnv = &envtest.Environment{
		BinaryAssetsDirectory:    h.assets,
		UseExistingCluster:       &useExisting,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Garbage collection stays on (the default): kube-controller-manager's
	// garbage collector runs, and removes the "orphan" finalizer of
	// `kubectl delete --cascade=orphan` as on a real cluster.
	h.testEnv.ControlPlane.APIServer = &envtest.APIServer{Out: apiLog, Err: apiLog}
	h.testEnv.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}

	if h.restConfig, err = h.testEnv.Start(); err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver (logs in %s): %w", h.artifacts, err)
	}
	user, err := h.testEnv.AddUser(envtest.User{Name: "e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the e2e user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	h.kubeconfig = filepath.Join(h.artifacts, "kubeconfig")
	if err := os.WriteFile(h.kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	h.cacheDir = filepath.Join(h.artifacts, "kube-cache")
	fmt.Printf("e2e: etcd and kube-apiserver started (%s)\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

// stop stops the server (checking that SIGTERM makes it exit 0) and the
// control plane. Safe on a partly set-up harness.
func (h *harness) stop() error {
	var errs []error
	// The controllers go first: they would only log the apiserver's going.
	h.controllerManager.stop()
	if h.server != nil {
		if err := h.server.stop(serverStopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if h.testEnv != nil {
		if err := h.testEnv.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
		}
	}
	return errors.Join(errs...)
}
