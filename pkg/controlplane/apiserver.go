package controlplane

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// apiServerArgs are our defaults for kube-apiserver, before extra args.
func apiServerArgs(c *config.ControlPlane, p Paths, encryption bool) map[string]string {
	args := map[string]string{
		"advertise-address":               c.AdvertiseAddress,
		"bind-address":                    c.BindAddress,
		"secure-port":                     strconv.Itoa(c.APIPort),
		"etcd-servers":                    fmt.Sprintf("https://127.0.0.1:%d", c.Ports.EtcdClient),
		"etcd-cafile":                     p.Cert(pki.EtcdCA),
		"etcd-certfile":                   p.Cert(pki.APIServerEtcdClient),
		"etcd-keyfile":                    p.Key(pki.APIServerEtcdClient),
		"client-ca-file":                  p.Trust(pki.ClusterCA),
		"tls-cert-file":                   p.Cert(pki.APIServer),
		"tls-private-key-file":            p.Key(pki.APIServer),
		"tls-min-version":                 "VersionTLS12",
		"tls-cipher-suites":               pki.CipherSuitesFlag(),
		"kubelet-client-certificate":      p.Cert(pki.APIServerKubeletClient),
		"kubelet-client-key":              p.Key(pki.APIServerKubeletClient),
		"kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
		// exec, logs, attach and port-forward verify the kubelet: only the
		// kubelet-serving CA, which signs nothing else, is trusted for it.
		"kubelet-certificate-authority":    p.Cert(pki.KubeletServingCA),
		"authorization-mode":               "Node,RBAC",
		"enable-admission-plugins":         "NodeRestriction,PodSecurity,DenyServiceExternalIPs,EventRateLimit",
		"admission-control-config-file":    p.Generated("admission.yaml"),
		"authentication-config":            p.Generated("authentication.yaml"),
		"enable-bootstrap-token-auth":      "true",
		"service-cluster-ip-range":         c.Network.ServiceCIDR,
		"service-account-issuer":           "https://kubernetes.default.svc." + c.Network.ClusterDomain,
		"service-account-key-file":         filepath.Join(p.PKI(), pki.ServiceAccountPublicKey),
		"service-account-signing-key-file": filepath.Join(p.PKI(), pki.ServiceAccountKey),
		// A projected token lives as long as it says (an hour), not a year.
		"service-account-extend-token-expiration": "false",
		"requestheader-client-ca-file":            p.Cert(pki.FrontProxyCA),
		"requestheader-allowed-names":             pki.FrontProxyClient,
		"requestheader-username-headers":          "X-Remote-User",
		"requestheader-group-headers":             "X-Remote-Group",
		"requestheader-extra-headers-prefix":      "X-Remote-Extra-",
		"proxy-client-cert-file":                  p.Cert(pki.FrontProxyClient),
		"proxy-client-key-file":                   p.Key(pki.FrontProxyClient),
		"allow-privileged":                        "true",
		"profiling":                               "false",
		"audit-policy-file":                       p.Generated("audit-policy.yaml"),
		"audit-log-path":                          p.AuditLog(),
		"audit-log-maxage":                        "30",
		"audit-log-maxbackup":                     "10",
		"audit-log-maxsize":                       "100",
		// Events are written by a background goroutine, off the request path.
		"audit-log-mode": "batch",
		// A stop must be quick (systemd waits for it, and a restart is a
		// stop first). Upstream's defaults wait up to --request-timeout (60 s)
		// for open watches, which every client (this host's kubelet too)
		// holds: end watches at once, answer requests that arrive while
		// in-flight ones finish with 429 + Retry-After (clients retry), then
		// give the HTTP server 2 s to close its connections.
		"shutdown-watch-termination-grace-period": "2s",
		"shutdown-send-retry-after":               "true",
	}
	if encryption {
		args["encryption-provider-config"] = p.Generated("encryption-config.yaml")
	}
	return args
}

// apiServer runs kube-apiserver from its upstream options, in-process.
type apiServer struct{ upstreamServer }

func (a *apiServer) Name() string { return "kube-apiserver" }

func (a *apiServer) Start(ctx context.Context) error {
	opts := options.NewServerRunOptions()
	if err := parseFlags("kube-apiserver", opts.Flags().FlagSets, a.args); err != nil {
		return err
	}
	completed, err := opts.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) > 0 {
		return utilerrors.NewAggregate(errs)
	}
	a.run(func(ctx context.Context) error { return app.Run(ctx, completed) })
	return nil
}

// parseFlags parses args into a fresh flag set made of the component's own
// named flag sets, so upstream flag names, defaults and validation apply.
func parseFlags(name string, sets map[string]*pflag.FlagSet, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, set := range sets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("invalid %s argument: %w", name, err)
	}
	return nil
}
