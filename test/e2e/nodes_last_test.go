//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRotateCAFinish (joined_rotate_ca_test.go) runs first here: it retires
// the old cluster CA TestRotateCAStart replaced, long after, with the nodes
// still joined.
func TestRotateCAFinish(t *testing.T) { testRotateCAFinish(t) }

// TestRegistryMirror (registrymirror_test.go) runs here: after
// TestNothingPulled, while the nodes are still joined.
func TestRegistryMirror(t *testing.T) { testRegistryMirror(t) }

// The storage tests (storage_test.go) run here too: their pods and volumes
// live on the private nodes.
func TestStorageCSISanity(t *testing.T) { testStorageCSISanity(t) }
func TestStorageVolumes(t *testing.T)   { testStorageVolumes(t) }

// Live certificate renewal (certs_renewal_test.go) needs the joined nodes.
func TestCertRenewalLive(t *testing.T) { testCertRenewalLive(t) }

// TestSnapshotRestore (etcdsnapshot_test.go) uninstalls lab-cp and brings it
// back from a snapshot with install.sh --restore: the joined nodes and their
// pods must come through it.
func TestSnapshotRestore(t *testing.T) { testSnapshotRestore(t) }

// TestPrivateNodesUninstall runs last of the node tests (this file sorts after
// node_test.go and nodehelpers_test.go): the uninstall script
// install.sh wrote on each joined node removes node-agent, and the Nodes are
// deleted from the cluster.
func TestPrivateNodesUninstall(t *testing.T) {
	track(t)
	if reuseLab {
		t.Skip("VCS_E2E_REUSE_LAB=1: the lab's nodes stay joined")
	}
	cs := clientset(t)
	for _, n := range joinNodes {
		r := inNode(t, n, "sh", "-c", "[ ! -x /usr/local/bin/vcluster-standalone-uninstall.sh ] || /usr/local/bin/vcluster-standalone-uninstall.sh")
		if r.code != 0 {
			t.Errorf("%s: uninstall: %s", n, r)
			continue
		}
		if r := inNode(t, n, "systemctl", "cat", nodeAgentUnit); r.code == 0 {
			t.Errorf("%s: systemd still knows %s after uninstall", n, nodeAgentUnit)
		}
		if r := inNode(t, n, "test", "-e", "/usr/local/bin/node-agent"); r.code == 0 {
			t.Errorf("%s: /usr/local/bin/node-agent left after uninstall", n)
		}
		if r := inNode(t, n, "pgrep", "-a", "-x", "node-agent"); r.stdout != "" {
			t.Errorf("%s: node-agent processes left after uninstall: %s", n, r.stdout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
		cancel()
	}
}
