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
	if errs := validateNetwork(&c.Network); len(errs) > 0 {
		return s, fmt.Errorf("%s/%s: %w", ClusterSettingsNamespace, ClusterSettingsName, errs[0])
	}
	return s, nil
}
