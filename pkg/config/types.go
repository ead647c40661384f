// Package config holds the versioned control-plane configuration: its types,
// the single source of its defaults, loading from YAML and validation.
package config

// APIVersion and Kind identify a control-plane config file.
const (
	APIVersion       = "vcluster-standalone.io/v1alpha1"
	ControlPlaneKind = "ControlPlaneConfig"
)

// ControlPlane is the configuration of `vcluster-standalone start`. Every field
// has a command-line flag of the same meaning (see cmd/vcluster-standalone).
type ControlPlane struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`

	// AdvertiseAddress is the address other machines reach the API server on.
	// Default: the first address of the interface that holds the default route.
	AdvertiseAddress string `json:"advertiseAddress,omitempty"`
	// BindAddress is where the API server listens.
	BindAddress string `json:"bindAddress,omitempty"`
	// APIPort is the API server's secure port.
	APIPort int `json:"apiPort,omitempty"`
	// JoinPort is the join endpoint's HTTPS port (on BindAddress, like the
	// API server): it serves install.sh and the node-agent binary to joining
	// nodes, which reach it on the advertise address.
	JoinPort int `json:"joinPort,omitempty"`
	// JoinEndpoint turns the join endpoint on (default) or off. Off, nothing
	// listens on JoinPort and nodes join with node-agent installed by other
	// means (`token create` then prints only the node-agent line).
	JoinEndpoint *bool `json:"joinEndpoint,omitempty"`
	// DataDir holds PKI, etcd data, generated component configs and logs.
	DataDir string `json:"dataDir,omitempty"`
	// AdminKubeconfig is where start writes an admin kubeconfig (0600) for
	// `vcluster-standalone kubectl` and users.
	AdminKubeconfig string `json:"adminKubeconfig,omitempty"`

	Network NetworkConfig `json:"network,omitempty"`
	Ports   PortsConfig   `json:"ports,omitempty"`

	// ExtraSANs are added to the API server's serving certificate.
	ExtraSANs []string `json:"extraSANs,omitempty"`
	// ExtraArgs override or add flags of each component (without the leading --).
	ExtraArgs ExtraArgs `json:"extraArgs,omitempty"`
	// FeatureGates are set once for every embedded component.
	FeatureGates map[string]bool `json:"featureGates,omitempty"`

	Policies          PoliciesConfig          `json:"policies,omitempty"`
	SecretsEncryption SecretsEncryptionConfig `json:"secretsEncryption,omitempty"`
	Storage           StorageConfig           `json:"storage,omitempty"`
	// Certificates sets leaf lifetimes and their renewal while running.
	Certificates CertificatesConfig `json:"certificates,omitempty"`
	// Etcd holds the embedded etcd's quota, defragmentation and scheduled
	// snapshots (etcd.go).
	Etcd EtcdConfig `json:"etcd,omitempty"`

	// JoinNode makes the control-plane host a node too (it runs node-agent
	// with credentials the control plane issues itself). Default true.
	JoinNode *bool `json:"joinNode,omitempty"`
	// LocalNode is where start writes the host's own node-agent config,
	// credentials and unit when JoinNode is on.
	LocalNode LocalNodeConfig `json:"localNode,omitempty"`
}

// LocalNodeConfig holds the paths of the control-plane host's own node:
// the same files `node-agent join` writes on other machines.
type LocalNodeConfig struct {
	// ConfigFile is the node-agent config file (default /etc/node-agent/config.yaml).
	ConfigFile string `json:"configFile,omitempty"`
	// DataDir holds the node's credentials and state (default /var/lib/node-agent).
	DataDir string `json:"dataDir,omitempty"`
	// UnitDir receives node-agent.service (default /etc/systemd/system).
	UnitDir string `json:"unitDir,omitempty"`
}

// JoinsNode reports whether the control-plane host also runs workloads.
func (c *ControlPlane) JoinsNode() bool { return c.JoinNode == nil || *c.JoinNode }

// ServesJoinEndpoint reports whether the join endpoint runs.
func (c *ControlPlane) ServesJoinEndpoint() bool { return c.JoinEndpoint == nil || *c.JoinEndpoint }

// NetworkConfig holds the cluster's address ranges and DNS settings.
type NetworkConfig struct {
	PodCIDR       string `json:"podCIDR,omitempty"`
	ServiceCIDR   string `json:"serviceCIDR,omitempty"`
	ClusterDNS    string `json:"clusterDNS,omitempty"`
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// Backend is how pod traffic crosses nodes: vxlan (any network) or
	// host-gw (plain routes; every node on one L2 segment).
	Backend string `json:"backend,omitempty"`
	// VNI is the cluster's VXLAN network identifier.
	VNI int `json:"vni,omitempty"`
}

// PortsConfig holds the ports of the components that listen on loopback only.
type PortsConfig struct {
	EtcdClient        int `json:"etcdClient,omitempty"`
	EtcdPeer          int `json:"etcdPeer,omitempty"`
	ControllerManager int `json:"controllerManager,omitempty"`
	Scheduler         int `json:"scheduler,omitempty"`
}

// ExtraArgs maps flag names to values for each embedded component.
type ExtraArgs struct {
	APIServer         map[string]string `json:"apiServer,omitempty"`
	ControllerManager map[string]string `json:"controllerManager,omitempty"`
	Scheduler         map[string]string `json:"scheduler,omitempty"`
}

// PoliciesConfig holds cluster-wide security policies.
type PoliciesConfig struct {
	// PodSecurityStandard is enforced by default in every namespace that does
	// not set its own pod-security.kubernetes.io labels.
	PodSecurityStandard string `json:"podSecurityStandard,omitempty"`
	// NetworkPolicy turns on NetworkPolicy enforcement on every node and the
	// cluster-wide workload rules below.
	NetworkPolicy NetworkPolicyConfig `json:"networkPolicy,omitempty"`
}

// NetworkPolicyConfig controls NetworkPolicy enforcement (node-agent's
// nftables table) and the built-in workload rules.
type NetworkPolicyConfig struct {
	// Enabled defaults to true.
	Enabled  *bool                 `json:"enabled,omitempty"`
	Workload WorkloadNetworkConfig `json:"workload,omitempty"`
}

// WorkloadNetworkConfig holds the rules every pod is subject to.
type WorkloadNetworkConfig struct {
	PublicEgress PublicEgressConfig `json:"publicEgress,omitempty"`
}

// PublicEgressConfig says what pods may reach outside the cluster's ranges.
type PublicEgressConfig struct {
	// Enabled (default true) lets pods reach CIDR. Off, everything outside
	// the cluster's own ranges is denied at the baseline tier: a namespace's
	// own egress NetworkPolicy may reopen it.
	Enabled *bool `json:"enabled,omitempty"`
	// CIDR is the public range pods may reach (default 0.0.0.0/0).
	CIDR string `json:"cidr,omitempty"`
	// Except is denied to every pod at the admin tier, whatever any
	// NetworkPolicy says (default: the cloud metadata address
	// 169.254.169.254/32). The nodes themselves are not affected.
	Except []string `json:"except,omitempty"`
}

// NetworkPolicyEnabled reports whether nodes enforce NetworkPolicy.
func (c *ControlPlane) NetworkPolicyEnabled() bool {
	return c.Policies.NetworkPolicy.Enabled == nil || *c.Policies.NetworkPolicy.Enabled
}

// PublicEgressEnabled reports whether pods may reach addresses outside the cluster.
func (c *ControlPlane) PublicEgressEnabled() bool {
	e := c.Policies.NetworkPolicy.Workload.PublicEgress.Enabled
	return e == nil || *e
}

// SecretsEncryptionConfig controls encryption of Secrets at rest in etcd.
type SecretsEncryptionConfig struct {
	// Enabled defaults to true; the key is generated on first start.
	Enabled *bool `json:"enabled,omitempty"`
}

// StorageConfig controls the distribution's own CSI driver.
type StorageConfig struct {
	// Enabled defaults to true: the CSI controller, its CRDs, the CSIDriver,
	// the default StorageClass and VolumeSnapshotClass. Off, none of them
	// are written or run (objects already written stay).
	Enabled *bool `json:"enabled,omitempty"`
}

// StorageEnabled reports whether the CSI driver's control-plane half runs.
func (c *ControlPlane) StorageEnabled() bool {
	return c.Storage.Enabled == nil || *c.Storage.Enabled
}

// EncryptionEnabled reports whether Secrets are encrypted at rest.
func (c *ControlPlane) EncryptionEnabled() bool {
	return c.SecretsEncryption.Enabled == nil || *c.SecretsEncryption.Enabled
}
