package config

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// Network backends: how pod traffic crosses nodes.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
)

// The cluster-wide settings every node needs are published by the control
// plane in this ConfigMap (readable by nodes and joining nodes), like
// kubeadm's kubelet-config ConfigMap.
const (
	ClusterSettingsNamespace = "kube-system"
	ClusterSettingsName      = "node-agent-config"
	ClusterSettingsKey       = "cluster.yaml"
)

// ClusterSettings is what a node learns from the control plane at run time.
type ClusterSettings struct {
	PodCIDR       string `json:"podCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	ClusterDNS    string `json:"clusterDNS"`
	ClusterDomain string `json:"clusterDomain"`
	Backend       string `json:"backend"`
	VNI           int    `json:"vni"`
	// NetworkPolicy is absent from settings of releases before enforcement:
	// its zero value is "not enforced".
	NetworkPolicy NetworkPolicySettings `json:"networkPolicy,omitzero"`
}

// NetworkPolicySettings is policies.networkPolicy as nodes enforce it.
type NetworkPolicySettings struct {
	Enabled bool `json:"enabled"`
	// PublicEgress off: pods may not reach addresses outside the cluster's
	// ranges unless a NetworkPolicy of theirs allows it (baseline tier).
	PublicEgress bool `json:"publicEgress"`
	// PublicEgressCIDR is what pods may reach outside the cluster when PublicEgress is on.
	PublicEgressCIDR string `json:"publicEgressCIDR,omitempty"`
	// DeniedEgress is denied to every pod at the admin tier.
	DeniedEgress []string `json:"deniedEgress,omitempty"`
}

// ClusterSettings returns the settings the control plane publishes to nodes.
func (c *ControlPlane) ClusterSettings() ClusterSettings {
	return ClusterSettings{
		PodCIDR:       c.Network.PodCIDR,
		ServiceCIDR:   c.Network.ServiceCIDR,
		ClusterDNS:    c.Network.ClusterDNS,
		ClusterDomain: c.Network.ClusterDomain,
		Backend:       c.Network.Backend,
		VNI:           c.Network.VNI,
		NetworkPolicy: NetworkPolicySettings{
			Enabled:          c.NetworkPolicyEnabled(),
			PublicEgress:     c.PublicEgressEnabled(),
			PublicEgressCIDR: c.Policies.NetworkPolicy.Workload.PublicEgress.CIDR,
			DeniedEgress:     c.Policies.NetworkPolicy.Workload.PublicEgress.Except,
		},
	}
}

// MarshalClusterSettings renders s as the ConfigMap's data.
func MarshalClusterSettings(s ClusterSettings) (string, error) {
	b, err := yaml.Marshal(s)
	return string(b), err
}

// ParseClusterSettings decodes and checks the ConfigMap's data: a node
// refuses settings it cannot use rather than guessing.
func ParseClusterSettings(data string) (ClusterSettings, error) {
	var s ClusterSettings
	if err := yaml.UnmarshalStrict([]byte(data), &s); err != nil {
		return s, fmt.Errorf("%s/%s: %s", ClusterSettingsNamespace, ClusterSettingsName, cleanYAMLError(err))
	}
	c := &ControlPlane{Network: NetworkConfig{
		PodCIDR: s.PodCIDR, ServiceCIDR: s.ServiceCIDR, ClusterDNS: s.ClusterDNS,
		ClusterDomain: s.ClusterDomain, Backend: s.Backend, VNI: s.VNI,
	}}
	errs := validateNetwork(&c.Network)
	if np := s.NetworkPolicy; np.Enabled {
		errs = append(errs, validatePublicEgress(&PublicEgressConfig{CIDR: np.PublicEgressCIDR, Except: np.DeniedEgress})...)
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("%s/%s: %w", ClusterSettingsNamespace, ClusterSettingsName, errs[0])
	}
	return s, nil
}

// BuiltinClusterPolicyLabel marks the ClusterNetworkPolicies the control
// plane renders from policies.networkPolicy: nodes enforce those rules from
// their settings and skip the objects, which exist so the API shows them.
const BuiltinClusterPolicyLabel = "netpol.vcluster-standalone.io/builtin"
