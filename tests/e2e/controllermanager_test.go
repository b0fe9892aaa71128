package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// controllers are the kube-controller-manager controllers the scenarios need,
// by the names 1.28+ gives them (1.30 to 1.37 take these):
//   - statefulset: makes each StatefulSet's pods and their PVCs from the
//     volumeClaimTemplates, and applies persistentVolumeClaimRetentionPolicy
//     (the ownerReferences that let the garbage collector delete PVCs);
//   - garbage-collector: deletes pods (and, under whenDeleted: Delete, PVCs)
//     whose owner is gone, and orphans them on `--cascade=orphan`;
//   - persistentvolumeclaim-protection: removes a deleted PVC's
//     kubernetes.io/pvc-protection finalizer once no pod uses it, so a PVC the
//     garbage collector deletes really goes.
//
// No others: envtest's apiserver runs without the ServiceAccount admission
// plugin, so pods need no "default" ServiceAccount (no serviceaccount
// controller), and nothing here needs tokens or a cloud provider.
var controllers = []string{
	"statefulset-controller",
	"garbage-collector-controller",
	"persistentvolumeclaim-protection-controller",
}

// controllerManager is a running kube-controller-manager.
type controllerManager struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, once done is closed
	logPath string
	healthz string
}

// startControllerManager runs kube-controller-manager against the test
// apiserver as the e2e admin, without leader election, serving its health
// endpoint on a free loopback port, and waits until /healthz answers ok.
func (h *harness) startControllerManager() error {
	t0 := time.Now()
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c := &controllerManager{
		logPath: filepath.Join(h.artifacts, "kube-controller-manager.log"),
		healthz: "https://" + net.JoinHostPort("127.0.0.1", ports[0]) + "/healthz",
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return err
	}
	c.cmd = exec.Command(filepath.Join(h.assets, "kube-controller-manager"),
		"--kubeconfig", h.kubeconfig,
		"--authentication-kubeconfig", h.kubeconfig,
		"--authorization-kubeconfig", h.kubeconfig,
		"--controllers", strings.Join(controllers, ","),
		"--leader-elect=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", ports[0],
		// Its self-signed serving certificate goes here, not to /var/run.
		"--cert-dir", filepath.Join(h.artifacts, "kube-controller-manager"),
		"--v", "2",
	)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = serverProcAttr()
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	c.done = make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	h.controllerManager = c

	// Its certificate is self-signed, made at start: nothing to verify it
	// against, and only the health answer matters.
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("kube-controller-manager exited before it was healthy: %v (log %s)", c.err, c.logPath)
		default:
		}
		resp, err := client.Get(c.healthz)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("e2e: kube-controller-manager healthy (%s)\n", time.Since(t0).Round(time.Millisecond))
				return nil
			}
			err = fmt.Errorf("%s: %s %s", c.healthz, resp.Status, body)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-controller-manager not healthy within a minute: %v (log %s)", err, c.logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop ends kube-controller-manager with SIGTERM (killed after 10 s). Its
// exit status is not judged: it is not what the tests are about.
func (c *controllerManager) stop() {
	if c == nil || c.done == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// exited reports, without waiting, whether kube-controller-manager has died:
// a scenario waiting for the controllers says so instead of timing out.
func (c *controllerManager) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("kube-controller-manager exited: %v (log %s)", c.err, c.logPath)
	default:
		return nil
	}
}
