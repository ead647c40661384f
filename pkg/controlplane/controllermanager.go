package controlplane

import (
	"context"
	"path/filepath"
	"strconv"

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// controllerManagerArgs are our defaults for kube-controller-manager.
func controllerManagerArgs(c *config.ControlPlane, p Paths) map[string]string {
	kubeconfig := p.Kubeconfig(pki.ControllerManager)
	return map[string]string{
		"kubeconfig":                kubeconfig,
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"tls-cert-file":             p.Cert(pki.ControllerManagerServer),
		"tls-private-key-file":      p.Key(pki.ControllerManagerServer),
		// The API server is local: client-side throttling only slows the
		// start, where every controller creates its service account and token.
		"kube-api-qps":                 "200",
		"kube-api-burst":               "400",
		"secure-port":                  strconv.Itoa(c.Ports.ControllerManager),
		"client-ca-file":               p.Trust(pki.ClusterCA),
		"requestheader-client-ca-file": p.Cert(pki.FrontProxyCA),
		// One signer per CA: kubelet serving certificates come from their own
		// CA, so no CSR a node gets approved can yield a certificate the
		// cluster CA's relying parties (pods, kubelets, API clients) accept
		// for another name. Upstream then wants every signer set explicitly.
		"cluster-signing-kubelet-serving-cert-file":       p.Cert(pki.KubeletServingCA),
		"cluster-signing-kubelet-serving-key-file":        p.Key(pki.KubeletServingCA),
		"cluster-signing-kubelet-client-cert-file":        p.Cert(pki.ClusterCA),
		"cluster-signing-kubelet-client-key-file":         p.Key(pki.ClusterCA),
		"cluster-signing-kube-apiserver-client-cert-file": p.Cert(pki.ClusterCA),
		"cluster-signing-kube-apiserver-client-key-file":  p.Key(pki.ClusterCA),
		"cluster-signing-legacy-unknown-cert-file":        p.Cert(pki.ClusterCA),
		"cluster-signing-legacy-unknown-key-file":         p.Key(pki.ClusterCA),
		"tls-cipher-suites":                               pki.CipherSuitesFlag(),
		"root-ca-file":                                    p.Trust(pki.ClusterCA),
		"service-account-private-key-file":                filepath.Join(p.PKI(), pki.ServiceAccountKey),
		"use-service-account-credentials":                 "true",
		// kube-root-ca.crt is published by our trustPublisher, which follows
		// the trust bundle through a CA rotation (upstream's reads it once).
		"controllers":              "*,bootstrapsigner,tokencleaner,-root-ca-cert-publisher",
		"allocate-node-cidrs":      "true",
		"cluster-cidr":             c.Network.PodCIDR,
		"service-cluster-ip-range": c.Network.ServiceCIDR,
		"node-cidr-mask-size":      "24",
		// One control plane: nothing to elect, and no lease round-trips at start.
		"leader-elect": "false",
		"profiling":    "false",
		// Finished pods are collected long before upstream's 12500 (CIS 1.3.1).
		"terminated-pod-gc-threshold": "1000",

		// Nodes' kubelet client and serving certificates; the kubelets rotate them.
		"cluster-signing-duration": c.Certificates.SigningDuration.Duration.String(),
	}
}

// controllerManager runs kube-controller-manager in-process.
type controllerManager struct{ upstreamServer }

func (m *controllerManager) Name() string { return "kube-controller-manager" }

func (m *controllerManager) Start(ctx context.Context) error {
	opts, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	all, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	sets := opts.Flags(all, disabled, aliases)
	opts.ParsedFlags = &sets
	if err := parseFlags(m.Name(), sets.FlagSets, m.args); err != nil {
		return err
	}
	cfg, err := opts.Config(ctx, all, disabled, aliases)
	if err != nil {
		return err
	}
	completed := cfg.Complete()
	m.run(func(ctx context.Context) error { return app.Run(ctx, completed) })
	return nil
}
