package controlplane

import (
	"io"
	"net/url"
	"strconv"
	"strings"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// EffectiveArgsFile is where start records every component's final command
// line; `status --args` reads it.
func (p Paths) EffectiveArgsFile() string { return p.Generated("effective-args.yaml") }

// Args is the command line the upstream server was parsed from.
func (u *upstreamServer) Args() []string { return u.args }

// Args renders the embedded etcd's configuration (built by Init) as the etcd
// flags that would configure a standalone etcd the same way.
func (e *etcd) Args() []string {
	if e.cfg == nil {
		return nil
	}
	return etcdFlags(e.cfg)
}

func etcdFlags(cfg *embed.Config) []string {
	flags := map[string]string{
		"name":                        cfg.Name,
		"data-dir":                    cfg.Dir,
		"listen-client-urls":          joinURLs(cfg.ListenClientUrls),
		"advertise-client-urls":       joinURLs(cfg.AdvertiseClientUrls),
		"listen-peer-urls":            joinURLs(cfg.ListenPeerUrls),
		"initial-advertise-peer-urls": joinURLs(cfg.AdvertisePeerUrls),
		"initial-cluster":             cfg.InitialCluster,
		"initial-cluster-state":       cfg.ClusterState,
		"cert-file":                   cfg.ClientTLSInfo.CertFile,
		"key-file":                    cfg.ClientTLSInfo.KeyFile,
		"trusted-ca-file":             cfg.ClientTLSInfo.TrustedCAFile,
		"client-cert-auth":            strconv.FormatBool(cfg.ClientTLSInfo.ClientCertAuth),
		"auto-tls":                    strconv.FormatBool(cfg.ClientAutoTLS),
		"peer-cert-file":              cfg.PeerTLSInfo.CertFile,
		"peer-key-file":               cfg.PeerTLSInfo.KeyFile,
		"peer-trusted-ca-file":        cfg.PeerTLSInfo.TrustedCAFile,
		"peer-client-cert-auth":       strconv.FormatBool(cfg.PeerTLSInfo.ClientCertAuth),
		"peer-auto-tls":               strconv.FormatBool(cfg.PeerAutoTLS),
		"enable-grpc-gateway":         strconv.FormatBool(cfg.EnableGRPCGateway),
		"log-level":                   cfg.LogLevel,
	}
	// Unset means etcd's (Go's) defaults; a flag would claim a value.
	optional := map[string]string{
		"cipher-suites":       strings.Join(cfg.CipherSuites, ","),
		"tls-min-version":     cfg.TlsMinVersion,
		"tls-max-version":     cfg.TlsMaxVersion,
		"listen-metrics-urls": joinURLs(cfg.ListenMetricsUrls),
	}
	if cfg.QuotaBackendBytes > 0 {
		optional["quota-backend-bytes"] = strconv.FormatInt(cfg.QuotaBackendBytes, 10)
	}
	for k, v := range optional {
		if v != "" {
			flags[k] = v
		}
	}
	return mergeArgs(flags, nil)
}

func joinURLs(urls []url.URL) string {
	s := make([]string, len(urls))
	for i, u := range urls {
		s[i] = u.String()
	}
	return strings.Join(s, ",")
}

// ArgsComponents are the components `status --args` can name.
var ArgsComponents = healthOrder

// PrintEffectiveArgs prints the command line of each component of the
// running control plane (or of the one named) as `name --flag=value ...`.
func PrintEffectiveArgs(w io.Writer, c *config.ControlPlane, name string) error {
	return component.PrintArgsFile(w, Paths{DataDir: c.DataDir}.EffectiveArgsFile(), name, ArgsComponents)
}
