package network

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// syncHostGWPeers routes every peer's pod CIDR via the peer's address on the
// uplink. That only works when the peer is on the uplink's own L2 segment
// (a connected subnet); a peer that is not is reported, not routed.
func syncHostGWPeers(l Local, peers []Peer) error {
	link, err := netlink.LinkByIndex(l.Uplink.Index)
	if err != nil {
		return fmt.Errorf("failed to read uplink %s: %w", l.Uplink.Name, err)
	}
	addrs, err := retryDump("addresses of "+l.Uplink.Name, func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	var subnets []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			subnets = append(subnets, p)
		}
	}
	var errs []error
	routes := make([]netlink.Route, 0, len(peers))
	for _, p := range peers {
		if !onSegment(subnets, p.IP) {
			errs = append(errs, fmt.Errorf("host-gw: node %s (%s) is not on the same L2 segment as %s (%v), so its pods (%s) cannot be routed to it directly; put the nodes on one network or use the vxlan backend",
				p.Name, p.IP, l.Uplink.Name, subnets, p.PodCIDR))
			continue
		}
		routes = append(routes, netlink.Route{
			LinkIndex: l.Uplink.Index, Dst: ipNet(p.PodCIDR), Gw: p.IP.AsSlice(), Scope: netlink.SCOPE_UNIVERSE,
		})
	}
	return errors.Join(append(errs, syncRoutes(routes))...)
}

func onSegment(subnets []netip.Prefix, ip netip.Addr) bool {
	for _, s := range subnets {
		if s.Bits() < 32 && s.Contains(ip) {
			return true
		}
	}
	return false
}
