package node

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what node-agent must know about the machine to configure
// containerd and the kubelet the way the machine allows.
type Host struct {
	// SystemdCgroups: systemd is PID 1 on the unified cgroup v2 hierarchy, so
	// both containerd and the kubelet use the systemd cgroup driver.
	SystemdCgroups bool
	// CgroupV1: the kubelet must be told that cgroup v1 is accepted.
	CgroupV1 bool
	// CanLowerOOMScore: CAP_SYS_RESOURCE is held, so negative oom_score_adj
	// values (kubelet -999, critical pods) are allowed.
	CanLowerOOMScore bool
	// ConntrackWritable: /proc/sys/net/netfilter/nf_conntrack_max can be set
	// (it cannot outside the host's own network namespace).
	ConntrackWritable bool
	// ResolvConf is the resolver file pods inherit: systemd-resolved's real
	// upstream list when its stub (127.0.0.53) would be useless in a pod.
	ResolvConf string
}

// DetectHost reads the facts from the running machine.
func DetectHost() Host {
	v2 := fileExists("/sys/fs/cgroup/cgroup.controllers")
	return Host{
		SystemdCgroups:    v2 && fileExists("/run/systemd/system"),
		CgroupV1:          !v2,
		CanLowerOOMScore:  hasCapability(unix.CAP_SYS_RESOURCE),
		ConntrackWritable: unix.Access("/proc/sys/net/netfilter/nf_conntrack_max", unix.W_OK) == nil,
		ResolvConf:        resolvConf(),
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// hasCapability reads the effective capability set of this process.
func hasCapability(capability int) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if hex, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			set, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && set&(1<<uint(capability)) != 0
		}
	}
	return false
}

// resolvConf avoids handing pods systemd-resolved's loopback stub, which
// would make CoreDNS forward to itself.
func resolvConf() string {
	const resolved = "/run/systemd/resolve/resolv.conf"
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil && strings.Contains(string(data), "127.0.0.53") && fileExists(resolved) {
		return resolved
	}
	return "/etc/resolv.conf"
}
