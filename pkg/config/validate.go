package config

import (
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// PodSecurityStandards are the allowed values of policies.podSecurityStandard.
var PodSecurityStandards = []string{"privileged", "baseline", "restricted"}

// Validate returns one error per invalid field, each naming the field, the bad
// value and what is allowed.
func (c *ControlPlane) Validate() []error {
	var errs []error
	add := func(field string, value any, allowed string) {
		errs = append(errs, fmt.Errorf("%s: invalid value %q: %s", field, fmt.Sprint(value), allowed))
	}

	errs = append(errs, typeMetaErrors(c.APIVersion, c.Kind, ControlPlaneKind)...)
	if c.AdvertiseAddress == "" {
		errs = append(errs, fmt.Errorf("advertiseAddress: not set and no address found on the default-route interface; set --advertise-address"))
	} else if ip, err := netip.ParseAddr(c.AdvertiseAddress); err != nil || ip.IsUnspecified() {
		add("advertiseAddress", c.AdvertiseAddress, "must be an IP address of this host such as 192.168.1.10")
	} else if ip.IsLoopback() {
		// The kubernetes Service points pods at this address; loopback is refused there.
		add("advertiseAddress", c.AdvertiseAddress, "must not be a loopback address: nodes and pods reach the API server through it")
	}
	if _, err := netip.ParseAddr(c.BindAddress); err != nil {
		add("bindAddress", c.BindAddress, "must be an IP address such as 0.0.0.0")
	}
	errs = append(errs, validatePorts(c)...)
	paths := map[string]string{
		"dataDir": c.DataDir, "adminKubeconfig": c.AdminKubeconfig,
		"localNode.configFile": c.LocalNode.ConfigFile, "localNode.dataDir": c.LocalNode.DataDir, "localNode.unitDir": c.LocalNode.UnitDir,
	}
	for _, field := range slices.Sorted(maps.Keys(paths)) {
		if !filepath.IsAbs(paths[field]) {
			add(field, paths[field], "must be an absolute path")
		}
	}
	for _, d := range [][2]string{{"dataDir", c.DataDir}, {"localNode.dataDir", c.LocalNode.DataDir}} {
		if err := CheckDataDir(d[0], d[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if c.LocalNode.DataDir == c.DataDir {
		add("localNode.dataDir", c.LocalNode.DataDir, "must differ from dataDir: the node's files and the control plane's live apart")
	}

	errs = append(errs, validateNetwork(&c.Network)...)
	for i, san := range c.ExtraSANs {
		if _, err := netip.ParseAddr(san); err == nil {
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(strings.TrimPrefix(san, "*.")); len(msgs) > 0 {
			add(fmt.Sprintf("extraSANs[%d]", i), san, "must be an IP address or a DNS name")
		}
	}
	for component, args := range map[string]map[string]string{
		"apiServer": c.ExtraArgs.APIServer, "controllerManager": c.ExtraArgs.ControllerManager, "scheduler": c.ExtraArgs.Scheduler,
	} {
		for _, key := range slices.Sorted(maps.Keys(args)) {
			if key == "" || strings.HasPrefix(key, "-") || strings.ContainsAny(key, "= ") {
				add("extraArgs."+component, key, "keys must be flag names without leading dashes, such as v")
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.FeatureGates)) {
		if name == "" || strings.ContainsAny(name, "=, ") {
			add("featureGates", name, "must be a feature gate name such as InPlacePodVerticalScaling")
		}
	}
	if !slices.Contains(PodSecurityStandards, c.Policies.PodSecurityStandard) {
		add("policies.podSecurityStandard", c.Policies.PodSecurityStandard, "must be one of "+strings.Join(PodSecurityStandards, ", "))
	}
	errs = append(errs, validatePublicEgress(&c.Policies.NetworkPolicy.Workload.PublicEgress)...)
	errs = append(errs, validateCertificates(&c.Certificates)...)
	errs = append(errs, validateEtcd(&c.Etcd)...)
	return errs
}

// validatePublicEgress checks policies.networkPolicy.workload.publicEgress:
// IPv4 CIDRs without host bits, any prefix length.
func validatePublicEgress(e *PublicEgressConfig) []error {
	const field = "policies.networkPolicy.workload.publicEgress"
	var errs []error
	if _, err := parseCIDR(field+".cidr", e.CIDR, 0, 32, DefaultPublicEgressCIDR); err != nil {
		errs = append(errs, err)
	}
	for i, cidr := range e.Except {
		if _, err := parseCIDR(fmt.Sprintf("%s.except[%d]", field, i), cidr, 0, 32, DefaultMetadataAddress); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func validatePorts(c *ControlPlane) []error {
	var errs []error
	ports := []struct {
		field string
		port  int
	}{
		{"apiPort", c.APIPort},
		{"joinPort", c.JoinPort},
		{"ports.etcdClient", c.Ports.EtcdClient},
		{"ports.etcdPeer", c.Ports.EtcdPeer},
		{"ports.controllerManager", c.Ports.ControllerManager},
		{"ports.scheduler", c.Ports.Scheduler},
	}
	seen := map[int]string{}
	for _, p := range ports {
		if p.port < 1 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("%s: invalid value %q: must be a port between 1 and 65535", p.field, fmt.Sprint(p.port)))
			continue
		}
		if other, ok := seen[p.port]; ok {
			errs = append(errs, fmt.Errorf("%s: invalid value %q: already used by %s; every port must differ", p.field, fmt.Sprint(p.port), other))
		}
		seen[p.port] = p.field
	}
	return errs
}

func validateNetwork(n *NetworkConfig) []error {
	var errs []error
	pod, podErr := parseCIDR("network.podCIDR", n.PodCIDR, 8, 24, "10.244.0.0/16")
	if podErr != nil {
		errs = append(errs, podErr)
	}
	svc, svcErr := parseCIDR("network.serviceCIDR", n.ServiceCIDR, 12, 28, "10.96.0.0/12")
	if svcErr != nil {
		errs = append(errs, svcErr)
	}
	if podErr == nil && svcErr == nil && pod.Overlaps(svc) {
		errs = append(errs, fmt.Errorf("network.serviceCIDR: invalid value %q: overlaps network.podCIDR %s; choose ranges that do not overlap", n.ServiceCIDR, n.PodCIDR))
	}
	if dns, err := netip.ParseAddr(n.ClusterDNS); err != nil {
		errs = append(errs, fmt.Errorf("network.clusterDNS: invalid value %q: must be an IP address inside network.serviceCIDR", n.ClusterDNS))
	} else if svcErr == nil {
		first, _ := NthAddress(svc.String(), 1)
		if !svc.Contains(dns) || dns == svc.Addr() || dns == first {
			errs = append(errs, fmt.Errorf("network.clusterDNS: invalid value %q: must be inside network.serviceCIDR %s and not its first address (the kubernetes Service)", n.ClusterDNS, svc))
		}
	}
	if msgs := validation.IsDNS1123Subdomain(n.ClusterDomain); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("network.clusterDomain: invalid value %q: must be a DNS domain such as cluster.local", n.ClusterDomain))
	}
	if n.Backend != BackendVXLAN && n.Backend != BackendHostGW {
		errs = append(errs, fmt.Errorf("network.backend: invalid value %q: must be %s or %s", n.Backend, BackendVXLAN, BackendHostGW))
	}
	if n.VNI < 1 || n.VNI > 16777215 {
		errs = append(errs, fmt.Errorf("network.vni: invalid value %d: must be between 1 and 16777215", n.VNI))
	}
	return errs
}

// parseCIDR accepts an IPv4 network with a prefix length in [minBits,maxBits].
func parseCIDR(field, value string, minBits, maxBits int, example string) (netip.Prefix, error) {
	prefix, err := netip.ParsePrefix(value)
	if err != nil || !prefix.Addr().Is4() {
		return prefix, fmt.Errorf("%s: invalid value %q: must be an IPv4 CIDR such as %s", field, value, example)
	}
	if prefix.Bits() < minBits || prefix.Bits() > maxBits {
		return prefix, fmt.Errorf("%s: invalid value %q: prefix length must be between /%d and /%d", field, value, minBits, maxBits)
	}
	if prefix.Masked() != prefix {
		return prefix, fmt.Errorf("%s: invalid value %q: has host bits set; did you mean %s?", field, value, prefix.Masked())
	}
	return prefix, nil
}

// typeMetaErrors checks a config file's apiVersion and kind.
func typeMetaErrors(apiVersion, kind, wantKind string) []error {
	var errs []error
	if apiVersion != APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion: invalid value %q: must be %s", apiVersion, APIVersion))
	}
	if kind != wantKind {
		errs = append(errs, fmt.Errorf("kind: invalid value %q: must be %s", kind, wantKind))
	}
	return errs
}
