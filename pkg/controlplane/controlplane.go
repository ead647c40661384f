// Package controlplane runs etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler in one process, with the PKI and files they need.
package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/packaging"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Config *config.ControlPlane
	// ConfigFile is the file Config came from, saved with every snapshot.
	ConfigFile string
	Progress   io.Writer          // progress lines for the user
	Notify     func(state string) // sd_notify; may be nil
	// RunDir holds what a start remembers of the previous one (systemd's
	// RuntimeDirectory, kept across restarts, never on the data dir's
	// disk); "" means each start is a first one.
	RunDir string
}

// readyTimeout bounds how long any one component may take to become ready.
const readyTimeout = 3 * time.Minute

// Stop budget. A whole stop takes 1-2 s (the API server ends watches at once,
// see apiServerArgs); these bound a component that hangs, so the process
// still exits, etcd closed, within the unit's TimeoutStopSec (30 s): at worst
// 5 s for the API server, 3+3 s for the controllers and 10 s for etcd (or,
// stopped during start, settleTimeout and the API server's and etcd's).
const (
	apiServerStopTimeout  = 5 * time.Second
	controllerStopTimeout = 3 * time.Second // controller-manager, scheduler
)

// Run prepares the data dir and runs the control plane until ctx ends or a
// component fails. It returns nil only after a requested, clean shutdown.
func Run(ctx context.Context, o Options) error {
	begin := time.Now()
	c := o.Config
	progress := &progressWriter{w: o.Progress, start: begin}
	notify := o.Notify
	if notify == nil {
		notify = func(string) {}
	}

	if err := setFeatureGates(c.FeatureGates); err != nil {
		return err
	}
	if err := checkPorts(c); err != nil {
		return err
	}
	removeIfNew, err := prepareDataDir(c.DataDir)
	if err != nil {
		return err
	}
	if err := waitForSpace(ctx, c.DataDir, o.RunDir, progress); err != nil {
		removeIfNew()
		if ctx.Err() != nil {
			fmt.Fprintf(progress, "stopped while waiting for free space\n")
			return nil
		}
		return err
	}
	paths := Paths{DataDir: c.DataDir}
	if err := checkClockAgainstCAs(paths, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(progress, "preparing certificates and configuration in %s\n", c.DataDir)
	bundle, err := preparePKI(c, paths, progress)
	if err == nil {
		err = writeGeneratedFiles(c, paths, bundle)
	}
	if err != nil {
		removeIfNew()
		return err
	}

	components, err := newComponents(c, o.ConfigFile, paths, bundle, progress)
	if err != nil {
		return err
	}
	mgr := component.NewManager(readyTimeout, progress, components...)
	if err := mgr.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// Asked to stop while starting: what started was stopped again.
			fmt.Fprintf(progress, "stopped before the control plane was ready\n")
			return nil
		}
		return err
	}
	fmt.Fprintf(progress, "control plane ready in %.1fs; admin kubeconfig: %s\n", time.Since(begin).Seconds(), c.AdminKubeconfig)
	notify("READY=1")

	select {
	case <-ctx.Done():
		notify("STOPPING=1")
		fmt.Fprintf(progress, "stopping\n")
		return stopAll(mgr, progress)
	case err := <-mgr.Failed():
		notify("STOPPING=1")
		klog.ErrorS(err, "component failed, stopping the control plane")
		if stopErr := stopAll(mgr, progress); stopErr != nil {
			klog.ErrorS(stopErr, "errors while stopping")
		}
		return err
	}
}

// stopAll stops every component in reverse order and reports how long it took.
func stopAll(mgr *component.Manager, progress io.Writer) error {
	begin := time.Now()
	err := mgr.Stop()
	fmt.Fprintf(progress, "control plane stopped in %.1fs\n", time.Since(begin).Seconds())
	return err
}

// preparePKI ensures every certificate and reports what it generated or renewed.
func preparePKI(c *config.ControlPlane, paths Paths, progress io.Writer) (*pki.Bundle, error) {
	params, err := pkiParams(c, paths)
	if err != nil {
		return nil, err
	}
	bundle, events, err := pki.Ensure(params, time.Now())
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		fmt.Fprintf(progress, "certificate %s: %s\n", e.Name, e.Action)
	}
	return bundle, nil
}

// LocalServer is the URL the host's own clients use for the API server.
func LocalServer(c *config.ControlPlane) string {
	host := "127.0.0.1"
	if addr, err := netip.ParseAddr(c.BindAddress); err == nil && !addr.IsUnspecified() && !addr.IsLoopback() {
		host = c.BindAddress
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(c.APIPort))
}

// writeGeneratedFiles writes kubeconfigs and component config files. Files
// whose content is unchanged are not touched.
func writeGeneratedFiles(c *config.ControlPlane, paths Paths, bundle *pki.Bundle) error {
	if err := writeKubeconfigs(c, paths, bundle); err != nil {
		return err
	}
	files := map[string]string{
		"authentication.yaml": authenticationConfig(),
		"admission.yaml":      admissionConfig(c.Policies.PodSecurityStandard),
		"audit-policy.yaml":   auditPolicy,
	}
	key, haveKey, err := ensureEncryptionKey(paths.EncryptionKey(), c.EncryptionEnabled())
	if err != nil {
		return err
	}
	if haveKey {
		files["encryption-config.yaml"] = encryptionConfig(key, c.EncryptionEnabled())
	}
	for name, content := range files {
		if err := fsutil.WriteIfChanged(paths.Generated(name), []byte(content), 0o600); err != nil {
			return fmt.Errorf("failed to write %s: %w", name, err)
		}
	}
	return os.MkdirAll(paths.DataDir+"/logs", 0o700)
}

// newComponents wires the control plane in start order.
func newComponents(c *config.ControlPlane, configFile string, paths Paths, bundle *pki.Bundle, progress io.Writer) ([]component.Component, error) {
	encryption := fileExists(paths.Generated("encryption-config.yaml"))
	health, err := healthProbes(c, paths)
	if err != nil {
		return nil, err
	}
	store := newEtcd(paths, c.Ports.EtcdClient, c.Ports.EtcdPeer)
	store.quotaBytes = int64(c.Etcd.QuotaBackendBytes)
	renewal := newCertRenewal(c, paths, progress)
	components := []component.Component{
		store,
		&diskGuard{dir: c.DataDir, etcd: store},
		&apiServer{upstreamServer{args: mergeArgs(apiServerArgs(c, paths, encryption), c.ExtraArgs.APIServer), health: health["kube-apiserver"], stopTimeout: apiServerStopTimeout, settleBeforeStop: true}},
		&controllerManager{upstreamServer{args: mergeArgs(controllerManagerArgs(c, paths), c.ExtraArgs.ControllerManager), health: health["kube-controller-manager"], stopTimeout: controllerStopTimeout}},
		&scheduler{upstreamServer{args: mergeArgs(schedulerArgs(c, paths), c.ExtraArgs.Scheduler), health: health["kube-scheduler"], stopTimeout: controllerStopTimeout}},
		&bootstrapObjects{kubeconfig: paths.Kubeconfig(pki.SuperAdmin)},
		renewal,
		&etcdMaintenance{c: c, progress: progress},
		&scheduledSnapshots{c: c, configFile: configFile, progress: progress, now: time.Now},
	}
	components = append(components, joinComponents(c, paths, progress, renewal.reissue)...)
	components = append(components, storageComponents(c, paths)...)
	components = append(components, nodeComponents(c, paths, bundle, progress)...)
	// Last: it records the others' command lines after their Init.
	return append(components, &component.ArgsRecorder{Components: components, Path: paths.EffectiveArgsFile(), Write: fsutil.WriteFileAtomic, Log: progress}), nil
}

// joinComponents serve joining nodes: RBAC and cluster-info, the kubelet
// CSR approver, and, unless turned off, the join endpoint
// (install.sh, node-agent).
func joinComponents(c *config.ControlPlane, paths Paths, progress io.Writer, reissue func() error) []component.Component {
	components := []component.Component{
		&joinserver.ClusterObjects{Client: controllerClient(paths, pki.JoinObjects), Server: "https://" + net.JoinHostPort(c.AdvertiseAddress, strconv.Itoa(c.APIPort)), CAFile: paths.Trust(pki.ClusterCA),
			KubeletServingCAFile: paths.Cert(pki.KubeletServingCA)},
		&trustPublisher{client: controllerClient(paths, pki.JoinObjects), server: "https://" + net.JoinHostPort(c.AdvertiseAddress, strconv.Itoa(c.APIPort)),
			bundleFile: paths.Trust(pki.ClusterCA), reissue: reissue, log: progress},
		&joinserver.CSRApprover{Client: controllerClient(paths, pki.CSRApprover),
			APIServerCert: paths.Cert(pki.APIServer), ServiceCIDR: c.Network.ServiceCIDR, HostNode: hostNodeName(c)},
	}
	if !c.ServesJoinEndpoint() {
		return components
	}
	return append(components, &joinserver.Endpoint{
		// Listens where the API server does; join lines name the advertise address.
		Addr:     net.JoinHostPort(c.BindAddress, strconv.Itoa(c.JoinPort)),
		CertFile: paths.Cert(pki.JoinEndpoint), KeyFile: paths.Key(pki.JoinEndpoint),
		InstallScript: packaging.InstallScript, NodeAgent: joinserver.NodeAgentBesideExecutable(),
	})
}

// loopbackProbeConfig trusts the cluster CA and sends no credentials: the
// controller-manager and scheduler serve /healthz to anyone on loopback.
func loopbackProbeConfig(paths Paths) *rest.Config {
	return &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: paths.Trust(pki.ClusterCA), ServerName: "localhost"}}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// progressWriter prefixes each progress line with the time since start.
type progressWriter struct {
	w     io.Writer
	start time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	if p.w == nil {
		return len(b), nil
	}
	_, err := fmt.Fprintf(p.w, "[%6.2fs] %s", time.Since(p.start).Seconds(), b)
	return len(b), err
}

// AdminKubeconfig reads the admin kubeconfig start wrote and, when server is
// set, points it at that URL.
func AdminKubeconfig(path, server string) ([]byte, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("admin kubeconfig %s not found: is the control plane started on this host?", path)
		}
		return nil, fmt.Errorf("failed to read admin kubeconfig: %w", err)
	}
	if server != "" {
		u, err := url.Parse(server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("--server: invalid value %q: must be an https URL such as https://192.168.1.10:6443", server)
		}
		for _, cluster := range cfg.Clusters {
			cluster.Server = server
		}
	}
	return clientcmd.Write(*cfg)
}
