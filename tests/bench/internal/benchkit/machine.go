package benchkit

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes the machine: CPUs, model, memory, kernel, Go.
func Machine() string {
	model, cpus := "unknown CPU", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "processor":
				cpus++
			case k == "model name" && cpus == 1:
				model = strings.TrimSpace(v)
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	mem := ""
	if kb, err := ProcStatusKBFile("/proc/meminfo", "MemTotal"); err == nil {
		mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d CPUs, %s%s%s, %s", cpus, model, mem, kernel, runtime.Version())
}

// Revision describes the repository's checked-out revision (git describe,
// "-dirty" when the work tree has changes), or "" without git.
func Revision(repoRoot string) string {
	out, err := exec.Command("git", "-C", repoRoot, "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
