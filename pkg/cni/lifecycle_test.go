package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

func vcsLinks(t *testing.T, l *lab) []string {
	t.Helper()
	var names []string
	_ = l.in(func() error {
		links, err := netlink.LinkList()
		for _, k := range links {
			if strings.HasPrefix(k.Attrs().Name, "vcs") {
				names = append(names, k.Attrs().Name)
			}
		}
		return err
	})
	sort.Strings(names)
	return names
}

func TestGC(t *testing.T) {
	l := newLab(t)
	pods := []ns.NetNS{newNS(t), newNS(t), newNS(t)}
	var args []*skel.CmdArgs
	for i, p := range pods {
		a := l.args(fmt.Sprintf("c%d", i), p, portMaps)
		l.add(t, a)
		args = append(args, a)
	}
	gc := l.args("", nil, `,"cni.dev/valid-attachments":[{"containerID":"c0","ifname":"eth0"}]`)
	if err := l.in(func() error { return cmdGC(gc) }); err != nil {
		t.Fatalf("GC: %v", err)
	}
	all, _ := newAllocator(mustNetwork(t, l)).list()
	if len(all) != 1 || all[0].ContainerID != "c0" {
		t.Fatalf("allocations after GC = %v, want only c0", all)
	}
	rules := natRules(t, l)
	if !strings.Contains(rules, podChainName("c0", "eth0")) {
		t.Fatalf("GC removed the valid attachment's chain:\n%s", rules)
	}
	for _, id := range []string{"c1", "c2"} {
		if strings.Contains(rules, podChainName(id, "eth0")) || strings.Contains(rules, id+"/eth0") {
			t.Fatalf("stale chain of %s left:\n%s", id, rules)
		}
	}
	if got := vcsLinks(t, l); strings.Join(got, " ") != "vcs0 "+hostVethName("c0", "eth0") {
		t.Fatalf("links after GC = %v", got)
	}
	if err := l.in(func() error { return cmdCheck(args[0]) }); err != nil {
		t.Fatalf("CHECK of the valid attachment after GC: %v", err)
	}
	// GC with nothing valid releases everything; repeating is fine.
	empty := l.args("", nil, "")
	for i := 0; i < 2; i++ {
		if err := l.in(func() error { return cmdGC(empty) }); err != nil {
			t.Fatalf("GC: %v", err)
		}
	}
	if all, _ := newAllocator(mustNetwork(t, l)).list(); len(all) != 0 {
		t.Fatalf("allocations after empty GC = %v", all)
	}
}

func TestReset(t *testing.T) {
	l := newLab(t)
	l.add(t, l.args("c0", newNS(t), portMaps))
	l.add(t, l.args("c1", newNS(t), ""))
	if err := WriteConfList(l.confDir, NetConf{Subnet: l.subnet, IPAMDir: l.ipamDir, MTU: 1400}); err != nil {
		t.Fatal(err)
	}
	// Somebody else's chain and link survive.
	sh(t, l.host, "iptables", "-w", "-t", "nat", "-N", "OTHER")
	if err := l.in(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "other0"
		return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la})
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := l.in(func() error { return Reset(l.ipamDir, l.confDir) }); err != nil {
			t.Fatalf("Reset #%d: %v", i+1, err)
		}
	}
	if got := vcsLinks(t, l); len(got) != 0 {
		t.Fatalf("links left: %v", got)
	}
	rules := natRules(t, l)
	if strings.Contains(rules, "VCS-") || !strings.Contains(rules, "-N OTHER") {
		t.Fatalf("nat table after Reset:\n%s", rules)
	}
	if _, err := os.Stat(l.ipamDir); !os.IsNotExist(err) {
		t.Fatalf("IPAM state left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.confDir, ConfListFile)); !os.IsNotExist(err) {
		t.Fatalf("conflist left: %v", err)
	}
	if err := l.in(func() error { _, err := netlink.LinkByName("other0"); return err }); err != nil {
		t.Fatalf("Reset removed a foreign bridge: %v", err)
	}
}

// execPlugin runs the test binary as the plugin (PluginMain) in the host netns.
func execPlugin(l *lab, env []string, stdin []byte) (stdout []byte, err error) {
	var out, errb bytes.Buffer
	err = l.in(func() error {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(append(os.Environ(), "VCS_CNI_TEST_HELPER=plugin", "CNI_PATH=/nonexistent"), env...)
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &out, &errb
		return cmd.Run()
	})
	if err != nil {
		err = fmt.Errorf("%w: %s%s", err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), err
}

func TestPluginMainExec(t *testing.T) {
	l := newLab(t)
	pod := newNS(t)
	out, err := execPlugin(l, []string{"CNI_COMMAND=VERSION"}, []byte(`{"cniVersion":"1.1.0"}`))
	if err != nil || !strings.Contains(string(out), `"1.1.0"`) {
		t.Fatalf("VERSION: %s %v", out, err)
	}
	env := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=exec1", "CNI_NETNS=" + pod.Path(), "CNI_IFNAME=eth0"}
	out, err = execPlugin(l, env, l.conf(""))
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil || res.CNIVersion != "1.1.0" || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.1.2/24" {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	env[0] = "CNI_COMMAND=CHECK"
	conf := withPrevResult(t, &skel.CmdArgs{StdinData: l.conf("")}, &res).StdinData
	if _, err := execPlugin(l, env, conf); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	env[0] = "CNI_COMMAND=STATUS"
	if _, err := execPlugin(l, env[:1], l.conf("")); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	env[0] = "CNI_COMMAND=DEL"
	for i := 0; i < 2; i++ {
		if _, err := execPlugin(l, env, l.conf("")); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	// A bad config is one clear error line in the CNI error format.
	env[0] = "CNI_COMMAND=ADD"
	out, err = execPlugin(l, env, []byte(`{"cniVersion":"1.1.0","name":"vcs","type":"vcs-cni","subnet":"10.244.1.0/24","ipamDir":"rel"}`))
	if err == nil || !strings.Contains(string(out), `invalid network configuration: invalid ipamDir \"rel\": an absolute directory is required`) {
		t.Fatalf("bad config: %s %v", out, err)
	}
}

// BenchmarkAdd measures one ADD (bridge present, new veth pair, address,
// route) into a fresh pod netns; DEL runs with the timer stopped. It reports
// p50/p99 besides ns/op.
func BenchmarkAdd(b *testing.B) {
	l := newLab(b)
	pod := newNS(b)
	l.add(b, l.args("warmup", pod, "")) // bridge and sysctls exist, as on a running node
	l.del(b, l.args("warmup", pod, ""))
	var d []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := l.args(fmt.Sprintf("bench%d", i), pod, "")
		start := time.Now()
		l.add(b, a)
		d = append(d, time.Since(start))
		b.StopTimer()
		l.del(b, a)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}
