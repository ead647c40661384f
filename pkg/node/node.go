// Package node is the node runtime: containerd, the kubelet, kube-proxy and
// the pod network, wired as components and run by `node-agent run`.
package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/netpol"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/network"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	csinode "github.com/vcluster-standalone/vcluster-standalone/pkg/csi/node"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// Options are what `node-agent run` passes in.
type Options struct {
	Node           *config.Node
	RegistriesFile string
	Progress       io.Writer // step lines for the journal
	Logs           io.Writer // containerd's output
	Notify         func(state string)
	ReadyTimeout   time.Duration
}

// Run starts the node's parts in order and blocks until ctx ends or a part
// fails; it tells systemd READY=1 once the Node is Ready.
func Run(ctx context.Context, o Options) error {
	begin := time.Now()
	rc, err := NodeRESTConfig(o.Node)
	if err != nil {
		return err
	}
	// kube-proxy and our own clients read the kubelet's rotating client
	// certificate file; the kubelet rotates it with at least a tenth of its
	// lifetime left.
	if certs, err := certutil.CertsFromFile(rc.TLSClientConfig.CertFile); err == nil {
		pki.TuneClientCertReload(certs[0].NotAfter.Sub(certs[0].NotBefore) / 10)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	settings, err := FetchClusterSettings(ctx, cs, o.Node, o.Progress)
	if err != nil {
		return err
	}
	host := DetectHost()
	fmt.Fprintf(o.Progress, "node %s: cgroup driver %s, cgroup v1 %t, pod network backend %s\n",
		o.Node.NodeName, cgroupDriver(host), host.CgroupV1, settings.Backend)

	m := component.NewManager(o.ReadyTimeout, o.Progress, components(o, rc, cs, dyn, settings, host)...)
	// A stop must be quick (systemctl stop/restart wait for it) and loses
	// nothing by leaving a hung part to the process's exit: containers live
	// in their shims, containerd's and the kubelet's state is on disk.
	m.StopTimeout = partStopTimeout
	if err := m.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(o.Progress, "node-agent running: node %s Ready %.1fs after start\n", o.Node.NodeName, time.Since(begin).Seconds())
	o.Notify("READY=1")
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-m.Failed():
	}
	o.Notify("STOPPING=1")
	stopBegin := time.Now()
	if stopErr := m.Stop(); stopErr != nil && runErr == nil {
		runErr = stopErr
	}
	fmt.Fprintf(o.Progress, "node-agent stopped in %.1fs\n", time.Since(stopBegin).Seconds())
	return runErr
}

// partStopTimeout bounds each part's stop; containerd's own SIGTERM wait
// (containerdStopTimeout) fits in it.
const partStopTimeout = 4 * time.Second

// components is the node, in start order.
func components(o Options, rc *rest.Config, cs kubernetes.Interface, dyn dynamic.Interface, s config.ClusterSettings, host Host) []component.Component {
	parts := []component.Component{
		newServingCARefresh(cs, anonymousClient(rc), o.Node, o.Progress),
		NewContainerd(o.Node, host, o.RegistriesFile, o.Logs),
		NewImageImport(o.Node, o.Progress),
		newMirror(o, cs),
		// Before the kubelet: its socket must answer the first CNI ADD.
		netpol.New(cs, dyn, o.Node.NodeName, s),
		NewKubelet(o.Node, s, host),
		NewKubeProxy(o.Node, s, host),
		network.New(cs, o.Node, s),
	}
	if o.Node.StorageEnabled() {
		parts = append(parts, csinode.New(o.Node, rc, o.Progress))
	}
	parts = append(parts, NewNodeReady(cs, o.Node.NodeName))
	// Last: it records the others' command lines after their Init.
	return append(parts, &component.ArgsRecorder{Components: parts, Path: EffectiveArgsFile(o.Node), Write: fsutil.WriteFileAtomic, Log: o.Progress})
}

// anonymousClient is a client without credentials that trusts what rc
// trusts, or nil.
func anonymousClient(rc *rest.Config) kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(rest.AnonymousClientConfig(rc))
	if err != nil {
		return nil
	}
	return cs
}

// NodeClient is a client with the node's own (kubelet) credential.
func NodeClient(n *config.Node) (kubernetes.Interface, error) {
	rc, err := NodeRESTConfig(n)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// NodeRESTConfig is the node's own (kubelet) credential as a client config.
func NodeRESTConfig(n *config.Node) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", n.KubeletKubeconfig())
	if err != nil {
		return nil, fmt.Errorf("failed to load the node's credentials from %s (has this node joined? run `node-agent join`): %w", n.KubeletKubeconfig(), err)
	}
	rc.UserAgent = "node-agent"
	return rc, nil
}

func cgroupDriver(h Host) string {
	if h.SystemdCgroups {
		return "systemd"
	}
	return "cgroupfs"
}
