package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
	csinode "github.com/vcluster-standalone/vcluster-standalone/pkg/csi/node"
	"github.com/vcluster-standalone/vcluster-standalone/test/internal/ginkgoout"
)

// sanityAccessEnv selects the access type one run of TestCSISanity checks;
// unset, the test runs itself once per access type (Ginkgo runs one suite
// per process).
const sanityAccessEnv = "VCS_CSI_SANITY_ACCESS"

// TestCSISanity runs csi-sanity (csi-test v5, in-process) against the whole
// driver: the control plane's CSI controller on its socket and this node's
// CSI node service over a real btrfs pool, with the node's reconciler between
// them, for mount and for block volumes.
func TestCSISanity(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the pool mounts a btrfs image on a loop device")
	}
	access := os.Getenv(sanityAccessEnv)
	if access == "" {
		for _, a := range []string{"mount", "block"} {
			t.Run(a, func(t *testing.T) {
				cmd := exec.Command(os.Args[0], "-test.run", "^TestCSISanity$", "-test.v", "-test.count=1")
				cmd.Env = append(os.Environ(), sanityAccessEnv+"="+a, "VCS_BINARY="+binary)
				out, err := cmd.CombinedOutput()
				summary := ginkgoout.Summary(string(out))
				t.Logf("csi-sanity (%s): %s", a, summary)
				if err != nil {
					t.Fatalf("csi-sanity (%s) failed: %v\n%s", a, err, ginkgoout.Tail(string(out), 120))
				}
			})
		}
		return
	}

	p, cp := csiTestbed(t, 4<<30)
	dir := t.TempDir()
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}

	// The controller drops the Pools of nodes that do not exist: give the
	// in-process node its Node object.
	const nodeName = "sanity-node"
	if _, err := cp.client().CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eph, err := csinode.LoadEphemeralState(filepath.Join(p.Root(), "ephemeral.json"))
	if err != nil {
		t.Fatal(err)
	}
	server := &csinode.Server{NodeName: nodeName, Pool: p, Ephemeral: eph}
	g := grpc.NewServer()
	csipb.RegisterIdentityServer(g, &csi.IdentityServer{})
	csipb.RegisterNodeServer(g, server)
	nodeSock := filepath.Join(dir, "node.sock")
	l, err := net.Listen("unix", nodeSock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { csinode.Reconcile(ctx, dynamic.NewForConfigOrDie(cfg), nodeName, p, os.Stderr); close(done) }()
	t.Cleanup(func() { cancel(); <-done; g.Stop() })

	controllerSock := filepath.Join(cp.dataDir, "csi", "controller.sock")
	mustPoll(t, 30*time.Second, "controller socket", func(context.Context) error {
		_, err := os.Stat(controllerSock)
		return err
	})
	mustPoll(t, 30*time.Second, "Pool "+nodeName, func(ctx context.Context) error {
		_, err := dynamic.NewForConfigOrDie(cfg).Resource(api.PoolResource).Get(ctx, nodeName, metav1.GetOptions{})
		return err
	})
	sc := sanity.NewTestConfig()
	sc.Address = nodeSock
	sc.ControllerAddress = controllerSock
	sc.TargetPath = filepath.Join(dir, "target")
	sc.StagingPath = filepath.Join(dir, "staging")
	sc.TestVolumeSize = 64 << 20
	sc.TestVolumeExpandSize = 128 << 20
	sc.TestVolumeAccessType = access
	sc.IdempotentCount = 2
	sanity.Test(t, sc)
}
