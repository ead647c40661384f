package netpol

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func clusterPolicy(name, tier string, priority int32, subject CNPSubject, ingress, egress []CNPRule) *ClusterNetworkPolicy {
	return &ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: CNPSpec{Tier: tier, Priority: priority, Subject: subject, Ingress: ingress, Egress: egress}}
}

func nsSubject(kv ...string) CNPSubject { return CNPSubject{Namespaces: sel(kv...)} }

func podsPeer(nsKV, podKV []string) CNPPeer {
	return CNPPeer{Pods: &CNPPods{NamespaceSelector: *sel(nsKV...), PodSelector: *sel(podKV...)}}
}

func tcpPort(n int32) CNPProtocol {
	return CNPProtocol{TCP: &CNPPortMatch{DestinationPort: &CNPPort{Number: n}}}
}

func withCluster(in Input, cnps ...*ClusterNetworkPolicy) Input {
	in.ClusterPolicies = cnps
	return in
}

func TestCompileClusterNetworkPolicyTiers(t *testing.T) {
	allowFromY := policy("x", "allow-y", networkingv1.NetworkPolicySpec{PolicyTypes: ingressT,
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}}}})
	denyAllX := policy("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressT})
	fromY := []CNPPeer{{Namespaces: sel("ns", "y")}}
	cases := []verdictCase{
		{"admin Deny beats a NetworkPolicy that allows", withCluster(baseInput(allowFromY),
			clusterPolicy("deny-y", TierAdmin, 10, nsSubject("ns", "x"), []CNPRule{{Action: ActionDeny, From: fromY}}, nil)), []probe{
			{ip(ya), ip(xa), ProtoTCP, 80, false},
			{ip(yc), ip(xb), ProtoTCP, 80, false},
			{ip(xb), ip(xa), ProtoTCP, 80, false}, // the NetworkPolicy isolates x and allows only y
			{ip(xa), ip(ya), ProtoTCP, 80, true},  // y is not a subject
		}},
		{"admin Accept beats a NetworkPolicy default deny", withCluster(baseInput(denyAllX),
			clusterPolicy("accept-y", TierAdmin, 10, nsSubject("ns", "x"), []CNPRule{{Action: ActionAccept, From: fromY, Protocols: []CNPProtocol{tcpPort(80)}}}, nil)), []probe{
			{ip(ya), ip(xa), ProtoTCP, 80, true},
			{ip(ya), ip(xa), ProtoTCP, 81, false},
			{ip(ya), ip(xa), ProtoUDP, 80, false},
			{ip(xb), ip(xa), ProtoTCP, 80, false},
		}},
		{"priority orders the Admin tier; the lower value wins", withCluster(baseInput(),
			clusterPolicy("z-deny", TierAdmin, 20, nsSubject("ns", "x"), []CNPRule{{Action: ActionDeny, From: fromY}}, nil),
			clusterPolicy("a-accept", TierAdmin, 5, nsSubject("ns", "x"), []CNPRule{{Action: ActionAccept, From: []CNPPeer{podsPeer([]string{"ns", "y"}, []string{"app", "c"})}}}, nil)), []probe{
			{ip(yc), ip(xa), ProtoTCP, 80, true},
			{ip(ya), ip(xa), ProtoTCP, 80, false},
		}},
		{"rule order inside a policy: the first match decides", withCluster(baseInput(),
			clusterPolicy("ordered", TierAdmin, 1, nsSubject("ns", "x"), []CNPRule{
				{Action: ActionAccept, From: fromY, Protocols: []CNPProtocol{{TCP: &CNPPortMatch{DestinationPort: &CNPPort{Range: &CNPPortRange{Start: 80, End: 90}}}}}},
				{Action: ActionDeny, From: fromY},
			}, nil)), []probe{
			{ip(ya), ip(xa), ProtoTCP, 85, true},
			{ip(ya), ip(xa), ProtoTCP, 91, false},
		}},
		{"admin Pass skips the rest of the Admin tier; the NetworkPolicy decides", withCluster(baseInput(allowFromY),
			clusterPolicy("pass", TierAdmin, 1, nsSubject("ns", "x"), []CNPRule{{Action: ActionPass, From: fromY}}, nil),
			clusterPolicy("deny", TierAdmin, 2, nsSubject("ns", "x"), []CNPRule{{Action: ActionDeny, From: []CNPPeer{{Namespaces: &metav1.LabelSelector{}}}}}, nil)), []probe{
			{ip(ya), ip(xa), ProtoTCP, 80, true},
			{ip(xb), ip(xa), ProtoTCP, 80, false}, // not passed: the second policy denies
		}},
		{"baseline Deny applies only to pods no NetworkPolicy selects", withCluster(baseInput(allowFromY),
			clusterPolicy("baseline", TierBaseline, 1, CNPSubject{Namespaces: &metav1.LabelSelector{}}, []CNPRule{{Action: ActionDeny, From: fromY}}, nil)), []probe{
			{ip(ya), ip(xa), ProtoTCP, 80, true},  // x's NetworkPolicy allows y
			{ip(xa), ip(ya), ProtoTCP, 80, true},  // from x: not a baseline peer
			{ip(yc), ip(ya), ProtoTCP, 80, false}, // y/a: no NetworkPolicy, the baseline denies y
		}},
		{"admin Pass reaches the Baseline tier; baseline Pass allows", withCluster(baseInput(),
			clusterPolicy("pass", TierAdmin, 1, nsSubject("ns", "y"), []CNPRule{{Action: ActionPass, From: []CNPPeer{podsPeer(nil, []string{"app", "c"})}}}, nil),
			clusterPolicy("admin-deny", TierAdmin, 2, nsSubject("ns", "y"), []CNPRule{{Action: ActionDeny, From: []CNPPeer{{Namespaces: sel("ns", "y")}}}}, nil),
			clusterPolicy("b-pass", TierBaseline, 1, nsSubject("ns", "y"), []CNPRule{{Action: ActionPass, From: []CNPPeer{{Namespaces: sel("ns", "x")}}}}, nil),
			clusterPolicy("c-deny", TierBaseline, 2, nsSubject("ns", "y"), []CNPRule{{Action: ActionDeny, From: []CNPPeer{{Namespaces: &metav1.LabelSelector{}}}}}, nil)), []probe{
			{ip(yc), ip(ya), ProtoTCP, 80, false}, // passed by the admin tier, denied by the baseline
			{ip(xa), ip(ya), ProtoTCP, 80, true},  // baseline Pass: the default allows
			{ip(xb), ip(xa), ProtoTCP, 80, true},  // x is no subject
		}},
		{"egress: admin Deny to networks, named port to pods, and the metadata deny stays first", withCluster(baseInput(),
			clusterPolicy("egress", TierAdmin, 1, CNPSubject{Pods: &CNPPods{NamespaceSelector: *sel("ns", "x"), PodSelector: *sel("app", "a")}}, nil, []CNPRule{
				{Action: ActionAccept, To: []CNPPeer{{Networks: []string{"169.254.0.0/16"}}}},
				{Action: ActionAccept, To: []CNPPeer{{Namespaces: sel("ns", "y")}}, Protocols: []CNPProtocol{{DestinationNamedPort: "serve-80"}}},
				{Action: ActionDeny, To: []CNPPeer{{Networks: []string{"0.0.0.0/0"}}}},
			})), []probe{
			{ip(xa), "169.254.169.254", ProtoTCP, 80, false},
			{ip(xa), "169.254.1.1", ProtoTCP, 80, true},
			{ip(xa), ip(yc), ProtoTCP, 8080, true}, // serve-80 is 8080 on y/c
			{ip(xa), ip(yc), ProtoTCP, 80, false},
			{ip(xa), ip(xb), ProtoTCP, 80, false},
			{ip(xa), "8.8.8.8", ProtoTCP, 443, false},
			{ip(xb), "8.8.8.8", ProtoTCP, 443, true}, // x/b is no subject
		}},
		{"a peer the compiler cannot evaluate fails closed", withCluster(baseInput(),
			clusterPolicy("unknown-deny", TierAdmin, 1, nsSubject("ns", "x"), nil, []CNPRule{{Action: ActionDeny, To: []CNPPeer{{DomainNames: []string{"example.com"}}}}}),
			clusterPolicy("unknown-accept", TierAdmin, 1, nsSubject("ns", "y"), nil, []CNPRule{{Action: ActionAccept, To: []CNPPeer{{DomainNames: []string{"example.com"}}}}})), []probe{
			{ip(xa), ip(ya), ProtoTCP, 80, false}, // a Deny rule becomes deny-all
			{ip(ya), ip(xa), ProtoTCP, 80, true},  // an Accept rule matches nothing
		}},
	}
	// publicEgress off is the built-in Baseline policy, the tier's last:
	// a baseline Accept before it reopens outside traffic, a NetworkPolicy too.
	off := withCluster(baseInput(), clusterPolicy("allow-dns", TierBaseline, 10, nsSubject("ns", "x"), nil,
		[]CNPRule{{Action: ActionAccept, To: []CNPPeer{{Networks: []string{"8.8.8.8/32"}}}}}))
	off.PublicEgress = false
	cases = append(cases, verdictCase{"the built-in baseline comes after the Baseline tier's own policies", off, []probe{
		{ip(xa), "8.8.8.8", ProtoTCP, 53, true},
		{ip(xa), "8.8.4.4", ProtoTCP, 53, false},
		{ip(ya), "8.8.8.8", ProtoTCP, 53, false},
	}})
	builtin := clusterPolicy("vcluster-standalone-denied-egress", TierBaseline, 1, nsSubject("ns", "y"), nil,
		[]CNPRule{{Action: ActionDeny, To: []CNPPeer{{Networks: []string{"0.0.0.0/0"}}}}})
	builtin.Labels = map[string]string{config.BuiltinClusterPolicyLabel: "true"}
	cases = append(cases, verdictCase{"built-in objects are shown, not compiled: the settings are", withCluster(baseInput(), builtin), []probe{
		{ip(ya), "8.8.8.8", ProtoTCP, 53, true},
	}})
	checkVerdicts(t, cases)
}

func TestClusterNetworkPolicyFromUnstructured(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
		"metadata": map[string]any{"name": "p"},
		"spec": map[string]any{"tier": "Admin", "priority": int64(7),
			"subject": map[string]any{"namespaces": map[string]any{"matchLabels": map[string]any{"a": "b"}}},
			"egress": []any{map[string]any{"action": "Deny", "to": []any{map[string]any{"networks": []any{"10.0.0.0/8"}}},
				"protocols": []any{map[string]any{"udp": map[string]any{"destinationPort": map[string]any{"range": map[string]any{"start": int64(1), "end": int64(9)}}}}}}}},
	}}
	p, err := ClusterNetworkPolicyFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Priority != 7 || p.Spec.Subject.Namespaces.MatchLabels["a"] != "b" || p.Spec.Egress[0].To[0].Networks[0] != "10.0.0.0/8" ||
		p.Spec.Egress[0].Protocols[0].UDP.DestinationPort.Range.End != 9 {
		t.Fatalf("decoded %+v", p.Spec)
	}
	if _, err := ClusterNetworkPolicyFrom("not an object"); err == nil {
		t.Fatal("a non-unstructured object must be an error")
	}
}
