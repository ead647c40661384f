// Package node is the node half of the CSI driver, run by node-agent: the
// CSI Identity and Node services on the kubelet's plugin socket, the
// registration with the kubelet, and the reconciler that makes this node's
// pool follow its Volume and Snapshot objects.
//
// Stopping it never unmounts anything: volumes stay mounted in their pods
// across a restart or a kill of node-agent, and the next start adopts them
// (the pool's mount, the loop devices and the state file are all found again).
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/version"
)

// SocketPath is the CSI service's socket below the kubelet root.
func SocketPath(kubeletRoot string) string {
	return filepath.Join(kubeletRoot, "plugins", csi.DriverName, "csi.sock")
}

// RegistrationSocketPath is the socket the kubelet's plugin watcher finds.
func RegistrationSocketPath(kubeletRoot string) string {
	return filepath.Join(kubeletRoot, "plugins_registry", csi.DriverName+"-reg.sock")
}

// PoolOptions is where node n keeps its pool.
func PoolOptions(n *config.Node) pool.Options {
	return pool.Options{Root: n.CSIPoolDir(), Image: n.CSIPoolImage(), ImageSize: n.StoragePoolBytes()}
}

// Plugin is the CSI node plugin component.
type Plugin struct {
	node   *config.Node
	rest   *rest.Config
	log    io.Writer
	server *Server

	grpcServer *grpc.Server
	regServer  *grpc.Server
	cancel     context.CancelFunc
	done       sync.WaitGroup
	ready      atomic.Bool
	failed     chan error
}

// New returns the plugin for node n; restConfig carries the node's credential.
func New(n *config.Node, restConfig *rest.Config, log io.Writer) *Plugin {
	if log == nil {
		log = io.Discard
	}
	return &Plugin{node: n, rest: restConfig, log: log, failed: make(chan error, 1)}
}

func (p *Plugin) Name() string { return "csi node plugin" }

func (p *Plugin) Init(context.Context) error {
	for _, dir := range []string{filepath.Dir(SocketPath(p.node.KubeletRoot())), filepath.Dir(RegistrationSocketPath(p.node.KubeletRoot()))} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	return nil
}

// Start opens (or makes) the pool, serves the CSI and registration sockets
// and starts the reconciler.
func (p *Plugin) Start(context.Context) error {
	pl, err := pool.Open(PoolOptions(p.node))
	if err != nil {
		return fmt.Errorf("storage pool: %w (set storage: disabled in the node config to run without storage)", err)
	}
	eph, err := LoadEphemeralState(filepath.Join(pl.Root(), "ephemeral.json"))
	if err != nil {
		return err
	}
	st, _ := pl.Stats()
	fmt.Fprintf(p.log, "csi: pool %s (%s): %s total, %s free, %d volume(s)\n", pl.Root(), pl.Backend(),
		pool.FormatBytes(st.TotalBytes), pool.FormatBytes(st.FreeBytes), st.Volumes)

	client, err := dynamic.NewForConfig(p.rest)
	if err != nil {
		return err
	}
	p.server = &Server{NodeName: p.node.NodeName, Pool: pl, Ephemeral: eph}
	rec := newReconciler(client, p.node.NodeName, pl, func() func() { p.server.mu.Lock(); return p.server.mu.Unlock }, p.log)
	p.server.Changed = rec.poolChanged

	sock := SocketPath(p.node.KubeletRoot())
	p.grpcServer = grpc.NewServer()
	csipb.RegisterIdentityServer(p.grpcServer, &csi.IdentityServer{Version: version.Version, Ready: p.ready.Load})
	csipb.RegisterNodeServer(p.grpcServer, p.server)
	if err := p.serve(p.grpcServer, sock); err != nil {
		return err
	}
	p.regServer = grpc.NewServer()
	registerapi.RegisterRegistrationServer(p.regServer, &registrar{endpoint: sock, log: p.log})
	if err := p.serve(p.regServer, RegistrationSocketPath(p.node.KubeletRoot())); err != nil {
		p.grpcServer.Stop()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		rec.run(ctx)
	}()
	p.ready.Store(true)
	return nil
}

// serve listens on a unix socket (a stale one from a killed run is
// replaced) and serves s there.
func (p *Plugin) serve(s *grpc.Server, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			select {
			case p.failed <- fmt.Errorf("serving %s: %w", path, err):
			default:
			}
		}
	}()
	return nil
}

func (p *Plugin) Failed() <-chan error { return p.failed }

// Stop ends the services and the reconciler; mounts, loop devices and the
// pool stay as they are.
func (p *Plugin) Stop() error {
	p.ready.Store(false)
	if p.cancel != nil {
		p.cancel()
	}
	for _, s := range []*grpc.Server{p.regServer, p.grpcServer} {
		if s != nil {
			s.Stop()
		}
	}
	p.done.Wait()
	return nil
}
