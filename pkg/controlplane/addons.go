package controlplane

import (
	"context"
	"io"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// nodeComponents serve the cluster's nodes: their settings, kube-proxy's
// rights and the CoreDNS addon; with joinNode also this host's own node
// (its credentials, and its control-plane role once it registers).
func nodeComponents(c *config.ControlPlane, paths Paths, bundle *pki.Bundle, progress io.Writer) []component.Component {
	client := controllerClient(paths, pki.Addons)
	components := []component.Component{&clusterAddons{cfg: c, client: client, dynamic: controllerDynamicClient(paths, pki.Addons)}}
	if !c.JoinsNode() {
		return components
	}
	local := &localNode{cfg: c, paths: paths, bundle: bundle, hostname: os.Hostname, now: time.Now, progress: progress}
	return append(components, local, &nodeRole{client: client, nodeName: local.NodeName})
}

// clusterAddons creates or updates, at every start, the node settings
// ConfigMap with its RBAC (ensureNodeSettings), the CoreDNS addon
// (ensureCoreDNS) and ClusterNetworkPolicy: its CRD and the built-in
// policies (ensureClusterNetworkPolicies).
type clusterAddons struct {
	cfg     *config.ControlPlane
	client  func() (kubernetes.Interface, error)
	dynamic func() (dynamic.Interface, error)
}

func (a *clusterAddons) Name() string               { return "node settings, CoreDNS and ClusterNetworkPolicy" }
func (a *clusterAddons) Init(context.Context) error { return nil }
func (a *clusterAddons) Stop() error                { return nil }

func (a *clusterAddons) Start(ctx context.Context) error {
	client, err := a.client()
	if err != nil {
		return err
	}
	dyn, err := a.dynamic()
	if err != nil {
		return err
	}
	// Retried briefly: on a first start kube-system may not exist yet.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = ensureNodeSettings(ctx, client, a.cfg)
		if last == nil {
			last = ensureCoreDNS(ctx, client, a.cfg)
		}
		if last == nil {
			// A new CRD takes a moment to serve: the built-in policies retry.
			last = ensureClusterNetworkPolicies(ctx, client, dyn, a.cfg)
		}
		if last != nil {
			klog.V(2).InfoS("Retrying node settings, CoreDNS and ClusterNetworkPolicy", "err", last)
		}
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}
