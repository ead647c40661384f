//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLabDownLeavesNothing runs last (file order): it keeps node logs when any
// test failed, tears the lab down and compares the host with its state before
// `lab up`: network namespaces, links, mounts, loop devices, cgroups, processes.
func TestLabDownLeavesNothing(t *testing.T) {
	if reuseLab {
		t.Skip("VCS_E2E_REUSE_LAB=1: the lab stays up")
	}
	if failed.Load() {
		dir := os.Getenv("VCS_E2E_LOGS")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "vcs-e2e-logs")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		r := run(ctx, labTool, "logs", dir)
		cancel()
		t.Logf("a test failed: node logs in %s (%s)", dir, r.stderr)
	}
	during, err := takeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(during.labProc) == 0 || len(during.cgroups) == 0 {
		t.Fatalf("the lab looks down already: %s", during)
	}
	t.Logf("before lab up: %s", beforeLab)
	t.Logf("lab up:        %s", during)

	start := time.Now()
	down := exec.Command(labTool, "down")
	down.Stdout, down.Stderr = os.Stdout, os.Stderr
	if err := down.Run(); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	t.Logf("lab down took %s", time.Since(start).Round(100*time.Millisecond))

	after, err := takeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after down:    %s", after)
	check := func(what string, left []string) {
		if len(left) > 0 {
			t.Errorf("lab down left %s: %s", what, strings.Join(left, ", "))
		}
	}
	check("network namespaces", added(beforeLab.netns, after.netns))
	check("links", added(beforeLab.links, after.links))
	check("mounts", added(beforeLab.mounts, after.mounts))
	check("loop devices", added(beforeLab.loops, after.loops))
	check("cgroups", after.cgroups)
	check("processes in lab cgroups", after.labProc)
	var survivors []string
	for _, p := range during.labProc {
		if alive(p) {
			survivors = append(survivors, p)
		}
	}
	check("processes (pid starttime) that ran in the lab", survivors)
	for _, p := range []string{"/run/vcluster-standalone-lab", "/var/lib/vcluster-standalone-lab"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("lab down left %s", p)
		}
	}
}
