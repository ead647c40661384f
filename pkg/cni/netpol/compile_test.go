package netpol

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pods of the compiler tests: x/a, x/b on this node (n1), y/a on n1, y/c on n2.
var (
	xa = testAPIPod("x", "a", "n1", "10.244.1.2", map[string]string{"app": "a"}, corev1.ContainerPort{Name: "serve-80", ContainerPort: 80})
	xb = testAPIPod("x", "b", "n1", "10.244.1.3", map[string]string{"app": "b"}, corev1.ContainerPort{Name: "serve-81", ContainerPort: 81, Protocol: corev1.ProtocolUDP})
	ya = testAPIPod("y", "a", "n1", "10.244.1.4", map[string]string{"app": "a"})
	yc = testAPIPod("y", "c", "n2", "10.244.2.2", map[string]string{"app": "c"}, corev1.ContainerPort{Name: "serve-80", ContainerPort: 8080})
)

func testAPIPod(ns, name, node, ip string, l map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), Labels: l},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
	}
	if ip != "" {
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	return p
}

func baseInput(policies ...*networkingv1.NetworkPolicy) Input {
	return Input{
		NodeName: "n1", NodePodCIDR: netip.MustParsePrefix("10.244.1.0/24"),
		ClusterRanges: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")},
		DeniedEgress:  []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")},
		PublicEgress:  true, PublicEgressCIDR: netip.MustParsePrefix("0.0.0.0/0"),
		Pods: []*corev1.Pod{xa, xb, ya, yc},
		Namespaces: []*corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"ns": "x"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "y", Labels: map[string]string{"ns": "y"}}},
		},
		Policies: policies,
	}
}

func policy(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

var (
	tcpProto = corev1.ProtocolTCP
	udpProto = corev1.ProtocolUDP
	ingressT = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressT  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
)

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

type probe struct {
	src, dst string
	proto    uint32
	port     uint32
	want     bool
}

func ip(p *corev1.Pod) string { return p.Status.PodIPs[0].IP }

type verdictCase struct {
	name   string
	in     Input
	probes []probe
}

func TestCompileVerdicts(t *testing.T) {
	cases := []verdictCase{
		{"no policy: everything flows, metadata denied, unknown pod address dropped", baseInput(), []probe{
			{ip(xa), ip(xb), ProtoTCP, 80, true},
			{ip(yc), ip(xa), ProtoTCP, 80, true},
			{ip(xa), "8.8.8.8", ProtoTCP, 443, true},
			{ip(xa), "169.254.169.254", ProtoTCP, 80, false},
			{"10.244.1.77", ip(xa), ProtoTCP, 80, false},
			{ip(xa), "10.244.1.77", ProtoTCP, 80, false},
			{"10.244.3.5", "10.244.2.9", ProtoTCP, 80, true}, // neither end on this node: not ours to judge
		}},
		{"default deny ingress isolates only the namespace's pods", baseInput(policy("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressT})), []probe{
			{ip(ya), ip(xa), ProtoTCP, 80, false},
			{ip(xb), ip(xa), ProtoTCP, 80, false},
			{ip(xa), ip(ya), ProtoTCP, 80, true},
			{ip(xa), "8.8.8.8", ProtoTCP, 80, true},
		}},
		{"pod selector and namespace selector together, named port per destination", baseInput(policy("x", "p", networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", "a"), PolicyTypes: ingressT,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y"), PodSelector: sel("app", "c")}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString("serve-80"))}},
			}},
		})), []probe{
			{ip(yc), ip(xa), ProtoTCP, 80, true},
			{ip(yc), ip(xa), ProtoTCP, 8080, false}, // the name resolves on x/a to 80
			{ip(yc), ip(xa), ProtoUDP, 80, false},
			{ip(ya), ip(xa), ProtoTCP, 80, false},
			{ip(yc), ip(xb), ProtoTCP, 80, true}, // x/b is not selected
		}},
		{"namespace selector alone; port range with endPort", baseInput(policy("x", "p", networkingv1.NetworkPolicySpec{
			PolicyTypes: ingressT,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcpProto, Port: ptr(intstr.FromInt32(80)), EndPort: ptr(int32(90))}},
			}},
		})), []probe{
			{ip(ya), ip(xb), ProtoTCP, 80, true},
			{ip(yc), ip(xb), ProtoTCP, 90, true},
			{ip(yc), ip(xb), ProtoTCP, 91, false},
			{ip(yc), ip(xb), ProtoTCP, 79, false},
			{ip(xa), ip(xb), ProtoTCP, 85, false},
		}},
		{"egress: ipBlock with except, named port resolved on the peer", baseInput(policy("x", "e", networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", "a"), PolicyTypes: egressT,
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.1.4/32"}}}}},
				{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString("serve-80"))}}},
			},
		})), []probe{
			{ip(xa), ip(xb), ProtoTCP, 1234, true},
			{ip(xa), ip(ya), ProtoTCP, 1234, false},
			{ip(xa), "8.8.8.8", ProtoTCP, 80, false},
			{ip(xa), ip(yc), ProtoTCP, 8080, true},
			{ip(xb), "8.8.8.8", ProtoTCP, 80, true}, // x/b has no egress policy
		}},
		{"egress allow-all cannot reopen the metadata address", baseInput(policy("x", "all", networkingv1.NetworkPolicySpec{
			PolicyTypes: egressT, Egress: []networkingv1.NetworkPolicyEgressRule{{}},
		})), []probe{
			{ip(xa), "169.254.169.254", ProtoTCP, 80, false},
			{ip(xa), "8.8.8.8", ProtoTCP, 80, true},
		}},
		{"udp port only", baseInput(policy("x", "u", networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", "b"), PolicyTypes: ingressT,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udpProto, Port: ptr(intstr.FromString("serve-81"))}}}},
		})), []probe{
			{ip(xa), ip(xb), ProtoUDP, 81, true},
			{ip(xa), ip(xb), ProtoTCP, 81, false},
		}},
	}
	off := baseInput()
	off.PublicEgress = false
	cases = append(cases, verdictCase{"public egress off: baseline deny outside, cluster flows", off, []probe{
		{ip(xa), "8.8.8.8", ProtoTCP, 80, false},
		{ip(xa), ip(yc), ProtoTCP, 80, true},
		{ip(xa), "10.96.0.10", ProtoUDP, 53, true},
	}})
	reopened := baseInput(policy("x", "reopen", networkingv1.NetworkPolicySpec{
		PolicyTypes: egressT,
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "8.8.8.0/24"}}}}},
	}))
	reopened.PublicEgress = false
	cases = append(cases, verdictCase{"public egress off: a namespace egress policy reopens it", reopened, []probe{
		{ip(xa), "8.8.8.8", ProtoTCP, 80, true},
		{ip(xa), "9.9.9.9", ProtoTCP, 80, false},
		{ip(ya), "8.8.8.8", ProtoTCP, 80, false},
	}})
	checkVerdicts(t, cases)
}

// checkVerdicts compiles each case and evaluates its probes.
func checkVerdicts(t *testing.T, cases []verdictCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := Compile(tc.in)
			for _, p := range tc.probes {
				got, err := table.Allows(Packet{Src: netip.MustParseAddr(p.src), Dst: netip.MustParseAddr(p.dst), Proto: p.proto, DstPort: p.port})
				if err != nil {
					t.Fatal(err)
				}
				if got != p.want {
					t.Errorf("%s -> %s proto %d port %d: allowed=%t, want %t", p.src, p.dst, p.proto, p.port, got, p.want)
				}
			}
		})
	}
}

func TestCompileFailsClosedForAnnouncedPodsOnly(t *testing.T) {
	fresh := testAPIPod("x", "fresh", "n1", "", map[string]string{"app": "a"})
	in := baseInput(policy("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressT}))
	in.Pods = append(in.Pods, fresh)
	pkt := Packet{Src: netip.MustParseAddr(ip(xb)), Dst: netip.MustParseAddr("10.244.1.50"), Proto: ProtoTCP, DstPort: 80}
	egressPkt := Packet{Src: netip.MustParseAddr("10.244.1.50"), Dst: netip.MustParseAddr("8.8.8.8"), Proto: ProtoTCP, DstPort: 80}
	for _, announced := range []bool{false, true} {
		if announced {
			in.Announced = map[types.UID]netip.Addr{fresh.UID: netip.MustParseAddr("10.244.1.50")}
		}
		table := Compile(in)
		ingressOK, _ := table.Allows(pkt)
		egressOK, _ := table.Allows(egressPkt)
		// Unknown: dropped both ways. Announced: its namespace's default deny
		// isolates its ingress, its egress is open.
		if ingressOK || egressOK != announced {
			t.Errorf("announced=%t: ingress allowed=%t egress allowed=%t", announced, ingressOK, egressOK)
		}
	}
}

func TestAuditPolicyLogsButDoesNotIsolate(t *testing.T) {
	p := policy("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressT})
	p.Annotations = map[string]string{AuditAnnotation: "true"}
	table := Compile(baseInput(p))
	if ok, _ := table.Allows(Packet{Src: netip.MustParseAddr(ip(ya)), Dst: netip.MustParseAddr(ip(xa)), Proto: ProtoTCP, DstPort: 80}); !ok {
		t.Fatal("an audit policy must not drop")
	}
	logged := false
	for _, c := range table.Chains {
		for _, r := range c.Rules {
			if r.Log != "" && r.Verdict.Kind == Accept {
				logged = true
			}
		}
	}
	if !logged {
		t.Fatal("an audit policy must log what it would drop")
	}

	// Audit egress that would allow a public address does not reopen what
	// the baseline denies (publicEgress off): only an enforcing policy can.
	allowPublic := policy("x", "allow-public", networkingv1.NetworkPolicySpec{
		PolicyTypes: egressT,
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "8.8.8.0/24"}}}}},
	})
	public := Packet{Src: netip.MustParseAddr(ip(xa)), Dst: netip.MustParseAddr("8.8.8.8"), Proto: ProtoTCP, DstPort: 443}
	for _, audit := range []bool{true, false} {
		allowPublic.Annotations = map[string]string{AuditAnnotation: fmt.Sprint(audit)}
		in := baseInput(allowPublic)
		in.PublicEgress = false
		if ok, _ := Compile(in).Allows(public); ok == audit {
			t.Errorf("audit=%t: public egress allowed=%t", audit, ok)
		}
	}
}

func TestRanges(t *testing.T) {
	got := subtract(normalize([]Range{{10, 20}, {15, 30}, {31, 31}}), []Range{{12, 12}, {25, 40}})
	want := []Range{{10, 11}, {13, 24}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	full := subtract([]Range{{0, ^uint32(0)}}, []Range{{0, 0}, {^uint32(0), ^uint32(0)}})
	if len(full) != 1 || full[0].Lo != 1 || full[0].Hi != ^uint32(0)-1 {
		t.Fatalf("edges: %v", full)
	}
}

// BenchmarkCompile: 1,000 pods (100 on this node) in 20 namespaces and 200
// policies with selectors, ipBlocks and ports.
func BenchmarkCompile(b *testing.B) {
	in := benchInput()
	var s Stats
	for b.Loop() {
		s = Compile(in).Stats()
	}
	b.ReportMetric(float64(s.Rules), "rules")
	b.ReportMetric(float64(s.Sets), "sets")
	b.ReportMetric(float64(s.Elements), "elements")
	b.ReportMetric(float64(s.Chains), "chains")
}

func benchInput() Input {
	in := baseInput()
	in.Pods = nil
	in.Namespaces = nil
	for ns := 0; ns < 20; ns++ {
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", ns), Labels: map[string]string{"team": fmt.Sprint(ns % 4)}}})
	}
	for i := 0; i < 1000; i++ {
		node := fmt.Sprintf("n%d", 1+i%10)
		addr := fmt.Sprintf("10.244.%d.%d", 1+i%10, 2+i/10)
		in.Pods = append(in.Pods, testAPIPod(fmt.Sprintf("ns%d", i%20), fmt.Sprintf("p%d", i), node, addr,
			map[string]string{"app": fmt.Sprintf("app%d", i%50), "tier": fmt.Sprint(i % 3)}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	}
	for i := 0; i < 200; i++ {
		in.Policies = append(in.Policies, policy(fmt.Sprintf("ns%d", i%20), fmt.Sprintf("pol%d", i), networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", fmt.Sprintf("app%d", i%50)),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("tier", fmt.Sprint(i%3))}, {NamespaceSelector: sel("team", fmt.Sprint(i%4))}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString("http"))}, {Protocol: &tcpProto, Port: ptr(intstr.FromInt32(9000)), EndPort: ptr(int32(9100))}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.244.5.0/24"}}}},
			}},
		}))
	}
	return in
}
