package network

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

const (
	// VXLANDevice is the overlay device of the vxlan backend.
	VXLANDevice = "vcs-vxlan"
	// VXLANPort is the UDP port of the overlay: the IANA-assigned VXLAN port
	// (RFC 7348), not the Linux/flannel default 8472, so a host that also runs
	// flannel keeps working. Firewalls between nodes must pass UDP 4789.
	VXLANPort = 4789
	// VXLANOverhead is what VXLAN encapsulation adds to a packet over IPv4
	// (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
	VXLANOverhead = 50
)

// VTEPMAC is the MAC address of a node's VXLAN device, derived from its VTEP
// address (locally administered, unicast). Being stable, it survives the
// device being recreated and a reboot, so peers' FDB and neighbour entries
// stay right even before the Node annotation is read again.
func VTEPMAC(vtep netip.Addr) net.HardwareAddr {
	b := vtep.As4()
	return net.HardwareAddr{0x0e, 0x76, b[0], b[1], b[2], b[3]}
}

// wantVXLAN is the device EnsureLocal wants for l.
func wantVXLAN(l Local) *netlink.Vxlan {
	return &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         VXLANDevice,
			MTU:          l.Uplink.MTU - VXLANOverhead,
			HardwareAddr: VTEPMAC(l.Uplink.IP),
		},
		VxlanId:      l.VNI,
		VtepDevIndex: l.Uplink.Index,
		SrcAddr:      l.Uplink.IP.AsSlice(),
		Port:         VXLANPort,
		Learning:     false,
	}
}

// vxlanIncompatible says why link cannot serve as want, "" when it can. MTU,
// MAC address and up/down are adjusted in place instead.
func vxlanIncompatible(link netlink.Link, want *netlink.Vxlan) string {
	have, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("it is a %s device, not vxlan", link.Type())
	}
	switch {
	case have.VxlanId != want.VxlanId:
		return fmt.Sprintf("its VNI is %d, want %d", have.VxlanId, want.VxlanId)
	case have.Port != want.Port:
		return fmt.Sprintf("its UDP port is %d, want %d", have.Port, want.Port)
	case have.VtepDevIndex != want.VtepDevIndex:
		return fmt.Sprintf("it sends via interface index %d, want %d", have.VtepDevIndex, want.VtepDevIndex)
	case !have.SrcAddr.Equal(want.SrcAddr):
		return fmt.Sprintf("its local address is %s, want %s", have.SrcAddr, want.SrcAddr)
	case have.Learning:
		return "it learns addresses; want nolearning"
	case len(have.Group) > 0 && !have.Group.IsUnspecified():
		return fmt.Sprintf("it has remote/group %s, want none", have.Group)
	case have.FlowBased:
		return "it is flow-based (external), want a fixed VNI"
	}
	return ""
}

// ensureVXLAN reuses a compatible vcs-vxlan device (same ifindex, no
// disruption), recreates an incompatible one and says why, and brings it up.
func ensureVXLAN(l Local) (*netlink.Vxlan, error) {
	want := wantVXLAN(l)
	link, err := netlink.LinkByName(VXLANDevice)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("failed to read device %s: %w", VXLANDevice, err)
	default:
		if why := vxlanIncompatible(link, want); why != "" {
			klog.InfoS("recreating the VXLAN device: the existing one does not fit", "device", VXLANDevice, "reason", why)
			if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
				return nil, fmt.Errorf("failed to remove incompatible device %s (%s): %w", VXLANDevice, why, err)
			}
			link = nil
		}
	}
	if link == nil {
		if err := netlink.LinkAdd(want); err != nil {
			hint := ""
			if errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EEXIST) {
				hint = fmt.Sprintf("; another VXLAN device may use VNI %d on UDP port %d", l.VNI, VXLANPort)
			}
			return nil, fmt.Errorf("failed to create VXLAN device %s (VNI %d, UDP %d, local %s, dev %s): %w%s",
				VXLANDevice, l.VNI, VXLANPort, l.Uplink.IP, l.Uplink.Name, err, hint)
		}
		klog.InfoS("created VXLAN device", "device", VXLANDevice, "vni", l.VNI, "port", VXLANPort, "local", l.Uplink.IP, "dev", l.Uplink.Name)
		if link, err = netlink.LinkByName(VXLANDevice); err != nil {
			return nil, fmt.Errorf("failed to read device %s after creating it: %w", VXLANDevice, err)
		}
	}
	attrs := link.Attrs()
	if attrs.MTU != want.MTU {
		klog.InfoS("setting VXLAN device MTU", "device", VXLANDevice, "from", attrs.MTU, "to", want.MTU)
		if err := netlink.LinkSetMTU(link, want.MTU); err != nil {
			return nil, fmt.Errorf("failed to set MTU %d on %s: %w", want.MTU, VXLANDevice, err)
		}
	}
	if !bytes.Equal(attrs.HardwareAddr, want.HardwareAddr) {
		klog.InfoS("setting VXLAN device MAC address", "device", VXLANDevice, "from", attrs.HardwareAddr, "to", want.HardwareAddr)
		if err := netlink.LinkSetHardwareAddr(link, want.HardwareAddr); err != nil {
			return nil, fmt.Errorf("failed to set MAC address %s on %s: %w", want.HardwareAddr, VXLANDevice, err)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("failed to bring %s up: %w", VXLANDevice, err)
		}
	}
	return link.(*netlink.Vxlan), nil
}

// ensureVXLANAddr gives the device exactly podCIDR's network address as a
// /32 (like flannel's .0): the source address of node-to-remote-pod traffic,
// and the address remote nodes route this node's pods via.
func ensureVXLANAddr(link netlink.Link, podCIDR netip.Prefix) error {
	want := netip.PrefixFrom(podCIDR.Masked().Addr(), 32)
	addrs, err := retryDump("addresses of "+VXLANDevice, func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	found := false
	for _, a := range addrs {
		p, _ := prefixOf(a.IPNet)
		if netip.PrefixFrom(addrOf(a.IP), p.Bits()) == want {
			found = true
			continue
		}
		klog.InfoS("removing stale address from the VXLAN device", "device", VXLANDevice, "address", a.IPNet)
		if err := netlink.AddrDel(link, &a); err != nil && !isNotFound(err) {
			return fmt.Errorf("failed to remove stale address %s from %s: %w", a.IPNet, VXLANDevice, err)
		}
	}
	if found {
		return nil
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(want)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("failed to add address %s to %s: %w", want, VXLANDevice, err)
	}
	return nil
}

// removeVXLAN deletes the VXLAN device if there is one; its routes,
// neighbour and FDB entries go with it.
func removeVXLAN(why string) error {
	link, err := netlink.LinkByName(VXLANDevice)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to read device %s: %w", VXLANDevice, err)
	}
	klog.InfoS("removing the VXLAN device", "device", VXLANDevice, "reason", why)
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("failed to remove device %s: %w", VXLANDevice, err)
	}
	return nil
}

// syncVXLANPeers makes routes, neighbour (ARP) and FDB entries on vcs-vxlan
// match peers: for each peer, route its pod CIDR via its .0 onlink, resolve
// that .0 to its VTEP MAC, and send that MAC to its VTEP address.
func syncVXLANPeers(l Local, peers []Peer) error {
	link, err := netlink.LinkByName(VXLANDevice)
	if err != nil {
		return fmt.Errorf("failed to read device %s: %w", VXLANDevice, err)
	}
	idx := link.Attrs().Index
	routes := make([]netlink.Route, 0, len(peers))
	neighs := map[netip.Addr]net.HardwareAddr{}
	fdb := map[string]netip.Addr{}
	for _, p := range peers {
		gw := p.PodCIDR.Masked().Addr()
		routes = append(routes, netlink.Route{
			LinkIndex: idx, Dst: ipNet(p.PodCIDR), Gw: gw.AsSlice(),
			Flags: int(netlink.FLAG_ONLINK), Scope: netlink.SCOPE_UNIVERSE,
		})
		neighs[gw] = p.VTEPMAC
		fdb[p.VTEPMAC.String()] = p.IP
	}
	// FDB and neighbour entries first, so a new peer's route is usable the
	// moment it appears; entries of a gone peer are unused by then anyway.
	return errors.Join(syncFDB(idx, fdb), syncNeighs(idx, neighs), syncRoutes(routes))
}

// syncNeighs makes the permanent IPv4 neighbour entries on device idx
// exactly want.
func syncNeighs(idx int, want map[netip.Addr]net.HardwareAddr) error {
	have, err := retryDump("neighbours of "+VXLANDevice, func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	var errs []error
	ok := map[netip.Addr]bool{}
	for _, n := range have {
		ip := addrOf(n.IP)
		mac, wanted := want[ip]
		if wanted && n.State&netlink.NUD_PERMANENT != 0 && bytes.Equal(n.HardwareAddr, mac) {
			ok[ip] = true
			continue
		}
		if wanted {
			continue // replaced below
		}
		if err := netlink.NeighDel(&n); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("failed to remove neighbour %s on %s: %w", ip, VXLANDevice, err))
		}
	}
	for ip, mac := range want {
		if ok[ip] {
			continue
		}
		n := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			Type: unix.RTN_UNICAST, IP: ip.AsSlice(), HardwareAddr: mac}
		if err := netlink.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("failed to set neighbour %s lladdr %s on %s: %w", ip, mac, VXLANDevice, err))
		}
	}
	return errors.Join(errs...)
}

// syncFDB makes the forwarding entries of device idx exactly want (MAC →
// remote VTEP address).
func syncFDB(idx int, want map[string]netip.Addr) error {
	have, err := retryDump("FDB entries of "+VXLANDevice, func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return err
	}
	var errs []error
	ok := map[string]bool{}
	for _, n := range have {
		if n.LinkIndex != idx {
			continue
		}
		mac := n.HardwareAddr.String()
		if dst, wanted := want[mac]; wanted && addrOf(n.IP) == dst && !ok[mac] {
			ok[mac] = true
			continue
		}
		if err := netlink.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: n.State, IP: n.IP, HardwareAddr: n.HardwareAddr}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("failed to remove FDB entry %s dst %s on %s: %w", mac, n.IP, VXLANDevice, err))
		}
	}
	for mac, dst := range want {
		if ok[mac] {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		n := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, IP: dst.AsSlice(), HardwareAddr: hw}
		if err := netlink.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("failed to set FDB entry %s dst %s on %s: %w", mac, dst, VXLANDevice, err))
		}
	}
	return errors.Join(errs...)
}
