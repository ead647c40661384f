//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	netHostPort = 18080
	// The listener outside the cluster: a namespace the test plugs into the
	// lab switch (the lab's own /24, outside the pod and service CIDRs).
	netEgressNS   = "vcslab-e2e-egress" // vcslab-*: `lab down` removes it if a run is killed
	netEgressLink = "e2e-egress"
	netEgressAddr = "10.123.0.200"
	netEgressPort = 9000
	labSwitchNS   = "vcslab-switch"
)

// TestNetwork: the pod network as a user sees it, on a pod per lab node
// (the control-plane host included), each serving HTTP, TCP and UDP.
//
//   - PodToPod: every pod reaches every pod on another node by ICMP, TCP, UDP.
//   - ClusterIPService: a Service backed by pods on two nodes answers a pod on
//     the third, from both backends.
//   - ServiceDNS: svc.ns.svc.cluster.local and kubernetes.default resolve from
//     pods on every node.
//   - HostPort: a hostPort answers at each node's IP, from the host through
//     the lab network, from another node and from the node itself.
//   - EgressSourceIsNodeIP: a pod's connection to an address outside the
//     cluster arrives with its node's IP as source.
//   - AgentRestartKeepsPods: pings across nodes lose at most one packet while
//     node-agent restarts; containers are not restarted.
//   - DeletedNodeLeavesPeers: a deleted Node's routes, FDB and neighbour
//     entries vanish from the other nodes within 10 s; the node comes back
//     after a node-agent restart and its new pods are reachable.
func TestNetwork(t *testing.T) {
	track(t)
	cs := clientset(t)
	nodes := netWaitNodes(t, cs)
	probe := netBuildProbe(t)
	nsName := netNamespace(t, cs)

	var specs []*corev1.Pod
	for _, n := range allNodes {
		labels := map[string]string{"e2e-net": "pod"}
		if n != cpNode {
			labels["e2e-net-web"] = "yes"
		}
		p := netPod("net-"+n, n, labels)
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: netHTTPPort, HostPort: netHostPort, Protocol: corev1.ProtocolTCP}}
		specs = append(specs, p)
	}
	pods := netStartPods(t, cs, nsName, specs...)
	podOn := func(node string) string { return "net-" + node }
	podIP := map[string]string{}
	for _, n := range allNodes {
		p := pods[podOn(n)]
		podIP[n] = p.Status.PodIP
		netCopyProbe(t, nsName, p.Name, probe)
		netMustExec(t, nsName, p.Name, fmt.Sprintf("%s udp-echo %d >/dev/null 2>&1 </dev/null &", netProbe, netUDPPort))
		t.Logf("%s: pod %s at %s (node pod CIDR %s)", n, p.Name, podIP[n], nodes[n].Spec.PodCIDR)
	}
	// Routes to peers are set up in the background: wait for first contact
	// everywhere before asserting anything.
	took := poll(t, time.Minute, 200*time.Millisecond, "first ping between all pods", func() (bool, string) {
		for _, a := range allNodes {
			for _, b := range allNodes {
				if a == b {
					continue
				}
				if r := netExec(t, nsName, podOn(a), "ping -c 1 -W 1 "+podIP[b]); r.code != 0 {
					return false, fmt.Sprintf("%s -> %s: %s", a, b, r)
				}
			}
		}
		return true, ""
	})
	t.Logf("all pods reach each other %s after they run", took.Round(10*time.Millisecond))

	t.Run("PodToPod", func(t *testing.T) {
		for _, a := range allNodes {
			for _, b := range allNodes {
				if a == b {
					continue
				}
				from, to := podOn(a), podIP[b]
				if r := netExec(t, nsName, from, "ping -c 3 -i 0.2 -W 2 "+to); r.code != 0 || !strings.Contains(r.stdout, " 0% packet loss") {
					t.Errorf("ICMP %s -> %s (%s): %s", a, b, to, r)
				}
				if r := netExec(t, nsName, from, fmt.Sprintf("nc -w 3 %s %d </dev/null", to, netTCPPort)); r.code != 0 || r.stdout != podOn(b) {
					t.Errorf("TCP %s -> %s:%d: %s, want %q", a, to, netTCPPort, r, podOn(b))
				}
				msg := "hello-from-" + a
				if r := netExec(t, nsName, from, fmt.Sprintf("%s udp-ask %s:%d %s", netProbe, to, netUDPPort, msg)); r.code != 0 || r.stdout != podOn(b)+" "+msg {
					t.Errorf("UDP %s -> %s:%d: %s, want %q", a, to, netUDPPort, r, podOn(b)+" "+msg)
				}
			}
		}
	})

	// The Service is shared by the DNS test.
	svc, err := cs.CoreV1().Services(nsName).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"e2e-net-web": "yes"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(netTCPPort), Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service: %v", err)
	}

	t.Run("ClusterIPService", func(t *testing.T) {
		client := podOn(cpNode)
		// Port 80 -> the pods' TCP listener, which answers with the pod's
		// name. (Not HTTP: busybox-static's wget segfaults in the pod.)
		url := svc.Spec.ClusterIP + " 80"
		took := poll(t, time.Minute, 200*time.Millisecond, "Service "+url+" answers "+client, func() (bool, string) {
			r := netExec(t, nsName, client, "nc -w 2 "+url+" </dev/null")
			return r.code == 0 && r.stdout != "", r.String()
		})
		const hits = 40
		out := netMustExec(t, nsName, client, fmt.Sprintf("for i in $(seq %d); do nc -w 2 %s </dev/null || echo FAILED; done", hits, url))
		seen := map[string]int{}
		for _, l := range strings.Split(out, "\n") {
			seen[strings.TrimSpace(l)]++
		}
		t.Logf("Service %s (%s) answered %s on %s %s after creation: %v", svc.Name, svc.Spec.ClusterIP, cpNode, client, took.Round(10*time.Millisecond), seen)
		for _, n := range joinNodes {
			if seen[podOn(n)] == 0 {
				t.Errorf("%d requests to %s from %s never reached the backend on %s: %v", hits, url, cpNode, n, seen)
			}
		}
		if seen["FAILED"] > 0 || seen[podOn(joinNodes[0])]+seen[podOn(joinNodes[1])] != hits {
			t.Errorf("of %d requests to %s: %v", hits, url, seen)
		}
	})

	t.Run("ServiceDNS", func(t *testing.T) {
		kube, err := cs.CoreV1().Services("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fqdn := "web." + nsName + ".svc.cluster.local"
		// busybox nslookup has its own resolver (no search list): it gets
		// the fully qualified name. The short names are looked up the way
		// a program does (resolv.conf's search list and ndots), by netprobe.
		checks := []struct{ name, script, want string }{
			{fqdn, "nslookup " + fqdn, svc.Spec.ClusterIP},
			{"kubernetes.default", netProbe + " resolve kubernetes.default", kube.Spec.ClusterIP},
			{"web", netProbe + " resolve web", svc.Spec.ClusterIP},
		}
		for _, n := range allNodes {
			for _, c := range checks {
				// CoreDNS learns of a new Service within its watch latency: poll briefly.
				var last result
				start := time.Now()
				for {
					last = netExec(t, nsName, podOn(n), c.script)
					if last.code == 0 && (netResolved(last.stdout, c.want) || last.stdout == c.want) {
						break
					}
					if time.Since(start) > 20*time.Second {
						t.Errorf("%s: %s: %s, want address %s", n, c.script, last, c.want)
						break
					}
					time.Sleep(300 * time.Millisecond)
				}
			}
		}
	})

	t.Run("HostPort", func(t *testing.T) {
		hc := &http.Client{Timeout: 3 * time.Second}
		for _, n := range allNodes {
			ip := netNodeIP(nodes[n])
			url := fmt.Sprintf("http://%s:%d/", ip, netHostPort)
			// From the host, through the lab switch.
			var body string
			start := time.Now()
			for {
				resp, err := hc.Get(url)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					body = strings.TrimSpace(string(b))
					if body == podOn(n) {
						break
					}
				} else {
					body = err.Error()
				}
				if time.Since(start) > 15*time.Second {
					t.Errorf("host -> %s: %q, want %q", url, body, podOn(n))
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			// From another node's root namespace, and from the node itself.
			other := allNodes[(netIndexOf(allNodes, n)+1)%len(allNodes)]
			for _, from := range []string{other, n} {
				if r := inNode(t, from, "curl", "-sS", "-m", "3", url); r.code != 0 || r.stdout != podOn(n) {
					t.Errorf("%s -> %s: %s, want %q", from, url, r, podOn(n))
				}
			}
		}
	})

	t.Run("EgressSourceIsNodeIP", func(t *testing.T) {
		seen := netEgressListener(t)
		for _, n := range allNodes {
			want := netNodeIP(nodes[n])
			var r result
			start := time.Now()
			for {
				r = netExec(t, nsName, podOn(n), fmt.Sprintf("nc -w 3 %s %d </dev/null", netEgressAddr, netEgressPort))
				if r.code == 0 && strings.HasPrefix(r.stdout, "seen ") {
					break
				}
				if time.Since(start) > 15*time.Second {
					t.Fatalf("%s: pod %s could not reach %s:%d outside the cluster: %s", n, podOn(n), netEgressAddr, netEgressPort, r)
				}
				time.Sleep(300 * time.Millisecond)
			}
			host, _, err := net.SplitHostPort(strings.TrimPrefix(r.stdout, "seen "))
			if err != nil || host != want {
				t.Errorf("%s: pod %s (%s) arrived at %s:%d from %q, want the node IP %s", n, podOn(n), podIP[n], netEgressAddr, netEgressPort, r.stdout, want)
			} else {
				t.Logf("%s: pod %s (%s) -> %s:%d seen from %s", n, podOn(n), podIP[n], netEgressAddr, netEgressPort, strings.TrimPrefix(r.stdout, "seen "))
			}
		}
		if got := seen(); len(got) < len(allNodes) {
			t.Errorf("the listener recorded %d connections, want at least %d: %v", len(got), len(allNodes), got)
		}
	})

	t.Run("AgentRestartKeepsPods", func(t *testing.T) {
		node, peer := podNode, resetNode
		before := map[string]*corev1.Pod{}
		for _, n := range allNodes {
			before[n] = getPod(t, cs, nsName, podOn(n))
		}
		// Pings both ways between the restarting node and a peer, 5 a second,
		// in the background inside the pods (kubectl exec rides on the kubelet
		// that restarts).
		pingers := map[string]string{node: podIP[peer], peer: podIP[node]}
		for from, to := range pingers {
			netMustExec(t, nsName, podOn(from), fmt.Sprintf("rm -f /tmp/ping.log; ping -i 0.2 %s >/tmp/ping.log 2>&1 </dev/null & echo $! >/tmp/ping.pid", to))
		}
		t.Cleanup(func() {
			for from := range pingers {
				netExec(t, nsName, podOn(from), "[ ! -f /tmp/ping.pid ] || kill -INT $(cat /tmp/ping.pid)")
			}
		})
		for from := range pingers {
			poll(t, 10*time.Second, 100*time.Millisecond, "ping from "+from+" answered", func() (bool, string) {
				r := netExec(t, nsName, podOn(from), "grep -c 'bytes from' /tmp/ping.log")
				c, _ := strconv.Atoi(r.stdout)
				return c >= 3, r.String()
			})
		}
		since := time.Now()
		if r := inNode(t, node, "systemctl", "restart", nodeAgentUnit); r.code != 0 {
			t.Fatalf("%s: systemctl restart %s: %s", node, nodeAgentUnit, r)
		}
		restarted := time.Since(since)
		ready := waitNodeReady(t, cs, node, since, 2*time.Minute)
		// A little more traffic after Ready, then stop and count.
		time.Sleep(time.Second)
		for from, to := range pingers {
			netMustExec(t, nsName, podOn(from), "kill -INT $(cat /tmp/ping.pid) && rm /tmp/ping.pid")
			var stats string
			poll(t, 5*time.Second, 100*time.Millisecond, "ping statistics from "+from, func() (bool, string) {
				r := netExec(t, nsName, podOn(from), "cat /tmp/ping.log")
				stats = r.stdout
				return strings.Contains(stats, "packets received"), clip(stats)
			})
			sent, got, ok := netPingStats(stats)
			if !ok {
				t.Fatalf("%s: no ping statistics in %q", from, clip(stats))
			}
			t.Logf("pod on %s -> %s across the restart of node-agent on %s (systemctl restart %s, Ready %s after it began): %d sent, %d received",
				from, to, node, restarted.Round(10*time.Millisecond), ready.Round(10*time.Millisecond), sent, got)
			if sent-got > 1 {
				t.Errorf("%s -> %s: %d of %d pings lost while node-agent restarted on %s, want at most 1", from, to, sent-got, sent, node)
			}
			if float64(sent) < ready.Seconds()*2 {
				t.Errorf("%s: only %d pings sent over the restart: the pinger stalled", from, sent)
			}
		}
		for _, n := range allNodes {
			after := getPod(t, cs, nsName, podOn(n))
			id0, rc0 := containerOf(before[n])
			id1, rc1 := containerOf(after)
			if id0 != id1 || rc0 != rc1 || after.Status.PodIP != before[n].Status.PodIP {
				t.Errorf("pod %s changed across the restart: container %s (restarts %d) -> %s (restarts %d), IP %s -> %s",
					after.Name, id0, rc0, id1, rc1, before[n].Status.PodIP, after.Status.PodIP)
			}
		}
	})

	t.Run("DeletedNodeLeavesPeers", func(t *testing.T) {
		victim := resetNode
		observers := []string{cpNode, podNode}
		vNode := nodes[victim]
		cidr, vip := vNode.Spec.PodCIDR, netNodeIP(vNode)
		for _, o := range observers {
			if st := netPeerState(t, o); !netHasPeer(st, cidr, vip) {
				t.Fatalf("%s has no route/FDB entry for %s (%s, %s) before the delete:\n%s", o, victim, cidr, vip, st)
			}
		}
		// Restore whatever happens: node-agent re-registers the Node.
		restored := false
		t.Cleanup(func() {
			if !restored {
				inNode(t, victim, "systemctl", "restart", nodeAgentUnit)
				waitNodeReady(t, cs, victim, time.Time{}, 2*time.Minute)
			}
		})
		if err := cs.CoreV1().Nodes().Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete Node %s: %v", victim, err)
		}
		deleted := time.Now()
		var wg sync.WaitGroup
		gone := make([]time.Duration, len(observers))
		last := make([]string, len(observers))
		for i, o := range observers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(deleted) < 20*time.Second {
					last[i] = netPeerState(t, o)
					if !netHasPeer(last[i], cidr, vip) && !strings.HasPrefix(last[i], "error") {
						gone[i] = time.Since(deleted)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				gone[i] = -1
			}()
		}
		wg.Wait()
		for i, o := range observers {
			switch {
			case gone[i] < 0:
				t.Errorf("%s still has %s's routes/FDB 20s after the Node was deleted:\n%s", o, victim, last[i])
			case gone[i] > 10*time.Second:
				t.Errorf("%s dropped %s's routes/FDB %s after the Node was deleted, want within 10s", o, victim, gone[i].Round(10*time.Millisecond))
			default:
				t.Logf("%s dropped %s's routes, FDB and neighbour entries %s after the Node was deleted", o, victim, gone[i].Round(10*time.Millisecond))
			}
		}

		// Back: restart node-agent on the victim; it registers the Node again.
		since := time.Now()
		if r := inNode(t, victim, "systemctl", "restart", nodeAgentUnit); r.code != 0 {
			t.Fatalf("%s: systemctl restart %s: %s", victim, nodeAgentUnit, r)
		}
		waitNodeReady(t, cs, victim, since, 2*time.Minute)
		restored = true
		var back *corev1.Node
		poll(t, 30*time.Second, 200*time.Millisecond, victim+" has a pod CIDR again", func() (bool, string) {
			n, err := cs.CoreV1().Nodes().Get(context.Background(), victim, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			back = n
			return n.Spec.PodCIDR != "", "no pod CIDR"
		})
		t.Logf("%s registered again, Ready %s after the restart, pod CIDR %s (was %s)", victim, time.Since(since).Round(10*time.Millisecond), back.Spec.PodCIDR, cidr)
		for _, o := range observers {
			poll(t, 30*time.Second, 200*time.Millisecond, o+" routes to the returned "+victim, func() (bool, string) {
				st := netPeerState(t, o)
				return netHasPeer(st, back.Spec.PodCIDR, vip), st
			})
		}
		// A new pod on the returned node is reachable from the others.
		fresh := netStartPods(t, cs, nsName, netPod("net-"+victim+"-again", victim, nil))["net-"+victim+"-again"]
		for _, o := range observers {
			poll(t, 30*time.Second, 200*time.Millisecond, podOn(o)+" reaches the new pod on "+victim, func() (bool, string) {
				r := netExec(t, nsName, podOn(o), fmt.Sprintf("nc -w 2 %s %d </dev/null", fresh.Status.PodIP, netTCPPort))
				return r.code == 0 && r.stdout == fresh.Name, r.String()
			})
		}
	})
}

func netIndexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// netResolved says whether nslookup output has want as an answer (after the
// "Name:" line; the server's own address comes first).
func netResolved(out, want string) bool {
	_, answer, ok := strings.Cut(out, "Name:")
	return ok && regexp.MustCompile(`(?m)^Address(?: \d+)?:\s*`+regexp.QuoteMeta(want)+`\s*$`).MatchString(answer)
}

var netPingRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

func netPingStats(out string) (sent, got int, ok bool) {
	m := netPingRe.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	sent, _ = strconv.Atoi(m[1])
	got, _ = strconv.Atoi(m[2])
	return sent, got, true
}

// netHasPeer says whether a node's peer state (netPeerState) still holds the
// peer with pod CIDR cidr at node IP vip: a route to cidr, an FDB entry
// towards vip, or a neighbour entry for cidr's VTEP address.
func netHasPeer(state, cidr, vip string) bool {
	netAddr, _, _ := strings.Cut(cidr, "/")
	for _, l := range strings.Split(state, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if f[0] == cidr || (f[0] == netAddr && strings.Contains(l, "lladdr")) {
			return true
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dst" && f[i+1] == vip {
				return true
			}
		}
	}
	return false
}

// netEgressListener plugs a namespace into the lab switch at
// netEgressAddr/24 and listens there on TCP netEgressPort: each connection
// is answered with "seen <peer address>" and closed. Everything is removed
// when the test ends. It returns the peers seen so far.
func netEgressListener(t *testing.T) func() []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sh := func(script string) {
		t.Helper()
		if r := run(ctx, "sh", "-ec", script); r.code != 0 {
			t.Fatalf("%s: %s", script, r)
		}
	}
	cleanup := func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		run(c, "ip", "netns", "delete", netEgressNS)
		if run(c, "ip", "-n", labSwitchNS, "link", "show", netEgressLink).code == 0 {
			run(c, "ip", "-n", labSwitchNS, "link", "delete", netEgressLink)
		}
	}
	cleanup() // a killed earlier run
	t.Cleanup(cleanup)
	sh(fmt.Sprintf(`ip netns add %[1]s
ip link add %[2]s netns %[3]s type veth peer name eth0 netns %[1]s
ip -n %[3]s link set %[2]s master br0 up
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[4]s/24 dev eth0
ip -n %[1]s link set eth0 up`, netEgressNS, netEgressLink, labSwitchNS, netEgressAddr))
	var ln net.Listener
	err := ns.WithNetNSPath("/run/netns/"+netEgressNS, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", netEgressAddr, netEgressPort))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", netEgressNS, err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var peers []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			peers = append(peers, c.RemoteAddr().String())
			mu.Unlock()
			fmt.Fprintf(c, "seen %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), peers...)
	}
}
