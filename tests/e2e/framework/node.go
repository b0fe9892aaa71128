//go:build linux

package framework

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Node is a Kubernetes node on this machine: containerd with runc and CNI bridge networking, a kubelet registered
// with the test's kube-apiserver, and kube-scheduler. Every address is in 198.18.0.0/15 (the benchmarking range,
// RFC 2544), on interfaces it makes: pods get 198.18.N.0/24 on a bridge with no masquerading and no default route,
// the node address is one end of a veth pair, 198.19.N.1. containerd, the kubelet and CNI keep their state under
// Dir where they allow it; what they write elsewhere (sysctls, a few fixed paths) is recorded at start and put
// back by Stop. N and every name derive from the test process's pid, so runs side by side do not collide, and
// cleanStaleNodes can undo a run that was killed before its Stop.
type Node struct {
	NodeConfig
	Name    string
	Dir     string
	IP      netip.Addr   // the node's InternalIP
	PodCIDR netip.Prefix // the bridge's subnet
	// Containerd is containerd's socket (for ctr).
	Containerd string

	pid        int
	state      nodeState
	containerd *Process
	kubelet    *Process
	scheduler  *Process
}

// NodeConfig is what a Node runs and where it logs.
type NodeConfig struct {
	KubeBin       string // kubelet, kube-scheduler (tests/tools/build.sh)
	ContainerdBin string // containerd, containerd-shim-runc-v2, ctr (tests/tools/build-containerd.sh)
	Kubeconfig    string // an admin of the kube-apiserver: the kubelet and kube-scheduler use it
	SandboxImage  string // the pause image's name in its archive, pinned in containerd
	Images        []string
	Logs          string // the folder for the daemons' logs
}

// nodeState is what Stop (or a later run's cleanStaleNodes) needs to undo the run: written to Dir before anything
// is changed.
type nodeState struct {
	PID     int
	Sysctls map[string]string // value at start, by /proc/sys path
	Made    []string          // the fixed paths outside Dir that did not exist at start
}

const (
	nodeDirPrefix = "dittofs-e2e-node-"
	cniBinDir     = "/usr/lib/cni" // Debian's containernetworking-plugins
)

// sysctlsKubeletSets are the host settings the kubelet changes at start
// (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables) and the bridge plugin may set.
var sysctlsKubeletSets = []string{
	"/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/panic", "/proc/sys/kernel/panic_on_oops",
	"/proc/sys/net/ipv4/ip_forward",
}

// outsideDir are the fixed paths the kubelet, containerd's shims and CNI write to whatever their configuration:
// the device-plugin socket folder, the shims' sockets, the container log symlinks, libcni's result cache.
var outsideDir = []string{
	"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/run/containerd", "/run/containerd/s",
	"/var/log/containers", "/var/lib/cni", "/var/lib/cni/results",
}

// cgroupHierarchies are the cgroup v1 hierarchies the node's cgroup root is made in (the kubelet needs it in each
// it uses).
var cgroupHierarchies = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd"}

func nodeFor(pid int) *Node {
	n := pid%250 + 2
	return &Node{
		pid:        pid,
		Name:       "dittofs-e2e-node",
		Dir:        filepath.Join(os.TempDir(), nodeDirPrefix+strconv.Itoa(pid)),
		IP:         netip.AddrFrom4([4]byte{198, 19, byte(n), 1}),
		PodCIDR:    netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(n), 0}), 24),
		Containerd: filepath.Join(os.TempDir(), nodeDirPrefix+strconv.Itoa(pid), "containerd.sock"),
	}
}

func (n *Node) bridge() string     { return "dfbr" + strconv.Itoa(n.pid) }
func (n *Node) veth() string       { return "dfnode" + strconv.Itoa(n.pid) }
func (n *Node) network() string    { return "dittofs-e2e-" + strconv.Itoa(n.pid) }
func (n *Node) cgroupRoot() string { return "/" + nodeDirPrefix + strconv.Itoa(n.pid) }
func (n *Node) path(p ...string) string {
	return filepath.Join(append([]string{n.Dir}, p...)...)
}

// StartNode cleans what killed runs left, then starts containerd (with the images imported), the kubelet and
// kube-scheduler, and returns once the node is Ready. On error everything it made is undone.
func StartNode(cfg NodeConfig, k Kubectl) (_ *Node, err error) {
	cleanStaleNodes()
	n := nodeFor(os.Getpid())
	n.NodeConfig = cfg
	defer func() {
		if err != nil {
			if e := n.Stop(); e != nil {
				fmt.Fprintf(os.Stderr, "e2e: node: %v\n", e)
			}
		}
	}()
	steps := []func() error{n.checkMachine, n.record, n.makeNetwork, n.makeCgroups, n.startContainerd, n.importImages,
		n.startKubelet, n.startScheduler}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := Poll(2*time.Minute, n.kubelet.Alive, func() (bool, string) {
		r := k.Run("", "wait", "--for=condition=Ready", "--timeout=10s", "node/"+n.Name)
		return r.OK(), r.String()
	}); err != nil {
		return nil, fmt.Errorf("node %s not Ready (kubelet log %s): %w", n.Name, n.kubelet.LogPath, err)
	}
	fmt.Printf("e2e: node %s Ready (IP %s, pods %s, kubelet root %s)\n", n.Name, n.IP, n.PodCIDR, n.path("kubelet"))
	return n, nil
}

// startScheduler starts kube-scheduler: a control-plane piece, but without it pods stay Pending.
func (n *Node) startScheduler() error {
	port, err := FreePort()
	cmd := exec.Command(filepath.Join(n.KubeBin, "kube-scheduler"), "--kubeconfig", n.Kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port), "-v=1")
	if err == nil {
		n.scheduler, err = StartProcess(filepath.Join(n.Logs, "kube-scheduler.log"), cmd)
	}
	return err
}

// checkMachine checks what the node needs of this machine, and that its addresses are free.
func (n *Node) checkMachine() error {
	var missing []string
	for _, p := range []string{"runc", "ip", "iptables-save", "mount"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, filepath.Join(cniBinDir, p)+" (containernetworking-plugins)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the node needs %s (tests/tools/setup.sh installs them)", strings.Join(missing, ", "))
	}
	for _, p := range []netip.Prefix{n.PodCIDR, netip.PrefixFrom(n.IP, 30).Masked()} {
		if out, _ := exec.Command("ip", "-o", "route", "show", "to", "match", p.Addr().Next().String()).Output(); strings.Contains(string(out), p.String()) {
			return fmt.Errorf("%s is already routed on this machine: %s", p, out)
		}
	}
	return nil
}

// record writes what Stop must put back, before anything changes.
func (n *Node) record() error {
	n.state = nodeState{PID: n.pid, Sysctls: map[string]string{}}
	for _, p := range sysctlsKubeletSets {
		if b, err := os.ReadFile(p); err == nil {
			n.state.Sysctls[p] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range outsideDir {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			n.state.Made = append(n.state.Made, p)
		}
	}
	for _, d := range []string{"kubelet", "containerd/root", "containerd/state", "cni/net.d", "cni/ipam", "pods", "pod-logs", "volume-plugins", "certs.d/_default"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(n.state)
	return os.WriteFile(n.path("state.json"), b, 0o644)
}

// makeNetwork makes the veth pair whose end holds the node address; the bridge is made by the CNI bridge plugin on
// the first pod.
func (n *Node) makeNetwork() error {
	steps := [][]string{
		{"link", "add", n.veth(), "type", "veth", "peer", "name", n.veth() + "p"},
		{"addr", "add", n.IP.String() + "/30", "dev", n.veth()},
		{"link", "set", n.veth(), "up"},
		{"link", "set", n.veth() + "p", "up"},
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// No default route and no masquerading: pods reach the bridge (this machine) and each other, nothing else.
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.network(),
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.bridge(), "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.PodCIDR.String(), "gateway": n.PodCIDR.Addr().Next().String()}}},
				"dataDir": n.path("cni", "ipam"),
			},
		}},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return os.WriteFile(n.path("cni", "net.d", "10-dittofs-e2e.conflist"), b, 0o644)
}

// makeCgroups makes the node's cgroup root, under which the kubelet puts kubepods, in every v1 hierarchy.
func (n *Node) makeCgroups() error {
	for _, h := range cgroupHierarchies {
		d := filepath.Join("/sys/fs/cgroup", h, n.cgroupRoot())
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("the node's cgroup root: %w", err)
		}
		if h == "cpuset" { // a new cpuset has no CPUs or memory nodes until given its parent's
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err == nil {
					err = os.WriteFile(filepath.Join(d, f), b, 0o644)
				}
				if err != nil {
					return fmt.Errorf("cpuset of the node's cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}

func (n *Node) startContainerd() error {
	// Pulls go nowhere: every registry is 127.0.0.1:1 (no DNS query either); pods run imported images only.
	if err := os.WriteFile(n.path("certs.d", "_default", "hosts.toml"), []byte("server = \"https://127.0.0.1:1\"\n"), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
# Plugins that write outside root/state, or are not needed.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[6]q

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: the sandbox's oom_score_adj cannot be
  # lowered, and runc fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = %[7]q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[8]q]
    conf_dir = %[9]q
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, n.path("containerd", "root"), n.path("containerd", "state"), n.Containerd, n.Containerd+".ttrpc",
		n.SandboxImage, n.path("certs.d"), n.path("containerd", "runc"), cniBinDir, n.path("cni", "net.d"))
	if err := os.WriteFile(n.path("containerd.toml"), []byte(conf), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(n.ContainerdBin, "containerd"), "--config", n.path("containerd.toml"))
	// The shims it starts find containerd-shim-runc-v2 and runc on PATH.
	cmd.Env = append(os.Environ(), "PATH="+n.ContainerdBin+":"+os.Getenv("PATH"))
	var err error
	if n.containerd, err = StartProcess(filepath.Join(n.Logs, "containerd.log"), cmd); err != nil {
		return err
	}
	return Poll(time.Minute, n.containerd.Alive, func() (bool, string) {
		_, err := n.Ctr("version")
		return err == nil, fmt.Sprintf("containerd (log %s): %v", n.containerd.LogPath, err)
	})
}

// Ctr runs ctr on the node's containerd, in the CRI's namespace, and returns its stdout: its stderr has a warning
// on every run here (cgroup v1), which would make an empty answer look like one.
func (n *Node) Ctr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(n.ContainerdBin, "ctr"), append([]string{"--address", n.Containerd, "--namespace", "k8s.io"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// importImages imports each OCI archive under the name its index gives it.
func (n *Node) importImages() error {
	for _, a := range n.Images {
		if _, err := n.Ctr("images", "import", "--snapshotter", "overlayfs", a); err != nil {
			return err
		}
	}
	return nil
}

// ContainerPID is the host pid of a container's process (containerID as the pod status gives it,
// "containerd://ID"), from containerd's task list.
func (n *Node) ContainerPID(containerID string) (int, error) {
	_, id, _ := strings.Cut(containerID, "://")
	out, err := n.Ctr("tasks", "list")
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no task %s in containerd", id)
}

func (n *Node) startKubelet() error {
	port, err := FreePort()
	healthz, err2 := FreePort()
	if err = errors.Join(err, err2); err != nil {
		return err
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine is cgroup v1 (a hybrid layout) and PID 1 is not systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: %[4]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
# The kube-apiserver calls it for logs; no other client can reach the node.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# No iptables chains, no DNS: pods here resolve nothing.
makeIPTablesUtilChains: false
resolvConf: ""
podLogsDir: %[6]s
volumePluginDir: %[7]s
staticPodPath: ""
# Never delete the imported images (nothing could pull them back), never evict.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
serializeImagePulls: false
# Secret volumes (the serving certificate) are rewritten at each pod sync:
# every 10s here (the default is 1m), so a renewal reaches the files sooner.
syncFrequency: 10s
`, n.cgroupRoot(), n.Containerd, n.IP, port, healthz, n.path("pod-logs"), n.path("volume-plugins"))
	if err := os.WriteFile(n.path("kubelet.yaml"), []byte(conf), 0o644); err != nil {
		return err
	}
	n.kubelet, err = StartProcess(filepath.Join(n.Logs, "kubelet.log"), exec.Command(filepath.Join(n.KubeBin, "kubelet"),
		"--config", n.path("kubelet.yaml"), "--kubeconfig", n.Kubeconfig, "--root-dir", n.path("kubelet"), "--cert-dir", n.path("kubelet", "pki"),
		"--node-ip", n.IP.String(), "--hostname-override", n.Name, "-v=1"))
	return err
}

// Stop stops the kubelet, kube-scheduler and containerd, and removes or puts back everything the node made or
// changed: containers, mounts, the network, cgroups, sysctls, files outside Dir, Dir. Safe more than once, and on
// a node of a run that no longer exists (n.pid).
func (n *Node) Stop() error {
	var errs []error
	// These exit non-zero on SIGTERM; only one that does not exit is an error.
	errs = append(errs, n.scheduler.Terminate(20*time.Second), n.kubelet.Terminate(20*time.Second))
	// What runs in the node's cgroups (the pods' processes) dies first, then the shims, which would otherwise
	// outlive containerd.
	n.killPods()
	errs = append(errs, n.containerd.Terminate(20*time.Second))
	n.killShims()
	errs = append(errs, n.unmountAll())
	for _, l := range []string{n.bridge(), n.veth()} {
		if err := exec.Command("ip", "link", "show", l).Run(); err == nil {
			if out, err := exec.Command("ip", "link", "delete", l).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", l, err, out))
			}
		}
	}
	errs = append(errs, n.removeIptablesRules(), n.removeCgroups())
	var st nodeState
	if b, err := os.ReadFile(n.path("state.json")); err == nil && json.Unmarshal(b, &st) == nil {
		n.state = st
	}
	for p, v := range n.state.Sysctls {
		if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != v {
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s to %s: %w", p, v, err))
			}
		}
	}
	n.removeOutside()
	errs = append(errs, os.RemoveAll(n.Dir))
	n.scheduler, n.kubelet, n.containerd = nil, nil, nil
	return errors.Join(errs...)
}

// killPods kills every process in the node's cgroup root, until none is left.
func (n *Node) killPods() {
	root := filepath.Join("/sys/fs/cgroup/pids", n.cgroupRoot())
	for range 50 {
		var pids []int
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
			}
			return nil
		})
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killShims kills the runc shims of this node's containerd (found by the socket address they were started with),
// and removes their sockets.
func (n *Node) killShims() {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, _ := os.ReadFile(f)
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "-address"); i >= 0 && i+1 < len(args) && args[i+1] == n.Containerd && strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountAll unmounts everything mounted under Dir (the pods' volumes, the containers' root filesystems, the
// network namespaces), deepest first.
func (n *Node) unmountAll() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == n.Dir || strings.HasPrefix(f[4], n.Dir+"/")) {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeIptablesRules deletes any rule that names the node's bridge or pod subnet (the bridge plugin makes none
// with ipMasq off; a plugin or version that does is cleaned up too).
func (n *Node) removeIptablesRules() error {
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "-A ") || !(strings.Contains(l, n.bridge()) || strings.Contains(l, n.PodCIDR.String()) || strings.Contains(l, n.network())) {
				continue
			}
			args := append([]string{"-t", table, "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
			if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out))
			} else {
				fmt.Fprintf(os.Stderr, "e2e: node: removed the iptables rule %q\n", l)
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the node's cgroup tree, deepest first, in every hierarchy.
func (n *Node) removeCgroups() error {
	var errs []error
	for _, h := range cgroupHierarchies {
		root := filepath.Join("/sys/fs/cgroup", h, n.cgroupRoot())
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			var err error
			for range 20 { // a cgroup whose last task just died is briefly busy
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing the cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeOutside removes what the node left in the fixed paths outside Dir: container log links into Dir, its CNI
// results, the kubelet's device-plugin socket when no other node runs, the shims' sockets; then the folders it
// made, when empty.
func (n *Node) removeOutside() {
	if es, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, e := range es {
			p := filepath.Join("/var/log/containers", e.Name())
			if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, n.Dir+"/") {
				_ = os.Remove(p)
			}
		}
	}
	results, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", n.network()+"-*"))
	for _, p := range results {
		_ = os.Remove(p)
	}
	if others, _ := filepath.Glob(filepath.Join(os.TempDir(), nodeDirPrefix+"*")); len(others) <= 1 {
		_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
		_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint")
		if es, err := os.ReadDir("/run/containerd/s"); err == nil {
			for _, e := range es {
				_ = os.Remove(filepath.Join("/run/containerd/s", e.Name()))
			}
		}
	}
	made := slices.Clone(n.state.Made)
	slices.SortFunc(made, func(a, b string) int { return len(b) - len(a) })
	for _, p := range made {
		_ = syscall.Rmdir(p) // only when empty
	}
}

// cleanStaleNodes undoes the nodes of earlier runs whose test process no longer exists (killed before its Stop):
// their pods, shims, mounts, network, cgroups, sysctls and folders.
func cleanStaleNodes() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nodeDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), nodeDirPrefix))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		err = nodeFor(pid).Stop()
		fmt.Fprintf(os.Stderr, "e2e: cleaned the node a killed run (pid %d) left; errors: %v\n", pid, err)
	}
}

// FreePort is a TCP port free on 127.0.0.1 right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
