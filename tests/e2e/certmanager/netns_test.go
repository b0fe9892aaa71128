package certmanager

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// testHost is a network namespace joined to this machine by a veth pair: the
// "pod" the webhook's EndpointSlice points at. Its addresses come from
// 198.19.0.0/16 (half of the 198.18.0.0/15 benchmarking range, RFC 2544), one
// /30 per test process, so runs side by side do not collide. It has no
// default route: the server in it can reach nothing but this machine's end of
// the pair.
type testHost struct {
	slot    int        // of this test process; 0 is the first pod's
	netns   string     // ip netns name
	hostIf  string     // the machine's end of the veth pair
	hostIP  netip.Addr // on hostIf
	podIP   netip.Addr // in the namespace: the endpoint
	created bool
}

// netnsPrefix names every namespace this harness makes, followed by the pid
// of the test process that made it: cleanStaleHosts removes those whose
// process is gone (a run killed with SIGKILL).
const netnsPrefix = "dfwh-cm-"

// hostSlots is how many test hosts one test process may make: the server's
// pod, then the replicas of the two rolling updates and of the SIGKILL step.
const hostSlots = 8

// newTestHost creates the namespace and the veth pair of one slot, with the
// addresses derived from pid and slot. On error, whatever was made is removed.
func newTestHost(pid, slot int) (*testHost, error) {
	// 16384 /30 blocks in 198.19.0.0/16; the host takes .1, the pod .2 of its block.
	block := uint32((pid*hostSlots+slot)%16384) * 4
	base := netip.AddrFrom4([4]byte{198, 19, byte(block >> 8), byte(block)})
	h := &testHost{
		slot:   slot,
		netns:  hostName(pid, slot),
		hostIf: hostIf(pid, slot),
		hostIP: base.Next(),
		podIP:  base.Next().Next(),
	}
	if out, err := exec.Command("ip", "-o", "addr", "show", "to", h.hostIP.String()+"/30").Output(); err != nil || len(out) > 0 {
		return nil, fmt.Errorf("%s/30 is already in use on this machine (or ip failed: %v): %s", h.hostIP, err, out)
	}
	podIf := strings.TrimSuffix(h.hostIf, "h") + "p"
	steps := [][]string{
		{"netns", "add", h.netns},
		{"link", "add", h.hostIf, "type", "veth", "peer", "name", podIf},
		{"link", "set", podIf, "netns", h.netns},
		{"addr", "add", h.hostIP.String() + "/30", "dev", h.hostIf},
		{"link", "set", h.hostIf, "up"},
		{"-n", h.netns, "addr", "add", h.podIP.String() + "/30", "dev", podIf},
		{"-n", h.netns, "link", "set", podIf, "up"},
		{"-n", h.netns, "link", "set", "lo", "up"},
	}
	for i, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			if i > 0 {
				h.created = true
				_ = h.destroy()
			}
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		h.created = true
	}
	return h, nil
}

// destroy deletes the namespace, which deletes the veth pair with it.
// Safe to call more than once.
func (h *testHost) destroy() error {
	if h == nil || !h.created {
		return nil
	}
	h.created = false
	out, err := exec.Command("ip", "netns", "delete", h.netns).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns delete %s: %v: %s", h.netns, err, out)
	}
	// Normally gone with the namespace; a half-made pair is not.
	_ = exec.Command("ip", "link", "delete", h.hostIf).Run()
	return nil
}

// container is the name of the container that runs in the namespace.
func (h *testHost) container() string {
	return "dittofs-webhook-e2e-" + h.netns
}

// command runs name with args inside the namespace.
func (h *testHost) command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.netns, name}, args...)...)
}

// checkLocal verifies what keeps the test's traffic on this machine: the
// kernel routes the endpoint address through the veth pair, and the
// namespace has no route but its own /30.
func (h *testHost) checkLocal() error {
	out, err := exec.Command("ip", "-o", "route", "get", h.podIP.String()).Output()
	if err != nil {
		return fmt.Errorf("ip route get %s: %v", h.podIP, err)
	}
	if f := strings.Fields(string(out)); !hasPair(f, "dev", h.hostIf) {
		return fmt.Errorf("%s is not routed through %s: %s", h.podIP, h.hostIf, out)
	}
	out, err = exec.Command("ip", "-n", h.netns, "-4", "-o", "route", "show").Output()
	if err != nil {
		return fmt.Errorf("ip -n %s route show: %v", h.netns, err)
	}
	prefix := netip.PrefixFrom(h.podIP, 30).Masked().String()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, prefix+" ") {
			return fmt.Errorf("namespace %s has a route beyond %s: %q", h.netns, prefix, l)
		}
	}
	return nil
}

// rxPackets is the count of packets the namespace's end received: traffic
// that went through the pair.
func (h *testHost) rxPackets() (uint64, error) {
	podIf := strings.TrimSuffix(h.hostIf, "h") + "p"
	out, err := exec.Command("ip", "netns", "exec", h.netns, "cat", "/sys/class/net/"+podIf+"/statistics/rx_packets").Output()
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
}

func hasPair(fields []string, key, value string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == key && fields[i+1] == value {
			return true
		}
	}
	return false
}

// cleanStaleHosts deletes the namespaces of earlier runs whose test process
// no longer exists.
func cleanStaleHosts() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		p, s, _ := strings.Cut(strings.TrimPrefix(name, netnsPrefix), "-")
		pid, err := strconv.Atoi(p)
		slot, errSlot := strconv.Atoi(s)
		if s == "" {
			slot, errSlot = 0, nil
		}
		if !strings.HasPrefix(name, netnsPrefix) || err != nil || errSlot != nil || processExists(pid) {
			continue
		}
		h := &testHost{netns: name, hostIf: hostIf(pid, slot), created: true}
		if err := h.destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: removing a stale namespace: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: removed the stale network namespace %s\n", name)
		}
	}
}

// hostName and hostIf name a slot's namespace and the machine's end of its
// pair (interface names are at most 15 bytes).
func hostName(pid, slot int) string {
	if slot == 0 {
		return netnsPrefix + strconv.Itoa(pid)
	}
	return netnsPrefix + strconv.Itoa(pid) + "-" + strconv.Itoa(slot)
}

func hostIf(pid, slot int) string {
	if slot == 0 {
		return "dfcm" + strconv.Itoa(pid) + "h"
	}
	return "dfcm" + strconv.Itoa(pid) + "s" + strconv.Itoa(slot) + "h"
}

func processExists(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
