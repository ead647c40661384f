package controlplane

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// newTestLocalNode prepares a control plane's PKI and a localNode writing
// into temp dirs only.
func newTestLocalNode(t *testing.T) *localNode {
	t.Helper()
	dir := t.TempDir()
	c := &config.ControlPlane{
		AdvertiseAddress: "192.0.2.10", BindAddress: "127.0.0.1", DataDir: filepath.Join(dir, "cp"),
		LocalNode: config.LocalNodeConfig{ConfigFile: filepath.Join(dir, "etc", "config.yaml"), DataDir: filepath.Join(dir, "node"), UnitDir: filepath.Join(dir, "units")},
	}
	config.SetDefaults(c, nil)
	paths := Paths{DataDir: c.DataDir}
	bundle, _, err := pki.Ensure(pki.Params{Dir: paths.PKI(), Hostname: "cp-host", AdvertiseIP: net.ParseIP(c.AdvertiseAddress),
		ServiceIP: net.ParseIP("10.96.0.1"), ClusterDomain: "cluster.local"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &localNode{cfg: c, paths: paths, bundle: bundle, hostname: func() (string, error) { return "CP-Host", nil }, now: time.Now, progress: io.Discard}
}

func (l *localNode) run(t *testing.T) {
	t.Helper()
	if err := l.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLocalNodeWritesTheJoinLayout(t *testing.T) {
	l := newTestLocalNode(t)
	l.run(t)
	if l.NodeName() != "cp-host" {
		t.Fatalf("node name %q, want the hostname lowercased", l.NodeName())
	}
	n, err := config.LoadNode(l.cfg.LocalNode.ConfigFile, false)
	if err != nil {
		t.Fatal(err)
	}
	config.SetNodeDefaults(n, nil)
	if n.Server != LocalServer(l.cfg) || n.NodeIP != "192.0.2.10" || n.DataDir != l.cfg.LocalNode.DataDir || len(n.Validate()) > 0 {
		t.Fatalf("node config %+v %v", n, n.Validate())
	}
	modes := map[string]os.FileMode{
		n.CAFile():               0o644,
		n.KubeletServingCAFile(): 0o644,
		n.KubeletKubeconfig():    0o600,
		filepath.Join(l.cfg.LocalNode.UnitDir, "node-agent.service"): 0o600,
		n.DataDir: 0o700 | os.ModeDir,
	}
	for path, want := range modes {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, want)
		}
	}
	pems, _ := filepath.Glob(filepath.Join(n.PKIDir(), "kubelet-client-2*.pem"))
	if len(pems) != 1 {
		t.Fatalf("want one timestamped pair, got %v", pems)
	}
	if fi, _ := os.Stat(pems[0]); fi.Mode() != 0o600 {
		t.Errorf("key pair mode %v, want 0600", fi.Mode())
	}
	if target, err := os.Readlink(n.KubeletClientCertFile()); err != nil || filepath.Base(target) != filepath.Base(pems[0]) {
		t.Errorf("current symlink -> %q %v", target, err)
	}
	if _, err := nodecreds.LoadKubeletClientCert(n.PKIDir(), n.CAFile(), "cp-host", time.Now()); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != string(pki.EncodeCert(l.bundle.CAs[pki.KubeletServingCA].Cert)) {
		t.Errorf("%s does not hold the kubelet-serving CA", n.KubeletServingCAFile())
	}
	if got := hostNodeName(l.cfg)(); got != "cp-host" {
		t.Errorf("host node for the CSR approver %q, want cp-host", got)
	}
	kc, err := clientcmd.LoadFromFile(n.KubeletKubeconfig())
	if err != nil || kc.AuthInfos["default"].ClientCertificate != n.KubeletClientCertFile() || kc.Clusters["default"].Server != n.Server {
		t.Errorf("kubeconfig %v", err)
	}
}

func TestLocalNodeKeepsCredentials(t *testing.T) {
	l := newTestLocalNode(t)
	l.run(t)
	n := l.node
	rotated, _ := filepath.Glob(filepath.Join(n.PKIDir(), "kubelet-client-2*.pem"))
	stat := func(p string) time.Time { fi, _ := os.Stat(p); return fi.ModTime() }
	before := map[string]time.Time{l.cfg.LocalNode.ConfigFile: stat(l.cfg.LocalNode.ConfigFile), n.KubeletKubeconfig(): stat(n.KubeletKubeconfig()), rotated[0]: stat(rotated[0])}
	time.Sleep(10 * time.Millisecond)

	again := &localNode{cfg: l.cfg, paths: l.paths, bundle: l.bundle, hostname: l.hostname, now: time.Now, progress: io.Discard}
	again.run(t)
	for p, mtime := range before {
		if !stat(p).Equal(mtime) {
			t.Errorf("%s rewritten on re-run", p)
		}
	}
	if pems, _ := filepath.Glob(filepath.Join(n.PKIDir(), "kubelet-client-2*.pem")); len(pems) != 1 {
		t.Errorf("re-run issued another certificate: %v", pems)
	}
	// The kubelet-serving CA follows the control plane's (rotated) one
	// without new credentials.
	if err := os.WriteFile(n.KubeletServingCAFile(), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	(&localNode{cfg: l.cfg, paths: l.paths, bundle: l.bundle, hostname: l.hostname, now: time.Now, progress: io.Discard}).run(t)
	if got, _ := os.ReadFile(n.KubeletServingCAFile()); string(got) != string(pki.EncodeCert(l.bundle.CAs[pki.KubeletServingCA].Cert)) {
		t.Errorf("kubelet-serving CA not restored: %q", got)
	}
	if !stat(rotated[0]).Equal(before[rotated[0]]) {
		t.Error("restoring the kubelet-serving CA rewrote the client certificate")
	}

	// A node name set in the file (by a user) is kept.
	data, _ := os.ReadFile(l.cfg.LocalNode.ConfigFile)
	os.WriteFile(l.cfg.LocalNode.ConfigFile, []byte(strings.Replace(string(data), "nodeName: cp-host", "nodeName: renamed", 1)), 0o644)
	renamed := &localNode{cfg: l.cfg, paths: l.paths, bundle: l.bundle, hostname: l.hostname, now: time.Now, progress: io.Discard}
	renamed.run(t)
	if renamed.NodeName() != "renamed" || hostNodeName(l.cfg)() != "renamed" {
		t.Fatalf("node name %q (CSR approver's host node %q), want the file's", renamed.NodeName(), hostNodeName(l.cfg)())
	}
	if _, err := nodecreds.LoadKubeletClientCert(n.PKIDir(), n.CAFile(), "renamed", time.Now()); err != nil {
		t.Errorf("a certificate for the new name must be issued: %v", err)
	}
}

func TestLocalNodeReissuesForAnotherCA(t *testing.T) {
	l := newTestLocalNode(t)
	l.run(t)
	// The control plane's PKI was reset: the node's certificate is useless.
	fresh := newTestLocalNode(t)
	fresh.cfg.LocalNode = l.cfg.LocalNode
	fresh.run(t)
	if _, err := nodecreds.LoadKubeletClientCert(l.node.PKIDir(), fresh.paths.Cert(pki.ClusterCA), "cp-host", time.Now()); err != nil {
		t.Fatalf("not reissued with the current CA: %v", err)
	}
}

func TestLocalNodeRefusesAnotherClusterAndBadNames(t *testing.T) {
	l := newTestLocalNode(t)
	os.MkdirAll(filepath.Dir(l.cfg.LocalNode.ConfigFile), 0o755)
	os.WriteFile(l.cfg.LocalNode.ConfigFile, []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: NodeConfig\nserver: https://203.0.113.5:6443\n"), 0o644)
	err := l.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "https://203.0.113.5:6443") || !strings.Contains(err.Error(), "--join-node=false") {
		t.Fatalf("a node of another cluster must not be taken over: %v", err)
	}

	bad := newTestLocalNode(t)
	bad.hostname = func() (string, error) { return "under_score", nil }
	if err := bad.Init(context.Background()); err == nil || !strings.Contains(err.Error(), "nodeName") {
		t.Fatalf("an invalid hostname must be a clear error: %v", err)
	}
	if _, err := os.Stat(bad.cfg.LocalNode.DataDir); !os.IsNotExist(err) {
		t.Error("nothing may be written after a failed Init")
	}
}
