package network

import (
	"fmt"
	"net"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// backend is how pod traffic crosses nodes. It is looked up once per use
// from Local.Backend (backendOf); everything that differs between vxlan
// and host-gw is a method here, not a switch on the name.
type backend interface {
	// overhead is what encapsulation takes off the uplink's MTU.
	overhead() int
	// checkLocal checks the backend's own settings.
	checkLocal(l Local) error
	// ensureLocal sets up (or, for the other backend's leftovers, removes)
	// the node's own devices.
	ensureLocal(l Local) error
	syncPeers(l Local, peers []Peer) error
	// annotate adds what peers need of this node to its annotations.
	annotate(l Local, a map[string]string)
	// readPeer completes p from the peer's annotations; a non-empty result
	// says why the peer cannot be used.
	readPeer(a map[string]string, p *Peer) string
	// checkPeer checks what the backend needs of a peer.
	checkPeer(p Peer) error
}

var backends = map[string]backend{
	config.BackendVXLAN:  vxlanBackend{},
	config.BackendHostGW: hostGWBackend{},
}

func backendOf(name string) (backend, error) {
	if b, ok := backends[name]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("unknown network backend %q (want %s or %s)", name, config.BackendVXLAN, config.BackendHostGW)
}

type vxlanBackend struct{}

func (vxlanBackend) overhead() int { return VXLANOverhead }

func (vxlanBackend) checkLocal(l Local) error {
	if l.VNI < 1 || l.VNI > 1<<24-1 {
		return fmt.Errorf("VNI %d is out of range 1-16777215", l.VNI)
	}
	return nil
}

func (vxlanBackend) ensureLocal(l Local) error {
	link, err := ensureVXLAN(l)
	if err != nil {
		return err
	}
	if l.PodCIDR.IsValid() {
		return ensureVXLANAddr(link, l.PodCIDR)
	}
	return nil
}

func (vxlanBackend) syncPeers(l Local, peers []Peer) error { return syncVXLANPeers(l, peers) }

func (vxlanBackend) annotate(l Local, a map[string]string) {
	a[AnnotationVTEPMAC] = VTEPMAC(l.Uplink.IP).String()
}

func (vxlanBackend) readPeer(a map[string]string, p *Peer) string {
	mac, err := net.ParseMAC(a[AnnotationVTEPMAC])
	if err != nil || len(mac) != 6 {
		return fmt.Sprintf("annotation %s=%q is not a MAC address", AnnotationVTEPMAC, a[AnnotationVTEPMAC])
	}
	p.VTEPMAC = mac
	return ""
}

func (vxlanBackend) checkPeer(p Peer) error {
	if len(p.VTEPMAC) != 6 {
		return fmt.Errorf("node %s: no VTEP MAC address", p.Name)
	}
	return nil
}

type hostGWBackend struct{}

func (hostGWBackend) checkPeer(Peer) error { return nil }

func (hostGWBackend) overhead() int                     { return 0 }
func (hostGWBackend) checkLocal(Local) error            { return nil }
func (hostGWBackend) ensureLocal(l Local) error         { return removeVXLAN("the backend is " + l.Backend) }
func (hostGWBackend) annotate(Local, map[string]string) {}

func (hostGWBackend) syncPeers(l Local, peers []Peer) error { return syncHostGWPeers(l, peers) }

func (hostGWBackend) readPeer(map[string]string, *Peer) string { return "" }
