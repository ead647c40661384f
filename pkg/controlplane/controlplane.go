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
}

// readyTimeout bounds how long any one component may take to become ready.
const readyTimeout = 3 * time.Minute

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
	paths := Paths{DataDir: c.DataDir}
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
		return mgr.Stop()
	case err := <-mgr.Failed():
		notify("STOPPING=1")
		klog.ErrorS(err, "component failed, stopping the control plane")
		if stopErr := mgr.Stop(); stopErr != nil {
			klog.ErrorS(stopErr, "errors while stopping")
		}
		return err
	}
}

// preparePKI ensures every certificate and reports what it generated or renewed.
func preparePKI(c *config.ControlPlane, paths Paths, progress io.Writer) (*pki.Bundle, error) {
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("failed to read hostname: %w", err)
	}
	serviceIP, err := config.NthAddress(c.Network.ServiceCIDR, 1)
	if err != nil {
		return nil, err
	}
	bundle, events, err := pki.Ensure(pki.Params{
		Dir:           paths.PKI(),
		Hostname:      hostname,
		AdvertiseIP:   net.ParseIP(c.AdvertiseAddress),
		ServiceIP:     serviceIP.AsSlice(),
		ClusterDomain: c.Network.ClusterDomain,
		ExtraSANs:     c.ExtraSANs,
	}, time.Now())
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
	server := LocalServer(c)
	for _, user := range []string{pki.SuperAdmin, pki.Admin, pki.ControllerManager, pki.Scheduler, pki.CSRApprover, pki.JoinObjects, pki.Addons, pki.CSI} {
		kubeconfig, err := bundle.Kubeconfig(server, user)
		if err != nil {
			return err
		}
		if err := fsutil.WriteIfChanged(paths.Kubeconfig(user), kubeconfig, 0o600); err != nil {
			return fmt.Errorf("failed to write kubeconfig %s: %w", user, err)
		}
		if user == pki.Admin {
			if err := fsutil.WriteIfChanged(c.AdminKubeconfig, kubeconfig, 0o600); err != nil {
				return fmt.Errorf("failed to write admin kubeconfig: %w", err)
			}
		}
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
	etcd := newEtcd(paths, c.Ports.EtcdClient, c.Ports.EtcdPeer)
	etcd.quotaBytes = int64(c.Etcd.QuotaBackendBytes)
	components := []component.Component{
		etcd,
		&apiServer{upstreamServer{args: mergeArgs(apiServerArgs(c, paths, encryption), c.ExtraArgs.APIServer), health: health["kube-apiserver"], stopTimeout: 30 * time.Second, settleBeforeStop: true}},
		&controllerManager{upstreamServer{args: mergeArgs(controllerManagerArgs(c, paths), c.ExtraArgs.ControllerManager), health: health["kube-controller-manager"], stopTimeout: 20 * time.Second}},
		&scheduler{upstreamServer{args: mergeArgs(schedulerArgs(c, paths), c.ExtraArgs.Scheduler), health: health["kube-scheduler"], stopTimeout: 20 * time.Second}},
		&bootstrapObjects{kubeconfig: paths.Kubeconfig(pki.SuperAdmin)},
		&etcdMaintenance{c: c, progress: progress},
		&scheduledSnapshots{c: c, configFile: configFile, progress: progress, now: time.Now},
	}
	components = append(components, joinComponents(c, paths)...)
	components = append(components, storageComponents(c, paths)...)
	components = append(components, nodeComponents(c, paths, bundle, progress)...)
	// Last: it records the others' command lines after their Init.
	return append(components, &component.ArgsRecorder{Components: components, Path: paths.EffectiveArgsFile(), Write: fsutil.WriteFileAtomic, Log: progress}), nil
}

// joinComponents serve joining nodes: RBAC and cluster-info, the kubelet
// CSR approver, and, unless turned off, the join endpoint
// (install.sh, node-agent).
func joinComponents(c *config.ControlPlane, paths Paths) []component.Component {
	components := []component.Component{
		&joinserver.ClusterObjects{Client: controllerClient(paths, pki.JoinObjects), Server: "https://" + net.JoinHostPort(c.AdvertiseAddress, strconv.Itoa(c.APIPort)), CAFile: paths.Cert(pki.ClusterCA),
			KubeletServingCAFile: paths.Cert(pki.KubeletServingCA)},
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
	return &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: paths.Cert(pki.ClusterCA), ServerName: "localhost"}}
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
