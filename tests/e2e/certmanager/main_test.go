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
	artifacts  string // logs, kubeconfig, the overlay; kept when something failed
	kubectlBin string
	kubeDir    string // the control-plane binaries (tests/tools/build.sh)
	kubeconfig string
	cacheDir   string
	image      string // the dittofs-webhook image make image built (IMAGE), as the node knows it
	imageID    string // its ID in podman's store
	cmBin      string // tests/tools/certmanager

	testEnv *envtest.Environment
	apis    []*envtest.APIServer // more kube-apiservers on the same etcd
	client  kubernetes.Interface
	kcm     *e2ekit.Process
	node    *e2ekit.Node
	cm      *e2ekit.Process // cert-manager's controllers and cainjector
	builds  time.Duration   // building (or finding) the programs and images
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
		// The node (containerd, kubelet, CNI) needs root; CI and this
		// project's machines run tests as root. Not a skip: `make test` must
		// not pass without it.
		fmt.Fprintln(os.Stderr, "e2e/certmanager: needs root (it runs a kubelet and containerd)")
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	return e2ekit.Main(m, e2ekit.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready:     func() string { return "programs and images " + env.builds.Round(time.Millisecond).String() },
		OnFailure: func() {
			for _, p := range []*e2ekit.Process{env.cm, env.kcm} {
				p.PrintLogTail(os.Stderr, 40)
			}
			if r := runKubectl("", "get", "pods", "-A", "-o", "wide"); r.ok() {
				fmt.Fprintf(os.Stderr, "--- pods\n%s", r.stdout)
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
	// What users install: the image make image built, not the host binary.
	h.image = os.Getenv("IMAGE")
	if h.image == "" || strings.HasSuffix(h.image, ":latest") {
		// :latest would make the kubelet pull (imagePullPolicy Always).
		return fmt.Errorf("IMAGE is %q: make e2e-node builds the image (make image) and sets it to a version tag", h.image)
	}
	out, err := exec.Command("podman", "image", "inspect", "--format", "{{.Id}}", h.image).Output()
	if err != nil {
		return fmt.Errorf("podman image inspect %s: %v (make image builds it)", h.image, err)
	}
	h.imageID = "sha256:" + strings.TrimSpace(string(out))
	if !strings.Contains(h.image, "/") {
		h.image = "localhost/" + h.image // the name podman gives it, and its archive keeps
	}

	// The programs build side by side (each is cached when built).
	t0 := time.Now()
	tools := map[string]*string{"build.sh": &h.kubeDir, "build-certmanager.sh": &h.cmBin, "build-containerd.sh": new(string), "node-images.sh": new(string)}
	errs := make(chan error, len(tools))
	for name, out := range tools {
		go func() {
			var err error
			*out, err = buildTool(root, name)
			errs <- err
		}()
	}
	for range tools {
		if e := <-errs; e != nil {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return err
	}
	h.builds = time.Since(t0)
	h.kubectlBin = filepath.Join(h.kubeDir, "kubectl")

	if err := h.startControlPlane(h.kubeDir); err != nil {
		return err
	}
	if err := h.startControllerManager(); err != nil {
		return err
	}
	images := *tools["node-images.sh"]
	if h.node, err = e2ekit.StartNode(e2ekit.NodeConfig{
		KubeBin:       h.kubeDir,
		ContainerdBin: *tools["build-containerd.sh"],
		Kubeconfig:    h.kubeconfig,
		SandboxImage:  sandboxImage,
		Images:        []string{filepath.Join(images, "pause.tar"), filepath.Join(images, "busybox.tar"), filepath.Join(root, "bin", "dittofs-webhook-image.tar")},
		Logs:          h.artifacts,
	}, h.kubectl(h.kubeconfig)); err != nil {
		return err
	}
	// The archive holds whatever make image built last.
	if out, err := h.node.Ctr("images", "list", "--quiet", "name=="+h.image); err != nil || strings.TrimSpace(out) == "" {
		return fmt.Errorf("bin/dittofs-webhook-image.tar does not hold %s (make image IMAGE=%s): %v", h.image, os.Getenv("IMAGE"), err)
	}
	if r := runKubectl(h.storage(), "apply", "-f", "-"); !r.ok() {
		return fmt.Errorf("the node's storage: %s", r)
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
	return h.install()
}

// sandboxImage is the pause image tests/tools/node-images.sh builds.
const sandboxImage = "localhost/dittofs-e2e/pause:v1.37.2"

// busyboxImage is the static busybox standing in for DittoFS.
const busyboxImage = "localhost/dittofs-e2e/busybox:1.35.0"

// storage is the node's storage: a default StorageClass "fast" (the
// README's) with no provisioner, and static hostPath PersistentVolumes of it
// under the node's folder, which the persistentvolume-binder binds.
func (h *harness) storage() string {
	var b strings.Builder
	b.WriteString(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
`)
	for i := range 10 {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-%d}
spec:
  storageClassName: fast
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %s, type: DirectoryOrCreate}
`, i, filepath.Join(h.node.Dir, "pv", fmt.Sprint(i)))
	}
	return b.String()
}

// controllers are the kube-controller-manager controllers the install and
// the StatefulSets need: Deployments and their ReplicaSets, StatefulSets,
// the Service's EndpointSlices (which the kube-apiserver resolves the
// webhooks through), binding and protecting claims and volumes, the garbage
// collector, the node's lifecycle (its not-ready taint), and the namespaces'
// default ServiceAccount.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller", "endpointslice-controller",
	"persistentvolume-binder-controller", "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller",
	"garbage-collector-controller", "node-lifecycle-controller", "serviceaccount-controller",
}

func (h *harness) startControllerManager() error {
	port, err := e2ekit.FreePort()
	if err != nil {
		return err
	}
	h.kcm, err = e2ekit.StartProcess(filepath.Join(h.artifacts, "kube-controller-manager.log"), exec.Command(filepath.Join(h.kubeDir, "kube-controller-manager"),
		"--kubeconfig", h.kubeconfig, "--authentication-kubeconfig", h.kubeconfig, "--authorization-kubeconfig", h.kubeconfig,
		"--controllers", strings.Join(controllers, ","), "--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir", filepath.Join(h.artifacts, "kube-controller-manager"), "-v=2"))
	return err
}

// startCertManager runs tests/tools/certmanager with extra flags.
func (h *harness) startCertManager(log string, flags ...string) (*e2ekit.Process, error) {
	args := append([]string{"--kubeconfig", h.kubeconfig, "-v", "2"}, flags...)
	return e2ekit.StartProcess(filepath.Join(h.artifacts, log), exec.Command(h.cmBin, args...))
}

// restartCertManager stops cert-manager and starts it again with flags, as
// an upgrade or a configuration change of cert-manager would.
func (h *harness) restartCertManager(t *testing.T, flags ...string) {
	t.Helper()
	if err := h.cm.Stop(10 * time.Second); err != nil {
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
	// Service's EndpointSlices to the pods' addresses on the node's bridge,
	// as in a cluster where the apiserver cannot reach ClusterIPs: there is
	// no kube-proxy here, and a ClusterIP would be routed off this machine.
	api.Configure().Set("enable-aggregator-routing", "true")
	// ClusterIPs (never dialled) from the benchmarking range, not envtest's
	// 10.0.0.0/24; no kubernetes Service endpoint with this machine's address.
	api.Configure().Set("service-cluster-ip-range", "198.19.255.0/24")
	api.Configure().Set("endpoint-reconciler-type", "none")
	// Logs and exec reach the kubelet at the node's InternalIP (198.19.N.1),
	// never through a DNS lookup of its name.
	api.Configure().Set("kubelet-preferred-address-types", "InternalIP")
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

// stop stops everything that runs, in the reverse order of start. The pods
// go first, while the kubelet still runs to take them down (volumes
// unmounted, networks released): the controllers stop, then every pod is
// deleted at once.
func (h *harness) stop() error {
	var errs []error
	if err := h.kcm.Terminate(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if h.node != nil {
		// Not runKubectl: it blocks once the watchdog tears down.
		if _, stderr, err := h.kubectl(h.kubeconfig).Run("", "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=60s"); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: deleting the pods before the node stops: %v %s\n", err, stderr)
		}
		if err := h.node.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("node: %w", err))
		}
	}
	if err := h.cm.Stop(10 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("cert-manager: %w", err))
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
	return errors.Join(errs...)
}
