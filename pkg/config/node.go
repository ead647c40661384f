package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// NodeKind identifies a node-agent config file (apiVersion is APIVersion).
const NodeKind = "NodeConfig"

// Default values of the node configuration. SetNodeDefaults is the only place
// that applies them.
const (
	DefaultNodeConfigFile = "/etc/node-agent/config.yaml"
	DefaultNodeDataDir    = "/var/lib/node-agent"
)

// Node is the configuration of node-agent, written by `node-agent join` to
// /etc/node-agent/config.yaml. Every field has a flag of the same meaning.
// It holds no secret: credentials live in files under DataDir (mode 0600).
type Node struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`

	// Server is the API server URL the node talks to, e.g. https://192.0.2.10:6443.
	Server string `json:"server,omitempty"`
	// NodeName is the name of the Node object. Default: the hostname, lowercased.
	NodeName string `json:"nodeName,omitempty"`
	// NodeIP is the address the kubelet reports. Default: chosen by the kubelet.
	NodeIP string `json:"nodeIP,omitempty"`
	// Iface is the network interface pod traffic to other nodes leaves by.
	// Default: the interface holding NodeIP, else the default route's.
	Iface string `json:"iface,omitempty"`
	// DataDir holds the node's credentials and state.
	DataDir string `json:"dataDir,omitempty"`
	// RegistryMirror is "enabled" (the default): this node serves the images
	// in its containerd to the cluster's other nodes (port RegistryMirrorPort,
	// node certificates only) and pulls through theirs; "disabled": neither.
	RegistryMirror string `json:"registryMirror,omitempty"`
	// Storage is "enabled" (the default): this node runs the CSI node plugin
	// and brings a storage pool; "disabled": no pool, no volumes here.
	Storage string `json:"storage,omitempty"`
	// StoragePoolSize is the size of the pool image file made at the first
	// start when no btrfs file system is mounted at the pool directory
	// (dataDir/csi), e.g. 20Gi; the image is sparse. Default 10Gi.
	StoragePoolSize string `json:"storagePoolSize,omitempty"`
}

// Values of Node.Storage.
const (
	StorageEnabled  = "enabled"
	StorageDisabled = "disabled"
)

// DefaultStoragePoolSize is the pool image's size when none is configured.
const DefaultStoragePoolSize = "10Gi"

// minStoragePool is the smallest pool image mkfs.btrfs makes comfortably.
const minStoragePool = 256 << 20

// StorageEnabled says whether this node runs the CSI node plugin.
func (n *Node) StorageEnabled() bool { return n.Storage != StorageDisabled }

// StoragePoolBytes is StoragePoolSize in bytes (0 when invalid; Validate says why).
func (n *Node) StoragePoolBytes() int64 {
	q, err := resource.ParseQuantity(n.StoragePoolSize)
	if err != nil {
		return 0
	}
	return q.Value()
}

// CSIPoolDir is the storage pool's directory (a btrfs mount).
func (n *Node) CSIPoolDir() string { return filepath.Join(n.DataDir, "csi") }

// CSIPoolImage is the pool image file, made when no btrfs is mounted at CSIPoolDir.
func (n *Node) CSIPoolImage() string { return filepath.Join(n.DataDir, "csi-pool.img") }

// Values of Node.RegistryMirror.
const (
	RegistryMirrorEnabled  = "enabled"
	RegistryMirrorDisabled = "disabled"
)

// RegistryMirrorPort is where a node serves its images to its peers.
const RegistryMirrorPort = 6445

// MirrorEnabled says whether this node takes part in the registry mirror.
func (n *Node) MirrorEnabled() bool { return n.RegistryMirror != RegistryMirrorDisabled }

// PKIDir is where the cluster CA and the kubelet's client certificate live.
func (n *Node) PKIDir() string { return filepath.Join(n.DataDir, "pki") }

// CAFile is the cluster CA the node trusts, as verified at join.
func (n *Node) CAFile() string { return filepath.Join(n.PKIDir(), "ca.crt") }

// KubeletServingCAFile is the kubelet-serving CA, which signs the other nodes'
// kubelet serving certificates (their registry mirrors serve with them); the
// control plane publishes it and the node keeps it current.
func (n *Node) KubeletServingCAFile() string {
	return filepath.Join(n.PKIDir(), "kubelet-serving-ca.crt")
}

// KubeletClientCertFile is the kubelet's client certificate and key in one
// file, a symlink maintained by client-go's certificate store (kubelet layout).
func (n *Node) KubeletClientCertFile() string {
	return filepath.Join(n.PKIDir(), "kubelet-client-current.pem")
}

// KubeletServingCertFile is the kubelet's serving certificate and key in one
// file, kept current by the kubelet's certificate manager (kubelet layout).
func (n *Node) KubeletServingCertFile() string {
	return filepath.Join(n.PKIDir(), "kubelet-server-current.pem")
}

// KubeletKubeconfig is the kubeconfig the kubelet uses, pointing at
// KubeletClientCertFile so rotated certificates are picked up.
func (n *Node) KubeletKubeconfig() string { return filepath.Join(n.DataDir, "kubelet.kubeconfig") }

// RunDir holds the node's sockets and runtime state; it is gone after reboot.
const RunDir = "/run/node-agent"

// Node data-dir layout: every path node-agent and its parts use.

// BinDir holds the programs node-agent installs from its embedded copies:
// runc, containerd, the containerd shim and the CNI plugin; containerd and
// the CNI runtime search it.
func (n *Node) BinDir() string { return filepath.Join(n.DataDir, "bin") }

// ContainerdRoot is containerd's persistent root (content, snapshots, metadata).
func (n *Node) ContainerdRoot() string { return filepath.Join(n.DataDir, "containerd") }

// ContainerdState is containerd's runtime state directory.
func ContainerdState() string { return filepath.Join(RunDir, "containerd") }

// ContainerdSocket is the CRI/containerd API socket.
func ContainerdSocket() string { return filepath.Join(ContainerdState(), "containerd.sock") }

// CNIConfDir is node-agent's own CNI config directory (nothing else's).
func (n *Node) CNIConfDir() string { return filepath.Join(n.DataDir, "cni", "net.d") }

// IPAMDir holds the CNI plugin's address allocations.
func (n *Node) IPAMDir() string { return filepath.Join(n.DataDir, "cni", "ipam") }

// ImagesDir holds OCI archives imported at every start.
func (n *Node) ImagesDir() string { return filepath.Join(n.DataDir, "images") }

// KubeletRoot is the kubelet's root directory (pods, volumes, plugins).
func (n *Node) KubeletRoot() string { return filepath.Join(n.DataDir, "kubelet") }

// ClusterSettingsFile caches the control plane's ClusterSettings so the node
// can restart its parts while the control plane is unreachable.
func (n *Node) ClusterSettingsFile() string { return filepath.Join(n.DataDir, "cluster.yaml") }

// RegistryPeersFile remembers the other nodes' registry mirrors between starts.
func (n *Node) RegistryPeersFile() string { return filepath.Join(n.DataDir, "registry-peers") }

// SetNodeDefaults fills every empty field of n. hostname supplies the default
// node name; os.Hostname is the real one.
func SetNodeDefaults(n *Node, hostname func() (string, error)) {
	setString(&n.APIVersion, APIVersion)
	setString(&n.Kind, NodeKind)
	if n.NodeName == "" && hostname != nil {
		if h, err := hostname(); err == nil {
			n.NodeName = strings.ToLower(strings.TrimSpace(h))
		}
	}
	setString(&n.DataDir, DefaultNodeDataDir)
	setString(&n.RegistryMirror, RegistryMirrorEnabled)
	setString(&n.Storage, StorageEnabled)
	setString(&n.StoragePoolSize, DefaultStoragePoolSize)
}

// Validate returns one error per invalid field, each naming the field, the bad
// value and what is allowed.
func (n *Node) Validate() []error {
	var errs []error
	add := func(field, value, allowed string) {
		errs = append(errs, fmt.Errorf("%s: invalid value %q: %s", field, value, allowed))
	}
	errs = append(errs, typeMetaErrors(n.APIVersion, n.Kind, NodeKind)...)
	if n.Server == "" {
		errs = append(errs, fmt.Errorf("server: not set; give the API server URL such as https://192.0.2.10:6443"))
	} else if u, err := url.Parse(n.Server); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		add("server", n.Server, "must be an https:// URL of the API server such as https://192.0.2.10:6443")
	}
	if n.NodeName == "" {
		errs = append(errs, fmt.Errorf("nodeName: not set and the hostname is unknown; set --node-name"))
	} else if msgs := validation.IsDNS1123Subdomain(n.NodeName); len(msgs) > 0 {
		add("nodeName", n.NodeName, "must be a lowercase DNS name such as node-1 ("+msgs[0]+")")
	}
	if n.NodeIP != "" {
		if ip, err := netip.ParseAddr(n.NodeIP); err != nil || ip.IsUnspecified() {
			add("nodeIP", n.NodeIP, "must be an IP address of this host such as 192.168.1.11")
		}
	}
	if n.Iface != "" && !validIfaceName(n.Iface) {
		add("iface", n.Iface, "must be a network interface name such as eth0 (1-15 characters, no '/' or spaces)")
	}
	if !filepath.IsAbs(n.DataDir) {
		add("dataDir", n.DataDir, "must be an absolute path")
	} else if err := CheckDataDir("dataDir", n.DataDir); err != nil {
		errs = append(errs, err)
	}
	if n.RegistryMirror != RegistryMirrorEnabled && n.RegistryMirror != RegistryMirrorDisabled {
		add("registryMirror", n.RegistryMirror, "must be enabled or disabled")
	}
	if n.Storage != StorageEnabled && n.Storage != StorageDisabled {
		add("storage", n.Storage, "must be enabled or disabled")
	}
	if q, err := resource.ParseQuantity(n.StoragePoolSize); err != nil || q.Value() < minStoragePool {
		add("storagePoolSize", n.StoragePoolSize, "must be a size of at least 256Mi such as 20Gi")
	}
	return errs
}

// LoadNode reads a node config file strictly: unknown fields are errors. A
// missing file is not an error when optional is true; the result is then empty.
func LoadNode(path string, optional bool) (*Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return &Node{}, nil
		}
		return nil, fmt.Errorf("failed to read config %s: %w", path, unwrapPathError(err))
	}
	return ParseNode(path, data)
}

// ParseNode decodes a node config; name is only used in error messages.
func ParseNode(name string, data []byte) (*Node, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(err))
	}
	n := &Node{}
	strictErrs, err := kjson.UnmarshalStrict(jsonData, n)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(err))
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(errors.Join(strictErrs...)))
	}
	return n, nil
}

// MarshalNode renders n as the YAML written to the config file.
func MarshalNode(n *Node) ([]byte, error) {
	body, err := yaml.Marshal(n)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by `node-agent join`. Credentials live under dataDir (0600), never here.\n"), body...), nil
}

// NodeFlags binds the node-agent flags that set config keys.
type NodeFlags struct {
	set    *pflag.FlagSet
	values Node
}

// nodeFlags is the one table of node flags: every config key has a flag.
var nodeFlags = []struct {
	name, usage string
	field       func(n *Node) *string
}{
	{"server", "API server URL, e.g. https://192.0.2.10:6443", func(n *Node) *string { return &n.Server }},
	{"node-name", "name of this node (default: the hostname, lowercased)", func(n *Node) *string { return &n.NodeName }},
	{"node-ip", "address the kubelet reports for this node (default: chosen by the kubelet)", func(n *Node) *string { return &n.NodeIP }},
	{"iface", "interface pod traffic to other nodes uses (default: the one holding --node-ip, else the default route's)", func(n *Node) *string { return &n.Iface }},
	{"data-dir", "directory for the node's credentials and state (default " + DefaultNodeDataDir + ")", func(n *Node) *string { return &n.DataDir }},
	{"registry-mirror", "enabled or disabled: serve this node's images to the other nodes and pull through theirs (default enabled)", func(n *Node) *string { return &n.RegistryMirror }},
	{"storage", "enabled or disabled: run the CSI node plugin and bring a storage pool on this node (default enabled)", func(n *Node) *string { return &n.Storage }},
	{"storage-pool-size", "size of the sparse pool image made when no btrfs is mounted at <data-dir>/csi, e.g. 20Gi (default " + DefaultStoragePoolSize + ")", func(n *Node) *string { return &n.StoragePoolSize }},
}

// AddNodeFlags registers the node flags on fs.
func AddNodeFlags(fs *pflag.FlagSet) *NodeFlags {
	f := &NodeFlags{set: fs}
	for _, nf := range nodeFlags {
		fs.StringVar(nf.field(&f.values), nf.name, "", nf.usage)
	}
	return f
}

// Apply copies every flag the user set onto n: flags win over the file.
func (f *NodeFlags) Apply(n *Node) {
	for _, nf := range nodeFlags {
		if f.set.Changed(nf.name) {
			*nf.field(n) = *nf.field(&f.values)
		}
	}
}

// ResolveNode builds the effective node config: the file at path (which may be
// absent unless required), overridden by the flags the user set, with
// defaults for the rest, validated. All validation errors are returned.
func ResolveNode(path string, required bool, flags *NodeFlags, hostname func() (string, error)) (*Node, []error) {
	n, err := LoadNode(path, !required)
	if err != nil {
		return nil, []error{err}
	}
	if flags != nil {
		flags.Apply(n)
	}
	SetNodeDefaults(n, hostname)
	if errs := n.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return n, nil
}

// validIfaceName follows the kernel's rules for interface names.
func validIfaceName(name string) bool {
	return len(name) > 0 && len(name) <= 15 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/: \t\n")
}
