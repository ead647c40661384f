package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// A fake cgroup tree: killCgroups must kill what the pod cgroups and the
// service's cgroup hold (containers, shims), and nothing else.
func TestKillCgroupsKillsPodsAndShimsOnly(t *testing.T) {
	root := t.TempDir()
	start := func(cgroup string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		dir := filepath.Join(root, cgroup)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
		return cmd
	}
	pod := start("memory/kubepods/burstable/pod1/ctr")
	shim := start("systemd/system.slice/node-agent.service")
	other := start("memory/system.slice/ssh.service")

	exited := func(cmd *exec.Cmd) chan error {
		ch := make(chan error, 1)
		go func() { _, err := cmd.Process.Wait(); ch <- err }()
		return ch
	}
	podDone, shimDone := exited(pod), exited(shim)
	// The fake cgroup.procs never empty themselves: the call gives up after
	// its deadline, but both processes must be dead by then.
	_ = killCgroups(root, time.Second)
	for name, ch := range map[string]chan error{"pod": podDone, "shim": shimDone} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Errorf("%s process still running", name)
		}
	}
	if err := syscall.Kill(other.Process.Pid, 0); err != nil {
		t.Error("a process outside the node's cgroups was killed")
	}
}

func TestRemoveKeepingMounts(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "node-agent")
	os.MkdirAll(filepath.Join(data, "containerd", "lost+found"), 0o755)
	os.MkdirAll(filepath.Join(data, "containerd", "io.containerd.content.v1.content"), 0o755)
	os.MkdirAll(filepath.Join(data, "pki"), 0o700)
	os.WriteFile(filepath.Join(data, "pki", "ca.crt"), []byte("x"), 0o600)

	// data/containerd is a mount point (a dedicated disk): emptied, kept.
	mounts := []string{filepath.Join(data, "containerd")}
	if err := removeKeepingMounts(data, mounts); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(data, "*"))
	if len(left) != 1 || left[0] != filepath.Join(data, "containerd") {
		t.Fatalf("left %v, want only the mount point", left)
	}
	inside, _ := os.ReadDir(filepath.Join(data, "containerd"))
	if len(inside) != 1 || inside[0].Name() != "lost+found" {
		t.Fatalf("mount point not emptied: %v", inside)
	}

	// Without mounts, everything goes; a second run is fine.
	if err := removeKeepingMounts(data, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("%s still there", data)
	}
	if err := removeKeepingMounts(data, nil); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// TestResetRemovesOnlyOurDataDir: reset removes a data dir only with join's
// marker in it, and never / or a system directory, whatever the config says.
func TestResetRemovesOnlyOurDataDir(t *testing.T) {
	root := t.TempDir()
	ours := filepath.Join(root, "ours")
	if _, err := config.ClaimDataDir(ours, "pki"); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(root, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes"), []byte("x"), 0o644)
	for dir, wantRemoved := range map[string]bool{ours: true, filepath.Join(root, "gone"): true, foreign: false, "/": false, "/var": false, "/usr/": false, "relative": false} {
		why := notOurDataDir(dir)
		if (why == "") != wantRemoved {
			t.Errorf("%s: removed %v (%q), want %v", dir, why == "", why, wantRemoved)
		}
	}
}
