//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestNetFigures measures the pod network (figures, not assertions; select
// it with -run TestNetFigures):
//
//   - TCP throughput pod -> pod across two nodes (VXLAN) against node -> node
//     over the same lab link, in one run, interleaved, median of netRounds,
//     with two senders: busybox `dd | nc` (the same binary in the pod image and
//     on the node: bin/images/busybox) and netprobe (Go, 256 KiB writes).
//   - CNI ADD and DEL latency (p50, p99, max): the node's own vcs-cni, run the
//     way containerd runs it (CNI_* environment, the node's conflist entry on
//     stdin) against a throw-away network namespace, netCNIRuns times in a row
//     on one node; each ADD is followed later by its DEL.
func TestNetFigures(t *testing.T) {
	track(t)
	cs := clientset(t)
	nodes := netWaitNodes(t, cs)
	probe := netBuildProbe(t)
	nsName := netNamespace(t, cs)
	src, dst := podNode, resetNode
	dstIP := netNodeIP(nodes[dst])

	pods := netStartPods(t, cs, nsName, netPod("bench-src", src, nil), netPod("bench-dst", dst, nil))
	dstPodIP := pods["bench-dst"].Status.PodIP
	for _, p := range pods {
		netCopyProbe(t, nsName, p.Name, probe)
	}
	for _, n := range []string{src, dst} {
		netCopyProbeToNode(t, n, probe)
	}
	const goPort, bbPort = 5201, 5101
	bbSink := fmt.Sprintf("nc -ll -p %d -e sh -c 'cat >/dev/null'", bbPort)
	netMustExec(t, nsName, "bench-dst", fmt.Sprintf("%s tcp-sink %d >/dev/null 2>&1 </dev/null & %s >/dev/null 2>&1 </dev/null &", netProbe, goPort, bbSink))
	units := map[string][]string{
		"e2e-net-sink-go": {netProbe, "tcp-sink", strconv.Itoa(goPort)},
		"e2e-net-sink-bb": {netBusybox, "nc", "-ll", "-p", strconv.Itoa(bbPort), "-e", netBusybox, "sh", "-c", netBusybox + " cat >/dev/null"},
	}
	for u, cmd := range units {
		if r := inNode(t, dst, append([]string{"systemd-run", "--quiet", "--collect", "--unit", u}, cmd...)...); r.code != 0 {
			t.Fatalf("%s: start %s: %s", dst, u, r)
		}
		t.Cleanup(func() { inNode(t, dst, "systemctl", "stop", u) })
	}

	const (
		netRounds = 3
		bbMiB     = 128
		goBytes   = 1 << 30
	)
	// Each measure returns MB/s (10^6 bytes per second).
	bbScript := func(bb, ip string) string {
		return fmt.Sprintf("%[1]s time -f %%e sh -c '%[1]s dd if=/dev/zero bs=1M count=%[2]d 2>/dev/null | %[1]s nc %[3]s %[4]d'", bb, bbMiB, ip, bbPort)
	}
	bbRate := func(r result) (float64, error) {
		if r.code != 0 {
			return 0, fmt.Errorf("%s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		secs, err := strconv.ParseFloat(strings.TrimSpace(lines[len(lines)-1]), 64)
		if err != nil || secs <= 0 {
			return 0, fmt.Errorf("no time in %s", r)
		}
		return bbMiB * (1 << 20) / secs / 1e6, nil
	}
	goRate := func(r result) (float64, error) {
		f := strings.Fields(r.stdout)
		if r.code != 0 || len(f) != 2 {
			return 0, fmt.Errorf("%s", r)
		}
		n, err1 := strconv.ParseFloat(f[0], 64)
		secs, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || secs <= 0 {
			return 0, fmt.Errorf("bad netprobe output %s", r)
		}
		return n / secs / 1e6, nil
	}
	type measure struct {
		name string
		run  func() (float64, error)
	}
	measures := []measure{
		{"node->node busybox", func() (float64, error) {
			return bbRate(inNode(t, src, "sh", "-c", bbScript(netBusybox, dstIP)))
		}},
		{"pod->pod busybox", func() (float64, error) {
			return bbRate(netExec(t, nsName, "bench-src", bbScript("", dstPodIP)))
		}},
		{"node->node netprobe", func() (float64, error) {
			return goRate(inNode(t, src, netProbe, "tcp-send", fmt.Sprintf("%s:%d", dstIP, goPort), strconv.Itoa(goBytes)))
		}},
		{"pod->pod netprobe", func() (float64, error) {
			return goRate(netExec(t, nsName, "bench-src", fmt.Sprintf("%s tcp-send %s:%d %d", netProbe, dstPodIP, goPort, goBytes)))
		}},
	}
	rates := map[string][]float64{}
	for i := 0; i < netRounds; i++ {
		for _, m := range measures {
			v, err := m.run()
			if err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			rates[m.name] = append(rates[m.name], v)
		}
	}
	med := map[string]float64{}
	for name, vs := range rates {
		med[name] = netMedian(vs)
		t.Logf("%-20s MB/s per round: %s", name, netFmtFloats(vs))
	}
	for _, tool := range []string{"busybox", "netprobe"} {
		node, pod := med["node->node "+tool], med["pod->pod "+tool]
		netFigure(t, "tcp-throughput-"+tool, "pod->pod %.0f MB/s, node->node %.0f MB/s, ratio %.2f (%s -> %s, median of %d)", pod, node, pod/node, src, dst, netRounds)
	}

	t.Run("CNIAddLatency", func(t *testing.T) { netCNILatency(t, src) })
}

const netCNIRuns = 100

// netCNILatency times the node's CNI plugin: netCNIRuns ADDs into fresh
// network namespaces, then their DELs, as containerd runs it.
func netCNILatency(t *testing.T, node string) {
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	raw := mustInNode(t, node, "cat", "/var/lib/node-agent/cni/net.d/10-vcs.conflist")
	if err := json.Unmarshal([]byte(raw), &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("%s: conflist: %v\n%s", node, err, raw)
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"] = list.CNIVersion, list.Name
	confJSON, _ := json.Marshal(conf)
	plugin := "/var/lib/node-agent/bin/" + fmt.Sprint(conf["type"])
	env := func(cmd string) string {
		return fmt.Sprintf(`CNI_COMMAND=%s CNI_CONTAINERID=$(printf 'e2ecni%%058d' $i) CNI_NETNS=/run/netns/e2e-cni-$i CNI_IFNAME=eth0 CNI_PATH=/var/lib/node-agent/bin CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=e2e-cni-$i"`, cmd)
	}
	cleanup := fmt.Sprintf(`for i in $(seq 1 %d); do
	[ -e /run/netns/e2e-cni-$i ] || continue
	printf '%%s' '%s' | %s %s >/dev/null 2>&1
	ip netns delete e2e-cni-$i
done`, netCNIRuns, confJSON, env("DEL"), plugin)
	t.Cleanup(func() { inNode(t, node, "sh", "-c", cleanup) })
	script := fmt.Sprintf(`set -e
conf='%[1]s'
for i in $(seq 1 %[2]d); do
	ip netns add e2e-cni-$i
	s=$(date +%%s%%N)
	printf '%%s' "$conf" | %[3]s %[5]s >/tmp/e2e-cni.out
	e=$(date +%%s%%N)
	echo add $(( (e - s) / 1000 ))
done
for i in $(seq 1 %[2]d); do
	s=$(date +%%s%%N)
	printf '%%s' "$conf" | CNI_COMMAND=VERSION %[5]s >/tmp/e2e-cni.out
	e=$(date +%%s%%N)
	echo version $(( (e - s) / 1000 ))
done
for i in $(seq 1 %[2]d); do
	s=$(date +%%s%%N)
	printf '%%s' "$conf" | %[4]s %[5]s >/tmp/e2e-cni.out
	e=$(date +%%s%%N)
	echo del $(( (e - s) / 1000 ))
	ip netns delete e2e-cni-$i
done
rm -f /tmp/e2e-cni.out`, confJSON, netCNIRuns, env("ADD"), env("DEL"), plugin)
	r := inNode(t, node, "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("%s: CNI timing: %s\n(last result: %s)", node, r, inNode(t, node, "cat", "/tmp/e2e-cni.out").stdout)
	}
	us := map[string][]float64{}
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			us[f[0]] = append(us[f[0]], v/1000)
		}
	}
	// VERSION does no work: the cost of starting the plugin binary.
	for _, op := range []string{"add", "del", "version"} {
		ms := us[op]
		if len(ms) != netCNIRuns {
			t.Fatalf("%s: %d %s timings, want %d:\n%s", node, len(ms), op, netCNIRuns, clip(r.stdout))
		}
		sort.Float64s(ms)
		target := ""
		if op == "version" {
			target = "; target p50 <= 5 ms"
		}
		netFigure(t, "cni-"+op+"-latency", "p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d runs of %s on %s, throw-away netns, sequential%s)",
			netPercentile(ms, 50), netPercentile(ms, 99), ms[len(ms)-1], netCNIRuns, plugin, node, target)
	}
}

// percentile of sorted values, nearest rank.
func netPercentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func netMedian(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	return netPercentile(s, 50)
}

func netFmtFloats(vs []float64) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strings.Join(parts, " ")
}
