package certmanager

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// podSpec is what a kubelet takes from the Deployment of deploy/default to
// run the server: read from the rendered manifest, never copied here, so a
// change to deploy/ changes what runs.
type podSpec struct {
	pod       corev1.PodSpec
	container corev1.Container
	tls       corev1.VolumeMount // the serving certificate's Secret volume
	tlsMode   os.FileMode        // its defaultMode
	fsGroup   int
}

// renderedPodSpec renders deploy/default as kubectl apply -k does and takes
// the Deployment's pod template.
func (h *harness) renderedPodSpec() (*podSpec, error) {
	r := runKubectl("", "kustomize", filepath.Join(h.repoRoot, "deploy", "default"))
	if !r.ok() {
		return nil, fmt.Errorf("rendering deploy/default: %s", r)
	}
	for doc := range strings.SplitSeq(r.stdout, "\n---\n") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		ps := &podSpec{pod: d.Spec.Template.Spec, container: d.Spec.Template.Spec.Containers[0], fsGroup: -1}
		if sc := ps.pod.SecurityContext; sc != nil && sc.FSGroup != nil {
			ps.fsGroup = int(*sc.FSGroup)
		}
		for _, v := range ps.pod.Volumes {
			if v.Secret == nil || v.Secret.SecretName != servingSecret {
				continue
			}
			for _, m := range ps.container.VolumeMounts {
				if m.Name == v.Name {
					ps.tls = m
				}
			}
			ps.tlsMode = 0o644
			if v.Secret.DefaultMode != nil {
				ps.tlsMode = os.FileMode(*v.Secret.DefaultMode)
			}
		}
		if ps.tls.MountPath == "" {
			return nil, fmt.Errorf("deploy/default's Deployment mounts no volume of Secret %s", servingSecret)
		}
		return ps, nil
	}
	return nil, fmt.Errorf("deploy/default renders no Deployment")
}

// podmanArgs are the `podman run` flags that apply the container's settings
// as a kubelet with runc would: user and group, fsGroup as a supplementary
// group, read-only root, capabilities, no privilege escalation, the runtime's
// default seccomp profile, resource limits, the Secret volume read-only at
// its mountPath. It also returns them in words, for the test output.
func (ps *podSpec) podmanArgs(tlsDir string) (args []string, applied []string) {
	c := ps.container
	sc := c.SecurityContext
	add := func(what string, flags ...string) {
		args = append(args, flags...)
		applied = append(applied, what)
	}
	if sc != nil && sc.RunAsUser != nil {
		user := strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			user += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
		}
		add("user "+user, "--user", user)
	}
	if ps.fsGroup >= 0 {
		add("fsGroup "+strconv.Itoa(ps.fsGroup), "--group-add", strconv.Itoa(ps.fsGroup))
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		add("read-only root filesystem", "--read-only")
	}
	if sc != nil && sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			add("capabilities drop "+string(d), "--cap-drop", strings.ToLower(string(d)))
		}
	}
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		add("no privilege escalation", "--security-opt", "no-new-privileges")
	}
	if sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault {
		applied = append(applied, "seccomp RuntimeDefault (podman's default profile)")
	}
	if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		add("memory limit "+m.String(), "--memory", strconv.FormatInt(m.Value(), 10))
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		add("cpu limit "+cpu.String(), "--cpus", strconv.FormatFloat(float64(cpu.MilliValue())/1000, 'f', 3, 64))
	}
	add(fmt.Sprintf("Secret volume at %s, mode %#o, group %d, read-only", ps.tls.MountPath, ps.tlsMode, ps.fsGroup),
		"--volume", tlsDir+":"+ps.tls.MountPath+":ro")
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", c.Command[0])
	}
	return args, applied
}

// probeURL is the readiness probe's URL on the pod's address.
func (ps *podSpec) probeURL(p *corev1.Probe, podIP string) string {
	port := p.HTTPGet.Port.String()
	for _, cp := range ps.container.Ports {
		if cp.Name == port {
			port = strconv.Itoa(int(cp.ContainerPort))
		}
	}
	return "http://" + net.JoinHostPort(podIP, port) + p.HTTPGet.Path
}

// preStopSleep is the preStop hook's sleep, which the kubelet runs before
// SIGTERM.
func (ps *podSpec) preStopSleep() time.Duration {
	if l := ps.container.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		return time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	return 0
}

// grace is terminationGracePeriodSeconds.
func (ps *podSpec) grace() time.Duration {
	if ps.pod.TerminationGracePeriodSeconds != nil {
		return time.Duration(*ps.pod.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// imageID is the image's ID, for the test output.
func imageID(image string) string {
	out, err := exec.Command("podman", "image", "inspect", "--format", "{{.Id}}", image).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// waitProbe polls the probe at its period until it passes (within timeout).
func waitProbe(p *process, url string, period, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(timeout); ; {
		if p.exited() {
			return fmt.Errorf("the container exited: %v (log %s)", p.err, p.logPath)
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %v (log %s)", timeout, err, p.logPath)
		}
		time.Sleep(min(period, time.Second))
	}
}
