//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stopWithin is what the issue asks of `systemctl stop` of either service.
// The bound is the requirement itself, not a benchmark: a stop that waits
// for open watches (60 s upstream) or hits an internal timeout is far above it.
const stopWithin = 5 * time.Second

// This file sorts before node_test.go: its tests run while the private nodes
// are joined, before nodes_last_test.go uninstalls them.

// TestControlPlaneStopIsQuick: `systemctl stop vcluster-standalone` while the
// host's own node-agent (and the other nodes' kubelets) hold watches on the
// API server returns within stopWithin, the process exits cleanly (etcd
// closed; no SIGKILL), and the next start finds what was written before.
func TestControlPlaneStopIsQuick(t *testing.T) {
	track(t)
	waitReady(t, 3*time.Minute)
	marker := fmt.Sprintf("e2e-stop-%d", time.Now().UnixNano())
	putMarker(t, marker)

	took, journal := timedStop(t, cpNode, service)
	t.Logf("systemctl stop %s took %s", service, took.Round(10*time.Millisecond))
	if took >= stopWithin {
		t.Errorf("systemctl stop %s took %s, want < %s", service, took.Round(10*time.Millisecond), stopWithin)
	}
	for _, want := range []string{"etcd stopped in", "control plane stopped in"} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal of the stop lacks %q:\n%s", want, clip(journal))
		}
	}
	mustInNode(t, cpNode, "systemctl", "start", service)
	waitReady(t, 3*time.Minute)
	markerKept(t, marker)
}

// TestNodeAgentStopIsQuick: `systemctl stop node-agent` on a private node
// returns within stopWithin and leaves the pod running (KillMode=process);
// after the next start the Node is Ready and the pod is the same container,
// the same process, never restarted.
func TestNodeAgentStopIsQuick(t *testing.T) {
	track(t)
	cs := clientset(t)
	const marker = "sleep 86403"
	ns, cid, restarts, proc := startSleeper(t, cs, "e2e-stop", marker)

	took, journal := timedStop(t, podNode, nodeAgentUnit)
	t.Logf("systemctl stop %s took %s", nodeAgentUnit, took.Round(10*time.Millisecond))
	if took >= stopWithin {
		t.Errorf("systemctl stop %s took %s, want < %s", nodeAgentUnit, took.Round(10*time.Millisecond), stopWithin)
	}
	if !strings.Contains(journal, "node-agent stopped in") {
		t.Errorf("journal of the stop lacks %q:\n%s", "node-agent stopped in", clip(journal))
	}
	if got := pidOf(t, podNode, marker); got != proc {
		t.Errorf("while node-agent is stopped the pod's process is %q, want %s still running", got, proc)
	}

	started := time.Now()
	mustInNode(t, podNode, "systemctl", "start", nodeAgentUnit)
	waitNodeReady(t, cs, podNode, started, 90*time.Second)
	podUndisturbed(t, cs, ns, podNode, "after systemctl stop and start of node-agent", cid, restarts, marker, proc)
}

// timedStop runs `systemctl stop unit` in node, timed inside the node (no lab
// exec overhead), checks systemd saw a clean exit (Result=success: exit 0,
// no stop timeout, no SIGKILL), and returns the duration and the unit's
// journal of the stop.
func timedStop(t *testing.T, node, unit string) (time.Duration, string) {
	t.Helper()
	since := strings.TrimSpace(mustInNode(t, node, "date", "+%s"))
	out := mustInNode(t, node, "sh", "-c", `a=$(date +%s%N); systemctl stop "$1"; b=$(date +%s%N); echo $((b - a))`, "sh", unit)
	ns, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("timing of systemctl stop %s: %q: %v", unit, out, err)
	}
	if state := inNode(t, node, "systemctl", "is-active", unit).stdout; state != "inactive" {
		t.Errorf("%s is %q after systemctl stop, want inactive", unit, state)
	}
	if res := mustInNode(t, node, "systemctl", "show", "-p", "Result", "--value", unit); res != "success" {
		t.Errorf("%s: Result=%s after stop, want success (a clean exit 0)", unit, res)
	}
	journal := mustInNode(t, node, "journalctl", "-u", unit, "--since", "@"+since, "-o", "cat", "--no-pager")
	if strings.Contains(journal, "did not stop within") {
		t.Errorf("%s: a component hit its stop timeout:\n%s", unit, clip(journal))
	}
	return time.Duration(ns), journal
}
