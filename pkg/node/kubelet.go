package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// Kubelet runs the upstream kubelet in-process from its app package, with a
// KubeletConfiguration node-agent generates. Its client certificate is the
// one `node-agent join` obtained; the kubelet rotates it in the same
// directory (kubelet-client-current.pem) and requests its serving
// certificate by CSR.
type Kubelet struct {
	node     *config.Node
	settings config.ClusterSettings
	host     Host

	args   []string
	server *kubeletoptions.KubeletServer
	cancel context.CancelFunc
	done   chan struct{} // closed when the kubelet's Run has returned
	failed chan error
}

// kubeletStopTimeout bounds the wait for the kubelet's Run to return.
const kubeletStopTimeout = 3 * time.Second

// NewKubelet returns the kubelet component.
func NewKubelet(n *config.Node, s config.ClusterSettings, host Host) *Kubelet {
	return &Kubelet{node: n, settings: s, host: host, failed: make(chan error, 1)}
}

func (k *Kubelet) Name() string { return "kubelet" }

// ConfigFile is the generated KubeletConfiguration.
func (k *Kubelet) ConfigFile() string { return filepath.Join(k.node.DataDir, "kubelet.yaml") }

// Init writes the kubelet's config file and loads it exactly as the kubelet
// command would (defaults, validation), so a bad value stops here.
func (k *Kubelet) Init(ctx context.Context) error {
	if err := os.MkdirAll(k.node.KubeletRoot(), 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", k.node.KubeletRoot(), err)
	}
	body, err := renderKubeletConfiguration(kubeletConfiguration(k.node, k.settings, k.host))
	if err != nil {
		return err
	}
	if err := fsutil.WriteIfChanged(k.ConfigFile(), body, 0o600); err != nil {
		return fmt.Errorf("failed to write kubelet config: %w", err)
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, k.ConfigFile())
	if err != nil {
		return err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return err
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("invalid kubelet configuration: %w", err)
	}
	// Parsed by the kubelet's own flag set, so what Args reports is exactly
	// what the kubelet runs with.
	flags := kubeletoptions.NewKubeletFlags()
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags.AddFlags(fs)
	hostname, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("failed to read hostname: %w", err)
	}
	k.args = component.FormatFlags(kubeletFlags(k.node, k.ConfigFile(), hostname))
	if err := fs.Parse(k.args); err != nil {
		return fmt.Errorf("invalid kubelet flags: %w", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return fmt.Errorf("invalid kubelet flags: %w", err)
	}
	k.server = &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	return nil
}

// kubeletFlags are the kubelet's command-line flags; all else is in its
// config file. --hostname-override only when the node's name is not the
// host's, which is the kubelet's default (CIS 4.2.7 asks for no override).
func kubeletFlags(n *config.Node, configFile, hostname string) map[string]string {
	flags := map[string]string{
		"kubeconfig": n.KubeletKubeconfig(),
		"cert-dir":   n.PKIDir(),
		"root-dir":   n.KubeletRoot(),
		"config":     configFile,
	}
	if n.NodeName != strings.ToLower(hostname) {
		flags["hostname-override"] = n.NodeName
	}
	if n.NodeIP != "" {
		flags["node-ip"] = n.NodeIP
	}
	return flags
}

// Args is the kubelet's command line, known after Init.
func (k *Kubelet) Args() []string { return k.args }

// Start runs the kubelet; it returns at once while the kubelet works.
func (k *Kubelet) Start(ctx context.Context) error {
	ctx, k.cancel = context.WithCancel(context.WithoutCancel(ctx))
	deps, err := kubeletapp.UnsecuredDependencies(ctx, k.server, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("failed to prepare the kubelet: %w", err)
	}
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		defer func() {
			if r := recover(); r != nil {
				k.failed <- fmt.Errorf("kubelet panicked: %v", r)
			}
		}()
		err := kubeletapp.Run(ctx, k.server, deps, utilfeature.DefaultFeatureGate)
		if ctx.Err() == nil {
			k.failed <- fmt.Errorf("kubelet stopped: %v", err)
		}
	}()
	return nil
}

func (k *Kubelet) Failed() <-chan error { return k.failed }

// Stop ends the kubelet's run loop and waits (briefly) for it to return, so
// containerd, stopped next, no longer serves it. Pods keep running in their
// shims.
func (k *Kubelet) Stop() error {
	if k.cancel == nil {
		return nil
	}
	k.cancel()
	select {
	case <-k.done:
		return nil
	case <-time.After(kubeletStopTimeout):
		return fmt.Errorf("kubelet did not stop within %s", kubeletStopTimeout)
	}
}
