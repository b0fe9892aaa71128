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
	repoRoot  string
	artifacts string // logs, kubeconfig, the overlay; kept when something failed
	kubeDir   string // the control-plane binaries (tests/tools/build.sh)
	image     string // the dittofs-webhook image make image built (IMAGE), as the node knows it
	imageID   string // its ID in podman's store
	cmBin     string // tests/tools/certmanager
	// webhookBin is the dittofs-webhook command built from the repository,
	// as a user runs `dittofs-webhook eval`.
	webhookBin string

	*framework.ControlPlane
	node   *framework.Node
	cm     *framework.Process // cert-manager's controllers and cainjector
	builds time.Duration      // building (or finding) the programs and images
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e/node: skipped in -short mode")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		// The node (containerd, kubelet, CNI) needs root; CI and this
		// project's machines run tests as root. Not a skip: `make test` must
		// not pass without it.
		fmt.Fprintln(os.Stderr, "e2e/node: needs root (it runs a kubelet and containerd)")
		os.Exit(1)
	}
	os.Exit(framework.Main(m, framework.Suite{
		SetUp:     env.setUp,
		Stop:      env.stop,
		Artifacts: func() string { return env.artifacts },
		Ready:     func() string { return "programs and images " + env.builds.Round(time.Millisecond).String() },
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
	t0 := time.Now()
	h.webhookBin = filepath.Join(h.artifacts, "bin", "dittofs-webhook")
	goBuild := exec.Command("go", "build", "-o", h.webhookBin, "./cmd/dittofs-webhook")
	goBuild.Dir = root
	if out, err := goBuild.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/dittofs-webhook: %v\n%s", err, out)
	}
	tools := map[string]*string{"build.sh": &h.kubeDir, "build-certmanager.sh": &h.cmBin, "build-containerd.sh": new(string), "node-images.sh": new(string)}
	errs := make(chan error, len(tools))
	for name, out := range tools {
		go func() {
			var err error
			*out, err = framework.BuildTool(root, name)
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
	if h.ControlPlane, err = framework.StartControlPlane(framework.ControlPlaneOptions{
		RepoRoot: root, Dir: h.artifacts, Bin: h.kubeDir, APIServerFlags: apiServerFlags, Controllers: controllers,
	}); err != nil {
		return err
	}
	images := *tools["node-images.sh"]
	if h.node, err = framework.StartNode(framework.NodeConfig{
		KubeBin:       h.kubeDir,
		ContainerdBin: *tools["build-containerd.sh"],
		Kubeconfig:    h.Kubeconfig,
		SandboxImage:  sandboxImage,
		Images:        []string{filepath.Join(images, "pause.tar"), filepath.Join(images, "busybox.tar"), filepath.Join(root, "bin", "dittofs-webhook-image.tar")},
		Logs:          h.artifacts,
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
	// cert-manager's CRDs, from its Go module, before its controllers start.
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

// sandboxImage is the pause image tests/tools/node-images.sh builds.
const sandboxImage = "localhost/dittofs-e2e/pause:v1.37.2"

// busyboxImage is the static busybox standing in for DittoFS.
const busyboxImage = "localhost/dittofs-e2e/busybox:1.35.0"

// storage is the node's storage: a default StorageClass "fast" (the
// README's) and a class "slow", with no provisioner, and static hostPath
// PersistentVolumes of each under the node's folder, which the
// persistentvolume-binder binds.
func (h *harness) storage() string {
	var b strings.Builder
	for _, class := range []string{"fast", "slow"} {
		fmt.Fprintf(&b, `---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: %s
  annotations: {storageclass.kubernetes.io/is-default-class: "%t"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
`, class, class == "fast")
	}
	// A volume bound once stays Released (Retain): one per claim of the run.
	for i := range 32 {
		class := "fast"
		if i%8 == 7 {
			class = "slow"
		}
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-%d}
spec:
  storageClassName: %s
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %s, type: DirectoryOrCreate}
`, i, class, filepath.Join(h.node.Dir, "pv", fmt.Sprint(i)))
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

// startCertManager runs tests/tools/certmanager with extra flags.
func (h *harness) startCertManager(log string, flags ...string) (*framework.Process, error) {
	args := append([]string{"--kubeconfig", h.Kubeconfig, "-v", "2"}, flags...)
	return framework.StartProcess(filepath.Join(h.artifacts, log), exec.Command(h.cmBin, args...))
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

// apiServerFlags are the flags every kube-apiserver of the test has.
var apiServerFlags = map[string]string{
	// Service references (webhooks, APIServices) are resolved through the
	// Service's EndpointSlices to the pods' addresses on the node's bridge,
	// as in a cluster where the apiserver cannot reach ClusterIPs: there is
	// no kube-proxy here, and a ClusterIP would be routed off this machine.
	"enable-aggregator-routing": "true",
	// ClusterIPs (never dialled) from the benchmarking range, not envtest's
	// 10.0.0.0/24; no kubernetes Service endpoint with this machine's address.
	"service-cluster-ip-range": "198.19.255.0/24",
	"endpoint-reconciler-type": "none",
	// Logs and exec reach the kubelet at the node's InternalIP (198.19.N.1),
	// never through a DNS lookup of its name.
	"kubelet-preferred-address-types": "InternalIP",
}

// stop stops everything that runs, in the reverse order of start. The pods
// go first, while the kubelet still runs to take them down (volumes
// unmounted, networks released): the controllers stop, then every pod is
// deleted at once.
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
