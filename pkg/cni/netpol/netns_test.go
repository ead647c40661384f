package netpol

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/internal/netnstest"
)

// The test builds a "node" network namespace routing between "pod"
// namespaces and an "outside" one, loads the real table into the node and
// checks real TCP and UDP connections against what the compiler's
// evaluator says. The host's own namespace is never touched.

func requireRoot(t *testing.T) { netnstest.RequireRoot(t, "ip") }

func run(t *testing.T, args ...string) { netnstest.Run(t, args[0], args[1:]...) }

func newNS(t *testing.T, name string) string { return netnstest.New(t, "vcsnp", name) }

func inNS(name string, fn func() error) error { return netnstest.In(name, fn) }

type testPod struct {
	ns, name, netns string
	addr            netip.Addr
}

// serve answers TCP and UDP on port in the namespace until the test ends.
func serve(t *testing.T, netnsName string, addr string, port int) {
	t.Helper()
	err := inNS(netnsName, func() error {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err != nil {
			return err
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err != nil {
			l.Close()
			return err
		}
		t.Cleanup(func() { l.Close(); u.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
				c.Close()
			}
		}()
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := u.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = u.WriteTo(buf[:n], from)
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// connects reports whether a TCP or UDP exchange from the namespace to dst:port succeeds.
func connects(netnsName, proto string, dst netip.Addr, port int) bool {
	ok := false
	_ = inNS(netnsName, func() error {
		c, err := net.DialTimeout(proto, net.JoinHostPort(dst.String(), fmt.Sprint(port)), 400*time.Millisecond)
		if err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(400 * time.Millisecond))
		if proto == "udp" {
			if _, err := c.Write([]byte("hi")); err != nil {
				return nil
			}
		}
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		ok = (err == nil || err == io.EOF) && n > 0
		return nil
	})
	return ok
}

func TestTableEnforcesInANetworkNamespace(t *testing.T) {
	requireRoot(t)
	node := newNS(t, "node")
	outside := newNS(t, "out")
	run(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	gw := "10.244.1.1"
	pods := []testPod{
		{ns: "a", name: "client", addr: netip.MustParseAddr("10.244.1.2")},
		{ns: "b", name: "server", addr: netip.MustParseAddr("10.244.1.3")},
		{ns: "a", name: "other", addr: netip.MustParseAddr("10.244.1.4")},
		{ns: "a", name: "unknown", addr: netip.MustParseAddr("10.244.1.9")}, // not in the API: fail closed
	}
	for i := range pods {
		p := &pods[i]
		p.netns = newNS(t, p.name)
		host := fmt.Sprintf("vnp%d-%d", os.Getpid()%10000, i)
		run(t, "ip", "link", "add", host, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", p.netns)
		run(t, "ip", "-n", node, "addr", "add", gw+"/32", "dev", host)
		run(t, "ip", "-n", node, "link", "set", host, "up")
		run(t, "ip", "-n", node, "route", "add", p.addr.String()+"/32", "dev", host)
		run(t, "ip", "-n", p.netns, "addr", "add", p.addr.String()+"/32", "dev", "eth0")
		run(t, "ip", "-n", p.netns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", p.netns, "route", "add", gw, "dev", "eth0", "scope", "link")
		run(t, "ip", "-n", p.netns, "route", "add", "default", "via", gw, "dev", "eth0")
		serve(t, p.netns, p.addr.String(), 8080)
		serve(t, p.netns, p.addr.String(), 8081)
	}
	// "outside": a public address and the metadata address, beyond the node's uplink.
	run(t, "ip", "link", "add", "up0", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", outside)
	run(t, "ip", "-n", node, "addr", "add", "192.0.2.1/24", "dev", "up0")
	run(t, "ip", "-n", node, "link", "set", "up0", "up")
	run(t, "ip", "-n", outside, "addr", "add", "192.0.2.10/24", "dev", "eth0")
	run(t, "ip", "-n", outside, "addr", "add", "169.254.169.254/32", "dev", "eth0")
	run(t, "ip", "-n", outside, "link", "set", "eth0", "up")
	run(t, "ip", "-n", outside, "route", "add", "10.244.0.0/16", "via", "192.0.2.1")
	run(t, "ip", "-n", node, "route", "add", "169.254.169.254/32", "via", "192.0.2.10")
	public := netip.MustParseAddr("192.0.2.10")
	metadata := netip.MustParseAddr("169.254.169.254")
	serve(t, outside, public.String(), 8080)
	serve(t, outside, metadata.String(), 8080)

	tcp := corev1.ProtocolTCP
	var apiPods []*corev1.Pod
	for _, p := range pods[:3] {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, UID: types.UID("uid-" + p.name), Labels: map[string]string{"app": p.name}},
			Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		}
		pod.Status.PodIPs = []corev1.PodIP{{IP: p.addr.String()}}
		apiPods = append(apiPods, pod)
	}
	in := Input{
		NodeName: "n1", NodePodCIDR: netip.MustParsePrefix("10.244.1.0/24"),
		ClusterRanges: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")},
		DeniedEgress:  []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")},
		PublicEgress:  true, PublicEgressCIDR: netip.MustParsePrefix("0.0.0.0/0"),
		Pods:       apiPods,
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "b"}}},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "allow-client-http"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "a"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromString("http"))}},
				}},
			},
		}},
	}
	t.Cleanup(func() { _ = inNS(node, Remove) })
	var reader *LogReader
	if err := inNS(node, func() (err error) { reader, err = OpenLogReader(LogGroupDrop, LogGroupAudit); return err }); err != nil {
		t.Fatal(err)
	}
	logged := make(chan LoggedPacket, 1000)
	go func() {
		for {
			pkts, err := reader.Read()
			if err != nil {
				return
			}
			for _, p := range pkts {
				select {
				case logged <- p:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { reader.Close() })

	var applier Applier
	check := func(step string, table *Table, wantRebuild bool) {
		t.Helper()
		if err := inNS(node, func() error {
			rebuilt, err := applier.Apply(table)
			if err == nil && rebuilt != wantRebuild {
				err = fmt.Errorf("rebuilt=%t, want %t", rebuilt, wantRebuild)
			}
			return err
		}); err != nil {
			t.Fatalf("%s: apply: %v", step, err)
		}
		client, server, other, unknown := pods[0], pods[1], pods[2], pods[3]
		probes := []struct {
			from  string
			src   netip.Addr
			dst   netip.Addr
			proto string
			port  int
		}{
			{client.netns, client.addr, server.addr, "tcp", 8080},
			{client.netns, client.addr, server.addr, "tcp", 8081},
			{client.netns, client.addr, server.addr, "udp", 8080},
			{other.netns, other.addr, server.addr, "tcp", 8080},
			{server.netns, server.addr, client.addr, "tcp", 8080},
			{server.netns, server.addr, client.addr, "udp", 8081},
			{unknown.netns, unknown.addr, client.addr, "tcp", 8080},
			{client.netns, client.addr, unknown.addr, "tcp", 8080},
			{client.netns, client.addr, public, "tcp", 8080},
			{client.netns, client.addr, metadata, "tcp", 8080},
			{outside, public, client.addr, "tcp", 8080},
			{outside, public, server.addr, "tcp", 8080},
		}
		for _, p := range probes {
			proto := uint32(ProtoTCP)
			if p.proto == "udp" {
				proto = ProtoUDP
			}
			want, err := table.Allows(Packet{Src: p.src, Dst: p.dst, Proto: proto, DstPort: uint32(p.port)})
			if err != nil {
				t.Fatal(err)
			}
			if got := connects(p.from, p.proto, p.dst, p.port); got != want {
				t.Errorf("%s: %s %s -> %s:%d: kernel allowed=%t, compiler says %t", step, p.proto, p.src, p.dst, p.port, got, want)
			}
		}
		// The node itself reaches everything, the metadata address included.
		for _, dst := range []netip.Addr{server.addr, unknown.addr, metadata} {
			if !connects(node, "tcp", dst, 8080) {
				t.Errorf("%s: the node cannot reach %s", step, dst)
			}
		}
	}

	table := Compile(in)
	check("ingress policy", table, true)
	// The drop of other -> server:8080 was logged with its cause.
	deadline := time.After(3 * time.Second)
	for found := false; !found; {
		select {
		case p := <-logged:
			found = p.Src == pods[2].addr && p.Dst == pods[1].addr && p.DstPort == 8080 && strings.Contains(p.Prefix, "ns=b")
		case <-deadline:
			t.Fatal("no NFLOG record of the dropped connection other -> server:8080")
		}
	}
	// Spot-check the oracle itself against the API's meaning.
	for _, tc := range []struct {
		pkt  Packet
		want bool
	}{
		{Packet{Src: pods[0].addr, Dst: pods[1].addr, Proto: ProtoTCP, DstPort: 8080}, true},
		{Packet{Src: pods[2].addr, Dst: pods[1].addr, Proto: ProtoTCP, DstPort: 8080}, false},
		{Packet{Src: pods[0].addr, Dst: metadata, Proto: ProtoTCP, DstPort: 8080}, false},
	} {
		if got, _ := table.Allows(tc.pkt); got != tc.want {
			t.Errorf("evaluator: %+v allowed=%t, want %t", tc.pkt, got, tc.want)
		}
	}

	// Egress isolation of the client: only the server's 8081 and nothing public.
	in.Policies = append(in.Policies, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "client-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.1.4/32"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(8080)), EndPort: ptr(int32(8081))}},
			}},
		},
	})
	check("egress policy", Compile(in), true)

	// Pod churn: "other" goes away; only map elements change, and its
	// address now fails closed.
	in.Pods = apiPods[:2]
	check("pod deleted", Compile(in), false)
	in.Pods = apiPods

	in.PublicEgress = false
	in.Policies = in.Policies[:1]
	check("public egress off", Compile(in), true)

	// ClusterNetworkPolicy tiers in the kernel: an Admin Deny overrides the
	// NetworkPolicy that allows client -> server:8080; an Admin Pass hands
	// the client's egress to the NetworkPolicy tier and then the Baseline,
	// where a baseline Accept reopens the public address before the built-in
	// baseline (publicEgress off) would drop it.
	nsA := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "a"}}
	nsB := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "b"}}
	in.ClusterPolicies = []*ClusterNetworkPolicy{
		clusterPolicy("deny-a-to-b-http", TierAdmin, 10, CNPSubject{Namespaces: nsB},
			[]CNPRule{{Action: ActionDeny, From: []CNPPeer{{Namespaces: nsA}}, Protocols: []CNPProtocol{tcpPort(8080)}}}, nil),
		clusterPolicy("pass-client-public", TierAdmin, 5, CNPSubject{Pods: &CNPPods{NamespaceSelector: *nsA, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			nil, []CNPRule{{Action: ActionPass, To: []CNPPeer{{Networks: []string{public.String() + "/32"}}}}, {Action: ActionDeny, To: []CNPPeer{{Namespaces: nsA}}}}),
		clusterPolicy("baseline-public", TierBaseline, 10, CNPSubject{Namespaces: nsA},
			nil, []CNPRule{{Action: ActionAccept, To: []CNPPeer{{Networks: []string{public.String() + "/32"}}}}}),
	}
	tiered := Compile(in)
	for _, tc := range []struct {
		pkt  Packet
		want bool
	}{
		{Packet{Src: pods[0].addr, Dst: pods[1].addr, Proto: ProtoTCP, DstPort: 8080}, false}, // admin Deny over the NetworkPolicy
		{Packet{Src: pods[0].addr, Dst: public, Proto: ProtoTCP, DstPort: 8080}, true},        // passed, then the baseline Accept
		{Packet{Src: pods[0].addr, Dst: pods[2].addr, Proto: ProtoTCP, DstPort: 8080}, false}, // admin Deny to its own namespace
		{Packet{Src: pods[2].addr, Dst: public, Proto: ProtoTCP, DstPort: 8080}, true},
	} {
		if got, _ := tiered.Allows(tc.pkt); got != tc.want {
			t.Errorf("evaluator with tiers: %+v allowed=%t, want %t", tc.pkt, got, tc.want)
		}
	}
	check("cluster network policy tiers", tiered, true)
	// The Admin Deny counted what it dropped, the baseline Accept what it let through.
	if err := inNS(node, func() error {
		counts, err := Counters()
		if err == nil && (counts[ClusterPolicyDropCounterPrefix+"deny-a-to-b-http"] == 0 || counts[ClusterPolicyCounterPrefix+"baseline-public"] == 0) {
			err = fmt.Errorf("ClusterNetworkPolicy counters %v", counts)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
	in.ClusterPolicies = nil

	if err := inNS(node, Remove); err != nil {
		t.Fatal(err)
	}
	if err := inNS(node, func() error {
		if ok, err := Exists(); err != nil || ok {
			return fmt.Errorf("table still there after Remove (err %v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// BenchmarkApply loads the table of BenchmarkCompile's cluster into a
// throw-away namespace: a full rebuild, then an element-only update (a pod
// of another node gone and back).
func BenchmarkApply(b *testing.B) {
	netnstest.RequireRoot(b, "ip")
	node := netnstest.New(b, "vcsnpb", "node")
	in := benchInput()
	full := Compile(in)
	churn := in
	churn.Pods = append(slices.Clone(in.Pods[:1]), in.Pods[2:]...)
	fewer := Compile(churn)
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			if err := inNS(node, func() error { return Apply(full) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pod-churn", func(b *testing.B) {
		var a Applier
		if err := inNS(node, func() error { _, err := a.Apply(full); return err }); err != nil {
			b.Fatal(err)
		}
		tables := []*Table{fewer, full}
		i := 0
		for b.Loop() {
			err := inNS(node, func() error {
				rebuilt, err := a.Apply(tables[i%2])
				if err == nil && rebuilt {
					err = fmt.Errorf("pod churn rebuilt the table")
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
