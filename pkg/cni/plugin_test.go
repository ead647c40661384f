package cni

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
)

func podLink(t *testing.T, pod ns.NetNS, name string) (link netlink.Link, err error) {
	t.Helper()
	err = pod.Do(func(ns.NetNS) error {
		link, err = netlink.LinkByName(name)
		return err
	})
	return link, err
}

func withPrevResult(t *testing.T, a *skel.CmdArgs, res *current.Result) *skel.CmdArgs {
	t.Helper()
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	_ = json.Unmarshal(a.StdinData, &conf)
	var prev map[string]any
	_ = json.Unmarshal(raw, &prev)
	conf["prevResult"] = prev
	out := *a
	out.StdinData, _ = json.Marshal(conf)
	return &out
}

func TestAddCheckDel(t *testing.T) {
	l := newLab(t)
	pod1, pod2 := newNS(t), newNS(t)
	a1 := l.args("c1", pod1, "")

	r1 := l.add(t, a1)
	r1b := l.add(t, a1) // a retried ADD returns the same attachment
	if len(r1.IPs) != 1 || r1.IPs[0].Address.String() != "10.244.1.2/24" || !r1.IPs[0].Gateway.Equal(net.ParseIP("10.244.1.1")) {
		t.Fatalf("ADD result IPs = %v", r1.IPs)
	}
	if r1b.IPs[0].Address.String() != r1.IPs[0].Address.String() || r1b.Interfaces[1].Mac != r1.Interfaces[1].Mac {
		t.Fatalf("second ADD differs: %v vs %v", r1b, r1)
	}
	if len(r1.Interfaces) != 3 || r1.Interfaces[0].Name != "vcs0" || r1.Interfaces[1].Name != hostVethName("c1", "eth0") ||
		r1.Interfaces[2].Name != "eth0" || r1.Interfaces[2].Sandbox != pod1.Path() || *r1.IPs[0].Interface != 2 {
		t.Fatalf("ADD result interfaces = %+v", r1.Interfaces)
	}
	if len(r1.Routes) != 1 || r1.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Fatalf("ADD result routes = %v", r1.Routes)
	}

	// Host side: bridge with the gateway, MTU, up; the veth on it with hairpin.
	err := l.in(func() error {
		br, err := netlink.LinkByName("vcs0")
		if err != nil {
			return err
		}
		if br.Attrs().MTU != 1400 || br.Attrs().Flags&net.FlagUp == 0 || br.Attrs().Promisc != 0 {
			return errors.New("bridge MTU/up/promisc wrong")
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.1.1/24" {
			return errors.New("bridge address wrong")
		}
		v, err := netlink.LinkByName(hostVethName("c1", "eth0"))
		if err != nil {
			return err
		}
		pi, err := netlink.LinkGetProtinfo(v)
		if err != nil {
			return err
		}
		if v.Attrs().MasterIndex != br.Attrs().Index || !pi.Hairpin {
			return errors.New("veth not on the bridge with hairpin")
		}
		if fw, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(fw)) != "1" {
			return errors.New("ip_forward not enabled")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("host side: %v", err)
	}
	// Pod side.
	eth0, err := podLink(t, pod1, "eth0")
	if err != nil || eth0.Attrs().MTU != 1400 || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("pod eth0: %v %v", eth0, err)
	}
	if lo, err := podLink(t, pod1, "lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("pod loopback is not up")
	}

	if err := ping(pod1, net.ParseIP("10.244.1.1")); err != nil {
		t.Fatalf("pod -> gateway: %v", err)
	}
	a2 := l.args("c2", pod2, "")
	r2 := l.add(t, a2)
	if err := ping(pod1, r2.IPs[0].Address.IP); err != nil {
		t.Fatalf("pod1 -> pod2: %v", err)
	}
	if err := ping(pod2, r1.IPs[0].Address.IP); err != nil {
		t.Fatalf("pod2 -> pod1: %v", err)
	}

	// CHECK passes, then fails once the pod's default route is gone.
	c1 := withPrevResult(t, a1, r1)
	if err := l.in(func() error { return cmdCheck(c1) }); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	_ = pod1.Do(func(ns.NetNS) error {
		return netlink.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: defaultDst(), Gw: net.ParseIP("10.244.1.1")})
	})
	err = l.in(func() error { return cmdCheck(c1) })
	if err == nil || !strings.Contains(err.Error(), "default route via 10.244.1.1 is missing") {
		t.Fatalf("CHECK without route: %v", err)
	}
	// CHECK after a re-ADD (which repairs the route) passes again.
	l.add(t, a1)
	if err := l.in(func() error { return cmdCheck(c1) }); err != nil {
		t.Fatalf("CHECK after repair: %v", err)
	}

	// DEL releases the address and removes the veth pair; repeating is fine.
	l.del(t, a1)
	l.del(t, a1)
	if _, err := os.Stat(filepath.Join(l.ipamDir, "10.244.1.2")); !os.IsNotExist(err) {
		t.Fatalf("address not released: %v", err)
	}
	if err := l.in(func() error { _, err := netlink.LinkByName(hostVethName("c1", "eth0")); return err }); err == nil {
		t.Fatal("host veth still there after DEL")
	}
	if _, err := podLink(t, pod1, "eth0"); err == nil {
		t.Fatal("pod eth0 still there after DEL")
	}
	if err := l.in(func() error { return cmdCheck(c1) }); err == nil {
		t.Fatal("CHECK passed after DEL")
	}
	// DEL of a pod whose netns is already gone, and of an unknown pod.
	_ = pod2.Close()
	if err := testutils.UnmountNS(pod2); err != nil {
		t.Fatal(err)
	}
	l.del(t, a2)
	l.del(t, l.args("never-added", nil, ""))
	if all, _ := newAllocator(mustNetwork(t, l)).list(); len(all) != 0 {
		t.Fatalf("allocations left: %v", all)
	}
}

func mustNetwork(t *testing.T, l *lab) *network {
	t.Helper()
	_, nw, err := parseConf(l.conf(""))
	if err != nil {
		t.Fatal(err)
	}
	return nw
}

func TestAddErrors(t *testing.T) {
	l := newLab(t)
	if err := l.in(func() error { _, err := add(l.args("c1", nil, "")); return err }); err == nil || !strings.Contains(err.Error(), "CNI_NETNS") {
		t.Fatalf("no netns: %v", err)
	}
	a := l.args("c1", nil, "")
	a.Netns = "/nonexistent/netns"
	if err := l.in(func() error { _, err := add(a); return err }); err == nil || !strings.Contains(err.Error(), "failed to open pod netns") {
		t.Fatalf("bad netns: %v", err)
	}
	// A link in the way of the bridge: clear error, and the address is not leaked.
	pod := newNS(t)
	err := l.in(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "vcs0"
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vcs0peer"})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = l.in(func() error { _, err := add(l.args("c2", pod, "")); return err })
	if err == nil || !strings.Contains(err.Error(), `link "vcs0" exists and is a veth, not a bridge`) {
		t.Fatalf("bridge in the way: %v", err)
	}
	if all, _ := newAllocator(mustNetwork(t, l)).list(); len(all) != 0 {
		t.Fatalf("failed ADD leaked %v", all)
	}
}

// Concurrent first ADDs race to create the bridge, its address and the
// hostPort chains; all must succeed with distinct addresses.
func TestConcurrentAdds(t *testing.T) {
	l := newLab(t)
	const n = 8
	pods := make([]ns.NetNS, n)
	for i := range pods {
		pods[i] = newNS(t)
	}
	errs := make(chan error, n)
	ips := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			a := l.args("cc"+strings.Repeat("x", i), pods[i], portMaps)
			err := l.in(func() error {
				res, err := add(a)
				if err == nil {
					ips <- res.IPs[0].Address.IP.String()
				}
				return err
			})
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent ADD: %v", err)
		}
	}
	close(ips)
	seen := map[string]bool{}
	for ip := range ips {
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	if len(seen) != n {
		t.Fatalf("%d addresses, want %d", len(seen), n)
	}
	if err := ping(pods[0], net.ParseIP("10.244.1.1")); err != nil {
		t.Fatalf("pod -> gateway: %v", err)
	}
}
