//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

const (
	// The cloud metadata address: the test puts a listener there inside the
	// lab switch namespace, the nodes' default gateway.
	npMetadataAddr = "169.254.169.254"
	npMetadataPort = 80
	npConfig       = "/etc/vcluster-standalone/config.yaml"
	npLogDir       = "/tmp/e2e-netpol"
)

// TestNetworkPolicy: NetworkPolicy is enforced on every lab node, with pods
// on every node: clients (role=client) and servers a default-deny ingress
// policy isolates (role=isolated), plus one server no policy selects
// (role=open) on the servers' node.
//
//   - NoWindowAtPodStart: a client that connects to every address of a node's
//     pod CIDR every 50 ms never reaches a new isolated pod, from its first
//     packet; it does reach the open server (the scan works).
//   - PolicyChangeOnEveryNode: an allow policy takes effect on every node
//     (measured per node from the create; asserted within 5 s, reported), and
//     so does its deletion.
//   - MetadataAddress: 169.254.169.254 is unreachable from pods and reachable
//     from the node.
//   - AgentRestartAndKill: while node-agent restarts and is killed with
//     SIGKILL on the servers' node, continuous probes see 0 denied
//     connections get through and 0 allowed ones fail.
//   - BadInput: an invalid ipBlock or port is refused by the API; an invalid
//     `policies` value is a one-line config error naming the field.
//   - PublicEgressOff: with policies.networkPolicy.workload.publicEgress.enabled
//     false on lab-cp (and node-agent restarted, to read it), a listener outside the cluster (in the lab switch) is
//     unreachable while in-cluster traffic flows; a namespace egress policy
//     reopens it.
func TestNetworkPolicy(t *testing.T) {
	track(t)
	cs := clientset(t)
	nodes := netWaitNodes(t, cs)
	probe := netBuildProbe(t)
	nsName := netNamespace(t, cs)
	serverNode := joinNodes[1]
	clientNode := joinNodes[0]

	npCreatePolicy(t, cs, nsName, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-isolated"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "isolated"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	})
	var specs []*corev1.Pod
	for _, n := range allNodes {
		specs = append(specs, netPod("client-"+n, n, map[string]string{"role": "client"}))
	}
	specs = append(specs, netPod("open", serverNode, map[string]string{"role": "open"}))
	pods := netStartPods(t, cs, nsName, specs...)
	for _, n := range allNodes {
		netCopyProbe(t, nsName, "client-"+n, probe)
		netMustExec(t, nsName, "client-"+n, "mkdir -p "+npLogDir)
	}
	openAddr := net.JoinHostPort(pods["open"].Status.PodIP, strconv.Itoa(netTCPPort))
	poll(t, time.Minute, 200*time.Millisecond, "client-"+clientNode+" reaches the open server", func() (bool, string) {
		r := netExec(t, nsName, "client-"+clientNode, fmt.Sprintf("nc -w 2 %s %d </dev/null", pods["open"].Status.PodIP, netTCPPort))
		return r.code == 0 && r.stdout == "open", r.String()
	})

	t.Run("NoWindowAtPodStart", func(t *testing.T) {
		client := "client-" + clientNode
		cidr := nodes[serverNode].Spec.PodCIDR
		stop := npBackground(t, nsName, client, "scan", fmt.Sprintf("%s tcp-scan %s %d 50", netProbe, cidr, netTCPPort))
		iso := netStartPods(t, cs, nsName, netPod("iso-new", serverNode, map[string]string{"role": "isolated"}))["iso-new"]
		// The listener runs; keep scanning a while after it does.
		time.Sleep(5 * time.Second)
		lines := stop()
		var reachedOpen, reachedIsolated []string
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 3 {
				continue
			}
			switch f[2] {
			case "open":
				reachedOpen = append(reachedOpen, l)
			case iso.Name:
				reachedIsolated = append(reachedIsolated, l)
			}
		}
		if len(reachedOpen) == 0 {
			t.Fatalf("the scan of %s never reached the open server at %s: the scan is broken (%d lines: %v)", cidr, openAddr, len(lines), sample(lines))
		}
		t.Logf("scan of %s from %s: %d answers from the open server, %d from %s (%s)", cidr, clientNode, len(reachedOpen), len(reachedIsolated), iso.Name, iso.Status.PodIP)
		if len(reachedIsolated) > 0 {
			t.Errorf("the new isolated pod %s (%s) answered %d times, first: %v", iso.Name, iso.Status.PodIP, len(reachedIsolated), reachedIsolated[:min(3, len(reachedIsolated))])
		}
	})

	// An isolated server on every node, for the tests below.
	var isoSpecs []*corev1.Pod
	for _, n := range allNodes {
		isoSpecs = append(isoSpecs, netPod("iso-"+n, n, map[string]string{"role": "isolated"}))
	}
	for name, p := range netStartPods(t, cs, nsName, isoSpecs...) {
		pods[name] = p
	}
	isoAddr := func(n string) string {
		return net.JoinHostPort(pods["iso-"+n].Status.PodIP, strconv.Itoa(netTCPPort))
	}

	t.Run("PolicyChangeOnEveryNode", func(t *testing.T) {
		// One client probes the isolated server of every node every 20 ms:
		// ingress is enforced on the server's node, so each probe times one node.
		client := "client-" + cpNode
		stops := map[string]func() []string{}
		for _, n := range allNodes {
			stops[n] = npBackground(t, nsName, client, "loop-"+n, fmt.Sprintf("%s tcp-loop %s 20", netProbe, isoAddr(n)))
		}
		time.Sleep(2 * time.Second)
		allow := npCreatePolicy(t, cs, nsName, npAllowFromClients("allow-clients"))
		created := time.Now()
		poll(t, 30*time.Second, 200*time.Millisecond, "every isolated server reachable once allowed", func() (bool, string) {
			for _, n := range allNodes {
				if !strings.Contains(netMustExec(t, nsName, client, "tail -n 3 "+npLogDir+"/loop-"+n), " ok ") {
					return false, n + " not reached yet"
				}
			}
			return true, ""
		})
		// Tries that start just before the delete may be caught by it: the
		// allow is timed up to when every server was seen reached.
		allowSeen := time.Now()
		time.Sleep(time.Second)
		npDeletePolicy(t, cs, nsName, allow.Name)
		deleted := time.Now()
		time.Sleep(3 * time.Second)
		poll(t, 30*time.Second, 200*time.Millisecond, "every isolated server denied again", func() (bool, string) {
			for _, n := range allNodes {
				if !strings.HasSuffix(netMustExec(t, nsName, client, "tail -n 1 "+npLogDir+"/loop-"+n), " fail") {
					return false, n + " still reached"
				}
			}
			return true, ""
		})
		for _, n := range allNodes {
			lines := stops[n]()
			open, closed := npFirstChange(lines, created, allowSeen, "ok"), npFirstChange(lines, deleted, time.Now(), "fail")
			netFigure(t, "netpol-policy-change-"+n, "allow in force after %s, deny again after %s (from the API call to the first of only allowed/refused tries; a try every 20 ms)", open, closed)
			for what, d := range map[string]time.Duration{"allow": open, "deny": closed} {
				if d < 0 || d > 5*time.Second {
					t.Errorf("%s: the %s took %s to take effect (want ≤ 5 s; the target is 1 s)", n, what, d)
				}
			}
		}
	})

	t.Run("MetadataAddress", func(t *testing.T) {
		npMetadataListener(t)
		for _, n := range allNodes {
			if r := netExec(t, nsName, "client-"+n, fmt.Sprintf("nc -w 3 %s %d </dev/null", npMetadataAddr, npMetadataPort)); r.code == 0 || r.stdout != "" {
				t.Errorf("pod on %s reached the metadata address: %s", n, r)
			}
			if r := inNode(t, n, netBusybox, "nc", "-w", "3", npMetadataAddr, strconv.Itoa(npMetadataPort)); r.code != 0 || r.stdout != "metadata" {
				t.Errorf("node %s does not reach the metadata address: %s, want %q", n, r, "metadata")
			}
		}
	})

	t.Run("AgentRestartAndKill", func(t *testing.T) {
		client := "client-" + clientNode
		allowed := npBackground(t, nsName, client, "allowed", fmt.Sprintf("%s tcp-loop %s 50", netProbe, openAddr))
		denied := npBackground(t, nsName, client, "denied", fmt.Sprintf("%s tcp-loop %s 50", netProbe, isoAddr(serverNode)))
		time.Sleep(2 * time.Second)
		start := time.Now()
		mustInNode(t, serverNode, "systemctl", "restart", nodeAgentUnit)
		npWaitAgent(t, serverNode)
		time.Sleep(3 * time.Second)
		pid := agentPID(t, serverNode)
		mustInNode(t, serverNode, "kill", "-9", pid)
		poll(t, time.Minute, 200*time.Millisecond, "node-agent back after kill -9", func() (bool, string) {
			p := agentPID(t, serverNode)
			return p != pid && p != "0", "MainPID " + p
		})
		npWaitAgent(t, serverNode)
		time.Sleep(3 * time.Second)
		a, d := allowed(), denied()
		okA, failA := npCount(a)
		okD, failD := npCount(d)
		t.Logf("during restart + kill -9 of node-agent on %s (%s): allowed %d ok / %d failed, denied %d got through / %d refused",
			serverNode, time.Since(start).Round(time.Second), okA, failA, okD, failD)
		if okA == 0 || failD == 0 {
			t.Fatalf("the probes did not run: allowed %v, denied %v", sample(a), sample(d))
		}
		if failA > 0 {
			t.Errorf("%d allowed connections failed: %v", failA, npLinesWith(a, "fail"))
		}
		if okD > 0 {
			t.Errorf("%d denied connections got through: %v", okD, npLinesWith(d, "ok"))
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		bad := func(name string, mutate func(*networkingv1.NetworkPolicy), want string) {
			p := npAllowFromClients("bad-" + name)
			mutate(p)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := cs.NetworkingV1().NetworkPolicies(nsName).Create(ctx, p, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: create returned %v, want an Invalid error about %s", name, err, want)
			}
		}
		bad("cidr", func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}}
		}, "ipBlock.cidr")
		bad("except", func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/16", Except: []string{"192.168.0.0/24"}}}}
		}, "except")
		bad("port", func(p *networkingv1.NetworkPolicy) {
			port := intstr.FromInt32(70000)
			p.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &port}}
		}, "port")
		bad("endport", func(p *networkingv1.NetworkPolicy) {
			port, end := intstr.FromInt32(9000), int32(8000)
			p.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &port, EndPort: &end}}
		}, "endPort")

		cfg := mustInNode(t, cpNode, "cat", npConfig)
		for _, c := range []struct{ value, field string }{
			{"policies:\n  networkPolicy:\n    workload:\n      publicEgress:\n        cidr: 0.0.0.0\n", "policies.networkPolicy.workload.publicEgress.cidr"},
			{"policies:\n  networkPolicy:\n    workload:\n      publicEgress:\n        except: [nope]\n", "policies.networkPolicy.workload.publicEgress.except[0]"},
			{"policies:\n  networkPolicy:\n    enabled: maybe\n", "policies.networkPolicy.enabled"},
		} {
			path := "/tmp/e2e-netpol-bad.yaml"
			if r := inNodeStdin(t, cpNode, strings.NewReader(npWithoutPolicies(cfg)+c.value), "sh", "-c", "cat >"+path); r.code != 0 {
				t.Fatal(r)
			}
			r := inNode(t, cpNode, "timeout", "30", "vcluster-standalone", "start", "--config", path)
			oneLineError(t, "start with "+strings.ReplaceAll(c.value, "\n", " "), r, c.field)
			inNode(t, cpNode, "rm", "-f", path)
		}
		waitReady(t, time.Minute)
	})

	t.Run("PublicEgressOff", func(t *testing.T) {
		peers := netEgressListener(t)
		client := "client-" + clientNode
		outside := fmt.Sprintf("nc -w 2 %s %d </dev/null", netEgressAddr, netEgressPort)
		poll(t, 30*time.Second, 200*time.Millisecond, "the outside listener reachable with publicEgress on", func() (bool, string) {
			r := netExec(t, nsName, client, outside)
			return r.code == 0 && strings.HasPrefix(r.stdout, "seen "), r.String()
		})
		npSetPublicEgress(t, false)
		took := poll(t, 2*time.Minute, 300*time.Millisecond, "the outside listener unreachable with publicEgress off", func() (bool, string) {
			r := netExec(t, nsName, client, outside)
			return r.code != 0 && r.stdout == "", r.String()
		})
		netFigure(t, "netpol-public-egress-off", "denied %s after node-agent was active again on every node", took.Round(10*time.Millisecond))
		before := len(peers())
		time.Sleep(2 * time.Second)
		for i := 0; i < 5; i++ {
			if r := netExec(t, nsName, client, outside); r.code == 0 {
				t.Errorf("try %d: a pod reached the outside listener with publicEgress off: %s", i, r)
			}
		}
		if n := len(peers()) - before; n > 0 {
			t.Errorf("the outside listener saw %d connections with publicEgress off", n)
		}
		for _, n := range allNodes {
			if r := netExec(t, nsName, "client-"+n, fmt.Sprintf("nc -w 3 %s %d </dev/null", pods["open"].Status.PodIP, netTCPPort)); r.code != 0 || r.stdout != "open" {
				t.Errorf("in-cluster traffic %s -> open server stopped with publicEgress off: %s", n, r)
			}
		}
		reopen := npCreatePolicy(t, cs, nsName, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "egress-outside"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: netEgressAddr + "/32"}}}},
					{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}},
				},
			},
		})
		took = poll(t, 30*time.Second, 200*time.Millisecond, "the outside listener reachable through the namespace's egress policy", func() (bool, string) {
			r := netExec(t, nsName, client, outside)
			return r.code == 0 && strings.HasPrefix(r.stdout, "seen "), r.String()
		})
		t.Logf("egress policy %s reopened %s:%d in %s", reopen.Name, netEgressAddr, netEgressPort, took.Round(10*time.Millisecond))
		if r := netExec(t, nsName, "client-"+cpNode, fmt.Sprintf("nc -w 3 %s %d </dev/null", pods["open"].Status.PodIP, netTCPPort)); r.code != 0 || r.stdout != "open" {
			t.Errorf("in-cluster traffic stopped under the egress policy: %s", r)
		}
	})
}

// npAllowFromClients is an ingress policy for the isolated servers that
// allows the clients.
func npAllowFromClients(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "isolated"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}},
			}},
		},
	}
}

func npCreatePolicy(t *testing.T, cs kubernetes.Interface, ns string, p *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create NetworkPolicy %s/%s: %v", ns, p.Name, err)
	}
	return got
}

func npDeletePolicy(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete NetworkPolicy %s/%s: %v", ns, name, err)
	}
}

// npBackground runs cmd in pod in the background, its output in
// npLogDir/<name>; the returned function stops it and returns its lines.
// It is stopped when the test ends in any case.
func npBackground(t *testing.T, ns, pod, name, cmd string) func() []string {
	t.Helper()
	log := npLogDir + "/" + name
	pidFile := log + ".pid"
	netMustExec(t, ns, pod, fmt.Sprintf("%s >%s 2>&1 </dev/null & echo $! >%s", cmd, log, pidFile))
	stopped := false
	stop := func() []string {
		if !stopped {
			stopped = true
			netExec(t, ns, pod, "kill $(cat "+pidFile+")")
		}
		out := netExec(t, ns, pod, "cat "+log).stdout
		if out == "" {
			return nil
		}
		return strings.Split(out, "\n")
	}
	t.Cleanup(func() { stop() })
	return stop
}

// npCount counts the "ok" and "fail" lines of tcp-loop.
func npCount(lines []string) (ok, fail int) {
	for _, l := range lines {
		switch f := strings.Fields(l); {
		case len(f) >= 2 && f[1] == "ok":
			ok++
		case len(f) == 2 && f[1] == "fail":
			fail++
		}
	}
	return ok, fail
}

// npLinesWith is the first few tcp-loop lines of the given outcome.
func npLinesWith(lines []string, outcome string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == outcome && len(out) < 5 {
			out = append(out, l)
		}
	}
	return out
}

// npFirstChange is the time from since to the start of the tcp-loop try
// from which on, until the next change at until, every try has the given
// outcome (-1 when the last one has another): when the change was in force
// for good, whatever a try caught half-way did.
func npFirstChange(lines []string, since, until time.Time, outcome string) time.Duration {
	// Tries end out of order (a refused one waits for its timeout).
	byStart := slices.Clone(lines)
	slices.SortStableFunc(byStart, func(a, b string) int {
		x, _ := strconv.ParseInt(strings.Fields(a + " 0")[0], 10, 64)
		y, _ := strconv.ParseInt(strings.Fields(b + " 0")[0], 10, 64)
		return cmp.Compare(x, y)
	})
	settled := time.Duration(-1)
	for _, l := range byStart {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		ms, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		at := time.UnixMilli(ms)
		if at.Before(since) || !at.Before(until) {
			continue
		}
		switch {
		case f[1] != outcome:
			settled = -1
		case settled < 0:
			settled = at.Sub(since)
		}
	}
	return settled
}

// npWaitAgent waits for node-agent on node to be active again.
func npWaitAgent(t *testing.T, node string) {
	t.Helper()
	poll(t, 2*time.Minute, 200*time.Millisecond, node+": "+nodeAgentUnit+" active", func() (bool, string) {
		r := inNode(t, node, "systemctl", "is-active", nodeAgentUnit)
		return r.stdout == "active", r.String()
	})
}

// npMetadataListener puts npMetadataAddr on the lab switch namespace's
// loopback (the nodes' default gateway answers for it) and listens there,
// answering "metadata". Both go when the test ends (and with the switch
// namespace at `lab down`).
func npMetadataListener(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := run(ctx, "ip", "-n", labSwitchNS, "addr", "replace", npMetadataAddr+"/32", "dev", "lo"); r.code != 0 {
		t.Fatalf("add %s in %s: %s", npMetadataAddr, labSwitchNS, r)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		run(c, "ip", "-n", labSwitchNS, "addr", "del", npMetadataAddr+"/32", "dev", "lo")
	})
	var ln net.Listener
	err := ns.WithNetNSPath("/run/netns/"+labSwitchNS, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(npMetadataAddr, strconv.Itoa(npMetadataPort)))
		return err
	})
	if err != nil {
		t.Fatalf("listen at %s in %s: %v", npMetadataAddr, labSwitchNS, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "metadata")
			c.Close()
		}
	}()
}

// npWithoutPolicies is a control-plane config with its top-level policies
// block (if any) removed, so a test can append its own.
func npWithoutPolicies(cfg string) string {
	var out []string
	skip := false
	for _, l := range strings.Split(cfg, "\n") {
		if l != "" && l[0] != ' ' && l[0] != '#' {
			skip = strings.HasPrefix(l, "policies:")
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}

// npSetPublicEgress sets policies.networkPolicy.workload.publicEgress.enabled
// in lab-cp's config, restarts the control plane and waits for it, then
// restarts node-agent on every node (nodes read the cluster's settings when
// node-agent starts, as they do the network settings); the original config is
// restored (and everything restarted again) when the test ends.
func npSetPublicEgress(t *testing.T, enabled bool) {
	t.Helper()
	orig := mustInNode(t, cpNode, "cat", npConfig) + "\n"
	write := func(cfg string) {
		t.Helper()
		writeControlPlaneConfig(t, cfg)
		for _, n := range allNodes {
			mustInNode(t, n, "systemctl", "restart", nodeAgentUnit)
		}
		for _, n := range allNodes {
			npWaitAgent(t, n)
		}
	}
	t.Cleanup(func() { write(orig) })
	write(npWithoutPolicies(orig) + fmt.Sprintf("policies:\n  networkPolicy:\n    workload:\n      publicEgress:\n        enabled: %t\n", enabled))
}

// npFamilies names nftables table families as nft(8) does.
var npFamilies = map[nftables.TableFamily]string{
	nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
	nftables.TableFamilyARP: "arp", nftables.TableFamilyNetdev: "netdev", nftables.TableFamilyBridge: "bridge",
}

// npTables lists the nftables tables in node's network namespace as
// "<family> <name>", sorted; read over netlink from the host (the nodes have
// no nft binary).
func npTables(t *testing.T, node string) []string {
	t.Helper()
	var lines []string
	err := ns.WithNetNSPath("/run/netns/vcslab-"+node, func(ns.NetNS) error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := conn.ListTables()
		for _, tb := range tables {
			lines = append(lines, npFamilies[tb.Family]+" "+tb.Name)
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s: list nftables tables: %v", node, err)
	}
	sort.Strings(lines)
	return lines
}
