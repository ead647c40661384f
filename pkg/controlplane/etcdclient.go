package controlplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// etcdURL is the embedded etcd's client or peer URL: loopback only.
func etcdURL(port int) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// newEtcdClient connects to the local etcd as the API server does, with its
// etcd client certificate. Only root reads that key.
func newEtcdClient(c *config.ControlPlane) (*clientv3.Client, string, error) {
	paths := Paths{DataDir: c.DataDir}
	tlsInfo := transport.TLSInfo{
		CertFile: paths.Cert(pki.APIServerEtcdClient), KeyFile: paths.Key(pki.APIServerEtcdClient),
		TrustedCAFile: paths.Cert(pki.EtcdCA),
	}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, "", fmt.Errorf("cannot read the etcd client certificate in %s (run as root on the control-plane host): %w", paths.PKI(), err)
		}
		return nil, "", fmt.Errorf("failed to load the etcd client certificate: %w", err)
	}
	endpoint := etcdURL(c.Ports.EtcdClient)
	client, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, TLS: tlsConfig, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, "", fmt.Errorf("failed to connect to etcd at %s: %w", endpoint, err)
	}
	return client, endpoint, nil
}

// checkStopped refuses a restore while a control plane runs on dataDir (its
// etcd holds a lock on its database) or, with c, listens on c's etcd ports.
func checkStopped(dataDir string, c *config.ControlPlane) error {
	const stop = "stop it first (systemctl stop vcluster-standalone)"
	db := filepath.Join(Paths{DataDir: dataDir}.Etcd(), "member", "snap", "db")
	if f, err := os.Open(db); err == nil {
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return fmt.Errorf("the control plane is running on %s (its etcd database is in use); %s", dataDir, stop)
		}
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	}
	if c == nil {
		return nil
	}
	for _, port := range []int{c.Ports.EtcdClient, c.Ports.EtcdPeer} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return fmt.Errorf("something listens on etcd's port %s: is a control plane running? %s", addr, stop)
		}
	}
	return nil
}
