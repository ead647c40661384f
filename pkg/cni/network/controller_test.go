package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

var testSettings = config.ClusterSettings{
	PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", Backend: config.BackendVXLAN, VNI: 7,
}

func node(name, podCIDR string, annotations map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
}

func vxlanAnnotations(ip string) map[string]string {
	return map[string]string{
		AnnotationBackend: config.BackendVXLAN, AnnotationNodeIP: ip,
		AnnotationVTEPMAC: VTEPMAC(netip.MustParseAddr(ip)).String(),
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeDataplane records what the controller asks for.
type fakeDataplane struct {
	mu     sync.Mutex
	local  Local
	peers  []Peer
	syncs  int
	ensure int
}

func (f *fakeDataplane) EnsureLocal(l Local) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensure++
	f.local = l
	return nil
}

func (f *fakeDataplane) SyncPeers(l Local, p []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	f.local, f.peers = l, p
	return nil
}

func (f *fakeDataplane) peerNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, p := range f.peers {
		names = append(names, p.Name)
	}
	return names
}

// fakeController is a controller over a fake API and a fake data path,
// skipping Init (which reads the host's interfaces).
func fakeController(t *testing.T, client kubernetes.Interface) (*Controller, *fakeDataplane, *cni.NetConf) {
	c := New(client, &config.Node{NodeName: "a", DataDir: "/var/lib/node-agent"}, testSettings)
	dp := &fakeDataplane{}
	c.dp = dp
	c.local = Local{Backend: config.BackendVXLAN, VNI: 7,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		Uplink: Uplink{Name: "eth0", Index: 2, MTU: 1500, IP: netip.MustParseAddr("10.123.200.1")}}
	written := &cni.NetConf{}
	var mu sync.Mutex
	c.WriteCNIConfig = func(dir string, conf cni.NetConf) error {
		mu.Lock()
		defer mu.Unlock()
		if dir != "/var/lib/node-agent/cni/net.d" {
			return fmt.Errorf("CNI config written to %s", dir)
		}
		*written = conf
		return nil
	}
	c.Resync = time.Hour
	t.Cleanup(func() { _ = c.Stop() })
	return c, dp, written
}

func TestControllerFollowsNodes(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(node("a", "", nil), node("b", "10.244.2.0/24", vxlanAnnotations("10.123.200.2")),
		node("c", "", vxlanAnnotations("10.123.200.3")))
	c, dp, written := fakeController(t, client)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Annotations are published before the pod CIDR exists.
	eventually(t, "annotations on Node a", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
		return err == nil && n.Annotations[AnnotationVTEPMAC] == "0e:76:0a:7b:c8:01" &&
			n.Annotations[AnnotationNodeIP] == "10.123.200.1" && n.Annotations[AnnotationBackend] == "vxlan"
	})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Ready(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready without a pod CIDR = %v, want a timeout", err)
	}
	if written.Subnet != "" {
		t.Fatal("CNI config written before the node has a pod CIDR")
	}

	// The pod CIDR arrives: CNI config written with the overlay MTU, peer b routed.
	a, _ := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	a.Spec.PodCIDR = "10.244.1.0/24"
	if _, err := client.CoreV1().Nodes().Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := c.Ready(ready); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if written.MTU != 1450 || written.Subnet != "10.244.1.0/24" || written.IPAMDir != "/var/lib/node-agent/cni/ipam" {
		t.Errorf("CNI config = %+v, want MTU 1450, subnet 10.244.1.0/24, IPAM dir under the data dir", *written)
	}
	eventually(t, "peer b", func() bool { return slices.Equal(dp.peerNames(), []string{"b"}) })
	dp.mu.Lock()
	if dp.local.PodCIDR.String() != "10.244.1.0/24" {
		t.Errorf("local pod CIDR = %s", dp.local.PodCIDR)
	}
	dp.mu.Unlock()

	// c gets its pod CIDR: added. b is deleted: removed.
	cn, _ := client.CoreV1().Nodes().Get(ctx, "c", metav1.GetOptions{})
	cn.Spec.PodCIDR = "10.244.3.0/24"
	if _, err := client.CoreV1().Nodes().Update(ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peers b and c", func() bool { return slices.Equal(dp.peerNames(), []string{"b", "c"}) })
	if err := client.CoreV1().Nodes().Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer c alone", func() bool { return slices.Equal(dp.peerNames(), []string{"c"}) })

	// Annotations removed by someone are published again.
	a, _ = client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	a.Annotations = nil
	if _, err := client.CoreV1().Nodes().Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "annotations back", func() bool {
		n, _ := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
		return n.Annotations[AnnotationBackend] == "vxlan"
	})
	for range 2 {
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestControllerFailsOnForeignPodCIDR(t *testing.T) {
	client := fake.NewClientset(node("a", "192.168.7.0/24", nil))
	c, _, _ := fakeController(t, client)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.Failed():
		if !strings.Contains(err.Error(), "192.168.7.0/24") || !strings.Contains(err.Error(), "10.244.0.0/16") {
			t.Errorf("error = %v; want it to name both CIDRs", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure for a pod CIDR outside the cluster's")
	}
}

func TestPeersFromNodes(t *testing.T) {
	gone := node("gone", "10.244.8.0/24", vxlanAnnotations("10.0.0.8"))
	gone.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	nodes := []*corev1.Node{
		node("self", "10.244.1.0/24", vxlanAnnotations("10.0.0.1")),
		node("z", "10.244.3.0/24", vxlanAnnotations("10.0.0.3")),
		node("b", "10.244.2.0/24", vxlanAnnotations("10.0.0.2")),
		node("nocidr", "", vxlanAnnotations("10.0.0.4")),
		node("noanno", "10.244.5.0/24", nil),
		node("hostgw", "10.244.6.0/24", map[string]string{AnnotationBackend: "host-gw", AnnotationNodeIP: "10.0.0.6"}),
		node("badmac", "10.244.7.0/24", map[string]string{AnnotationBackend: "vxlan", AnnotationNodeIP: "10.0.0.7", AnnotationVTEPMAC: "nope"}),
		gone,
	}
	peers, skipped := PeersFromNodes("self", config.BackendVXLAN, nodes)
	if len(peers) != 2 || peers[0].Name != "b" || peers[1].Name != "z" ||
		peers[0].PodCIDR.String() != "10.244.2.0/24" || peers[0].IP.String() != "10.0.0.2" ||
		peers[0].VTEPMAC.String() != VTEPMAC(netip.MustParseAddr("10.0.0.2")).String() {
		t.Errorf("peers = %+v, want b and z", peers)
	}
	want := map[string]string{"nocidr": "pod CIDR", "noanno": "annotations", "hostgw": "backend", "badmac": "MAC"}
	if len(skipped) != len(want) {
		t.Errorf("skipped = %v, want %v", skipped, want)
	}
	for n, w := range want {
		if !strings.Contains(skipped[n], w) {
			t.Errorf("skipped[%s] = %q, want it to mention %q", n, skipped[n], w)
		}
	}
	hg, _ := PeersFromNodes("self", config.BackendHostGW, nodes)
	if len(hg) != 1 || hg[0].Name != "hostgw" || hg[0].VTEPMAC != nil {
		t.Errorf("host-gw peers = %+v, want hostgw without a MAC", hg)
	}
}

// nsDataplane runs a dataplane inside a namespace, for the controller's
// background goroutine.
type nsDataplane struct {
	t  *testing.T
	ns string
	dp dataplane
}

func (n nsDataplane) EnsureLocal(l Local) error {
	return inNS(n.t, n.ns, func() error { return n.dp.EnsureLocal(l) })
}

func (n nsDataplane) SyncPeers(l Local, p []Peer) error {
	return inNS(n.t, n.ns, func() error { return n.dp.SyncPeers(l, p) })
}

// startInNS runs a real controller for node a of the lab.
func startInNS(t *testing.T, l *lab, client kubernetes.Interface, dataDir string) *Controller {
	t.Helper()
	c := New(client, &config.Node{NodeName: "a", Iface: "eth0", DataDir: dataDir}, testSettings)
	mustNS(t, l.nodes[0], func() error { return c.Init(context.Background()) })
	c.dp = nsDataplane{t, l.nodes[0], c.dp}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return c
}

func TestControllerRestartKeepsPodsConnected(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1450)
	locB, peerA := l.local(t, 1, config.BackendVXLAN)
	if err := syncNode(t, l.nodes[1], locB, peerA); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(node("a", "10.244.1.0/24", nil), node("b", "10.244.2.0/24", vxlanAnnotations(nodeIPs[1])))
	dataDir := t.TempDir()
	c := startInNS(t, l, client, dataDir)

	conf, err := os.ReadFile(filepath.Join(dataDir, "cni", "net.d", cni.ConfListFile))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct {
			MTU    int    `json:"mtu"`
			Subnet string `json:"subnet"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &list); err != nil || len(list.Plugins) != 1 || list.Plugins[0].MTU != 1450 || list.Plugins[0].Subnet != "10.244.1.0/24" {
		t.Errorf("conflist = %s (%v); want mtu 1450 and subnet 10.244.1.0/24", conf, err)
	}
	eventually(t, "route to node b", func() bool {
		s, _ := readVXLAN(t, l.nodes[0])
		return len(s.routes) == 1 && len(s.fdb) == 1 && len(s.neighs) == 1
	})
	before, _ := readVXLAN(t, l.nodes[0])

	// Probe pod B from pod A every 10 ms across a restart of the controller.
	udpEcho(t, l.pods[1], podIPs[1]+":9000")
	stop := make(chan struct{})
	result := make(chan [2]int, 1)
	go func() {
		sent, lost := 0, 0
		err := inNS(t, l.pods[0], func() error {
			conn, err := net.Dial("udp4", podIPs[1]+":9000")
			if err != nil {
				return err
			}
			defer conn.Close()
			buf := make([]byte, 16)
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				sent++
				_, _ = conn.Write([]byte("ping"))
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := conn.Read(buf); err != nil {
					lost++
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		if err != nil {
			lost = -1
		}
		result <- [2]int{sent, lost}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if s, ok := readVXLAN(t, l.nodes[0]); !ok || len(s.routes) != 1 {
		t.Fatal("Stop tore down the data path")
	}
	startInNS(t, l, client, dataDir)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	r := <-result
	t.Logf("UDP probes across the restart: %d sent, %d lost", r[0], r[1])
	if r[1] < 0 || r[1] > 1 || r[0] < 20 {
		t.Errorf("UDP probes across the restart: %d sent, %d lost; want at most 1 lost", r[0], r[1])
	}
	after, _ := readVXLAN(t, l.nodes[0])
	if after.link.Index != before.link.Index {
		t.Errorf("restart recreated vcs-vxlan: ifindex %d, was %d", after.link.Index, before.link.Index)
	}

	// A deleted Node's route, neighbour and FDB entry vanish within seconds.
	if err := client.CoreV1().Nodes().Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node b's entries to go", func() bool {
		s, _ := readVXLAN(t, l.nodes[0])
		return len(s.routes)+len(s.fdb)+len(s.neighs) == 0
	})
}

// udpEcho answers every datagram to addr in namespace ns.
func udpEcho(t *testing.T, ns, addr string) {
	t.Helper()
	var pc net.PacketConn
	mustNS(t, ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}
