package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// etcdMemberName is fixed so a host rename never orphans the data dir.
const etcdMemberName = "vcluster-standalone"

// etcd runs the embedded etcd server with mutual TLS on loopback.
//
// It has no Ready: the API server starts while etcd elects itself, as with
// kubeadm's static pods, because building the API server takes far longer
// and retries storage on its own. The API server's /readyz includes etcd.
type etcd struct {
	paths      Paths
	clientPort int
	peerPort   int
	quotaBytes int64 // etcd.quotaBackendBytes

	cfg     *embed.Config
	server  *embed.Etcd
	failed  chan error
	stopped chan struct{}
	closing atomic.Bool // a requested stop is under way
}

func newEtcd(paths Paths, clientPort, peerPort int) *etcd {
	return &etcd{paths: paths, clientPort: clientPort, peerPort: peerPort}
}

func (e *etcd) Name() string { return "etcd" }

func (e *etcd) Init(context.Context) error {
	clientURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", e.clientPort)}
	peerURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", e.peerPort)}
	cfg := embed.NewConfig()
	cfg.Name = etcdMemberName
	cfg.Dir = e.paths.Etcd()
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile: e.paths.Cert(pki.EtcdServer), KeyFile: e.paths.Key(pki.EtcdServer),
		TrustedCAFile: e.paths.Cert(pki.EtcdCA), ClientCertAuth: true,
	}
	cfg.PeerTLSInfo = transport.TLSInfo{
		CertFile: e.paths.Cert(pki.EtcdPeer), KeyFile: e.paths.Key(pki.EtcdPeer),
		TrustedCAFile: e.paths.Cert(pki.EtcdCA), ClientCertAuth: true,
	}
	cfg.CipherSuites = pki.CipherSuiteNames()
	cfg.TlsMinVersion = "TLS1.2"
	cfg.LogLevel = "warn"
	// Left at zero, etcd logs every request as "expensive".
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.LogOutputs = []string{"stderr"}
	lg, err := etcdLogger(e.paths.DataDir, os.Stderr, &e.closing)
	if err != nil {
		return fmt.Errorf("failed to set up etcd's logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	// Only the apiserver talks to etcd, over gRPC: the JSON gateway is dead weight.
	cfg.EnableGRPCGateway = false
	cfg.QuotaBackendBytes = e.quotaBytes
	e.cfg = cfg
	return nil
}

func (e *etcd) Start(context.Context) error {
	server, err := embed.StartEtcd(e.cfg)
	if err != nil {
		return err
	}
	e.server = server
	e.failed = make(chan error, 1)
	e.stopped = make(chan struct{})
	go func() {
		defer close(e.failed)
		select {
		case err := <-server.Err():
			e.failed <- err
		case <-server.Server.StopNotify():
			select {
			case <-e.stopped:
			default:
				e.failed <- errors.New("etcd server stopped")
			}
		case <-e.stopped:
		}
	}()
	return nil
}

func (e *etcd) Failed() <-chan error { return e.failed }

func (e *etcd) Stop() error {
	if e.server == nil {
		return nil
	}
	close(e.stopped)
	e.closing.Store(true)
	done := make(chan struct{})
	go func() { e.server.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("etcd did not stop within 10s")
	}
	e.server = nil
	return nil
}
