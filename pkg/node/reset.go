package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/netpol"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/network"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

// ResetOptions are what `node-agent reset` undoes: everything join and run
// made on this machine.
type ResetOptions struct {
	Node       *config.Node
	ConfigFile string // the node config join wrote
	UnitFile   string // the unit join wrote
	// StopService stops and disables node-agent.service (nil: not under systemd).
	StopService func() error
	// CgroupRoot is /sys/fs/cgroup; tests point it elsewhere.
	CgroupRoot string
	Progress   io.Writer
}

// Kubelet paths outside the data dir that upstream hard-codes.
var kubeletFixedDirs = []string{"/var/log/pods", "/var/log/containers"}

// Files upstream keeps at fixed paths whatever the data dir: the kubelet's
// graceful-shutdown logind drop-in and device-plugin socket, the CNI result
// cache of containerd's CNI library. Each is followed by the directories to
// remove when that leaves them empty.
var fixedPathLeftovers = [][]string{
	{"/etc/systemd/logind.conf.d/99-kubelet.conf", "/etc/systemd/logind.conf.d"},
	{"/var/lib/kubelet/device-plugins/kubelet.sock", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet"},
	{"/var/lib/cni/results/" + cni.NetworkName + "-*", "/var/lib/cni/results", "/var/lib/cni"},
	{"", "/run/netns"},
}

func removeFixedPathLeftovers() error {
	var errs []error
	for _, group := range fixedPathLeftovers {
		if group[0] != "" {
			files, _ := filepath.Glob(group[0])
			for _, f := range files {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		for _, dir := range group[1:] {
			_ = syscall.Rmdir(dir) // only when empty
		}
	}
	return errors.Join(errs...)
}

// Reset stops the node and removes what it made: its processes and
// containers, mounts, network (links, routes, iptables chains, IPAM), data,
// config and unit. Every step runs even when an earlier one failed, and a
// second run finds nothing to do; all errors are returned together.
func Reset(o ResetOptions) error {
	var errs []error
	step := func(what string, f func() error) {
		begin := time.Now()
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			fmt.Fprintf(o.Progress, "%s: %v\n", what, err)
			return
		}
		fmt.Fprintf(o.Progress, "%s (%.1fs)\n", what, time.Since(begin).Seconds())
	}
	if o.StopService != nil {
		step("stopped node-agent.service", o.StopService)
	}
	step("stopped containers and shims", func() error { return killCgroups(o.CgroupRoot, 10*time.Second) })
	// The kubelet holds each block volume it mapped with a loop device over
	// a file below its root: detach those while the files are still there.
	step("detached the kubelet's loop devices of block volumes", func() error { return pool.DetachLoopsBelow(o.Node.KubeletRoot()) })
	step("unmounted kubelet and containerd mounts", func() error { return unmountBelow(o.Node) })
	step("removed the storage pool (volumes, snapshots, loop devices, pool image)", func() error {
		return pool.Reset(o.Node.CSIPoolDir(), o.Node.CSIPoolImage())
	})
	step("removed the pod network (bridge, veths, IPAM, CNI config)", func() error {
		return cni.Reset(o.Node.IPAMDir(), o.Node.CNIConfDir())
	})
	step("removed the overlay (vcs-vxlan, routes, VCS- chains)", network.Reset)
	step("removed the network policy table ("+netpol.TableName+")", netpol.Remove)
	step("removed kube-proxy's rules", cleanupKubeProxy)
	step("removed the kubelet's iptables chains (KUBE-)", removeKubeChains)
	step("removed files the kubelet and containerd keep at fixed paths", removeFixedPathLeftovers)
	step("removed data, config and unit", func() error { return removeFiles(o) })
	return errors.Join(errs...)
}

// killCgroups kills every process in the kubelet's pod cgroups and in
// node-agent.service's cgroup (the shims, which outlive the service by
// design), then removes the emptied pod cgroups.
func killCgroups(root string, timeout time.Duration) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		switch d.Name() {
		case "kubepods", "kubepods.slice", "node-agent.service":
			dirs = append(dirs, path)
			return filepath.SkipDir
		}
		if strings.Count(strings.TrimPrefix(path, root), "/") > 3 {
			return filepath.SkipDir
		}
		return nil
	})
	self := os.Getpid()
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		for _, d := range dirs {
			for _, pid := range cgroupPIDs(d) {
				if pid != self {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					left++
				}
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes would not die", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range dirs {
		if filepath.Base(d) != "node-agent.service" {
			removeCgroupTree(d)
		}
	}
	return nil
}

// cgroupPIDs lists the processes in a cgroup and every cgroup below it.
func cgroupPIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if pid, err := strconv.Atoi(sc.Text()); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes empty cgroup directories, deepest first.
func removeCgroupTree(dir string) {
	var all []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			all = append(all, path)
		}
		return nil
	})
	slices.Reverse(all)
	for _, d := range all {
		_ = syscall.Rmdir(d)
	}
}

// unmountBelow unmounts what the kubelet and containerd mounted (strictly
// below their directories) and the pod network namespaces containerd made,
// deepest first. A mount at one of those directories themselves (a
// dedicated disk for containerd, say) is not ours and stays.
func unmountBelow(n *config.Node) error {
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	tops := []string{n.KubeletRoot(), n.ContainerdRoot(), config.RunDir, "/run/netns", "/run/containerd"}
	var targets []string
	for _, m := range mounts {
		for _, top := range tops {
			below := strings.HasPrefix(m, top+"/")
			if below && (top != "/run/netns" || strings.HasPrefix(filepath.Base(m), "cni-")) {
				targets = append(targets, m)
			}
		}
	}
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, t := range slices.Compact(targets) {
		if err := syscall.Unmount(t, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			if err := syscall.Unmount(t, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
			}
		}
	}
	// containerd's pod network namespaces are files under /run/netns.
	nsFiles, _ := filepath.Glob("/run/netns/cni-*")
	for _, f := range nsFiles {
		_ = os.Remove(f)
	}
	return errors.Join(errs...)
}

// mountPoints reads this mount namespace's mount points.
func mountPoints() ([]string, error) { return pool.MountPoints() }

// cleanupKubeProxy runs upstream kube-proxy's own cleanup of its iptables
// (and nftables/IPVS) rules.
func cleanupKubeProxy() error {
	cmd := proxyapp.NewProxyCommand()
	cmd.SetArgs([]string{"--cleanup"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

// removeFiles removes the data dir (emptying it when it is a mount point,
// and keeping mount points below it) if it is ours, the run dir, kubelet's
// fixed log dirs, shim sockets, and the config and unit join wrote.
func removeFiles(o ResetOptions) error {
	mounts, _ := mountPoints()
	var errs []error
	dirs := append([]string{config.RunDir}, kubeletFixedDirs...)
	if why := notOurDataDir(o.Node.DataDir); why != "" {
		fmt.Fprintf(o.Progress, "left the data dir %s: %s\n", o.Node.DataDir, why)
	} else {
		dirs = append(dirs, o.Node.DataDir)
	}
	for _, dir := range dirs {
		if err := removeKeepingMounts(dir, mounts); err != nil {
			errs = append(errs, err)
		}
	}
	// containerd made its root 0700; a disk mounted there gets back the mode
	// of a fresh file system's root.
	if slices.Contains(mounts, o.Node.ContainerdRoot()) {
		_ = os.Chmod(o.Node.ContainerdRoot(), 0o755)
	}
	// The runc shim puts its sockets in /run/containerd/s whatever the
	// containerd state dir; the directory is ours unless a system containerd
	// runs beside us.
	if _, err := os.Stat("/run/containerd/containerd.sock"); errors.Is(err, os.ErrNotExist) {
		if err := os.RemoveAll("/run/containerd"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []string{o.ConfigFile, o.UnitFile} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if o.ConfigFile != "" {
		_ = syscall.Rmdir(filepath.Dir(o.ConfigFile)) // only when nothing else (registries.yaml) is there
	}
	return errors.Join(errs...)
}

// notOurDataDir says why reset must not remove dir, or "" when it may: a
// system directory never, another directory only with join's marker in it.
func notOurDataDir(dir string) string {
	if err := config.CheckDataDir("dataDir", dir); err != nil || !filepath.IsAbs(dir) {
		return "it is not a directory of its own (/, a system directory or a relative path)"
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if !config.OwnsDataDir(dir) {
		return "node-agent did not make it (no " + config.DataDirMarker + " in it); remove it yourself if it is no longer needed"
	}
	return ""
}

// removeKeepingMounts removes path; a mount point at or below it is emptied
// and kept.
func removeKeepingMounts(path string, mounts []string) error {
	isMount := slices.Contains(mounts, path)
	hasMountBelow := slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(m, path+"/") })
	if !isMount && !hasMountBelow {
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	entries, err := os.ReadDir(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() == "lost+found" && isMount {
			continue
		}
		if err := removeKeepingMounts(filepath.Join(path, e.Name()), mounts); err != nil {
			errs = append(errs, err)
		}
	}
	if !isMount {
		_ = syscall.Rmdir(path) // stays while a mount point is below it
	}
	return errors.Join(errs...)
}
