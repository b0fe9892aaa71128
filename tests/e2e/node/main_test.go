package node

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// env is the environment TestMain sets up; tests only read it.
var env harness

type harness struct {
	repoRoot   string
	artifacts  string // logs, kubeconfig, the overlay; kept when something failed
	kubeDir    string // the control-plane binaries (tests/tools/build.sh)
	image      string // the dittofs-webhook image make image built (IMAGE), as the node knows it
	imageID    string // its ID in podman's store
	cmBin      string // tests/tools/certmanager
	webhookBin string // the dittofs-webhook command, as a user runs `dittofs-webhook eval`

	*framework.ControlPlane
	node *framework.Node
	cm   *framework.Process // cert-manager's controllers and cainjector
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e/node: skipped in -short mode")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		// Not a skip: `make test` must not pass without the node (containerd, kubelet, CNI need root).
		fmt.Fprintln(os.Stderr, "e2e/node: needs root (it runs a kubelet and containerd)")
		os.Exit(1)
	}
	os.Exit(framework.Main(m, framework.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready:     func() string { return "the install runs on node " + env.node.Name },
		OnFailure: func() {
			env.cm.PrintLogTail(os.Stderr, 40)
			if env.ControlPlane != nil {
				env.ControllerManager.PrintLogTail(os.Stderr, 40)
			}
			if r := runKubectl("", "get", "pods", "-A", "-o", "wide"); r.OK() {
				fmt.Fprintf(os.Stderr, "--- pods\n%s", r.Stdout)
			}
		},
	}))
}

func (h *harness) setUp() error {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		return err
	}
	h.repoRoot = root
	if h.artifacts, err = framework.WorkDir("dittofs-webhook-e2e-node-"); err != nil {
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
	h.webhookBin = filepath.Join(h.artifacts, "bin", "dittofs-webhook")
	goBuild := exec.Command("go", "build", "-o", h.webhookBin, "./cmd/dittofs-webhook")
	goBuild.Dir = root
	if out, err := goBuild.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/dittofs-webhook: %v\n%s", err, out)
	}
	tools := map[string]*string{"build.sh": &h.kubeDir, "build-certmanager.sh": &h.cmBin,
		"build-containerd.sh": new(string), "node-images.sh": new(string)}
	errs := make(chan error, len(tools))
	for name, out := range tools {
		go func() {
			var err error
			*out, err = framework.BuildTool(root, name)
			errs <- err
		}()
	}
	for range tools {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return err
	}
	if h.ControlPlane, err = framework.StartControlPlane(framework.ControlPlaneOptions{
		RepoRoot: root, Dir: h.artifacts, Bin: h.kubeDir, APIServerFlags: apiServerFlags, Controllers: controllers,
	}); err != nil {
		return err
	}
	images := *tools["node-images.sh"]
	if h.node, err = framework.StartNode(framework.NodeConfig{
		KubeBin: h.kubeDir, ContainerdBin: *tools["build-containerd.sh"], Kubeconfig: h.Kubeconfig,
		SandboxImage: sandboxImage, Logs: h.artifacts, Images: []string{filepath.Join(images, "pause.tar"),
			filepath.Join(images, "busybox.tar"), filepath.Join(root, "bin", "dittofs-webhook-image.tar")},
	}, h.Kubectl); err != nil {
		return err
	}
	// The archive holds whatever make image built last.
	if out, err := h.node.Ctr("images", "list", "--quiet", "name=="+h.image); err != nil || strings.TrimSpace(out) == "" {
		return fmt.Errorf("bin/dittofs-webhook-image.tar does not hold %s (make image IMAGE=%s): %v", h.image, os.Getenv("IMAGE"), err)
	}
	if r := runKubectl(h.storage(), "apply", "-f", "-"); !r.OK() {
		return fmt.Errorf("the node's storage: %s", r)
	}
	// cert-manager's CRDs, from its Go module (the release of tests/tools/certmanager), before its controllers.
	cmDir, err := framework.GoModDir(certManagerModule)
	if err != nil {
		return err
	}
	crds := filepath.Join(cmDir, "deploy", "crds")
	if r := runKubectl("", "apply", "--server-side", "-f", crds); !r.OK() {
		return fmt.Errorf("installing cert-manager's CRDs: %s", r)
	}
	if r := runKubectl("", "wait", "--for=condition=Established", "--timeout=60s", "-f", crds); !r.OK() {
		return fmt.Errorf("cert-manager's CRDs: %s", r)
	}
	if h.cm, err = h.startCertManager("cert-manager.log"); err != nil {
		return err
	}
	return h.install()
}

// The pause image and the static busybox standing in for DittoFS, as tests/tools/node-images.sh builds them.
const (
	sandboxImage = "localhost/dittofs-e2e/pause:v1.37.2"
	busyboxImage = "localhost/dittofs-e2e/busybox:1.35.0"
)

// storage is the node's storage: the README's default StorageClass "fast", with no provisioner, and static hostPath
// PersistentVolumes under the node's folder, which the persistentvolume-binder binds.
func (h *harness) storage() string {
	b := strings.Builder{}
	b.WriteString(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
`)
	// A volume bound once stays Released (Retain): one per claim of the run.
	for i := range 32 {
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

// controllers are the kube-controller-manager controllers the install and the StatefulSets need; the
// kube-apiserver resolves the webhooks through the Service's EndpointSlices, and the node's lifecycle controller
// removes its not-ready taint.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller", "endpointslice-controller",
	"persistentvolume-binder-controller", "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller",
	"garbage-collector-controller", "node-lifecycle-controller", "serviceaccount-controller",
}

// startCertManager runs tests/tools/certmanager with extra flags.
func (h *harness) startCertManager(log string, flags ...string) (*framework.Process, error) {
	args := append([]string{"--kubeconfig", h.Kubeconfig, "-v", "2"}, flags...)
	return framework.StartProcess(filepath.Join(h.artifacts, log), exec.Command(h.cmBin, args...))
}

// restartCertManager restarts cert-manager with flags, as an upgrade or a configuration change of it would.
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

// apiServerFlags are the flags every kube-apiserver of the test has.
var apiServerFlags = map[string]string{
	// Service references (webhooks, APIServices) resolve through the EndpointSlices to the pods' addresses on the
	// node's bridge: there is no kube-proxy, and a ClusterIP would be routed off this machine.
	"enable-aggregator-routing": "true",
	// ClusterIPs (never dialled) from the benchmarking range, not envtest's 10.0.0.0/24; no kubernetes Service
	// endpoint with this machine's address.
	"service-cluster-ip-range": "198.19.255.0/24",
	"endpoint-reconciler-type": "none",
	// Logs and exec reach the kubelet at the node's InternalIP, never through a DNS lookup of its name.
	"kubelet-preferred-address-types": "InternalIP",
}

// stop stops everything in the reverse order of start. The pods go first, while the kubelet still runs to take
// them down (volumes unmounted, networks released): the controllers stop, then every pod is deleted at once.
func (h *harness) stop() error {
	errs := []error{h.ControlPlane.StopControllers()}
	if h.node != nil {
		// Not Run: it blocks once the watchdog tears down.
		if r := h.Kubectl.RunQuietly("", "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=60s"); !r.OK() {
			fmt.Fprintf(os.Stderr, "e2e: deleting the pods before the node stops: %s\n", r)
		}
		if err := h.node.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("node: %w", err))
		}
	}
	if err := h.cm.Stop(10 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("cert-manager: %w", err))
	}
	return errors.Join(append(errs, h.ControlPlane.Stop())...)
}
