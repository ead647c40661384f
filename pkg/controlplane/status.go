package controlplane

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// ComponentHealth is one component's health as seen from this host.
type ComponentHealth struct {
	Name string
	Err  error // nil when healthy
}

// Health probes every component of a running control plane.
func Health(ctx context.Context, c *config.ControlPlane) []ComponentHealth {
	paths := Paths{DataDir: c.DataDir}
	admin, err := clientcmd.BuildConfigFromFlags("", paths.Kubeconfig("super-admin"))
	if err != nil {
		err = fmt.Errorf("cannot read credentials: %w", err)
		return []ComponentHealth{{"etcd", err}, {"kube-apiserver", err}, {"kube-controller-manager", err}, {"kube-scheduler", err}}
	}
	loopback := loopbackProbeConfig(paths)
	checks := []struct {
		name string
		cfg  *rest.Config
		url  string
	}{
		// etcd is checked through the apiserver's own etcd readiness check.
		{"etcd", admin, LocalServer(c) + "/readyz/etcd"},
		{"kube-apiserver", admin, LocalServer(c) + "/readyz"},
		{"kube-controller-manager", loopback, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.ControllerManager)},
		{"kube-scheduler", loopback, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.Scheduler)},
	}
	out := make([]ComponentHealth, 0, len(checks))
	for _, check := range checks {
		probe, err := newHealthProbe(check.cfg, check.url)
		if err == nil {
			probeCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err = probe.check(probeCtx)
			cancel()
		}
		out = append(out, ComponentHealth{Name: check.name, Err: err})
	}
	return out
}
