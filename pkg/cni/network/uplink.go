package network

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Uplink is the interface traffic to other nodes leaves by, and the IPv4
// address this node is reached at (the VXLAN VTEP address, the host-gw next
// hop peers use).
type Uplink struct {
	Name  string
	Index int
	MTU   int
	IP    netip.Addr
}

// FindUplink picks the uplink in the calling thread's network namespace:
// the interface named iface (--iface) if set; else the interface holding
// nodeIP (--node-ip) if set; else the default route's interface. Its address
// is nodeIP when it holds it, else its first global IPv4 address. Errors name
// the flag to set.
func FindUplink(iface, nodeIP string) (Uplink, error) {
	var want netip.Addr
	if nodeIP != "" {
		a, err := netip.ParseAddr(nodeIP)
		if err != nil || !a.Is4() {
			return Uplink{}, fmt.Errorf("--node-ip %q: not an IPv4 address; this network controller needs one", nodeIP)
		}
		want = a
	}
	switch {
	case iface != "":
		link, err := netlink.LinkByName(iface)
		if err != nil {
			return Uplink{}, fmt.Errorf("--iface %q: no such network interface on this host: %w", iface, err)
		}
		up, err := uplinkOf(link, want)
		if err != nil {
			return Uplink{}, fmt.Errorf("--iface %q: %w", iface, err)
		}
		return up, nil
	case want.IsValid():
		addrs, err := retryDump("addresses", func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
		if err != nil {
			return Uplink{}, err
		}
		for _, a := range addrs {
			if addrOf(a.IP) == want {
				link, err := netlink.LinkByIndex(a.LinkIndex)
				if err != nil {
					return Uplink{}, fmt.Errorf("failed to read the interface holding --node-ip %s: %w", want, err)
				}
				return uplinkOf(link, want)
			}
		}
		return Uplink{}, fmt.Errorf("--node-ip %s: no interface on this host holds that address; set --iface to the interface other nodes are reached by", want)
	default:
		routes, err := retryDump("routes", func() ([]netlink.Route, error) {
			return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return Uplink{}, err
		}
		routes = slices.DeleteFunc(routes, func(r netlink.Route) bool {
			p, ok := prefixOf(r.Dst)
			return (ok && p.Bits() != 0) || r.LinkIndex <= 0
		})
		if len(routes) == 0 {
			return Uplink{}, fmt.Errorf("no default route on this host to pick the network interface from; set --iface (or --node-ip)")
		}
		slices.SortStableFunc(routes, func(a, b netlink.Route) int { return a.Priority - b.Priority })
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return Uplink{}, fmt.Errorf("failed to read the default route's interface: %w", err)
		}
		up, err := uplinkOf(link, netip.Addr{})
		if err != nil {
			return Uplink{}, fmt.Errorf("default route interface %s: %w; set --iface", link.Attrs().Name, err)
		}
		return up, nil
	}
}

// uplinkOf describes link with address want if it holds it, else its first
// global IPv4 address.
func uplinkOf(link netlink.Link, want netip.Addr) (Uplink, error) {
	attrs := link.Attrs()
	addrs, err := retryDump("addresses of "+attrs.Name, func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return Uplink{}, err
	}
	up := Uplink{Name: attrs.Name, Index: attrs.Index, MTU: attrs.MTU}
	for _, a := range addrs {
		if ip := addrOf(a.IP); want.IsValid() && ip == want {
			up.IP = ip
			return up, nil
		}
	}
	for _, a := range addrs {
		if ip := addrOf(a.IP); ip.IsGlobalUnicast() {
			up.IP = ip
			return up, nil
		}
	}
	return Uplink{}, fmt.Errorf("interface %s has no IPv4 address", attrs.Name)
}
