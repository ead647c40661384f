//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// npBenchPolicies is how many NetworkPolicies are in force for the loaded
// throughput figure.
const npBenchPolicies = 50

// TestNetPolFigures measures (hack/bench-netpol.sh; figures, asserted only to
// be measurable): pod -> pod TCP throughput across two nodes (netprobe, 1 GiB,
// median of 3) with no NetworkPolicy and with npBenchPolicies in force on the
// receiving pod's namespace, one of them allowing the sender; the figure is
// the ratio (the target is ≥ 0.95).
func TestNetPolFigures(t *testing.T) {
	track(t)
	cs := clientset(t)
	netWaitNodes(t, cs)
	probe := netBuildProbe(t)
	nsName := netNamespace(t, cs)
	src, dst := podNode, resetNode
	pods := netStartPods(t, cs, nsName,
		netPod("bench-src", src, map[string]string{"role": "sender"}),
		netPod("bench-dst", dst, map[string]string{"role": "sink"}))
	for _, p := range pods {
		netCopyProbe(t, nsName, p.Name, probe)
	}
	const port, bytes, rounds = 5201, 1 << 30, 3
	netMustExec(t, nsName, "bench-dst", fmt.Sprintf("%s tcp-sink %d >/dev/null 2>&1 </dev/null &", netProbe, port))
	sendTo := fmt.Sprintf("%s tcp-send %s:%d %d", netProbe, pods["bench-dst"].Status.PodIP, port, bytes)
	rate := func() float64 {
		t.Helper()
		r := netExec(t, nsName, "bench-src", sendTo)
		f := strings.Fields(r.stdout)
		if r.code != 0 || len(f) != 2 {
			t.Fatalf("tcp-send: %s", r)
		}
		n, err1 := strconv.ParseFloat(f[0], 64)
		secs, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || secs <= 0 {
			t.Fatalf("bad tcp-send output: %s", r)
		}
		return n / secs / 1e6
	}
	measure := func(what string) float64 {
		var vs []float64
		for i := 0; i < rounds; i++ {
			vs = append(vs, rate())
		}
		t.Logf("%-22s MB/s per round: %s", what, netFmtFloats(vs))
		return netMedian(vs)
	}
	rate() // warm up: ARP, routes, conntrack
	none := measure("no policy")

	// Policies of the shapes users write, all selecting the sink: ingress from
	// pod and namespace selectors, ipBlocks with except, port ranges; the
	// last one allows the sender.
	for i := 0; i < npBenchPolicies; i++ {
		p := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%02d", i)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "sink"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		}
		from := port + 1 + i*10
		ports := []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(int32(from))), EndPort: ptr.To(int32(from + 5))}}
		switch i % 3 {
		case 0:
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: ports, From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", i)}}}}}}
		case 1:
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: ports, From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i)}}}}}}
		default:
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: ports, From: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.%d.0.0/16", 100+i), Except: []string{fmt.Sprintf("10.%d.1.0/24", 100+i)}}}}}}
		}
		if i == npBenchPolicies-1 {
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "sender"}}}}}}
		}
		npCreatePolicy(t, cs, nsName, p)
	}
	// In force: another client, not allowed, is refused.
	other := netStartPods(t, cs, nsName, netPod("bench-other", src, nil))["bench-other"]
	poll(t, 30*time.Second, 300*time.Millisecond, "the sink isolated by the policies", func() (bool, string) {
		r := netExec(t, nsName, other.Name, fmt.Sprintf("nc -w 1 %s %d </dev/null", pods["bench-dst"].Status.PodIP, netTCPPort))
		return r.code != 0, r.String()
	})
	loaded := measure(fmt.Sprintf("%d policies", npBenchPolicies))
	netFigure(t, "netpol-throughput", "pod->pod %.0f MB/s with %d policies, %.0f MB/s with none, ratio %.2f (%s -> %s, median of %d; target ≥ 0.95)",
		loaded, npBenchPolicies, none, loaded/none, src, dst, rounds)
}
