package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func host(name string) func() (string, error) { return func() (string, error) { return name, nil } }

func validNode() *Node {
	n := &Node{Server: "https://192.0.2.10:6443"}
	SetNodeDefaults(n, host("Lab-Node1\n"))
	return n
}

func TestNodeDefaults(t *testing.T) {
	n := validNode()
	if n.APIVersion != APIVersion || n.Kind != NodeKind || n.DataDir != DefaultNodeDataDir || n.NodeName != "lab-node1" || !n.MirrorEnabled() ||
		!n.StorageEnabled() || n.StoragePoolBytes() != 10<<30 {
		t.Fatalf("defaults: %+v", n)
	}
	if errs := n.Validate(); len(errs) != 0 {
		t.Fatalf("defaults do not validate: %v", errs)
	}
	if n.KubeletClientCertFile() != "/var/lib/node-agent/pki/kubelet-client-current.pem" ||
		n.CAFile() != "/var/lib/node-agent/pki/ca.crt" || n.KubeletKubeconfig() != "/var/lib/node-agent/kubelet.kubeconfig" {
		t.Fatalf("paths: %s %s %s", n.KubeletClientCertFile(), n.CAFile(), n.KubeletKubeconfig())
	}
}

func TestNodeValidationErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(n *Node)
		want   string
	}{
		{"no server", func(n *Node) { n.Server = "" }, "server: not set"},
		{"http server", func(n *Node) { n.Server = "http://192.0.2.10:6443" }, `server: invalid value "http://192.0.2.10:6443": must be an https:// URL`},
		{"server path", func(n *Node) { n.Server = "https://192.0.2.10:6443/api" }, `server: invalid value "https://192.0.2.10:6443/api"`},
		{"no scheme", func(n *Node) { n.Server = "192.0.2.10:6443" }, `server: invalid value "192.0.2.10:6443"`},
		{"bad name", func(n *Node) { n.NodeName = "Node_1" }, `nodeName: invalid value "Node_1": must be a lowercase DNS name`},
		{"no name", func(n *Node) { n.NodeName = "" }, "nodeName: not set"},
		{"bad ip", func(n *Node) { n.NodeIP = "10.0.0" }, `nodeIP: invalid value "10.0.0"`},
		{"relative dir", func(n *Node) { n.DataDir = "var/lib" }, `dataDir: invalid value "var/lib": must be an absolute path`},
		{"registry mirror", func(n *Node) { n.RegistryMirror = "off" }, `registryMirror: invalid value "off": must be enabled or disabled`},
		{"storage", func(n *Node) { n.Storage = "yes" }, `storage: invalid value "yes": must be enabled or disabled`},
		{"pool size unit", func(n *Node) { n.StoragePoolSize = "10GB!" }, `storagePoolSize: invalid value "10GB!": must be a size of at least 256Mi`},
		{"pool size small", func(n *Node) { n.StoragePoolSize = "100Mi" }, `storagePoolSize: invalid value "100Mi"`},
		{"kind", func(n *Node) { n.Kind = "ControlPlaneConfig" }, `kind: invalid value "ControlPlaneConfig": must be NodeConfig`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := validNode()
			tc.mutate(n)
			errs := n.Validate()
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) || strings.Contains(errs[0].Error(), "\n") {
				t.Fatalf("want one one-line error containing %q, got %v", tc.want, errs)
			}
		})
	}
}

func TestNodeParseStrictAndRoundTrip(t *testing.T) {
	_, err := ParseNode("n.yaml", []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: NodeConfig\nnodename: x\n"))
	if err == nil || err.Error() != `config n.yaml: unknown field "nodename"` {
		t.Fatalf("unknown field: %v", err)
	}
	n := validNode()
	n.NodeIP = "192.0.2.11"
	data, err := MarshalNode(n)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseNode("n.yaml", data)
	if err != nil || *back != *n {
		t.Fatalf("round trip: %+v, %v\n%s", back, err, data)
	}
}

func TestResolveNodePrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(file, []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: NodeConfig\nserver: https://file:6443\nnodeName: from-file\ndataDir: /srv/file\n"), 0o600)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	flags := AddNodeFlags(fs)
	if err := fs.Parse([]string{"--server=https://flag:6443", "--node-ip=192.0.2.5"}); err != nil {
		t.Fatal(err)
	}
	n, errs := ResolveNode(file, true, flags, host("ignored"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if n.Server != "https://flag:6443" || n.NodeName != "from-file" || n.DataDir != "/srv/file" || n.NodeIP != "192.0.2.5" {
		t.Fatalf("precedence flag > file > default broken: %+v", n)
	}
	if _, errs := ResolveNode(filepath.Join(t.TempDir(), "none"), true, nil, host("x")); len(errs) != 1 {
		t.Fatalf("required missing file: %v", errs)
	}
}

func TestEveryNodeKeyHasAFlag(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	flags := AddNodeFlags(fs)
	var args []string
	fs.VisitAll(func(f *pflag.Flag) { args = append(args, "--"+f.Name+"=x") })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	n := &Node{}
	flags.Apply(n)
	data, _ := MarshalNode(n)
	for _, key := range []string{"server", "nodeName", "nodeIP", "dataDir", "registryMirror", "storage", "storagePoolSize"} {
		if !strings.Contains(string(data), key+": x") {
			t.Errorf("config key %s is not set by any flag", key)
		}
	}
}
