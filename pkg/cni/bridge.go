package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// hostVethPrefix starts the host-side name of every veth the plugin makes.
const hostVethPrefix = "vcs"

var hostVethRE = regexp.MustCompile(`^vcs[0-9a-f]{8}$`)

// attachmentHash is the hex SHA-256 of containerID+"/"+ifname.
func attachmentHash(id, ifname string) string {
	sum := sha256.Sum256([]byte(id + "/" + ifname))
	return hex.EncodeToString(sum[:])
}

// hostVethName is "vcs" + 8 hex of the attachment hash.
func hostVethName(id, ifname string) string {
	return hostVethPrefix + attachmentHash(id, ifname)[:8]
}

// retryDump retries a netlink dump that was interrupted by a concurrent change.
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 5; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ensureBridge creates or repairs the bridge in the current netns: up, MTU,
// promisc off, the gateway address (and no other IPv4 address), forwarding.
func ensureBridge(nw *network) (*netlink.Bridge, error) {
	br, err := bridgeByName(nw.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, err
		}
		la := netlink.NewLinkAttrs()
		la.Name = nw.bridge
		la.MTU = nw.mtu
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("failed to create bridge %q: %w", nw.bridge, err)
		}
		if br, err = bridgeByName(nw.bridge); err != nil {
			return nil, err
		}
		// A fixed MAC keeps the bridge's address stable as ports come and go.
		if mac := br.Attrs().HardwareAddr; len(mac) == 6 {
			_ = netlink.LinkSetHardwareAddr(br, mac)
		}
	}
	if br.Attrs().MTU != nw.mtu {
		if err := netlink.LinkSetMTU(br, nw.mtu); err != nil {
			return nil, fmt.Errorf("failed to set MTU %d on bridge %q: %w", nw.mtu, nw.bridge, err)
		}
	}
	if br.Attrs().Promisc != 0 {
		if err := netlink.SetPromiscOff(br); err != nil {
			return nil, fmt.Errorf("failed to turn promiscuous mode off on bridge %q: %w", nw.bridge, err)
		}
	}
	if err := ensureGatewayAddr(br, nw.gateway); err != nil {
		return nil, err
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("failed to set bridge %q up: %w", nw.bridge, err)
		}
	}
	if err := ensureSysctls(nw.bridge); err != nil {
		return nil, err
	}
	return br, nil
}

func bridgeByName(name string) (*netlink.Bridge, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, fmt.Errorf("failed to look up bridge %q: %w", name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("link %q exists and is a %s, not a bridge: delete it or configure another bridge name", name, l.Type())
	}
	return br, nil
}

func ensureGatewayAddr(br netlink.Link, gw *net.IPNet) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("failed to list addresses of bridge %q: %w", br.Attrs().Name, err)
	}
	found := false
	for _, a := range addrs {
		if a.IP.Equal(gw.IP) && a.Mask.String() == gw.Mask.String() {
			found = true
			continue
		}
		// A stale gateway from an earlier podCIDR: it would route the old range here.
		_ = netlink.AddrDel(br, &a)
	}
	if found {
		return nil
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: gw}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("failed to add gateway %s to bridge %q: %w", gw, br.Attrs().Name, err)
	}
	return nil
}

// ensureSysctls enables forwarding (required) and, where the kernel has them,
// bridge netfilter and route_localnet on the bridge (optional, for hostPorts
// reached through the bridge or from 127.0.0.1). They are per netns.
func ensureSysctls(bridge string) error {
	if err := setSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("failed to enable IPv4 forwarding (net.ipv4.ip_forward): %w", err)
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		_ = setSysctl("net/bridge/bridge-nf-call-iptables", "1")
	}
	_ = setSysctl("net/ipv4/conf/"+bridge+"/route_localnet", "1")
	return nil
}

// setSysctl writes value under /proc/sys when it differs.
func setSysctl(name, value string) error {
	path := filepath.Join("/proc/sys", name)
	if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	return os.WriteFile(path, []byte(value), 0o644)
}

// vethSpec describes one pod attachment.
type vethSpec struct {
	hostName string
	ifName   string
	mtu      int
	addr     *net.IPNet
	gateway  net.IP
}

// setupVeth makes (or reuses) the veth pair of one attachment: the host side
// on the bridge with hairpin, the pod side configured in netns. It returns
// both links (the pod one as seen inside the netns).
func setupVeth(netns ns.NetNS, br *netlink.Bridge, s vethSpec) (netlink.Link, netlink.Link, error) {
	host, err := reuseOrCleanVeth(netns, s)
	if err != nil {
		return nil, nil, err
	}
	if host == nil {
		la := netlink.NewLinkAttrs()
		la.Name = s.hostName
		la.MTU = s.mtu
		veth := &netlink.Veth{
			LinkAttrs:     la,
			PeerName:      s.ifName,
			PeerMTU:       uint32(s.mtu),
			PeerNamespace: netlink.NsFd(int(netns.Fd())),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				return nil, nil, fmt.Errorf("failed to create veth %s/%s: an interface named %q or %q already exists", s.hostName, s.ifName, s.hostName, s.ifName)
			}
			return nil, nil, fmt.Errorf("failed to create veth %s/%s: %w", s.hostName, s.ifName, err)
		}
		if host, err = netlink.LinkByName(s.hostName); err != nil {
			return nil, nil, fmt.Errorf("failed to look up veth %q: %w", s.hostName, err)
		}
	}
	if host.Attrs().MTU != s.mtu {
		if err := netlink.LinkSetMTU(host, s.mtu); err != nil {
			return nil, nil, fmt.Errorf("failed to set MTU on %q: %w", s.hostName, err)
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(host, br); err != nil {
			return nil, nil, fmt.Errorf("failed to attach %q to bridge %q: %w", s.hostName, br.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return nil, nil, fmt.Errorf("failed to set hairpin mode on %q: %w", s.hostName, err)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(host); err != nil {
			return nil, nil, fmt.Errorf("failed to set %q up: %w", s.hostName, err)
		}
	}
	var cont netlink.Link
	err = netns.Do(func(ns.NetNS) error {
		var err error
		cont, err = configurePodSide(s)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return host, cont, nil
}

// reuseOrCleanVeth returns the host link when a complete pair from an earlier
// ADD exists, and otherwise removes half-made leftovers and returns nil.
func reuseOrCleanVeth(netns ns.NetNS, s vethSpec) (netlink.Link, error) {
	host, err := netlink.LinkByName(s.hostName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("failed to look up %q: %w", s.hostName, err)
		}
		host = nil
	}
	if host != nil {
		if _, ok := host.(*netlink.Veth); !ok {
			return nil, fmt.Errorf("link %q exists and is a %s, not the pod's veth", s.hostName, host.Type())
		}
	}
	var peerIndex int
	_ = netns.Do(func(ns.NetNS) error {
		if l, err := netlink.LinkByName(s.ifName); err == nil {
			if _, ok := l.(*netlink.Veth); ok {
				peerIndex = l.Attrs().ParentIndex
			}
		}
		return nil
	})
	if host != nil && peerIndex == host.Attrs().Index {
		return host, nil
	}
	if host != nil {
		if err := netlink.LinkDel(host); err != nil {
			return nil, fmt.Errorf("failed to delete stale veth %q: %w", s.hostName, err)
		}
	}
	return nil, nil
}

// configurePodSide runs inside the pod netns.
func configurePodSide(s vethSpec) (netlink.Link, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("failed to set loopback up in the pod: %w", err)
		}
	}
	link, err := netlink.LinkByName(s.ifName)
	if err != nil {
		return nil, fmt.Errorf("failed to find %q in the pod: %w", s.ifName, err)
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: s.addr}); err != nil {
		return nil, fmt.Errorf("failed to add %s to %q in the pod: %w", s.addr, s.ifName, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("failed to set %q up in the pod: %w", s.ifName, err)
		}
	}
	def := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: defaultDst(), Gw: s.gateway}
	if err := netlink.RouteReplace(def); err != nil {
		return nil, fmt.Errorf("failed to add default route via %s in the pod: %w", s.gateway, err)
	}
	return netlink.LinkByName(s.ifName)
}

func defaultDst() *net.IPNet { return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)} }

// deleteHostVeth deletes the host side (and so the whole pair); a missing
// link is success.
func deleteHostVeth(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("failed to look up %q: %w", name, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("failed to delete %q: %w", name, err)
	}
	return nil
}

// checkAttachment verifies the host side and, inside netns, the pod side:
// interface up, address, default route via the gateway.
func checkAttachment(netns ns.NetNS, nw *network, s vethSpec) error {
	host, err := netlink.LinkByName(s.hostName)
	if err != nil {
		return fmt.Errorf("host interface %q is missing: %w", s.hostName, err)
	}
	br, err := bridgeByName(nw.bridge)
	if err != nil {
		return fmt.Errorf("bridge %q is missing: %w", nw.bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host interface %q is not attached to bridge %q", s.hostName, nw.bridge)
	}
	return netns.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(s.ifName)
		if err != nil {
			return fmt.Errorf("interface %q is missing in the pod: %w", s.ifName, err)
		}
		if link.Attrs().ParentIndex != host.Attrs().Index {
			return fmt.Errorf("interface %q in the pod is not the peer of %q", s.ifName, s.hostName)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("interface %q in the pod is down", s.ifName)
		}
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
		if err != nil {
			return fmt.Errorf("failed to list addresses of %q in the pod: %w", s.ifName, err)
		}
		found := false
		for _, a := range addrs {
			if a.IPNet.String() == s.addr.String() {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("address %s is missing on %q in the pod", s.addr, s.ifName)
		}
		routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_V4) })
		if err != nil {
			return fmt.Errorf("failed to list routes in the pod: %w", err)
		}
		for _, r := range routes {
			isDefault := r.Dst == nil || r.Dst.String() == "0.0.0.0/0"
			if isDefault && r.Gw.Equal(s.gateway) {
				return nil
			}
		}
		return fmt.Errorf("default route via %s is missing in the pod", s.gateway)
	})
}
