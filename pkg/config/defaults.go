package config

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Default values of the control-plane configuration. DefaultControlPlane and
// SetDefaults are the only places that apply them.
const (
	DefaultConfigFile          = "/etc/vcluster-standalone/config.yaml"
	DefaultDataDir             = "/var/lib/vcluster-standalone"
	DefaultAdminKubeconfig     = "/etc/vcluster-standalone/admin.kubeconfig"
	DefaultBindAddress         = "0.0.0.0"
	DefaultAPIPort             = 6443
	DefaultJoinPort            = 6444
	DefaultPodCIDR             = "10.244.0.0/16"
	DefaultServiceCIDR         = "10.96.0.0/12"
	DefaultClusterDomain       = "cluster.local"
	DefaultNetworkBackend      = BackendVXLAN
	DefaultVNI                 = 4242
	DefaultPodSecurityStandard = "baseline"
	DefaultPublicEgressCIDR    = "0.0.0.0/0"
	// DefaultMetadataAddress is the cloud metadata service, denied to pods by default.
	DefaultMetadataAddress   = "169.254.169.254/32"
	DefaultEtcdClientPort    = 2379
	DefaultEtcdPeerPort      = 2380
	DefaultControllerMgrPort = 10257
	DefaultSchedulerPort     = 10259
	DefaultUnitDir           = "/etc/systemd/system"
	// clusterDNSOffset: the cluster DNS Service takes the 10th address of the
	// service range, as kubeadm does.
	clusterDNSOffset = 10
)

// DefaultControlPlane returns a configuration with every static default set.
// The advertise address depends on the host and is filled by SetDefaults.
func DefaultControlPlane() *ControlPlane {
	c := &ControlPlane{}
	SetDefaults(c, func() (string, error) { return "", nil })
	return c
}

// SetDefaults fills every empty field of c. detectAddress supplies the
// advertise address when none is set; DetectAdvertiseAddress is the real one.
// A detection failure leaves the field empty so Validate reports it.
func SetDefaults(c *ControlPlane, detectAddress func() (string, error)) {
	setString(&c.APIVersion, APIVersion)
	setString(&c.Kind, ControlPlaneKind)
	if c.AdvertiseAddress == "" && detectAddress != nil {
		if addr, err := detectAddress(); err == nil {
			c.AdvertiseAddress = addr
		}
	}
	setString(&c.BindAddress, DefaultBindAddress)
	setInt(&c.APIPort, DefaultAPIPort)
	setInt(&c.JoinPort, DefaultJoinPort)
	setString(&c.DataDir, DefaultDataDir)
	setString(&c.AdminKubeconfig, DefaultAdminKubeconfig)
	setString(&c.Network.PodCIDR, DefaultPodCIDR)
	setString(&c.Network.ServiceCIDR, DefaultServiceCIDR)
	if c.Network.ClusterDNS == "" {
		if ip, err := NthAddress(c.Network.ServiceCIDR, clusterDNSOffset); err == nil {
			c.Network.ClusterDNS = ip.String()
		}
	}
	setString(&c.Network.ClusterDomain, DefaultClusterDomain)
	setString(&c.Network.Backend, DefaultNetworkBackend)
	setInt(&c.Network.VNI, DefaultVNI)
	setInt(&c.Ports.EtcdClient, DefaultEtcdClientPort)
	setInt(&c.Ports.EtcdPeer, DefaultEtcdPeerPort)
	setInt(&c.Ports.ControllerManager, DefaultControllerMgrPort)
	setInt(&c.Ports.Scheduler, DefaultSchedulerPort)
	setString(&c.Policies.PodSecurityStandard, DefaultPodSecurityStandard)
	setBool(&c.Policies.NetworkPolicy.Enabled, true)
	egress := &c.Policies.NetworkPolicy.Workload.PublicEgress
	setBool(&egress.Enabled, true)
	setString(&egress.CIDR, DefaultPublicEgressCIDR)
	if egress.Except == nil {
		// nil is "not set"; an explicit empty list (except: []) stays empty.
		egress.Except = []string{DefaultMetadataAddress}
	}
	if c.SecretsEncryption.Enabled == nil {
		enabled := true
		c.SecretsEncryption.Enabled = &enabled
	}
	if c.Storage.Enabled == nil {
		enabled := true
		c.Storage.Enabled = &enabled
	}
	if c.JoinNode == nil {
		join := true
		c.JoinNode = &join
	}
	if c.JoinEndpoint == nil {
		serve := true
		c.JoinEndpoint = &serve
	}
	setCertificateDefaults(&c.Certificates)
	setEtcdDefaults(c)
	setString(&c.LocalNode.ConfigFile, DefaultNodeConfigFile)
	setString(&c.LocalNode.DataDir, DefaultNodeDataDir)
	setString(&c.LocalNode.UnitDir, DefaultUnitDir)
}

func setString(field *string, value string) {
	if *field == "" {
		*field = value
	}
}

func setBool(field **bool, value bool) {
	if *field == nil {
		*field = &value
	}
}

func setInt(field *int, value int) {
	if *field == 0 {
		*field = value
	}
}

// NthAddress returns the n-th address of a CIDR (0 is the network address).
func NthAddress(cidr string, n int) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, err
	}
	addr := prefix.Masked().Addr()
	for i := 0; i < n; i++ {
		addr = addr.Next()
	}
	if !prefix.Contains(addr) {
		return netip.Addr{}, fmt.Errorf("%s has fewer than %d addresses", cidr, n+1)
	}
	return addr, nil
}

// DetectAdvertiseAddress returns the first global unicast IPv4 address of the
// interface that holds the default route, read from /proc/net/route.
func DetectAdvertiseAddress() (string, error) {
	iface, err := defaultRouteInterface("/proc/net/route")
	if err != nil {
		return "", err
	}
	return interfaceAddress(iface)
}

func defaultRouteInterface(routeFile string) (string, error) {
	f, err := os.Open(routeFile)
	if err != nil {
		return "", fmt.Errorf("failed to read routes: %w", err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		// Iface Destination Gateway Flags ...; destination 00000000 is default.
		if len(fields) > 2 && fields[1] == "00000000" {
			return fields[0], nil
		}
	}
	return "", fmt.Errorf("no default route found")
}

func interfaceAddress(name string) (string, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return "", err
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipNet, ok := a.(*net.IPNet); ok && ipNet.IP.To4() != nil && ipNet.IP.IsGlobalUnicast() {
			return ipNet.IP.String(), nil
		}
	}
	return "", fmt.Errorf("interface %s of the default route has no IPv4 address", name)
}
