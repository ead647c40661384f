package node

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbaseconfig "k8s.io/component-base/config/v1alpha1"
	proxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// KubeProxy runs the upstream kube-proxy in-process, iptables mode, through
// its own command so upstream's flag handling and validation apply. It uses
// the node's kubelet credential (the control plane binds system:nodes to
// system:node-proxier).
type KubeProxy struct {
	node     *config.Node
	settings config.ClusterSettings
	host     Host
	failed   chan error
}

// NewKubeProxy returns the kube-proxy component.
func NewKubeProxy(n *config.Node, s config.ClusterSettings, host Host) *KubeProxy {
	return &KubeProxy{node: n, settings: s, host: host, failed: make(chan error, 1)}
}

func (p *KubeProxy) Name() string { return "kube-proxy" }

// ConfigFile is the generated KubeProxyConfiguration.
func (p *KubeProxy) ConfigFile() string { return filepath.Join(p.node.DataDir, "kube-proxy.yaml") }

func (p *KubeProxy) Init(context.Context) error {
	body, err := yaml.Marshal(kubeProxyConfiguration(p.node, p.settings, p.host))
	if err != nil {
		return fmt.Errorf("failed to render kube-proxy config: %w", err)
	}
	return fsutil.WriteIfChanged(p.ConfigFile(), body, 0o600)
}

func kubeProxyConfiguration(n *config.Node, s config.ClusterSettings, host Host) *proxyv1alpha1.KubeProxyConfiguration {
	pc := &proxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		ClientConnection:   componentbaseconfig.ClientConnectionConfiguration{Kubeconfig: n.KubeletKubeconfig(), QPS: 20, Burst: 40},
		Mode:               "iptables",
		HostnameOverride:   n.NodeName,
		ClusterCIDR:        s.PodCIDR,
		BindAddress:        "0.0.0.0",
		HealthzBindAddress: "127.0.0.1:10256",
		MetricsBindAddress: "127.0.0.1:10249",
		IPTables:           proxyv1alpha1.KubeProxyIPTablesConfiguration{MasqueradeAll: false, SyncPeriod: metav1.Duration{Duration: 30 * time.Second}, MinSyncPeriod: metav1.Duration{Duration: time.Second}},
	}
	if !host.ConntrackWritable {
		// nf_conntrack_max is host-wide and read-only outside the host's own
		// network namespace: leave it as it is.
		pc.Conntrack.MaxPerCore = ptr.To[int32](0)
	}
	if host.CanLowerOOMScore {
		pc.OOMScoreAdj = ptr.To[int32](-999)
	} else {
		pc.OOMScoreAdj = ptr.To[int32](0)
	}
	return pc
}

// Start runs kube-proxy's command in the background.
func (p *KubeProxy) Start(context.Context) error {
	cmd := proxyapp.NewProxyCommand()
	cmd.SetArgs(p.Args())
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.failed <- fmt.Errorf("kube-proxy panicked: %v", r)
			}
		}()
		err := cmd.Execute()
		p.failed <- fmt.Errorf("kube-proxy stopped: %v", err)
	}()
	return nil
}

// Args is kube-proxy's command line; all else is in its config file.
func (p *KubeProxy) Args() []string {
	return component.FormatFlags(map[string]string{"config": p.ConfigFile()})
}

func (p *KubeProxy) Failed() <-chan error { return p.failed }

// Stop: upstream's command offers no way to end it; it ends with the process,
// and its iptables rules stay in place so Services keep working meanwhile.
func (p *KubeProxy) Stop() error { return nil }
