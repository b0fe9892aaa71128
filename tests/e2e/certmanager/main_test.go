package certmanager

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

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dittofs/dittofs-webhook/tests/e2ekit"
)

// env is the environment TestMain sets up; tests only read it.
var env harness

type harness struct {
	repoRoot   string
	artifacts  string // logs, kubeconfig, the volume; kept when something failed
	kubectlBin string
	kubeDir    string // the control-plane binaries (tests/tools/build.sh)
	kubeconfig string
	cacheDir   string
	image      string // the dittofs-webhook image make image built (IMAGE)
	cmBin      string // tests/tools/certmanager

	testEnv *envtest.Environment
	apis    []*envtest.APIServer // more kube-apiservers on the same etcd
	client  kubernetes.Interface
	host    *testHost   // env.server's
	hosts   []*testHost // every test host made, host among them; the index is the slot
	others  []*process  // their containers
	cm      *process    // cert-manager's controllers and cainjector
	server  *process    // the dittofs-webhook container, in host's namespace
	pod     *podSpec    // what deploy/default's Deployment tells a kubelet
	volume  *secretVolume
	builds  time.Duration // building (or finding) the three programs
}

// stopping is set once the watchdog tears down: kubectl calls then block
// instead of reporting the dying apiserver as a test failure.
var stopping atomic.Bool

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e/certmanager: skipped in -short mode")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		// Network namespaces need root; CI and this project's machines run
		// tests as root. Not a skip: `make test` must not pass without it.
		fmt.Fprintln(os.Stderr, "e2e/certmanager: needs root (it creates a network namespace)")
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	return e2ekit.Main(m, e2ekit.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready:     func() string { return "programs " + env.builds.Round(time.Millisecond).String() },
		OnFailure: func() {
			for _, p := range []*process{env.server, env.cm} {
				p.printLogTail(os.Stderr, 40)
			}
		},
		Stopping: &stopping,
	})
}

func (h *harness) setUp() error {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		return err
	}
	h.repoRoot = root
	if h.artifacts, err = os.MkdirTemp("", "dittofs-webhook-e2e-certmanager-"); err != nil {
		return err
	}
	cleanStaleHosts()

	// The three programs build side by side (each is cached when built).
	t0 := time.Now()
	var kubeDir string
	errs := make(chan error, 3)
	go func() {
		var err error
		kubeDir, err = buildTool(root, "build.sh")
		errs <- err
	}()
	go func() {
		var err error
		h.cmBin, err = buildTool(root, "build-certmanager.sh")
		errs <- err
	}()
	go func() {
		// What users install: the image, not the host binary.
		h.image = os.Getenv("IMAGE")
		var err error
		if h.image == "" {
			err = fmt.Errorf("IMAGE is not set: make e2e-certmanager builds the image (make image) and sets it")
		} else if out, e := exec.Command("podman", "image", "exists", h.image).CombinedOutput(); e != nil {
			err = fmt.Errorf("podman image exists %s: %v %s (make image builds it)", h.image, e, out)
		}
		errs <- err
	}()
	for range 3 {
		if e := <-errs; e != nil {
			return e
		}
	}
	h.builds = time.Since(t0)
	h.kubeDir = kubeDir
	h.kubectlBin = filepath.Join(kubeDir, "kubectl")

	if h.host, err = newTestHost(os.Getpid(), 0); err != nil {
		return err
	}
	h.hosts = append(h.hosts, h.host)
	if err := h.host.checkLocal(); err != nil {
		return err
	}
	if err := h.startControlPlane(kubeDir); err != nil {
		return err
	}
	// cert-manager's CRDs, from its Go module, before its controllers start.
	cmDir, err := goModDir(certManagerModule)
	if err != nil {
		return err
	}
	crds := filepath.Join(cmDir, "deploy", "crds")
	if r := runKubectl("", "apply", "--server-side", "-f", crds); !r.ok() {
		return fmt.Errorf("installing cert-manager's CRDs: %s", r)
	}
	if r := runKubectl("", "wait", "--for=condition=Established", "--timeout=60s", "-f", crds); !r.ok() {
		return fmt.Errorf("cert-manager's CRDs: %s", r)
	}
	if h.cm, err = h.startCertManager("cert-manager.log"); err != nil {
		return err
	}
	// Before anything of the install exists: the webhook's Service resolves
	// to the test host only, so no admission call can leave this machine.
	return h.routeServiceToTestHost()
}

// startCertManager runs tests/tools/certmanager with extra flags.
func (h *harness) startCertManager(log string, flags ...string) (*process, error) {
	args := append([]string{"--kubeconfig", h.kubeconfig, "-v", "2"}, flags...)
	return startProcess(filepath.Join(h.artifacts, log), exec.Command(h.cmBin, args...))
}

// restartCertManager stops cert-manager and starts it again with flags, as
// an upgrade or a configuration change of cert-manager would.
func (h *harness) restartCertManager(t *testing.T, flags ...string) {
	t.Helper()
	if err := h.cm.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.cm, err = h.startCertManager("cert-manager-2.log", flags...); err != nil {
		t.Fatal(err)
	}
	t.Logf("cert-manager restarted with %q", flags)
}

// buildTool runs tests/tools/NAME, which builds what is missing and prints
// where it is (the last line).
func buildTool(root, name string) (string, error) {
	t0 := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "tests", "tools", name))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tests/tools/%s: %w", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fmt.Printf("e2e: tests/tools/%s: %s (%s)\n", name, lines[len(lines)-1], time.Since(t0).Round(time.Millisecond))
	return lines[len(lines)-1], nil
}

func (h *harness) startControlPlane(assets string) error {
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
		BinaryAssetsDirectory:    assets,
		UseExistingCluster:       &useExisting,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := &envtest.APIServer{Out: apiLog, Err: apiLog}
	configureAPIServer(api)
	h.testEnv.ControlPlane.APIServer = api
	h.testEnv.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}
	cfg, err := h.testEnv.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver (logs in %s): %w", h.artifacts, err)
	}
	if h.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	h.cacheDir = filepath.Join(h.artifacts, "kube-cache")
	h.kubeconfig, err = h.writeAdminKubeconfig(&h.testEnv.ControlPlane, "kubeconfig")
	return err
}

// configureAPIServer sets the flags every kube-apiserver of the test has.
func configureAPIServer(api *envtest.APIServer) {
	// Service references (webhooks, APIServices) are resolved through the
	// Service's EndpointSlices, as in a cluster where the apiserver cannot
	// reach ClusterIPs. Without it the apiserver dials the ClusterIP, an
	// address that is routed off this machine: the shipped webhook
	// configurations must never reach an apiserver without this flag.
	api.Configure().Set("enable-aggregator-routing", "true")
	// No garbage collector runs (no kube-controller-manager): the apiserver
	// then deletes dependents' owners at once instead of leaving them
	// waiting on an orphan finalizer.
	api.Configure().Set("enable-garbage-collector", "false")
}

// writeAdminKubeconfig writes, as file in the artifacts, a kubeconfig of the
// e2e admin (system:masters) on cp's kube-apiserver and returns its path.
func (h *harness) writeAdminKubeconfig(cp *envtest.ControlPlane, file string) (string, error) {
	user, err := cp.AddUser(envtest.User{Name: "e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(h.artifacts, file)
	return path, os.WriteFile(path, kubeconfig, 0o600)
}

// startAPIServer starts one more kube-apiserver on the test's etcd, as a
// cluster with several apiservers runs them, with the test's flags and then
// flags, and returns a kubeconfig of the admin on it. The harness stops it.
func (h *harness) startAPIServer(name string, flags map[string]string) (string, error) {
	log, err := os.Create(filepath.Join(h.artifacts, name+".log"))
	if err != nil {
		return "", err
	}
	api := &envtest.APIServer{
		Path:         filepath.Join(h.kubeDir, "kube-apiserver"),
		EtcdURL:      h.testEnv.ControlPlane.Etcd.URL,
		StartTimeout: 2 * time.Minute,
		StopTimeout:  30 * time.Second,
		Out:          log,
		Err:          log,
	}
	configureAPIServer(api)
	for k, v := range flags {
		api.Configure().Set(k, v)
	}
	if err := api.Start(); err != nil {
		return "", fmt.Errorf("starting %s (log %s): %w", name, log.Name(), err)
	}
	h.apis = append(h.apis, api)
	return h.writeAdminKubeconfig(&envtest.ControlPlane{APIServer: api}, name+".kubeconfig")
}

// stop stops everything that runs, in the reverse order of start; the
// network namespace goes last and always.
func (h *harness) stop() error {
	var errs []error
	if h.volume != nil {
		h.volume.stop()
	}
	for _, p := range append(h.others, h.server) {
		if err := p.stop(30 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("dittofs-webhook: %w", err))
		}
	}
	if h.cm != nil {
		if err := h.cm.stop(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("cert-manager: %w", err))
		}
	}
	for _, api := range h.apis {
		if err := api.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping a second kube-apiserver: %w", err))
		}
	}
	if h.testEnv != nil {
		if err := h.testEnv.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
		}
	}
	for _, host := range h.hosts {
		if err := host.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
