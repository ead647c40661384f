//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Helpers of the node-runtime tests (node_test.go): kubectl from the host,
// Nodes and pods through client-go, and what a lab node holds before a join
// and after `node-agent reset`.

const (
	busyboxImage = "localhost/busybox:e2e"
	// make images builds it into bin/images, which every node sees here (LAB_BIN=bin).
	busyboxArchive = binDir + "/images/busybox.tar"
	nodeAgentUnit  = "node-agent.service"
)

var (
	// podNode runs the test pods; resetNode is reset and joined again.
	podNode   = joinNodes[0]
	resetNode = joinNodes[1]
	allNodes  = append([]string{cpNode}, joinNodes...)
	// pristine is resetNode as the lab booted it, recorded by TestOneLineJoin
	// just before the join (nil when the suite runs on a lab already joined).
	pristine *nodeState
)

// kubectl runs the host's `vcluster-standalone kubectl` against the lab.
func kubectl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return run(ctx, hostBin, append([]string{"kubectl", "--kubeconfig", kubeconfig, "--request-timeout", "30s"}, args...)...)
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	r := kubectl(t, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// inNodeStdin is inNode with stdin.
func inNodeStdin(t *testing.T, node string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, labTool, append([]string{"exec", node}, args...)...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return result{stdout: strings.TrimSpace(out.String()), stderr: strings.TrimSpace(errb.String()), code: code}
}

// poll calls cond every interval until it returns true or timeout passes;
// then it fails the test with what cond said last.
func poll(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		last = why
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s: %s", what, timeout, last)
		}
		time.Sleep(interval)
	}
}

// nodeReady says whether Node name is Ready, with the reason if it is not,
// and the last heartbeat of its Ready condition.
func nodeReady(cs kubernetes.Interface, name string) (bool, string, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error(), time.Time{}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message), c.LastHeartbeatTime.Time
		}
	}
	return false, "no Ready condition", time.Time{}
}

// waitNodeReady waits for Node name to be Ready with a Ready heartbeat not
// older than since (zero: any), i.e. a kubelet that runs now reported it.
func waitNodeReady(t *testing.T, cs kubernetes.Interface, name string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	// Heartbeats have a resolution of one second.
	since = since.Truncate(time.Second)
	return poll(t, timeout, 200*time.Millisecond, "Node "+name+" Ready", func() (bool, string) {
		ok, why, beat := nodeReady(cs, name)
		if ok && !beat.Before(since) {
			return true, ""
		}
		if ok {
			why += fmt.Sprintf(" (last heartbeat %s, before %s)", beat.Format(time.RFC3339), since.Format(time.RFC3339))
		}
		return false, why
	})
}

// testNamespace creates a namespace that is deleted when the test ends.
func testNamespace(t *testing.T, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		zero := int64(0)
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// startSleeper runs pod "sleeper" (command marker, e.g. "sleep 86401") on
// podNode in a new namespace and returns the namespace, its container ID and
// restart count, and the PID of its process in the node.
func startSleeper(t *testing.T, cs kubernetes.Interface, prefix, marker string) (ns, cid string, restarts int32, proc string) {
	t.Helper()
	importBusybox(t, podNode)
	ns = testNamespace(t, cs, prefix)
	p := startPod(t, cs, ns, busyboxPod("sleeper", podNode, strings.Fields(marker)...), 90*time.Second)
	cid, restarts = containerOf(p)
	proc = pidOf(t, podNode, marker)
	if cid == "" || proc == "" {
		t.Fatalf("pod container %q, its process %q in %s: want both", cid, proc, podNode)
	}
	return ns, cid, restarts, proc
}

// busyboxPod is a pod of the imported busybox image on node, never pulled.
func busyboxPod(name, node string, command ...string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node},
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: command,
			}},
		},
	}
}

// startPod creates pod in ns and waits until it runs with every container ready.
func startPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod, timeout time.Duration) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, pod.Name, err)
	}
	return waitPodRunning(t, cs, ns, pod.Name, timeout)
}

func waitPodRunning(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	poll(t, timeout, 200*time.Millisecond, "pod "+ns+"/"+name+" running", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got = p
		if p.Status.Phase == corev1.PodRunning && podCondition(p, corev1.ContainersReady) {
			return true, ""
		}
		return false, podSummary(p)
	})
	return got
}

func podCondition(p *corev1.Pod, c corev1.PodConditionType) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == c {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podSummary is what `kubectl describe` would show first about a pod.
func podSummary(p *corev1.Pod) string {
	s := fmt.Sprintf("phase %s on %q", p.Status.Phase, p.Spec.NodeName)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			s += fmt.Sprintf("; %s=%s %s %s", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			s += fmt.Sprintf("; container %s waiting: %s %s", c.Name, w.Reason, w.Message)
		}
		if x := c.State.Terminated; x != nil {
			s += fmt.Sprintf("; container %s terminated: %s exit %d", c.Name, x.Reason, x.ExitCode)
		}
	}
	return s
}

// containerOf is the container ID and restart count of a pod's only container.
func containerOf(p *corev1.Pod) (string, int32) {
	if len(p.Status.ContainerStatuses) != 1 {
		return "", -1
	}
	c := p.Status.ContainerStatuses[0]
	return c.ContainerID, c.RestartCount
}

func getPod(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", ns, name, err)
	}
	return p
}

// agentPID is node-agent.service's main PID in node ("0" when not running).
func agentPID(t *testing.T, node string) string {
	t.Helper()
	return mustInNode(t, node, "systemctl", "show", "-p", "MainPID", "--value", nodeAgentUnit)
}

// agentProp reads one property of node-agent.service.
func agentProp(t *testing.T, node, prop string) string {
	t.Helper()
	return mustInNode(t, node, "systemctl", "show", "-p", prop, "--value", nodeAgentUnit)
}

// pidOf finds the one process in node whose whole command line is cmdline.
// Finding by command line is only for reading; nothing is killed by name.
func pidOf(t *testing.T, node, cmdline string) string {
	t.Helper()
	r := inNode(t, node, "pgrep", "-xf", cmdline)
	if r.code != 0 || strings.Contains(r.stdout, "\n") {
		return ""
	}
	return r.stdout
}

// systemImages are the pinned images node-agent embeds, from `node-agent version`.
func systemImages(t *testing.T, node string) map[string]bool {
	t.Helper()
	out := mustInNode(t, node, "node-agent", "version")
	imgs := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == "image" && (f[0] == "pause" || f[0] == "coredns") {
			imgs[f[2]] = true
		}
	}
	if len(imgs) != 2 {
		t.Fatalf("%s: `node-agent version` names %d system images, want pause and coredns:\n%s", node, len(imgs), out)
	}
	return imgs
}

// nodeImage is one line of `node-agent images list`.
type nodeImage struct{ name, digest, pinned string }

func listImages(t *testing.T, node string) []nodeImage {
	t.Helper()
	out := mustInNode(t, node, "node-agent", "images", "list")
	var imgs []nodeImage
	for i, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if i == 0 {
			if len(f) == 0 || f[0] != "IMAGE" {
				t.Fatalf("%s: images list has no header:\n%s", node, out)
			}
			continue
		}
		if len(f) != 4 {
			t.Fatalf("%s: unexpected images list line %q", node, l)
		}
		imgs = append(imgs, nodeImage{name: f[0], digest: f[1], pinned: f[3]})
	}
	return imgs
}

// ociArchive rewrites the OCI archive data with the manifest annotations of
// its index replaced by annotations (nil: none): an archive whose image has
// no name.
func ociArchive(t *testing.T, data []byte, annotations map[string]string) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(data))
	tw := tar.NewWriter(&out)
	sawIndex := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			sawIndex = true
			var idx map[string]any
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatalf("index.json: %v", err)
			}
			for _, m := range idx["manifests"].([]any) {
				desc := m.(map[string]any)
				delete(desc, "annotations")
				if annotations != nil {
					desc["annotations"] = annotations
				}
			}
			if body, err = json.Marshal(idx); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if !sawIndex {
		t.Fatal("the busybox archive has no index.json: not an OCI layout")
	}
	return out.Bytes()
}

// hostBusyboxArchive is bin/images/busybox.tar as the host sees it.
func hostBusyboxArchive(t *testing.T) []byte {
	t.Helper()
	dir := os.Getenv("LAB_BIN")
	if dir == "" {
		dir = strings.TrimSuffix(labTool, "/test/vm/lab") + "/bin"
	}
	data, err := os.ReadFile(dir + "/images/busybox.tar")
	if err != nil {
		t.Fatalf("the busybox image archive (make images): %v", err)
	}
	return data
}

// ---- what a node holds ------------------------------------------------------

// nodeState is what a node has that joining and running could leave behind,
// one sorted list of lines per kind.
type nodeState map[string][]string

// nodeStateScript prints "KIND<TAB>LINE" for every kind (takeNodeState adds
// the node's nftables tables, "nft"). Processes and
// cgroups of `lab exec` itself (cgroup /exec inside the node) are left out.
const nodeStateScript = `
exec 2>/dev/null
awk '{for (i = 7; $i != "-"; i++); print "mount\t" $5 " " $(i+1) " " $(i+2)}' /proc/self/mountinfo
ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print "link\t" $2}'
ip -4 route show table all | sed 's/^/route\t/'
ip -6 route show table all | grep -v '^\(local\|multicast\) \|fe80::' | sed 's/^/route6\t/'
ip rule show | sed 's/^/rule\t/'
for s in iptables-legacy-save iptables-nft-save ip6tables-legacy-save ip6tables-nft-save; do
	command -v $s >/dev/null || continue
	$s | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]$/[-]/' | awk -v s=$s '/^\*/ {t = substr($0, 2)} {print s "\t" t " " $0}'
done
find /var/lib /etc /run /opt -path /run/lab -prune -o -printf 'file\t%y %m %p -> %l\n'
find /etc -type f -exec sha256sum {} + | sed 's/^/etc-content\t/'
for p in /proc/[0-9]*; do
	grep -q ':/exec$' $p/cgroup || { printf 'process\t'; cat $p/comm; }
done
find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d ! -path '*/exec' ! -path '*/exec/*' -printf 'cgroup\t%P\n'
for f in /sys/block/loop*/loop/backing_file; do [ -f "$f" ] && printf 'loop\t%s\n' "$(cat "$f")"; done
`

// nodeStateIgnored are lines that change on a lab node without anything of
// ours: each pattern with the reason it is not a leftover.
var nodeStateIgnored = []struct {
	re  *regexp.Regexp
	why string
}{
	// journald's volatile journal (Storage=volatile in the lab) rotates and
	// gets per-boot files as it likes.
	{regexp.MustCompile(`^file\t. \d+ /run/log/journal(/| )`), "volatile journal"},
	// systemd's runtime state: per-unit invocation links, transient and
	// generated units, user sessions, and sockets of short-lived services.
	// Which units are loaded is checked through the unit files in /etc.
	{regexp.MustCompile(`^file\t. \d+ /run/systemd/(units|propagate|journal/streams|transient|seats|sessions|users|inhibit|userdb|notify|netif|io\.system)(/| )`), "systemd runtime state"},
	{regexp.MustCompile(`^file\t. \d+ /run/user(/| )`), "user runtime dirs (logind)"},
	{regexp.MustCompile(`^file\t. \d+ /run/(utmp|lock/subsys)`), "login records"},
	// systemd's persistent state: random seed, timers' stamps, coredumps.
	{regexp.MustCompile(`^file\t. \d+ /var/lib/systemd/(random-seed|timers|coredump|linger)(/| )`), "systemd persistent state"},
	// The lab's ext4 disk for containerd (lost+found from mkfs); its mount
	// point is checked with the mounts.
	{regexp.MustCompile(`^file\t. \d+ /var/lib/node-agent/containerd/lost\+found(/| )`), "lab disk's lost+found"},
	// iptables' own lock file: made by the first iptables command of anyone,
	// and possibly held by another program; not ours to delete.
	{regexp.MustCompile(`^file\t. \d+ /run/xtables\.lock `), "iptables' lock file"},
	// A table with only its built-in chains at policy ACCEPT is the kernel's
	// default state once any program looked at it (nothing can unload it in
	// a network namespace); it holds no rule. Rules, chains of our own and
	// other policies are compared.
	{regexp.MustCompile(`^ip6?tables-(legacy|nft)-save\t\w+ (\*\w+|COMMIT|:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT \[-\])$`), "empty iptables tables"},
	// The nftables tables iptables-nft makes for kube-proxy's rules; those
	// rules are compared through iptables-nft-save above. Any other table
	// (node-agent's NetworkPolicy table) counts.
	{regexp.MustCompile(`^nft\tip6? (filter|nat|mangle|raw|security)$`), "iptables-nft's tables"},
	// Short-lived processes of systemd and the lab, and kernel threads named
	// per CPU or per work item.
	{regexp.MustCompile(`^process\t(systemd-userwor|systemd-userdbd|\(sd-.*\)|kworker/.*|systemd-hostnam|systemd-timedat|systemd-localed)$`), "short-lived systemd helpers"},
	// Cgroups of systemd units (node-agent.service's is checked through the
	// unit being gone) and of user sessions.
	{regexp.MustCompile(`^cgroup\t[^/]+/(system\.slice|user\.slice|init\.scope)/`), "systemd unit cgroups"},
}

// takeNodeState records node's state.
func takeNodeState(t *testing.T, node string) *nodeState {
	t.Helper()
	out := mustInNode(t, node, "sh", "-c", nodeStateScript)
	s := nodeState{}
	for _, l := range strings.Split(out, "\n") {
		kind, _, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		s[kind] = append(s[kind], l)
	}
	for _, l := range npTables(t, node) {
		s["nft"] = append(s["nft"], "nft\t"+l)
	}
	for k := range s {
		sort.Strings(s[k])
	}
	for _, k := range []string{"mount", "link", "route", "file", "process"} {
		if len(s[k]) == 0 {
			t.Fatalf("%s: recorded no %s lines; the state script is broken:\n%s", node, k, clip(out))
		}
	}
	return &s
}

// ignoredState says why line is not compared ("" when it is).
func ignoredState(line string) string {
	for _, i := range nodeStateIgnored {
		if i.re.MatchString(line) {
			return i.why
		}
	}
	return ""
}

// diffNodeState lists what after has that before has not ("+") and what
// before had that after has lost ("-"): the differences that count, and
// those nodeStateIgnored explains away (with the reason).
func diffNodeState(before, after *nodeState) (diff, ignored []string) {
	kinds := map[string]bool{}
	for k := range *before {
		kinds[k] = true
	}
	for k := range *after {
		kinds[k] = true
	}
	add := func(sign, l string) {
		if why := ignoredState(l); why != "" {
			ignored = append(ignored, sign+" "+l+"   ("+why+")")
		} else {
			diff = append(diff, sign+" "+l)
		}
	}
	for k := range kinds {
		for _, l := range added((*before)[k], (*after)[k]) {
			add("+", l)
		}
		for _, l := range added((*after)[k], (*before)[k]) {
			add("-", l)
		}
	}
	sort.Strings(diff)
	sort.Strings(ignored)
	return diff, ignored
}

// joinLine runs `token create` on the control plane and returns its one-line
// join and the token ID (deleted when the test ends).
func joinLine(t *testing.T) string {
	t.Helper()
	out := mustInNode(t, cpNode, "vcluster-standalone", "token", "create", "--ttl", "15m", "--description", "e2e "+t.Name())
	var line, id string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "curl ") {
			line = l
		}
		if strings.HasPrefix(l, "Token ") {
			id = strings.Fields(l)[1]
		}
	}
	if line == "" || id == "" {
		t.Fatalf("token create printed no one-line join:\n%s", out)
	}
	t.Cleanup(func() { inNode(t, cpNode, "vcluster-standalone", "token", "delete", id) })
	return line
}
