package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

func noAddress() (string, error) { return "192.0.2.10", nil }

func TestDefaults(t *testing.T) {
	c := &ControlPlane{}
	SetDefaults(c, noAddress)
	checks := map[string][2]string{
		"advertiseAddress":  {c.AdvertiseAddress, "192.0.2.10"},
		"bindAddress":       {c.BindAddress, "0.0.0.0"},
		"dataDir":           {c.DataDir, "/var/lib/vcluster-standalone"},
		"podCIDR":           {c.Network.PodCIDR, "10.244.0.0/16"},
		"serviceCIDR":       {c.Network.ServiceCIDR, "10.96.0.0/12"},
		"clusterDNS":        {c.Network.ClusterDNS, "10.96.0.10"},
		"clusterDomain":     {c.Network.ClusterDomain, "cluster.local"},
		"podSecurityStd":    {c.Policies.PodSecurityStandard, "baseline"},
		"apiVersion":        {c.APIVersion, APIVersion},
		"admin kubeconfig":  {c.AdminKubeconfig, "/etc/vcluster-standalone/admin.kubeconfig"},
		"kind":              {c.Kind, ControlPlaneKind},
		"etcd client port":  {itoa(c.Ports.EtcdClient), "2379"},
		"api port":          {itoa(c.APIPort), "6443"},
		"join port":         {itoa(c.JoinPort), "6444"},
		"scheduler port":    {itoa(c.Ports.Scheduler), "10259"},
		"controller-m port": {itoa(c.Ports.ControllerManager), "10257"},
		"local node config": {c.LocalNode.ConfigFile, "/etc/node-agent/config.yaml"},
		"local node data":   {c.LocalNode.DataDir, "/var/lib/node-agent"},
		"local node units":  {c.LocalNode.UnitDir, "/etc/systemd/system"},
	}
	for name, got := range checks {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	if !c.EncryptionEnabled() {
		t.Error("secrets encryption must be on by default")
	}
	if errs := c.Validate(); len(errs) != 0 {
		t.Fatalf("defaults do not validate: %v", errs)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestClusterDNSFollowsServiceCIDR(t *testing.T) {
	c := &ControlPlane{Network: NetworkConfig{ServiceCIDR: "172.20.0.0/16"}}
	SetDefaults(c, noAddress)
	if c.Network.ClusterDNS != "172.20.0.10" {
		t.Fatalf("clusterDNS = %s, want 172.20.0.10", c.Network.ClusterDNS)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *ControlPlane)
		want   string // the one error expected
	}{
		{"invalid pod CIDR", func(c *ControlPlane) { c.Network.PodCIDR = "10.244.0.0/33" }, `network.podCIDR: invalid value "10.244.0.0/33": must be an IPv4 CIDR`},
		{"pod CIDR host bits", func(c *ControlPlane) { c.Network.PodCIDR = "10.244.1.0/16" }, `network.podCIDR: invalid value "10.244.1.0/16": has host bits set; did you mean 10.244.0.0/16?`},
		{"pod CIDR too small", func(c *ControlPlane) { c.Network.PodCIDR = "10.244.0.0/25" }, `network.podCIDR: invalid value "10.244.0.0/25": prefix length must be between /8 and /24`},
		{"service CIDR too large", func(c *ControlPlane) {
			c.Network.ServiceCIDR = "10.0.0.0/8"
			c.Network.ClusterDNS = "10.0.0.10"
			c.Network.PodCIDR = "192.168.0.0/16"
		}, `network.serviceCIDR: invalid value "10.0.0.0/8": prefix length must be between /12 and /28`},
		{"overlap", func(c *ControlPlane) {
			c.Network.ServiceCIDR = "10.244.128.0/20"
			c.Network.ClusterDNS = "10.244.128.10"
		}, `network.serviceCIDR: invalid value "10.244.128.0/20": overlaps network.podCIDR 10.244.0.0/16`},
		{"dns outside", func(c *ControlPlane) { c.Network.ClusterDNS = "10.0.0.10" }, `network.clusterDNS: invalid value "10.0.0.10": must be inside network.serviceCIDR 10.96.0.0/12`},
		{"dns is kubernetes svc", func(c *ControlPlane) { c.Network.ClusterDNS = "10.96.0.1" }, `network.clusterDNS: invalid value "10.96.0.1"`},
		{"domain", func(c *ControlPlane) { c.Network.ClusterDomain = "Bad_Domain" }, `network.clusterDomain: invalid value "Bad_Domain"`},
		{"advertise", func(c *ControlPlane) { c.AdvertiseAddress = "0.0.0.0" }, `advertiseAddress: invalid value "0.0.0.0"`},
		{"advertise loopback", func(c *ControlPlane) { c.AdvertiseAddress = "127.0.0.1" }, `advertiseAddress: invalid value "127.0.0.1": must not be a loopback address`},
		{"bind", func(c *ControlPlane) { c.BindAddress = "localhost" }, `bindAddress: invalid value "localhost"`},
		{"port range", func(c *ControlPlane) { c.APIPort = 70000 }, `apiPort: invalid value "70000": must be a port between 1 and 65535`},
		{"port clash", func(c *ControlPlane) { c.Ports.Scheduler = 6443 }, `ports.scheduler: invalid value "6443": already used by apiPort`},
		{"join port range", func(c *ControlPlane) { c.JoinPort = -1 }, `joinPort: invalid value "-1": must be a port between 1 and 65535`},
		{"join port clash", func(c *ControlPlane) { c.JoinPort = 6443 }, `joinPort: invalid value "6443": already used by apiPort`},
		{"relative data dir", func(c *ControlPlane) { c.DataDir = "data" }, `dataDir: invalid value "data": must be an absolute path`},
		{"relative local node config", func(c *ControlPlane) { c.LocalNode.ConfigFile = "node.yaml" }, `localNode.configFile: invalid value "node.yaml": must be an absolute path`},
		{"relative local node unit dir", func(c *ControlPlane) { c.LocalNode.UnitDir = "units" }, `localNode.unitDir: invalid value "units": must be an absolute path`},
		{"local node data dir is the control plane's", func(c *ControlPlane) { c.LocalNode.DataDir = c.DataDir }, `localNode.dataDir: invalid value "/var/lib/vcluster-standalone": must differ from dataDir`},
		{"san", func(c *ControlPlane) { c.ExtraSANs = []string{"ok.example.com", "not a name"} }, `extraSANs[1]: invalid value "not a name"`},
		{"extra arg key", func(c *ControlPlane) { c.ExtraArgs.APIServer = map[string]string{"--v": "2"} }, `extraArgs.apiServer: invalid value "--v"`},
		{"pss", func(c *ControlPlane) { c.Policies.PodSecurityStandard = "strict" }, `policies.podSecurityStandard: invalid value "strict": must be one of privileged, baseline, restricted`},
		{"public egress cidr", func(c *ControlPlane) { c.Policies.NetworkPolicy.Workload.PublicEgress.CIDR = "0.0.0.0" }, `policies.networkPolicy.workload.publicEgress.cidr: invalid value "0.0.0.0": must be an IPv4 CIDR`},
		{"public egress except", func(c *ControlPlane) {
			c.Policies.NetworkPolicy.Workload.PublicEgress.Except = []string{"169.254.169.254/32", "169.254.169.254/16"}
		}, `policies.networkPolicy.workload.publicEgress.except[1]: invalid value "169.254.169.254/16": has host bits set`},
		{"kind", func(c *ControlPlane) { c.Kind = "NodeConfig" }, `kind: invalid value "NodeConfig": must be ControlPlaneConfig`},
		{"no address", func(c *ControlPlane) { c.AdvertiseAddress = "" }, `advertiseAddress: not set and no address found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &ControlPlane{}
			SetDefaults(c, noAddress)
			tc.mutate(c)
			errs := c.Validate()
			if len(errs) != 1 {
				t.Fatalf("want exactly one error containing %q, got %v", tc.want, errs)
			}
			if msg := errs[0].Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q does not contain %q on one line", msg, tc.want)
			}
		})
	}
}

func TestParseStrict(t *testing.T) {
	_, err := Parse("c.yaml", []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: ControlPlaneConfig\nnetwork:\n  podCidr: 10.0.0.0/16\n"))
	if err == nil || err.Error() != `config c.yaml: unknown field "network.podCidr"` {
		t.Fatalf("unknown field: got %v", err)
	}
	_, err = Parse("c.yaml", []byte("apiPort: [1]\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "config c.yaml: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("type error must be one line naming the file: %v", err)
	}
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	os.WriteFile(file, []byte(`apiVersion: vcluster-standalone.io/v1alpha1
kind: ControlPlaneConfig
apiPort: 7443
dataDir: /srv/file
network:
  podCIDR: 10.50.0.0/16
extraArgs:
  apiServer:
    v: "1"
    max-requests-inflight: "100"
`), 0o600)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags := AddFlags(fs)
	if err := fs.Parse([]string{"--data-dir=/srv/flag", "--kube-apiserver-arg=v=3", "--kube-apiserver-arg", "enable-admission-plugins=A,B", "--secrets-encryption=false", "--feature-gates=Foo=true,Bar=false"}); err != nil {
		t.Fatal(err)
	}
	c, errs := Resolve(file, true, flags, noAddress)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.APIPort != 7443 || c.Network.PodCIDR != "10.50.0.0/16" {
		t.Errorf("file values lost: port %d pod %s", c.APIPort, c.Network.PodCIDR)
	}
	if c.DataDir != "/srv/flag" {
		t.Errorf("flag must win over file: dataDir = %s", c.DataDir)
	}
	want := map[string]string{"v": "3", "max-requests-inflight": "100", "enable-admission-plugins": "A,B"}
	for k, v := range want {
		if c.ExtraArgs.APIServer[k] != v {
			t.Errorf("extraArgs.apiServer[%s] = %q, want %q", k, c.ExtraArgs.APIServer[k], v)
		}
	}
	if c.EncryptionEnabled() {
		t.Error("--secrets-encryption=false ignored")
	}
	if !c.FeatureGates["Foo"] || c.FeatureGates["Bar"] {
		t.Errorf("feature gates = %v", c.FeatureGates)
	}
	if c.Network.ServiceCIDR != DefaultServiceCIDR {
		t.Errorf("default lost: serviceCIDR %s", c.Network.ServiceCIDR)
	}
}

func TestResolveMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, errs := Resolve(missing, false, nil, noAddress); len(errs) != 0 {
		t.Fatalf("optional missing file: %v", errs)
	}
	_, errs := Resolve(missing, true, nil, noAddress)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no such file or directory") {
		t.Fatalf("required missing file: %v", errs)
	}
}

func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{{"--kube-apiserver-arg=novalue"}, {"--feature-gates=Foo"}, {"--secrets-encryption=maybe"}} {
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		AddFlags(fs)
		if err := fs.Parse(args); err == nil {
			t.Errorf("%v: want a parse error", args)
		}
	}
}

func TestEveryConfigKeyHasAFlag(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags := AddFlags(fs)
	var args []string
	fs.VisitAll(func(f *pflag.Flag) {
		switch f.Value.Type() {
		case "string":
			args = append(args, "--"+f.Name+"=x")
		case "int":
			args = append(args, "--"+f.Name+"=1")
		case "stringArray":
			args = append(args, "--"+f.Name+"=x")
		case "key=value":
			args = append(args, "--"+f.Name+"=k=v")
		case "bool":
			args = append(args, "--"+f.Name+"=false")
		case "duration":
			args = append(args, "--"+f.Name+"=90s")
		default:
			args = append(args, "--"+f.Name+"=G=true")
		}
	})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c := &ControlPlane{}
	flags.Apply(c)
	// Every settable field must have been set by some flag: compare with a
	// config where every field is set in YAML.
	out, _ := yaml.Marshal(c)
	data := string(out)
	for _, key := range []string{"advertiseAddress", "bindAddress", "apiPort", "joinPort", "dataDir", "adminKubeconfig", "podCIDR", "serviceCIDR", "clusterDNS", "clusterDomain", "etcdClient", "etcdPeer", "controllerManager", "scheduler", "extraSANs", "apiServer", "featureGates", "podSecurityStandard", "enabled", "storage", "joinNode", "joinEndpoint", "configFile", "unitDir",
		"leafLifetime", "renewBefore", "checkInterval", "signingDuration"} {
		if !strings.Contains(data, key+":") {
			t.Errorf("config key %s is not set by any flag", key)
		}
	}
}
