package node

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// writeTestPair writes a self-signed certificate and its key into one PEM
// file, the layout of the kubelet's *-current.pem files.
func writeTestPair(t *testing.T, path string) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("worker-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// resolvedHosts is what containerd itself makes of the hosts directory for a
// registry: the endpoints in the order a pull tries them.
func resolvedHosts(t *testing.T, dir, registry string) []string {
	t.Helper()
	hosts, err := dockerconfig.ConfigureHosts(context.Background(), dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(dir)})(registry)
	if err != nil {
		t.Fatalf("containerd rejects the hosts files for %s: %v", registry, err)
	}
	var out []string
	for _, h := range hosts {
		if h.Capabilities.Has(docker.HostCapabilityPull) {
			out = append(out, h.Scheme+"://"+h.Host+h.Path)
		}
	}
	return out
}

func TestPeerMirrorsOrderAsContainerdReadsThem(t *testing.T) {
	dir := t.TempDir()
	pair := filepath.Join(dir, "client.pem")
	writeTestPair(t, pair)
	r := &Registries{
		Mirrors: map[string]Mirror{"docker.io": {Endpoints: []string{"https://mirror.example:5000"}}},
		Configs: map[string]RegistryConfig{"mirror.example:5000": {Username: "u", Password: "p"}},
	}
	hosts := filepath.Join(dir, "hosts")
	peers := PeerMirrors{Endpoints: []string{"https://10.0.0.11:6445", "https://10.0.0.12:6445"}, CAFile: pair, CertFile: pair}
	if err := r.WriteHostsDir(hosts, peers); err != nil {
		t.Fatal(err)
	}
	// registries.yaml mirrors first, then the peers, then the registry itself.
	want := []string{"https://mirror.example:5000/v2", "https://10.0.0.11:6445/v2", "https://10.0.0.12:6445/v2", "https://registry-1.docker.io/v2"}
	if got := resolvedHosts(t, hosts, "docker.io"); !slices.Equal(got, want) {
		t.Errorf("docker.io: got %v, want %v", got, want)
	}
	// Any other registry: the peers, then the registry named in the image.
	want = []string{"https://10.0.0.11:6445/v2", "https://10.0.0.12:6445/v2", "https://registry.k8s.io/v2"}
	if got := resolvedHosts(t, hosts, "registry.k8s.io"); !slices.Equal(got, want) {
		t.Errorf("registry.k8s.io: got %v, want %v", got, want)
	}

	// The peers leave: only registries.yaml's own configuration remains.
	if err := r.WriteHostsDir(hosts, PeerMirrors{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(hosts, defaultHostsDir)); !os.IsNotExist(err) {
		t.Errorf("%s still there without peers (%v)", defaultHostsDir, err)
	}
	if got := resolvedHosts(t, hosts, "registry.k8s.io"); !slices.Equal(got, []string{"https://registry.k8s.io/v2"}) {
		t.Errorf("registry.k8s.io without peers: %v", got)
	}
	if got := resolvedHosts(t, hosts, "docker.io"); len(got) != 2 {
		t.Errorf("docker.io without peers: %v", got)
	}
}

func TestRegistryHostsRememberPeersAcrossStarts(t *testing.T) {
	n := testNode(t)
	regs := filepath.Join(t.TempDir(), "registries.yaml") // absent: no registries.yaml
	if err := writeRegistryHosts(n, regs, []string{"https://10.0.0.12:6445"}); err != nil {
		t.Fatal(err)
	}
	if got := cachedPeers(n); !slices.Equal(got, []string{"https://10.0.0.12:6445"}) {
		t.Fatalf("cached peers: %v", got)
	}
	n.RegistryMirror = config.RegistryMirrorDisabled
	if err := writeRegistryHosts(n, regs, cachedPeers(n)); err != nil {
		t.Fatal(err)
	}
	if got := cachedPeers(n); len(got) != 0 {
		t.Errorf("disabled mirror still remembers peers %v", got)
	}
	if _, err := os.Stat(filepath.Join(registryHostsDir(n), defaultHostsDir)); !os.IsNotExist(err) {
		t.Errorf("disabled mirror left peer hosts (%v)", err)
	}
}

// Peers serve with kubelet serving certificates, which the kubelet-serving CA
// signs: containerd must trust that CA for them, and not the cluster CA.
func TestPeerMirrorsTrustTheKubeletServingCA(t *testing.T) {
	n := testNode(t)
	bundle, _, err := pki.Ensure(pki.Params{Dir: filepath.Join(t.TempDir(), "cp"), Hostname: "cp", AdvertiseIP: net.ParseIP("192.0.2.10"),
		ServiceIP: net.ParseIP("10.96.0.1"), ClusterDomain: "cluster.local"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for path, ca := range map[string]string{n.CAFile(): pki.ClusterCA, n.KubeletServingCAFile(): pki.KubeletServingCA} {
		if err := fsutil.WriteFileAtomic(path, pki.EncodeCert(bundle.CAs[ca].Cert), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTestPair(t, n.KubeletClientCertFile())
	if err := writeRegistryHosts(n, filepath.Join(t.TempDir(), "registries.yaml"), []string{"https://10.0.0.12:6445"}); err != nil {
		t.Fatal(err)
	}
	hosts, err := dockerconfig.ConfigureHosts(context.Background(), dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(registryHostsDir(n))})("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(hosts, func(h docker.RegistryHost) bool { return h.Host == "10.0.0.12:6445" })
	if i < 0 {
		t.Fatalf("no peer host in %+v", hosts)
	}
	roots := hosts[i].Client.Transport.(*http.Transport).TLSClientConfig.RootCAs
	for ca, wantOK := range map[string]bool{pki.KubeletServingCA: true, pki.ClusterCA: false} {
		certPEM, _, err := bundle.Issue(pki.CertSpec{Name: "peer", CA: ca, CommonName: "system:node:worker-2", IPs: []net.IP{net.ParseIP("10.0.0.12")},
			Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		certs, _ := certutil.ParseCertsPEM(certPEM)
		_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.12"})
		if (err == nil) != wantOK {
			t.Errorf("a peer certificate signed by %s: verify error %v, want accepted=%v", ca, err, wantOK)
		}
	}
}
