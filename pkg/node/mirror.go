package node

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"k8s.io/client-go/kubernetes"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/images"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/mirror"
)

// newMirror is the registry mirror component of this node: it serves with
// the kubelet's serving certificate, accepts node client certificates signed
// by the cluster CA, and pulls from peers with the kubelet's client pair,
// verifying them with the kubelet-serving CA.
func newMirror(o Options, cs kubernetes.Interface) *mirror.Mirror {
	n := o.Node
	return mirror.New(mirror.Options{
		NodeName: n.NodeName,
		Enabled:  n.MirrorEnabled(),
		Port:     config.RegistryMirrorPort,
		Client:   cs,
		Connect: func(ctx context.Context) (*client.Client, error) {
			return images.Connect(ctx, config.ContainerdSocket())
		},
		TLS:        mirror.TLSFiles{ServingCert: n.KubeletServingCertFile(), ClientCA: n.CAFile()},
		WritePeers: func(peers []string) error { return writeRegistryHosts(n, o.RegistriesFile, peers) },
		Log:        o.Progress,
	})
}

// writeRegistryHosts renders registries.yaml and the peers' mirrors into
// containerd's hosts directory, and remembers the peers for the next start
// (so pulls right after a restart already go through them).
func writeRegistryHosts(n *config.Node, registriesFile string, peers []string) error {
	r, err := LoadRegistries(registriesFile)
	if err != nil {
		return err
	}
	if !n.MirrorEnabled() {
		peers = nil
	}
	pm := PeerMirrors{Endpoints: peers, CAFile: n.KubeletServingCAFile(), CertFile: n.KubeletClientCertFile()}
	if err := r.WriteHostsDir(registryHostsDir(n), pm); err != nil {
		return err
	}
	if len(peers) == 0 {
		if err := os.Remove(n.RegistryPeersFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return fsutil.WriteIfChanged(n.RegistryPeersFile(), []byte(strings.Join(peers, "\n")+"\n"), 0o600)
}

// cachedPeers are the peers remembered from the last run.
func cachedPeers(n *config.Node) []string {
	data, err := os.ReadFile(n.RegistryPeersFile())
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}
