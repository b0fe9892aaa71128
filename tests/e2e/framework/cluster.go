package framework

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneOptions say what StartControlPlane runs.
type ControlPlaneOptions struct {
	RepoRoot       string            // the dittofs-webhook repository (kubectl runs there)
	Dir            string            // the work directory: logs, kubeconfigs, caches
	Bin            string            // etcd, kube-apiserver, kube-controller-manager, kubectl (tests/tools/build.sh)
	APIServerFlags map[string]string // set on every kube-apiserver of the test
	// Controllers are the kube-controller-manager controllers to run (none: it is not started).
	Controllers []string
}

// ControlPlane is etcd and kube-apiserver (envtest), an admin (system:masters)
// kubeconfig and kubectl for it, and optionally kube-controller-manager.
type ControlPlane struct {
	ControlPlaneOptions
	Env               *envtest.Environment
	Config            *rest.Config
	Client            kubernetes.Interface
	Kubeconfig        string
	Kubectl           Kubectl
	ControllerManager *Process

	apis []*envtest.APIServer // more kube-apiservers on the same etcd
}

// StartControlPlane starts etcd, kube-apiserver and, if o.Controllers names
// any, kube-controller-manager, healthy. On an error the caller still calls Stop.
func StartControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	t0 := time.Now()
	c := &ControlPlane{ControlPlaneOptions: o}
	apiLog, err := os.Create(filepath.Join(o.Dir, "kube-apiserver.log"))
	if err != nil {
		return c, err
	}
	etcdLog, err := os.Create(filepath.Join(o.Dir, "etcd.log"))
	if err != nil {
		return c, err
	}
	useExisting := false
	c.Env = &envtest.Environment{
		BinaryAssetsDirectory:    o.Bin,
		UseExistingCluster:       &useExisting,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Garbage collection stays on (the default): `kubectl delete --cascade=orphan` works as on a real cluster.
	c.Env.ControlPlane.APIServer = &envtest.APIServer{Out: apiLog, Err: apiLog}
	c.configure(c.Env.ControlPlane.APIServer, nil)
	c.Env.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog}
	if c.Config, err = c.Env.Start(); err != nil {
		return c, fmt.Errorf("starting etcd and kube-apiserver (logs in %s): %w", o.Dir, err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return c, err
	}
	if c.Kubeconfig, err = c.adminKubeconfig(&c.Env.ControlPlane, "kubeconfig"); err != nil {
		return c, fmt.Errorf("adding the e2e user: %w", err)
	}
	c.Kubectl = Kubectl{Bin: filepath.Join(o.Bin, "kubectl"), Kubeconfig: c.Kubeconfig,
		CacheDir: filepath.Join(o.Dir, "kube-cache"), Home: filepath.Join(o.Dir, "home"), Dir: o.RepoRoot,
		Timeout: 2 * time.Minute}
	fmt.Printf("e2e: etcd and kube-apiserver started (%s)\n", time.Since(t0).Round(time.Millisecond))
	if len(o.Controllers) == 0 {
		return c, nil
	}
	return c, c.startControllerManager()
}

func (c *ControlPlane) configure(api *envtest.APIServer, flags map[string]string) {
	for _, m := range []map[string]string{c.APIServerFlags, flags} {
		for k, v := range m {
			api.Configure().Set(k, v)
		}
	}
}

// adminKubeconfig writes, as file in the work directory, a kubeconfig of the
// e2e admin (system:masters) on cp's kube-apiserver and returns its path.
func (c *ControlPlane) adminKubeconfig(cp *envtest.ControlPlane, file string) (string, error) {
	user, err := cp.AddUser(envtest.User{Name: "e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, file)
	return path, os.WriteFile(path, kubeconfig, 0o600)
}

// startControllerManager runs kube-controller-manager as the e2e admin, its
// health endpoint on a free loopback port, and waits until /healthz answers.
func (c *ControlPlane) startControllerManager() error {
	t0 := time.Now()
	port, err := FreePort()
	if err != nil {
		return err
	}
	kc := c.Kubeconfig
	c.ControllerManager, err = StartProcess(filepath.Join(c.Dir, "kube-controller-manager.log"),
		exec.Command(filepath.Join(c.Bin, "kube-controller-manager"),
			"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
			"--controllers", strings.Join(c.Controllers, ","), "--leader-elect=false",
			"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
			"--cert-dir", filepath.Join(c.Dir, "kube-controller-manager"), "-v=2")) // not /var/run
	if err != nil {
		return err
	}
	// Its certificate is self-signed at start: nothing to verify it against.
	client := &http.Client{Timeout: time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := c.ControllerManager.WaitHTTP(client, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), time.Minute); err != nil {
		return err
	}
	fmt.Printf("e2e: kube-controller-manager healthy (%s)\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

// ControllersAlive is nil while kube-controller-manager runs: as an
// Eventually's alive, a scenario waiting for the controllers fails at once.
func (c *ControlPlane) ControllersAlive() error {
	if c.ControllerManager == nil {
		return nil
	}
	return c.ControllerManager.Alive()
}

// StartAPIServer starts one more kube-apiserver on the test's etcd, with the
// test's flags and then flags, and returns the admin's kubeconfig on it.
func (c *ControlPlane) StartAPIServer(name string, flags map[string]string) (string, error) {
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return "", err
	}
	api := &envtest.APIServer{
		Path:         filepath.Join(c.Bin, "kube-apiserver"),
		EtcdURL:      c.Env.ControlPlane.Etcd.URL,
		StartTimeout: 2 * time.Minute,
		StopTimeout:  30 * time.Second,
		Out:          log,
		Err:          log,
	}
	c.configure(api, flags)
	if err := api.Start(); err != nil {
		return "", fmt.Errorf("starting %s (log %s): %w", name, log.Name(), err)
	}
	c.apis = append(c.apis, api)
	return c.adminKubeconfig(&envtest.ControlPlane{APIServer: api}, name+".kubeconfig")
}

// StopControllers stops kube-controller-manager (its exit status is not judged).
func (c *ControlPlane) StopControllers() error {
	if c == nil {
		return nil
	}
	return c.ControllerManager.Terminate(10 * time.Second)
}

// Stop stops kube-controller-manager, the extra kube-apiservers, then etcd and
// kube-apiserver. Safe on a partly started one and on nil.
func (c *ControlPlane) Stop() error {
	if c == nil {
		return nil
	}
	errs := []error{c.StopControllers()}
	for _, api := range c.apis {
		errs = append(errs, api.Stop())
	}
	if c.Config != nil {
		if err := c.Env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
		}
	}
	return errors.Join(errs...)
}

// BuildTool runs tests/tools/NAME, which builds what .bin lacks, and returns its last line: where it is.
func BuildTool(root, name string) (string, error) {
	t0 := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "tests", "tools", name))
	cmd.Stderr = os.Stderr // a cold build takes minutes: show its progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tests/tools/%s: %w", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fmt.Printf("e2e: tests/tools/%s: %s (%s)\n", name, lines[len(lines)-1], time.Since(t0).Round(time.Millisecond))
	return lines[len(lines)-1], nil
}

// WorkDir is the run's work directory (logs, binaries, certificates; kept
// when something failed): $E2E_ARTIFACTS when set, else a new temporary one.
func WorkDir(prefix string) (string, error) {
	if dir := os.Getenv("E2E_ARTIFACTS"); dir != "" {
		return dir, os.MkdirAll(dir, 0o755)
	}
	return os.MkdirTemp("", prefix)
}
