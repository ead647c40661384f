package node

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// The kubelet's record is the command line its own flag set parsed, and
// names the config file node-agent wrote (kube-bench reads both).
func TestKubeletArgsAreWhatItParsed(t *testing.T) {
	n := testNode(t)
	n.NodeIP = "192.0.2.21"
	k := NewKubelet(n, testSettings(), Host{CgroupV1: true})
	if err := k.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--cert-dir=" + n.PKIDir(), "--config=" + k.ConfigFile(), "--hostname-override=worker-1",
		"--kubeconfig=" + n.KubeletKubeconfig(), "--node-ip=192.0.2.21", "--root-dir=" + n.KubeletRoot(),
	}
	if !slices.Equal(k.Args(), want) {
		t.Errorf("kubelet args:\n%s\nwant:\n%s", strings.Join(k.Args(), " "), strings.Join(want, " "))
	}
	f := k.server.KubeletFlags
	if f.KubeletConfigFile != k.ConfigFile() || f.NodeIP != "192.0.2.21" || f.RootDirectory != n.KubeletRoot() || f.KubeConfig != n.KubeletKubeconfig() {
		t.Errorf("parsed flags differ from the record: %+v", f)
	}
	if got := kubeletFlags(n, k.ConfigFile(), "Worker-1"); got["hostname-override"] != "" {
		t.Errorf("the host's own name is overridden: %v", got)
	}
	if got := strings.Join(NewKubeProxy(n, testSettings(), Host{}).Args(), " "); got != "--config="+n.DataDir+"/kube-proxy.yaml" {
		t.Errorf("kube-proxy args: %s", got)
	}
}
