package network

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// locals returns node i's Local (uplink read inside its namespace) and the
// other node as its peer.
func (l *lab) local(t *testing.T, i int, backend string) (Local, Peer) {
	t.Helper()
	loc := Local{
		Backend: backend, VNI: 7,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		PodCIDR:     netip.MustParsePrefix(podCIDRs[i]),
	}
	mustNS(t, l.nodes[i], func() (err error) {
		loc.Uplink, err = FindUplink("eth0", "")
		return err
	})
	o := 1 - i
	peerIP := netip.MustParseAddr(nodeIPs[o])
	return loc, Peer{Name: l.nodes[o], PodCIDR: netip.MustParsePrefix(podCIDRs[o]), IP: peerIP, VTEPMAC: VTEPMAC(peerIP)}
}

func syncNode(t *testing.T, ns string, loc Local, peers ...Peer) error {
	t.Helper()
	return inNS(t, ns, func() error {
		dp, err := NewDataplane()
		if err != nil {
			return err
		}
		return dp.Sync(loc, peers)
	})
}

type vxlanState struct {
	link   *netlink.Vxlan
	addrs  []string
	routes []netlink.Route
	neighs []netlink.Neigh
	fdb    []netlink.Neigh
}

func readVXLAN(t *testing.T, ns string) (s vxlanState, found bool) {
	t.Helper()
	mustNS(t, ns, func() error {
		link, err := netlink.LinkByName(VXLANDevice)
		if err != nil {
			return nil
		}
		found = true
		s.link = link.(*netlink.Vxlan)
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			s.addrs = append(s.addrs, a.IPNet.String())
		}
		s.routes, _ = netlink.RouteList(link, netlink.FAMILY_V4)
		s.routes = slices.DeleteFunc(s.routes, func(r netlink.Route) bool { return r.Protocol != RouteProtocol })
		s.neighs, _ = netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		s.neighs = slices.DeleteFunc(s.neighs, func(n netlink.Neigh) bool { return n.State&netlink.NUD_PERMANENT == 0 })
		s.fdb, _ = netlink.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
		return nil
	})
	return s, found
}

func TestVXLANTwoNodes(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1450)
	locA, peerB := l.local(t, 0, config.BackendVXLAN)
	locB, peerA := l.local(t, 1, config.BackendVXLAN)
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	if err := syncNode(t, l.nodes[1], locB, peerA); err != nil {
		t.Fatal(err)
	}

	s, ok := readVXLAN(t, l.nodes[0])
	if !ok {
		t.Fatal("no vcs-vxlan device on node A")
	}
	v := s.link
	if v.VxlanId != 7 || v.Port != VXLANPort || v.Learning || !v.SrcAddr.Equal(net.ParseIP(nodeIPs[0])) ||
		v.VtepDevIndex != locA.Uplink.Index || v.MTU != 1450 || v.HardwareAddr.String() != VTEPMAC(locA.Uplink.IP).String() ||
		v.Flags&net.FlagUp == 0 {
		t.Errorf("vcs-vxlan = VNI %d port %d learning %v local %s dev %d mtu %d mac %s flags %v; want VNI 7 port %d nolearning local %s dev %d mtu 1450 mac %s up",
			v.VxlanId, v.Port, v.Learning, v.SrcAddr, v.VtepDevIndex, v.MTU, v.HardwareAddr, v.Flags,
			VXLANPort, nodeIPs[0], locA.Uplink.Index, VTEPMAC(locA.Uplink.IP))
	}
	if !slices.Equal(s.addrs, []string{"10.244.1.0/32"}) {
		t.Errorf("vcs-vxlan addresses = %v, want [10.244.1.0/32]", s.addrs)
	}
	if len(s.routes) != 1 || s.routes[0].Dst.String() != podCIDRs[1] || !s.routes[0].Gw.Equal(net.ParseIP("10.244.2.0")) ||
		s.routes[0].Flags&int(netlink.FLAG_ONLINK) == 0 {
		t.Errorf("routes on vcs-vxlan = %v, want %s via 10.244.2.0 onlink", s.routes, podCIDRs[1])
	}
	if len(s.neighs) != 1 || !s.neighs[0].IP.Equal(net.ParseIP("10.244.2.0")) || s.neighs[0].HardwareAddr.String() != peerB.VTEPMAC.String() {
		t.Errorf("permanent neighbours on vcs-vxlan = %v, want 10.244.2.0 lladdr %s", s.neighs, peerB.VTEPMAC)
	}
	if len(s.fdb) != 1 || !s.fdb[0].IP.Equal(net.ParseIP(nodeIPs[1])) || s.fdb[0].HardwareAddr.String() != peerB.VTEPMAC.String() {
		t.Errorf("FDB of vcs-vxlan = %v, want %s dst %s", s.fdb, peerB.VTEPMAC, nodeIPs[1])
	}

	// Pod to pod crosses the overlay with its own source address.
	fromPodB := listen(t, l.pods[1], podIPs[1]+":8080")
	if src, err := connect(t, l.pods[0], podIPs[1]+":8080", fromPodB); err != nil || src != podIPs[0] {
		t.Fatalf("pod A -> pod B: source %q, err %v; want source %s (not masqueraded)", src, err, podIPs[0])
	}
	// Pod to a destination outside the cluster is masqueraded.
	fromNodeB := listen(t, l.nodes[1], nodeIPs[1]+":8081")
	if src, err := connect(t, l.pods[0], nodeIPs[1]+":8081", fromNodeB); err != nil || src != nodeIPs[0] {
		t.Fatalf("pod A -> node B: source %q, err %v; want %s (masqueraded)", src, err, nodeIPs[0])
	}
	// The node reaches remote pods too (source: its vcs-vxlan .0 address).
	if src, err := connect(t, l.nodes[0], podIPs[1]+":8080", fromPodB); err != nil || src != "10.244.1.0" {
		t.Fatalf("node A -> pod B: source %q, err %v; want 10.244.1.0", src, err)
	}

	// Syncing again changes nothing: same device, same entries.
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	s2, _ := readVXLAN(t, l.nodes[0])
	if s2.link.Index != v.Index || len(s2.routes) != 1 || len(s2.neighs) != 1 || len(s2.fdb) != 1 {
		t.Errorf("re-sync: ifindex %d (was %d), %d routes, %d neighbours, %d FDB entries; want the same device and one of each",
			s2.link.Index, v.Index, len(s2.routes), len(s2.neighs), len(s2.fdb))
	}

	// Drift is repaired: a route deleted by hand comes back.
	run(t, "ip", "-n", l.nodes[0], "route", "del", podCIDRs[1])
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	if s3, _ := readVXLAN(t, l.nodes[0]); len(s3.routes) != 1 {
		t.Errorf("route deleted by hand not restored: %v", s3.routes)
	}

	// A peer that is gone loses its route, neighbour and FDB entry.
	if err := syncNode(t, l.nodes[0], locA); err != nil {
		t.Fatal(err)
	}
	s4, _ := readVXLAN(t, l.nodes[0])
	if len(s4.routes)+len(s4.neighs)+len(s4.fdb) != 0 || s4.link.Index != v.Index {
		t.Errorf("after removing the peer: routes %v, neighbours %v, FDB %v, ifindex %d (was %d); want none and the same device",
			s4.routes, s4.neighs, s4.fdb, s4.link.Index, v.Index)
	}
	if _, err := connect(t, l.pods[0], podIPs[1]+":8080", fromPodB); err == nil {
		t.Error("pod A still reaches pod B after its node was removed")
	}

	// Reset removes everything ours, twice without error.
	for range 2 {
		mustNS(t, l.nodes[0], Reset)
	}
	if _, ok := readVXLAN(t, l.nodes[0]); ok {
		t.Error("vcs-vxlan still there after Reset")
	}
	assertNoVCSChains(t, l.nodes[0])
	if !strings.Contains(run(t, "ip", "-n", l.nodes[0], "link", "show", "vcs0"), "vcs0") {
		t.Error("Reset removed the CNI plugin's bridge")
	}
}

func TestVXLANIncompatibleDeviceIsRecreated(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1450)
	locA, peerB := l.local(t, 0, config.BackendVXLAN)
	run(t, "ip", "-n", l.nodes[0], "link", "add", VXLANDevice, "type", "vxlan", "id", "99", "dstport", "4789", "dev", "eth0", "local", nodeIPs[0], "nolearning")
	before, _ := readVXLAN(t, l.nodes[0])
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	after, _ := readVXLAN(t, l.nodes[0])
	if after.link.VxlanId != 7 || after.link.Index == before.link.Index {
		t.Errorf("device VNI %d ifindex %d (was VNI 99 ifindex %d); want VNI 7 on a new device", after.link.VxlanId, after.link.Index, before.link.Index)
	}

	// A compatible device with another MTU and MAC is fixed in place.
	run(t, "ip", "-n", l.nodes[0], "link", "set", VXLANDevice, "mtu", "1300", "address", "02:00:00:00:00:01")
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	fixed, _ := readVXLAN(t, l.nodes[0])
	if fixed.link.Index != after.link.Index || fixed.link.MTU != 1450 || fixed.link.HardwareAddr.String() != VTEPMAC(locA.Uplink.IP).String() {
		t.Errorf("ifindex %d mtu %d mac %s; want ifindex %d mtu 1450 mac %s", fixed.link.Index, fixed.link.MTU, fixed.link.HardwareAddr,
			after.link.Index, VTEPMAC(locA.Uplink.IP))
	}
}

func TestHostGW(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1500)
	locA, peerB := l.local(t, 0, config.BackendHostGW)
	locB, peerA := l.local(t, 1, config.BackendHostGW)
	// A VXLAN device left from the other backend goes.
	run(t, "ip", "-n", l.nodes[0], "link", "add", VXLANDevice, "type", "vxlan", "id", "7", "dstport", "4789", "dev", "eth0")
	if err := syncNode(t, l.nodes[0], locA, peerB); err != nil {
		t.Fatal(err)
	}
	if err := syncNode(t, l.nodes[1], locB, peerA); err != nil {
		t.Fatal(err)
	}
	if _, ok := readVXLAN(t, l.nodes[0]); ok {
		t.Error("vcs-vxlan kept in host-gw mode")
	}
	if got := run(t, "ip", "-n", l.nodes[0], "route", "show", "proto", "118"); strings.TrimSpace(got) != podCIDRs[1]+" via "+nodeIPs[1]+" dev eth0" {
		t.Errorf("host-gw routes = %q, want %q", got, podCIDRs[1]+" via "+nodeIPs[1]+" dev eth0")
	}
	fromPodB := listen(t, l.pods[1], podIPs[1]+":8080")
	if src, err := connect(t, l.pods[0], podIPs[1]+":8080", fromPodB); err != nil || src != podIPs[0] {
		t.Fatalf("pod A -> pod B: source %q, err %v; want %s", src, err, podIPs[0])
	}

	// A peer off the segment is reported, not routed; the other stays.
	far := Peer{Name: "far", PodCIDR: netip.MustParsePrefix("10.244.9.0/24"), IP: netip.MustParseAddr("192.0.2.9")}
	err := syncNode(t, l.nodes[0], locA, peerB, far)
	if err == nil || !strings.Contains(err.Error(), "same L2 segment") || !strings.Contains(err.Error(), "far") {
		t.Errorf("error = %v; want one naming node far and the L2 segment", err)
	}
	if got := run(t, "ip", "-n", l.nodes[0], "route", "show", "proto", "118"); strings.Count(got, "\n") != 1 || !strings.Contains(got, podCIDRs[1]) {
		t.Errorf("routes = %q, want only %s", got, podCIDRs[1])
	}

	mustNS(t, l.nodes[0], Reset)
	if got := run(t, "ip", "-n", l.nodes[0], "route", "show", "proto", "118"); got != "" {
		t.Errorf("routes left after Reset: %q", got)
	}
	assertNoVCSChains(t, l.nodes[0])
}

func TestMasqueradeAndForwardRules(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1450)
	locA, _ := l.local(t, 0, config.BackendVXLAN)
	ns := l.nodes[0]
	for range 2 {
		if err := syncNode(t, ns, locA); err != nil {
			t.Fatal(err)
		}
	}
	nat := run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S")
	for _, want := range []string{
		"-A POSTROUTING -m comment --comment \"vcluster-standalone pod network\" -j VCS-POSTROUTING",
		"-A VCS-POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"pod to pod: no masquerade\" -j RETURN",
		"-A VCS-POSTROUTING -s 10.244.0.0/16 -d 10.96.0.0/12 -m comment --comment \"pod to service: no masquerade\" -j RETURN",
		"-A VCS-POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"pod leaving the cluster: masquerade\" -j MASQUERADE",
	} {
		if strings.Count(nat, want) != 1 {
			t.Errorf("nat table lacks (or repeats) %q:\n%s", want, nat)
		}
	}
	// RETURN rules come before MASQUERADE.
	if strings.Index(nat, "-j RETURN") > strings.Index(nat, "-j MASQUERADE") {
		t.Errorf("MASQUERADE before RETURN:\n%s", nat)
	}
	filter := run(t, "ip", "netns", "exec", ns, "iptables", "-t", "filter", "-S")
	for _, want := range []string{
		"-A FORWARD -m comment --comment \"vcluster-standalone pod network\" -j VCS-FORWARD",
		"-A VCS-FORWARD -s 10.244.0.0/16 -m comment --comment \"forward pod traffic\" -j ACCEPT",
		"-A VCS-FORWARD -d 10.244.0.0/16 -m comment --comment \"forward pod traffic\" -j ACCEPT",
	} {
		if strings.Count(filter, want) != 1 {
			t.Errorf("filter table lacks (or repeats) %q:\n%s", want, filter)
		}
	}
	if got := strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Errorf("ip_forward = %s, want 1", got)
	}

	// A rule removed or added by hand is put right.
	run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-D", "VCS-POSTROUTING", "1")
	run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "VCS-POSTROUTING", "-j", "ACCEPT")
	if err := syncNode(t, ns, locA); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S", "VCS-POSTROUTING"); got != "-N VCS-POSTROUTING\n"+strings.Join(grep(nat, "-A VCS-POSTROUTING"), "\n")+"\n" {
		t.Errorf("chain after repair:\n%s\nwant the rules of\n%s", got, nat)
	}

	// A DROP forward policy (Docker's) does not stop pod traffic.
	run(t, "ip", "netns", "exec", ns, "iptables", "-P", "FORWARD", "DROP")
	locB, peerA := l.local(t, 1, config.BackendVXLAN)
	_, peerB := l.local(t, 0, config.BackendVXLAN)
	if err := syncNode(t, ns, locA, peerB); err != nil {
		t.Fatal(err)
	}
	if err := syncNode(t, l.nodes[1], locB, peerA); err != nil {
		t.Fatal(err)
	}
	fromPodB := listen(t, l.pods[1], podIPs[1]+":8080")
	if _, err := connect(t, l.pods[0], podIPs[1]+":8080", fromPodB); err != nil {
		t.Errorf("pod A -> pod B with FORWARD policy DROP: %v", err)
	}
}

func grep(s, prefix string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

func assertNoVCSChains(t *testing.T, ns string) {
	t.Helper()
	mustNS(t, ns, func() error {
		for _, ipt := range iptablesBackends() {
			for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
				chains, err := ipt.ListChains(tc[0])
				if err != nil {
					return err
				}
				for _, c := range chains {
					if c == PostroutingChain || c == ForwardChain {
						t.Errorf("%s: chain %s left", tc[0], c)
					}
				}
				rules, err := ipt.List(tc[0], tc[1])
				if err != nil {
					return err
				}
				for _, r := range rules {
					if strings.Contains(r, "VCS-POSTROUTING") || strings.Contains(r, "VCS-FORWARD") {
						t.Errorf("%s %s still has %q", tc[0], tc[1], r)
					}
				}
			}
		}
		return nil
	})
}
