package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func testNode(t *testing.T) *config.Node {
	n := &config.Node{Server: "https://192.0.2.10:6443", NodeName: "worker-1", DataDir: t.TempDir()}
	config.SetNodeDefaults(n, nil)
	return n
}

func testSettings() config.ClusterSettings { return config.DefaultControlPlane().ClusterSettings() }

// lookup walks a decoded TOML document by keys.
func lookup(t *testing.T, doc map[string]any, keys ...string) any {
	t.Helper()
	var cur any = doc
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %q is not a table", keys, k)
		}
		cur = m[k]
	}
	return cur
}

func TestContainerdConfigFollowsTheHost(t *testing.T) {
	n := testNode(t)
	for _, host := range []Host{{SystemdCgroups: true, CanLowerOOMScore: true}, {CgroupV1: true}} {
		body, err := renderContainerdConfig(newContainerdConfig(n, host))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := toml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("containerd config is not valid TOML: %v\n%s", err, body)
		}
		cri := []string{"plugins", "io.containerd.cri.v1.runtime"}
		runc := append(cri, "containerd", "runtimes", "runc")
		for _, c := range []struct {
			keys []string
			want any
		}{
			{[]string{"version"}, int64(3)},
			{[]string{"root"}, n.ContainerdRoot()},
			{[]string{"grpc", "address"}, config.ContainerdSocket()},
			{append(runc, "options", "SystemdCgroup"), host.SystemdCgroups},
			{append(runc, "options", "BinaryName"), filepath.Join(n.BinDir(), "runc")},
			{append(runc, "runtime_path"), filepath.Join(n.BinDir(), ShimName)},
			{append(cri, "restrict_oom_score_adj"), !host.CanLowerOOMScore},
			{append(cri, "cni", "conf_dir"), n.CNIConfDir()},
			{[]string{"plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"}, config.PauseImage},
			{[]string{"plugins", "io.containerd.grpc.v1.cri", "stream_server_address"}, "127.0.0.1"},
		} {
			if got := lookup(t, doc, c.keys...); got != c.want {
				t.Errorf("host %+v: %s = %v, want %v", host, strings.Join(c.keys, "."), got, c.want)
			}
		}
	}
}

func TestKubeletConfigurationLoadsAndValidates(t *testing.T) {
	n := testNode(t)
	for _, host := range []Host{{SystemdCgroups: true, CanLowerOOMScore: true, ResolvConf: "/etc/resolv.conf"}, {CgroupV1: true, ResolvConf: "/etc/resolv.conf"}} {
		body, err := renderKubeletConfiguration(kubeletConfiguration(n, testSettings(), host))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "kubelet.yaml")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, file)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := loader.Load(context.Background())
		if err != nil {
			t.Fatalf("kubelet cannot load the generated config: %v", err)
		}
		if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
			t.Fatalf("kubelet refuses the generated config: %v", err)
		}
		wantDriver := map[bool]string{true: "systemd", false: "cgroupfs"}[host.SystemdCgroups]
		switch {
		case kc.CgroupDriver != wantDriver:
			t.Errorf("cgroupDriver %s, want %s", kc.CgroupDriver, wantDriver)
		case kc.Authentication.Anonymous.Enabled:
			t.Error("anonymous kubelet access enabled")
		case kc.Authorization.Mode != "Webhook" || kc.ReadOnlyPort != 0:
			t.Errorf("authorization %s, read-only port %d", kc.Authorization.Mode, kc.ReadOnlyPort)
		case !kc.RotateCertificates || !kc.ServerTLSBootstrap:
			t.Error("certificate rotation or serving-certificate bootstrap off")
		case len(kc.ClusterDNS) != 1 || kc.ClusterDNS[0] != "10.96.0.10" || kc.ClusterDomain != "cluster.local":
			t.Errorf("cluster DNS %v %s", kc.ClusterDNS, kc.ClusterDomain)
		case kc.FailCgroupV1:
			t.Error("failCgroupV1 set: the kubelet would refuse cgroup v1 hosts")
		case (kc.OOMScoreAdj == 0) == host.CanLowerOOMScore:
			t.Errorf("oomScoreAdj %d with CAP_SYS_RESOURCE %t", kc.OOMScoreAdj, host.CanLowerOOMScore)
		}
	}
}

func TestRegistriesRenderHostsFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "registries.yaml")
	os.WriteFile(file, []byte(`mirrors:
  docker.io:
    endpoints: ["https://mirror.example:5000"]
configs:
  mirror.example:5000:
    username: u
    password: p
    caFile: /etc/ssl/mirror.pem
`), 0o600)
	r, err := LoadRegistries(file)
	if err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := r.WriteHostsDir(hosts, PeerMirrors{}); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join(hosts, "docker.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("invalid hosts.toml: %v\n%s", err, body)
	}
	mirror := lookup(t, doc, "host", "https://mirror.example:5000").(map[string]any)
	if doc["server"] != "https://registry-1.docker.io" || mirror["ca"] != "/etc/ssl/mirror.pem" ||
		lookup(t, mirror, "header", "authorization") != "Basic dTpw" {
		t.Fatalf("hosts.toml:\n%s", body)
	}
	if st, _ := os.Stat(filepath.Join(hosts, "docker.io", "hosts.toml")); st.Mode().Perm() != 0o600 {
		t.Errorf("hosts.toml holds credentials but has mode %v", st.Mode().Perm())
	}

	for _, bad := range []struct{ yaml, want string }{
		{"mirrors:\n  docker.io:\n    endpoints: []\n", "mirrors.docker.io.endpoints: empty"},
		{"mirrors:\n  docker.io:\n    endpoints: [\"ftp://x\"]\n", `invalid value "ftp://x"`},
		{"mirror: {}\n", `unknown field "mirror"`},
	} {
		os.WriteFile(file, []byte(bad.yaml), 0o600)
		if _, err := LoadRegistries(file); err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line containing %q", bad.yaml, err, bad.want)
		}
	}
	if r, err := LoadRegistries(filepath.Join(dir, "absent.yaml")); err != nil || len(r.Mirrors) != 0 {
		t.Errorf("a missing registries.yaml means none: %v", err)
	}
}
