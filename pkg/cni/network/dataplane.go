// Package network is the per-node network controller: it gives this node's
// pods a path to every other node's pods (VXLAN overlay or host-gw routes),
// masquerades pod traffic leaving the cluster, and writes the CNI config once
// the node has a pod CIDR.
//
// The data path is programmed by Dataplane from plain structs (Local, Peer),
// so it is tested inside network namespaces without an API server; the
// Controller only turns Node objects into those structs.
//
// Everything acts on the network namespace of the calling thread. Nothing is
// torn down on Stop: a restarted node-agent finds its state in place and only
// repairs what differs, so running pods keep their connectivity. Reset removes
// it all.
package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// RouteProtocol marks every route this package installs (the rtm_protocol
// field, shown by `ip route` as "proto 118"), so stale ones are found and
// Reset removes exactly ours.
const RouteProtocol netlink.RouteProtocol = 118

// Local is this node as its data path needs it.
type Local struct {
	// Backend is config.BackendVXLAN or config.BackendHostGW.
	Backend string
	// VNI is the VXLAN network identifier (vxlan only).
	VNI int
	// ClusterCIDR is the cluster-wide pod CIDR; ServiceCIDR the service range.
	ClusterCIDR netip.Prefix
	ServiceCIDR netip.Prefix
	// PodCIDR is this node's pod CIDR; the zero Prefix until it is assigned.
	PodCIDR netip.Prefix
	// Uplink is the interface traffic to other nodes leaves by.
	Uplink Uplink
}

// Peer is another node: where its pods live and how to reach it.
type Peer struct {
	Name    string
	PodCIDR netip.Prefix
	// IP is the peer's VTEP address (vxlan) or next hop (host-gw).
	IP netip.Addr
	// VTEPMAC is the MAC address of the peer's VXLAN device (vxlan only).
	VTEPMAC net.HardwareAddr
}

// MTU is the MTU pods get: the uplink's, less the encapsulation overhead.
func (l Local) MTU() int {
	if b, err := backendOf(l.Backend); err == nil {
		return l.Uplink.MTU - b.overhead()
	}
	return l.Uplink.MTU
}

// Dataplane programs the kernel of the calling thread's network namespace.
type Dataplane struct {
	ipt *iptables.IPTables
}

// NewDataplane returns a Dataplane using the iptables found in PATH.
func NewDataplane() (*Dataplane, error) {
	ipt, err := iptables.New()
	if err != nil {
		return nil, fmt.Errorf("failed to find iptables (install the iptables package): %w", err)
	}
	return &Dataplane{ipt: ipt}, nil
}

// Sync makes the data path match local and peers: EnsureLocal, then SyncPeers.
func (d *Dataplane) Sync(l Local, peers []Peer) error {
	if err := d.EnsureLocal(l); err != nil {
		return err
	}
	return d.SyncPeers(l, peers)
}

// EnsureLocal sets up what does not depend on other nodes: IP forwarding, the
// masquerade and forward rules, and the VXLAN device (removed in host-gw
// mode), with this node's pod CIDR network address on it once PodCIDR is set.
// Only what differs is changed.
func (d *Dataplane) EnsureLocal(l Local) error {
	if err := checkLocal(l); err != nil {
		return err
	}
	if err := enableIPForward(); err != nil {
		return err
	}
	if err := ensureMasquerade(d.ipt, l.ClusterCIDR, l.ServiceCIDR); err != nil {
		return err
	}
	if err := ensureForward(d.ipt, l.ClusterCIDR); err != nil {
		return err
	}
	b, _ := backendOf(l.Backend) // checkLocal refused unknown ones
	return b.ensureLocal(l)
}

// SyncPeers installs a route (and for vxlan the neighbour and FDB entries)
// for every peer and removes those of nodes no longer listed. A peer that
// cannot be programmed is reported in the joined error; the others still are.
func (d *Dataplane) SyncPeers(l Local, peers []Peer) error {
	if err := checkLocal(l); err != nil {
		return err
	}
	if !l.PodCIDR.IsValid() {
		return errors.New("this node has no pod CIDR yet")
	}
	var errs []error
	var valid []Peer
	for _, p := range peers {
		if err := checkPeer(l, p); err != nil {
			errs = append(errs, err)
			continue
		}
		valid = append(valid, p)
	}
	b, _ := backendOf(l.Backend) // checkLocal refused unknown ones
	return errors.Join(append(errs, b.syncPeers(l, valid))...)
}

func checkLocal(l Local) error {
	b, err := backendOf(l.Backend)
	if err != nil {
		return err
	}
	if err := b.checkLocal(l); err != nil {
		return err
	}
	if !l.ClusterCIDR.IsValid() || !l.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("cluster pod CIDR %q is not an IPv4 prefix", l.ClusterCIDR)
	}
	if !l.Uplink.IP.Is4() || l.Uplink.Index <= 0 {
		return errors.New("no uplink interface with an IPv4 address")
	}
	if l.PodCIDR.IsValid() && !contains(l.ClusterCIDR, l.PodCIDR) {
		return fmt.Errorf("this node's pod CIDR %s is not inside the cluster pod CIDR %s", l.PodCIDR, l.ClusterCIDR)
	}
	return nil
}

func checkPeer(l Local, p Peer) error {
	switch {
	case !p.PodCIDR.IsValid() || !contains(l.ClusterCIDR, p.PodCIDR):
		return fmt.Errorf("node %s: pod CIDR %s is not inside the cluster pod CIDR %s", p.Name, p.PodCIDR, l.ClusterCIDR)
	case p.PodCIDR.Overlaps(l.PodCIDR):
		return fmt.Errorf("node %s: pod CIDR %s overlaps this node's %s", p.Name, p.PodCIDR, l.PodCIDR)
	case !p.IP.Is4():
		return fmt.Errorf("node %s: address %s is not IPv4", p.Name, p.IP)
	}
	b, err := backendOf(l.Backend)
	if err != nil {
		return err
	}
	return b.checkPeer(p)
}

// contains reports whether inner lies entirely inside outer.
func contains(outer, inner netip.Prefix) bool {
	return inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}

// ipNet converts a prefix to the form netlink wants.
func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts a netlink destination back; ok is false for none.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// retryDump repeats a netlink dump the kernel interrupted (the table changed
// while it was read) so decisions are never made on partial results.
func retryDump[T any](what string, dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return nil, fmt.Errorf("failed to list %s: %w", what, err)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("failed to list %s: %w", what, err)
}

// syncRoutes makes the main table's routes of RouteProtocol exactly want
// (keyed by destination): missing or different ones are replaced, others
// deleted. Each r in want must have Dst set.
func syncRoutes(want []netlink.Route) error {
	have, err := retryDump("routes", func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return err
	}
	wanted := map[netip.Prefix]bool{}
	var errs []error
	for _, r := range want {
		dst, _ := prefixOf(r.Dst)
		wanted[dst] = true
	}
	for _, r := range have {
		dst, _ := prefixOf(r.Dst)
		if !wanted[dst] {
			klog.InfoS("removing route of a node that is gone", "dst", dst, "gw", r.Gw)
			if err := netlink.RouteDel(&r); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("failed to remove route to %s: %w", dst, err))
			}
		}
	}
	for _, r := range want {
		dst, _ := prefixOf(r.Dst)
		if slices.ContainsFunc(have, func(h netlink.Route) bool { return sameRoute(h, r) }) {
			continue
		}
		r.Table = unix.RT_TABLE_MAIN
		r.Protocol = RouteProtocol
		klog.InfoS("adding route", "dst", dst, "gw", r.Gw, "linkIndex", r.LinkIndex)
		if err := netlink.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("failed to add route to %s via %s: %w", dst, r.Gw, err))
		}
	}
	return errors.Join(errs...)
}

func sameRoute(have, want netlink.Route) bool {
	hd, _ := prefixOf(have.Dst)
	wd, _ := prefixOf(want.Dst)
	return hd == wd && have.LinkIndex == want.LinkIndex && have.Gw.Equal(want.Gw) &&
		have.Flags&int(netlink.FLAG_ONLINK) == want.Flags&int(netlink.FLAG_ONLINK)
}

// isNotFound reports whether err says the object to delete is already gone.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}
