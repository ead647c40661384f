// Package cni is vcluster-standalone's own CNI plugin ("vcs-cni"): a per-node
// Linux bridge, one veth pair per pod, file-based IPv4 IPAM from the node's
// podCIDR, and hostPort DNAT in iptables chains prefixed "VCS-".
//
// The plugin is the small binary cmd/vcs-cni (PluginMain), which node-agent
// embeds and installs: this package must stay light (no Kubernetes client or
// scheme packages; `go list -deps ./cmd/vcs-cni`), since containerd starts it
// for every pod. The network controller writes its config with
// WriteConfList; node-agent's reset calls Reset.
package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

const (
	// PluginType is the plugin's binary name in the CNI bin dir (cmd/vcs-cni, installed by node-agent).
	PluginType = "vcs-cni"
	// NetworkName is the name of the CNI network in the conflist.
	NetworkName = "vcs"
	// ConfListFile is the file WriteConfList writes in the CNI conf dir.
	ConfListFile = "10-vcs.conflist"
	// DefaultBridge is the bridge name when NetConf.Bridge is empty.
	DefaultBridge = "vcs0"
	// ConfCNIVersion is the spec version written into the conflist.
	ConfCNIVersion = "1.1.0"

	defaultMTU = 1500
)

// NetConf is the plugin's configuration: one entry of the "vcs" conflist,
// completed by the runtime with cniVersion, name, runtimeConfig and prevResult.
type NetConf struct {
	types.PluginConf

	// Bridge is the per-node bridge (default "vcs0").
	Bridge string `json:"bridge,omitempty"`
	// MTU of the bridge and every pod interface; 0 means 1500. The network
	// controller sets it to the uplink MTU minus the overlay overhead.
	MTU int `json:"mtu,omitempty"`
	// Subnet is the node's podCIDR (IPv4), e.g. "10.244.1.0/24". Its first
	// address is the gateway, set on the bridge.
	Subnet string `json:"subnet"`
	// IPAMDir is the absolute directory holding address allocations.
	IPAMDir string `json:"ipamDir"`
	// PolicySocket, when set, is node-agent's network policy socket: ADD
	// returns only once the new pod's isolation is programmed there.
	PolicySocket string `json:"policySocket,omitempty"`

	// RuntimeConfig is filled by the runtime for the capabilities we declare.
	RuntimeConfig *RuntimeConfig `json:"runtimeConfig,omitempty"`
}

// RuntimeConfig holds the capability arguments the runtime passes.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
}

// PortMapping is one entry of the "portMappings" capability (a pod's hostPort).
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// network is a validated, defaulted NetConf in usable form.
type network struct {
	bridge  string
	mtu     int
	subnet  *net.IPNet // normalised: IP is the network address, 4-byte form
	gateway *net.IPNet // first address of subnet, with the subnet's mask
	ipamDir string
}

// withDefaults returns c with every unset field defaulted.
func (c NetConf) withDefaults() NetConf {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.MTU == 0 {
		c.MTU = defaultMTU
	}
	return c
}

// validate checks a defaulted NetConf and returns its usable form.
func (c NetConf) validate() (*network, error) {
	c = c.withDefaults()
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t\n") {
		return nil, fmt.Errorf("invalid bridge %q: a Linux interface name of at most 15 characters is allowed", c.Bridge)
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return nil, fmt.Errorf("invalid mtu %d: a value between 576 and 65535 is allowed", c.MTU)
	}
	if c.Subnet == "" {
		return nil, errors.New("subnet is required: set it to the node's podCIDR, e.g. 10.244.1.0/24")
	}
	_, subnet, err := net.ParseCIDR(c.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("invalid subnet %q: an IPv4 CIDR such as 10.244.1.0/24 is allowed", c.Subnet)
	}
	if ones, _ := subnet.Mask.Size(); ones > 30 || ones < 8 {
		return nil, fmt.Errorf("invalid subnet %q: a prefix length between /8 and /30 is allowed", c.Subnet)
	}
	if c.IPAMDir == "" || !filepath.IsAbs(c.IPAMDir) {
		return nil, fmt.Errorf("invalid ipamDir %q: an absolute directory is required", c.IPAMDir)
	}
	subnet.IP = subnet.IP.To4()
	gw := ipAdd(subnet.IP, 1)
	return &network{
		bridge:  c.Bridge,
		mtu:     c.MTU,
		subnet:  subnet,
		gateway: &net.IPNet{IP: gw, Mask: subnet.Mask},
		ipamDir: filepath.Clean(c.IPAMDir),
	}, nil
}

// parseConf decodes the plugin's stdin configuration.
func parseConf(data []byte) (*NetConf, *network, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, nil, fmt.Errorf("failed to parse network configuration: %w", err)
	}
	nw, err := conf.validate()
	if err != nil {
		return nil, nil, fmt.Errorf("invalid network configuration: %w", err)
	}
	return conf, nw, nil
}

// confListEntry is the plugin entry as written to disk. (NetConf can't be
// marshalled directly: the embedded PluginConf's MarshalJSON would drop our fields.)
type confListEntry struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	Bridge       string          `json:"bridge"`
	MTU          int             `json:"mtu"`
	Subnet       string          `json:"subnet"`
	IPAMDir      string          `json:"ipamDir"`
	PolicySocket string          `json:"policySocket,omitempty"`
}

type confList struct {
	CNIVersion string          `json:"cniVersion"`
	Name       string          `json:"name"`
	Plugins    []confListEntry `json:"plugins"`
}

// WriteConfList writes <dir>/10-vcs.conflist for c (network "vcs", plugin
// "vcs-cni", cniVersion 1.1.0, portMappings capability). It validates c first,
// writes atomically (temp file + rename) and leaves the file untouched when the
// content is already the same.
func WriteConfList(dir string, c NetConf) error {
	nw, err := c.validate()
	if err != nil {
		return fmt.Errorf("failed to write CNI config: %w", err)
	}
	ones, _ := nw.subnet.Mask.Size()
	list := confList{
		CNIVersion: ConfCNIVersion,
		Name:       NetworkName,
		Plugins: []confListEntry{{
			Type:         PluginType,
			Capabilities: map[string]bool{"portMappings": true},
			Bridge:       nw.bridge,
			MTU:          nw.mtu,
			Subnet:       fmt.Sprintf("%s/%d", nw.subnet.IP, ones),
			IPAMDir:      nw.ipamDir,
			PolicySocket: c.PolicySocket,
		}},
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode CNI config: %w", err)
	}
	data = append(data, '\n')
	path := filepath.Join(dir, ConfListFile)
	// 0600: only root (containerd) reads it (CIS 1.1.9); an older 0644 file is tightened.
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, 0o600)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("failed to create CNI config dir: %w", err)
	}
	return writeFileAtomic(path, data, 0o600, true)
}

// writeFileAtomic writes data to a temp file in path's directory, syncs it
// when asked, and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Chmod(perm)
	}
	if werr == nil && sync {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(name, path)
	}
	if werr != nil {
		_ = os.Remove(name)
		return fmt.Errorf("failed to write %s: %w", path, werr)
	}
	return nil
}

// bridgeFromConfList returns the bridge named in <dir>/10-vcs.conflist, or
// DefaultBridge when the file is missing or unreadable.
func bridgeFromConfList(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, ConfListFile))
	if err != nil {
		return DefaultBridge
	}
	var list confList
	if json.Unmarshal(data, &list) != nil || len(list.Plugins) == 0 || list.Plugins[0].Bridge == "" {
		return DefaultBridge
	}
	return list.Plugins[0].Bridge
}
