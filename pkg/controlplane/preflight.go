package controlplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// checkPorts fails when any port the control plane listens on is taken.
func checkPorts(c *config.ControlPlane) error {
	type listenPort struct {
		host, flag string
		port       int
	}
	ports := []listenPort{
		{c.BindAddress, "api-port", c.APIPort},
		{"127.0.0.1", "etcd-client-port", c.Ports.EtcdClient},
		{"127.0.0.1", "etcd-peer-port", c.Ports.EtcdPeer},
		{"127.0.0.1", "controller-manager-port", c.Ports.ControllerManager},
		{"127.0.0.1", "scheduler-port", c.Ports.Scheduler},
	}
	if c.ServesJoinEndpoint() {
		// The join endpoint listens where the API server does.
		ports = append(ports, listenPort{c.BindAddress, "join-port", c.JoinPort})
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(p.port)))
		if err != nil {
			return fmt.Errorf("port %d on %s is not available (%s): stop what uses it or choose another with --%s", p.port, p.host, rootCause(err), p.flag)
		}
		l.Close()
	}
	return nil
}

// prepareDataDir creates the data dir (0700) if needed and proves it is
// writable. removeIfNew undoes the creation when a later step fails, so a
// failed first start leaves nothing behind.
func prepareDataDir(dir string) (removeIfNew func(), err error) {
	_, statErr := os.Stat(dir)
	isNew := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s cannot be created (%s): choose another with --data-dir", dir, rootCause(err))
	}
	removeIfNew = func() {
		if isNew {
			os.RemoveAll(dir)
		}
	}
	probe, err := os.CreateTemp(dir, ".write-check-")
	if err != nil {
		removeIfNew()
		return nil, fmt.Errorf("data dir %s is not writable (%s): choose another with --data-dir", dir, rootCause(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := os.Chmod(dir, 0o700); err != nil {
		removeIfNew()
		return nil, fmt.Errorf("data dir %s: %s", dir, rootCause(err))
	}
	// Marked ours, uninstall may remove it; a directory that held other
	// files before the first start is not marked and uninstall leaves it.
	if ours, err := config.ClaimDataDir(dir, "pki"); err != nil {
		removeIfNew()
		return nil, fmt.Errorf("data dir %s: %s", dir, rootCause(err))
	} else if !ours {
		klog.InfoS("data dir holds files vcluster-standalone did not make; uninstall will leave it", "dir", dir, "marker", config.DataDirMarker)
	}
	return removeIfNew, nil
}

// rootCause strips path and syscall wrappers, e.g. "permission denied".
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
