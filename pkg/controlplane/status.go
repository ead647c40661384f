package controlplane

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// ComponentHealth is one component's health as seen from this host.
type ComponentHealth struct {
	Name string
	Err  error // nil when healthy
}

// healthOrder is the order status reports components in.
var healthOrder = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// healthProbes returns, by component name, the endpoint that tells whether it
// is healthy: start waits on them and status reports them.
func healthProbes(c *config.ControlPlane, paths Paths) (map[string]healthProbe, error) {
	// The certificate files, not the super-admin kubeconfig's copy: the
	// probes live as long as the process, and client-go reloads only files.
	admin := &rest.Config{Host: LocalServer(c), TLSClientConfig: rest.TLSClientConfig{
		CAFile: paths.Cert(pki.ClusterCA), CertFile: paths.Cert(pki.SuperAdmin), KeyFile: paths.Key(pki.SuperAdmin)}}
	loopback := loopbackProbeConfig(paths)
	endpoints := map[string]struct {
		cfg *rest.Config
		url string
	}{
		// etcd is checked through the apiserver's own etcd readiness check.
		"etcd":                    {admin, LocalServer(c) + "/readyz/etcd"},
		"kube-apiserver":          {admin, LocalServer(c) + "/readyz"},
		"kube-controller-manager": {loopback, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.ControllerManager)},
		"kube-scheduler":          {loopback, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.Scheduler)},
	}
	probes := map[string]healthProbe{}
	for name, e := range endpoints {
		probe, err := newHealthProbe(e.cfg, e.url)
		if err != nil {
			return nil, fmt.Errorf("cannot read credentials: %w", err)
		}
		probes[name] = probe
	}
	return probes, nil
}

// Health probes every component of a running control plane.
func Health(ctx context.Context, c *config.ControlPlane) []ComponentHealth {
	probes, err := healthProbes(c, Paths{DataDir: c.DataDir})
	out := make([]ComponentHealth, 0, len(healthOrder))
	for _, name := range healthOrder {
		if err == nil {
			probeCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			out = append(out, ComponentHealth{Name: name, Err: probes[name].check(probeCtx)})
			cancel()
		} else {
			out = append(out, ComponentHealth{Name: name, Err: err})
		}
	}
	return out
}
