package node

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"text/template"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// containerdConfig is what the containerd config template needs.
type containerdConfig struct {
	Root, State, Socket string
	BinDir, CNIConfDir  string
	CertsDir            string
	PauseImage          string
	Snapshotter         string
	SystemdCgroups      bool
	RestrictOOMScoreAdj bool
}

var containerdTemplate = template.Must(template.New("containerd").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`# Written by node-agent at every start; edits are overwritten.
version = 3
root = {{q .Root}}
state = {{q .State}}

[grpc]
  address = {{q .Socket}}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = {{q .Snapshotter}}
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {{q .PauseImage}}
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = {{q .CertsDir}}

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = {{.RestrictOOMScoreAdj}}
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{{q .BinDir}}]
    conf_dir = {{q .CNIConfDir}}
    max_conf_num = 1
    # the pod's lo is brought up by containerd itself: no loopback plugin binary
    use_internal_loopback = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = {{q .ShimPath}}
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = {{q .RuncPath}}
        SystemdCgroup = {{.SystemdCgroups}}

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`))

// renderContainerdConfig returns containerd's config.toml for this node.
func renderContainerdConfig(c containerdConfig) ([]byte, error) {
	var buf bytes.Buffer
	err := containerdTemplate.Execute(&buf, struct {
		containerdConfig
		ShimPath, RuncPath string
	}{c, filepath.Join(c.BinDir, ShimName), filepath.Join(c.BinDir, RuncName)})
	if err != nil {
		return nil, fmt.Errorf("failed to render containerd config: %w", err)
	}
	return buf.Bytes(), nil
}

func newContainerdConfig(n *config.Node, host Host) containerdConfig {
	return containerdConfig{
		Root:                n.ContainerdRoot(),
		State:               config.ContainerdState(),
		Socket:              config.ContainerdSocket(),
		BinDir:              n.BinDir(),
		CNIConfDir:          n.CNIConfDir(),
		CertsDir:            registryHostsDir(n),
		PauseImage:          config.PauseImage,
		Snapshotter:         "overlayfs",
		SystemdCgroups:      host.SystemdCgroups,
		RestrictOOMScoreAdj: !host.CanLowerOOMScore,
	}
}
