//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/netpol"
)

// The node runtime as a user sees it, on the nodes TestOneLineJoin joined
// (and lab-cp, a node too with joinNode): Nodes Ready, pods of an imported
// image reachable with kubectl logs/exec/port-forward/cp, nothing pulled,
// node-agent surviving kill -9 and an unreachable control plane without
// touching its pods, bad archives refused in one line, `node-agent reset`
// leaving the node as it was before the join, and a join again after it.

// TestNodesReady: every node (the control-plane host included) is Ready and
// CoreDNS, the cluster's own addon from the embedded image, is available.
func TestNodesReady(t *testing.T) {
	track(t)
	cs := clientset(t)
	startPullWatch(t, cs)
	for _, n := range allNodes {
		took := waitNodeReady(t, cs, n, time.Time{}, 60*time.Second)
		t.Logf("%s: Ready (waited %s)", n, took.Round(10*time.Millisecond))
		if got := mustInNode(t, n, "systemctl", "is-active", nodeAgentUnit); got != "active" {
			t.Errorf("%s: %s is %q", n, nodeAgentUnit, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if v := node.Status.NodeInfo.KubeletVersion; v != "v1.36.3" {
			t.Errorf("%s: kubelet version %q, want v1.36.3", n, v)
		}
		if rt := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(rt, "containerd://") {
			t.Errorf("%s: container runtime %q, want containerd", n, rt)
		}
	}
	var dep *appsv1.Deployment
	took := poll(t, 90*time.Second, 250*time.Millisecond, "Deployment kube-system/coredns available", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		dep = d
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if want > 0 && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == want && d.Status.UpdatedReplicas == want {
			return true, ""
		}
		return false, fmt.Sprintf("%d/%d available, %d updated", d.Status.AvailableReplicas, want, d.Status.UpdatedReplicas)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sel := metav1.FormatLabelSelector(dep.Spec.Selector)
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && podCondition(&p, corev1.ContainersReady) {
			running++
			t.Logf("CoreDNS pod %s Running on %s", p.Name, p.Spec.NodeName)
		}
	}
	if running != int(*dep.Spec.Replicas) {
		t.Errorf("%d CoreDNS pods Running and ready (%s), want %d", running, sel, *dep.Spec.Replicas)
	}
	t.Logf("CoreDNS available (waited %s)", took.Round(10*time.Millisecond))
}

// TestPodOnPrivateNode: the busybox archive imported with `node-agent images
// import` on every node runs as a pod pinned to a private node, and kubectl
// logs, exec, port-forward and cp (both ways) work on it from the host.
func TestPodOnPrivateNode(t *testing.T) {
	track(t)
	cs := clientset(t)
	importBusybox(t, allNodes...)
	ns := testNamespace(t, cs, "e2e-pod")

	overrides := fmt.Sprintf(`{"apiVersion":"v1","spec":{"nodeSelector":{"kubernetes.io/hostname":%q},"terminationGracePeriodSeconds":0}}`, podNode)
	mustKubectl(t, "run", "web", "-n", ns, "--image", busyboxImage, "--image-pull-policy", "IfNotPresent",
		"--restart", "Never", "--overrides", overrides, "--command", "--",
		"sh", "-c", `echo "hello from $(hostname)"; mkdir -p /www && echo served-by-busybox >/www/index.html && exec httpd -f -v -p 8080 -h /www`)
	p := waitPodRunning(t, cs, ns, "web", 90*time.Second)
	if p.Spec.NodeName != podNode {
		t.Fatalf("pod runs on %q, want %s", p.Spec.NodeName, podNode)
	}
	if p.Status.PodIP == "" || p.Status.PodIP == p.Status.HostIP {
		t.Errorf("pod IP %q (host %q): want an address of the pod network", p.Status.PodIP, p.Status.HostIP)
	}

	t.Run("logs", func(t *testing.T) {
		poll(t, 30*time.Second, 200*time.Millisecond, "kubectl logs", func() (bool, string) {
			r := kubectl(t, "logs", "-n", ns, "web")
			return r.code == 0 && strings.Contains(r.stdout, "hello from web"), r.String()
		})
	})

	t.Run("exec", func(t *testing.T) {
		out := mustKubectl(t, "exec", "-n", ns, "web", "--", "sh", "-c", "echo $((6*7)); id -u; hostname")
		if out != "42\n0\nweb" {
			t.Errorf("kubectl exec printed %q, want 42, 0, web", out)
		}
		r := kubectl(t, "exec", "-n", ns, "web", "--", "sh", "-c", "exit 3")
		if r.code != 3 {
			t.Errorf("kubectl exec of `exit 3`: %s; want exit code 3", r)
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		body := portForwardGet(t, ns, "web", 8080, "/index.html")
		if body != "served-by-busybox\n" {
			t.Errorf("GET through kubectl port-forward: %q, want the pod's index.html", body)
		}
	})

	// The API server verifies every kubelet with the kubelet-serving CA: the
	// node metrics of each node, control plane's included, come through.
	t.Run("node metrics", func(t *testing.T) {
		for _, n := range allNodes {
			r := kubectl(t, "get", "--raw", "/api/v1/nodes/"+n+"/proxy/metrics")
			if r.code != 0 || !strings.Contains(r.stdout, "kubelet_") {
				t.Errorf("%s: node metrics through the API server: %s", n, r)
			}
		}
	})

	t.Run("cp", func(t *testing.T) {
		dir := t.TempDir()
		data := make([]byte, 256<<10)
		rand.Read(data)
		sum := sha256.Sum256(data)
		in := filepath.Join(dir, "in.bin")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mustKubectl(t, "cp", in, ns+"/web:/tmp/in.bin")
		got := mustKubectl(t, "exec", "-n", ns, "web", "--", "sha256sum", "/tmp/in.bin")
		if f := strings.Fields(got); len(f) == 0 || f[0] != hex.EncodeToString(sum[:]) {
			t.Errorf("host -> pod: sha256 in the pod %q, want %x", got, sum)
		}
		// A file made in the pod, and the uploaded one, back to the host.
		mustKubectl(t, "exec", "-n", ns, "web", "--", "sh", "-c", "seq 1 5000 >/tmp/made-in-pod.txt")
		out := filepath.Join(dir, "made-in-pod.txt")
		mustKubectl(t, "cp", ns+"/web:/tmp/made-in-pod.txt", out)
		var want bytes.Buffer
		for i := 1; i <= 5000; i++ {
			fmt.Fprintln(&want, i)
		}
		if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, want.Bytes()) {
			t.Errorf("pod -> host: %d bytes (%v), want `seq 1 5000`", len(b), err)
		}
		back := filepath.Join(dir, "back.bin")
		mustKubectl(t, "cp", ns+"/web:/tmp/in.bin", back)
		if b, err := os.ReadFile(back); err != nil || !bytes.Equal(b, data) {
			t.Errorf("pod -> host: the uploaded file came back as %d bytes (%v), want the same %d bytes", len(b), err, len(data))
		}
	})
}

// importBusybox runs `node-agent images import` of the busybox archive on
// every node given, at once.
func importBusybox(t *testing.T, nodes ...string) {
	t.Helper()
	var wg sync.WaitGroup
	outs := make([]result, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = inNode(t, n, "node-agent", "images", "import", busyboxArchive)
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if outs[i].code != 0 || !strings.HasPrefix(outs[i].stdout, "imported "+busyboxImage+" (sha256:") {
			t.Fatalf("%s: node-agent images import %s: %s", n, busyboxArchive, outs[i])
		}
	}
}

// portForwardGet runs `kubectl port-forward` to the pod's port on a free
// local port and GETs path through it.
func portForwardGet(t *testing.T, ns, pod string, port int, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hostBin, "kubectl", "--kubeconfig", kubeconfig, "-n", ns,
		"port-forward", "pod/"+pod, fmt.Sprintf(":%d", port), "--address", "127.0.0.1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // the kubectl this test started
		cmd.Wait()
	}()
	re := regexp.MustCompile(fmt.Sprintf(`Forwarding from 127\.0\.0\.1:(\d+) -> %d`, port))
	local := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				local <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var lport string
	select {
	case lport = <-local:
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward printed no local port within 30s; stderr: %s", stderr.String())
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + lport + path)
	if err != nil {
		t.Fatalf("GET through port-forward: %v; kubectl stderr: %s", err, stderr.String())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET through port-forward: %s", resp.Status)
	}
	return string(body)
}

// TestNodeAgentKill9KeepsPods: kill -9 of node-agent's main process on a
// private node; systemd starts it again, the Node is Ready again from the new
// kubelet, and the pod that ran there is the same container, never restarted.
func TestNodeAgentKill9KeepsPods(t *testing.T) {
	track(t)
	cs := clientset(t)
	const marker = "sleep 86401"
	ns, cid, restarts, proc := startSleeper(t, cs, "e2e-kill9", marker)
	pid := agentPID(t, podNode)
	nrestarts := agentProp(t, podNode, "NRestarts")

	killed := time.Now()
	mustInNode(t, podNode, "kill", "-9", pid)
	var newPID string
	took := poll(t, 90*time.Second, 200*time.Millisecond, "node-agent started again and active", func() (bool, string) {
		newPID = agentPID(t, podNode)
		state := inNode(t, podNode, "systemctl", "is-active", nodeAgentUnit).stdout
		return newPID != pid && newPID != "0" && state == "active", fmt.Sprintf("MainPID %s (was %s), %s", newPID, pid, state)
	})
	t.Logf("kill -9 of node-agent %s -> %s active (READY=1) in %s", pid, newPID, took.Round(10*time.Millisecond))
	if got := agentProp(t, podNode, "NRestarts"); got == nrestarts {
		t.Errorf("NRestarts still %s: systemd did not restart node-agent", got)
	}
	waitNodeReady(t, cs, podNode, killed, 60*time.Second)

	// One containerd, the new node-agent's child: the old one did not outlive its parent.
	ps := mustInNode(t, podNode, "ps", "-eo", "pid=,ppid=,args=")
	var containerds []string
	for _, l := range strings.Split(ps, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[2] == "/var/lib/node-agent/bin/containerd" && f[3] == "--config" {
			containerds = append(containerds, l)
		}
	}
	if len(containerds) != 1 || strings.Fields(containerds[0])[1] != newPID {
		t.Errorf("want one containerd (/var/lib/node-agent/bin/containerd), child of %s; have:\n%s", newPID, strings.Join(containerds, "\n"))
	}

	// The new kubelet and containerd know the container: exec reaches it
	// (once the kubelet has read its pods from the API server, shortly after
	// the Node is Ready).
	execTook := poll(t, 30*time.Second, 200*time.Millisecond, "kubectl exec after the restart", func() (bool, string) {
		r := kubectl(t, "exec", "-n", ns, "sleeper", "--", "echo", "still-here")
		return r.code == 0 && r.stdout == "still-here", r.String()
	})
	t.Logf("kubectl exec works %s after the Node is Ready again", execTook.Round(10*time.Millisecond))
	podUndisturbed(t, cs, ns, podNode, "after kill -9 of node-agent", cid, restarts, marker, proc)
}

// TestBadImageArchives: `node-agent images import` of a corrupt archive, of a
// truncated one, and of archives whose image has no name each fail with one
// clear line; nothing is imported and the node runs on untouched.
//
// "No image reference" means: the image has neither an
// io.containerd.image.name annotation, nor an org.opencontainers.image.ref.name
// that is a full reference (a bare tag such as "e2e" names no repository),
// nor docker RepoTags. Such an image could never be referred to by a pod, so
// the import is refused rather than leaving unnamed content in the store.
func TestBadImageArchives(t *testing.T) {
	track(t)
	cs := clientset(t)
	node := podNode
	importBusybox(t, node)
	before := listImages(t, node)
	pid := agentPID(t, node)
	nrestarts := agentProp(t, node, "NRestarts")
	good := hostBusyboxArchive(t)
	t.Cleanup(func() { inNode(t, node, "sh", "-c", "rm -f /tmp/e2e-*.tar") })

	put := func(name string, data []byte) string {
		path := "/tmp/e2e-" + name + ".tar"
		if r := inNodeStdin(t, node, bytes.NewReader(data), "sh", "-c", "cat >"+path); r.code != 0 {
			t.Fatalf("write %s in %s: %s", path, node, r)
		}
		return path
	}
	garbage := make([]byte, 300<<10)
	rand.Read(garbage)
	noName := ociArchive(t, good, nil)
	bareTag := ociArchive(t, good, map[string]string{"org.opencontainers.image.ref.name": "e2e"})

	cases := []struct {
		name, file string
		stdin      []byte
		want       []string
	}{
		{"random bytes", put("garbage", garbage), nil,
			[]string{"failed to import /tmp/e2e-garbage.tar", "not an OCI or Docker image archive"}},
		{"truncated archive on stdin", "-", good[:len(good)/2],
			[]string{"failed to import standard input"}},
		{"empty file", put("empty", nil), nil,
			[]string{"failed to import /tmp/e2e-empty.tar"}},
		{"OCI index without annotations", put("noname", noName), nil,
			[]string{"failed to import /tmp/e2e-noname.tar", "the archive names no image"}},
		{"OCI index with a bare tag only", put("baretag", bareTag), nil,
			[]string{"failed to import /tmp/e2e-baretag.tar", "the archive names no image"}},
		{"no such file", "/tmp/e2e-missing.tar", nil,
			[]string{"failed to import /tmp/e2e-missing.tar", "no such file or directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := inNodeStdin(t, node, bytes.NewReader(c.stdin), "node-agent", "images", "import", c.file)
			oneLineError(t, c.name, r, c.want[0])
			for _, w := range c.want[1:] {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%s: %q does not say %q", c.name, r.stderr, w)
				}
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("%s: a Go stack trace: %s", c.name, r.stderr)
			}
			if after := listImages(t, node); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("%s: the image store changed:\n%v\n->\n%v", c.name, before, after)
			}
		})
	}
	if got := agentPID(t, node); got != pid {
		t.Errorf("node-agent's MainPID %s -> %s during bad imports", pid, got)
	}
	if got := agentProp(t, node, "NRestarts"); got != nrestarts {
		t.Errorf("node-agent restarted during bad imports (NRestarts %s -> %s)", nrestarts, got)
	}
	if ok, why, _ := nodeReady(cs, node); !ok {
		t.Errorf("%s after bad imports: %s", node, why)
	}
}

// TestControlPlaneUnreachableAtRun: node-agent restarted while the control
// plane is down says so in one line, starts containerd and the kubelet from
// the settings it cached, and leaves its pods running; once the control plane
// is back the Node is Ready and the pod is still the same container.
func TestControlPlaneUnreachableAtRun(t *testing.T) {
	track(t)
	cs := clientset(t)
	node := podNode
	importBusybox(t, node)
	ns := testNamespace(t, cs, "e2e-cpdown")
	const marker = "sleep 86402"
	p := startPod(t, cs, ns, busyboxPod("sleeper", node, strings.Fields(marker)...), 90*time.Second)
	cid, restarts := containerOf(p)
	proc := pidOf(t, node, marker)
	if proc == "" {
		t.Fatalf("no process %q in %s", marker, node)
	}
	server := strings.TrimSpace(mustInNode(t, node, "sh", "-c", "sed -n 's/^server: *//p' /etc/node-agent/config.yaml"))

	t.Cleanup(func() {
		// Whatever happened, the control plane runs again for the tests after this one.
		inNode(t, cpNode, "systemctl", "start", service)
		waitReady(t, 3*time.Minute)
	})
	t0 := time.Now()
	mustInNode(t, cpNode, "systemctl", "stop", service)
	down := time.Now()
	t.Logf("systemctl stop %s took %s", service, down.Sub(t0).Round(100*time.Millisecond))
	oldPID := agentPID(t, node)
	// --no-block: Type=notify, and READY=1 waits for a Ready Node, which needs the control plane.
	mustInNode(t, node, "systemctl", "restart", "--no-block", nodeAgentUnit)
	var pid, inv string
	poll(t, 60*time.Second, 200*time.Millisecond, "node-agent started again", func() (bool, string) {
		pid = agentPID(t, node)
		inv = agentProp(t, node, "InvocationID")
		return pid != oldPID && pid != "0", "MainPID " + pid
	})
	nrestarts := agentProp(t, node, "NRestarts")

	// The kubelet runs (its local healthz answers) with containerd, from the
	// cached settings, while the control plane is still down.
	poll(t, 90*time.Second, 250*time.Millisecond, "kubelet healthz on "+node, func() (bool, string) {
		r := inNode(t, node, "curl", "-fsS", "--max-time", "2", "http://127.0.0.1:10248/healthz")
		return r.code == 0 && r.stdout == "ok", r.String()
	})
	if r := inNode(t, node, "node-agent", "images", "list"); r.code != 0 {
		t.Errorf("containerd is not serving with the control plane down: %s", r)
	}
	if got := pidOf(t, node, marker); got != proc {
		t.Errorf("the pod's process was %s, is %q with the control plane down", proc, got)
	}
	if got := agentPID(t, node); got != pid {
		t.Errorf("node-agent's MainPID %s -> %s while the control plane is down: it exited", pid, got)
	}
	if got := agentProp(t, node, "NRestarts"); got != nrestarts {
		t.Errorf("node-agent restarted while the control plane is down (NRestarts %s -> %s)", nrestarts, got)
	}
	journal := mustInNode(t, node, "journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_INVOCATION_ID="+inv)
	var lines []string
	for _, l := range strings.Split(journal, "\n") {
		if strings.Contains(l, "control plane unreachable") {
			lines = append(lines, l)
		}
		if strings.HasPrefix(l, "goroutine ") || strings.HasPrefix(l, "panic:") {
			t.Errorf("node-agent logged a Go stack trace: %q", l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("want one line saying the control plane is unreachable, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	} else if !strings.Contains(lines[0], server) || !strings.Contains(lines[0], "cached") {
		t.Errorf("the line %q names neither the server %s nor the cached settings", lines[0], server)
	} else {
		t.Logf("node-agent said: %s", lines[0])
	}

	up := time.Now()
	t.Logf("control plane down for %s; starting it", up.Sub(down).Round(100*time.Millisecond))
	mustInNode(t, cpNode, "systemctl", "start", service)
	waitReady(t, 3*time.Minute)
	t.Logf("control plane ready again in %s", time.Since(up).Round(100*time.Millisecond))
	took := waitNodeReady(t, cs, node, up, 90*time.Second)
	poll(t, 60*time.Second, 200*time.Millisecond, "node-agent active", func() (bool, string) {
		s := inNode(t, node, "systemctl", "is-active", nodeAgentUnit).stdout
		return s == "active", s
	})
	t.Logf("control plane back -> %s Ready in %s", node, took.Round(10*time.Millisecond))
	if got := agentPID(t, node); got != pid {
		t.Errorf("node-agent's MainPID %s -> %s: it did not wait for the control plane", pid, got)
	}
	podUndisturbed(t, cs, ns, node, "after the outage", cid, restarts, marker, proc)
}

// podUndisturbed checks that pod "sleeper" still runs the same container
// (ID, restart count) and the same process (PID of the marker) as before.
func podUndisturbed(t *testing.T, cs *kubernetes.Clientset, ns, node, when, cid string, restarts int32, marker, proc string) {
	t.Helper()
	p := getPod(t, cs, ns, "sleeper")
	cid2, restarts2 := containerOf(p)
	if p.Status.Phase != corev1.PodRunning || cid2 != cid || restarts2 != restarts {
		t.Errorf("pod %s: %s, container %s restarts %d; want Running, %s, %d", when, podSummary(p), cid2, restarts2, cid, restarts)
	}
	if got := pidOf(t, node, marker); got != proc {
		t.Errorf("the pod's process was %s, is %q %s: the container was restarted", proc, got, when)
	}
}

// TestNodeResetLeavesNothing: `node-agent reset` on a node that ran pods
// leaves its mounts, links, routes, iptables rules, nftables tables, files under /var/lib,
// /etc, /run and /opt, processes and cgroups as they were before the join
// (what is not compared, and why: nodeStateIgnored); the same one-line join
// then makes it a Ready node again.
func TestNodeResetLeavesNothing(t *testing.T) {
	track(t)
	cs := clientset(t)
	node := resetNode
	if r := inNode(t, node, "node-agent", "reset", "--help"); r.code != 0 {
		t.Fatalf("node-agent has no reset command: %s", r)
	}
	before := pristine
	if before == nil {
		// The lab was joined before this suite ran (VCS_E2E_REUSE_LAB): reset
		// once to get a node without us, then join. Weaker than the pristine
		// state TestOneLineJoin records: what the first reset leaves is missed.
		t.Log("no state from before the join: resetting once and joining again to get one")
		reset(t, node)
		before = takeNodeState(t, node)
		rejoin(t, cs, node)
	}
	if ok, why, _ := nodeReady(cs, node); !ok {
		t.Fatalf("%s is not a Ready node before reset: %s", node, why)
	}

	// Something to clean up: a pod with volumes (emptyDir, ConfigMap, the
	// service-account token) and a Service, so the node has mounts, a veth,
	// a network namespace and kube-proxy rules.
	importBusybox(t, node)
	ns := testNamespace(t, cs, "e2e-reset")
	cmName := "e2e-reset"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cmName}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := busyboxPod("web", node, "httpd", "-f", "-p", "8080", "-h", "/tmp")
	pod.Labels = map[string]string{"app": "e2e-reset"}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cmName}}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}, {Name: "cm", MountPath: "/cm"}}
	// And storage of the node's pool: a filesystem PVC, a block PVC (a loop
	// device of ours and one of the kubelet's) and a CSI inline volume.
	block := corev1.PersistentVolumeBlock
	for _, c := range []struct {
		name string
		mode *corev1.PersistentVolumeMode
	}{{"e2e-reset-fs", nil}, {"e2e-reset-block", &block}} {
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: c.name}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, VolumeMode: c.mode,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: c.name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.name}}})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "inline", VolumeSource: corev1.VolumeSource{
		CSI: &corev1.CSIVolumeSource{Driver: "csi.vcluster-standalone.io", VolumeAttributes: map[string]string{"size": "16Mi"}}}})
	pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts,
		corev1.VolumeMount{Name: "e2e-reset-fs", MountPath: "/pv"}, corev1.VolumeMount{Name: "inline", MountPath: "/inline"})
	pod.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "e2e-reset-block", DevicePath: "/dev/pvblock"}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: pod.Labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startPod(t, cs, ns, pod, 90*time.Second)

	// Enforcement is on by default: node-agent's NetworkPolicy table is there
	// to be removed.
	if tables := npTables(t, node); !slices.Contains(tables, "inet "+netpol.TableName) {
		t.Errorf("%s: no nftables table inet %s before reset (tables: %v)", node, netpol.TableName, tables)
	}
	t0 := time.Now()
	out := reset(t, node)
	t.Logf("node-agent reset in %s:\n%s", time.Since(t0).Round(10*time.Millisecond), out)
	after := takeNodeState(t, node)
	diff, ignored := diffNodeState(before, after)
	if len(ignored) > 0 {
		t.Logf("%d differences not counted (see nodeStateIgnored), e.g.:\n%s", len(ignored), strings.Join(sample(ignored), "\n"))
	}
	if len(diff) > 0 {
		t.Errorf("after reset %s differs from before the join (+ left behind, - removed):\n%s", node, strings.Join(diff, "\n"))
	}
	if r := inNode(t, node, "systemctl", "is-active", nodeAgentUnit); r.stdout == "active" || r.stdout == "activating" {
		t.Errorf("%s is %s after reset", nodeAgentUnit, r.stdout)
	}

	took := rejoin(t, cs, node)
	t.Logf("%s: one-line join after reset -> Ready in %s", node, took.Round(10*time.Millisecond))
	// A node that is Ready runs pods too.
	importBusybox(t, node)
	startPod(t, cs, ns, busyboxPod("after-rejoin", node, "sleep", "3600"), 60*time.Second)
}

// sample keeps the first of every kind of ignored difference, by reason.
func sample(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		why := l[strings.LastIndex(l, "("):]
		if !seen[why] {
			seen[why] = true
			out = append(out, l)
		}
	}
	return out
}

// reset runs `node-agent reset` on node as a script would (never interactive).
func reset(t *testing.T, node string) string {
	t.Helper()
	args := []string{"node-agent", "reset"}
	if strings.Contains(inNode(t, node, "node-agent", "reset", "--help").stdout, "--force") {
		args = append(args, "--force")
	}
	r := inNodeStdin(t, node, strings.NewReader(""), args...)
	if r.code != 0 {
		t.Fatalf("%s: %s: %s", node, strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout + "\n" + r.stderr)
}

// rejoin deletes the reset node's Node, as reset says to, pastes a fresh
// one-line join on node and waits for its Node to be Ready from the new
// kubelet; it returns the time from the line to Ready.
func rejoin(t *testing.T, cs kubernetes.Interface, node string) time.Duration {
	t.Helper()
	mustKubectl(t, "delete", "node", node, "--wait=true")
	line := joinLine(t)
	start := time.Now()
	if r := runLine(t, node, line); r.code != 0 {
		t.Fatalf("%s: the one-line join after reset: %s", node, r)
	}
	waitNodeReady(t, cs, node, start, 90*time.Second)
	return time.Since(start)
}

// TestNothingPulled: no node pulled an image during the suite (no Pulling
// events, seen by a watch that starts in TestOneLineJoin and among the events
// still stored), and every image in each node's containerd is a pinned system
// image or the imported busybox.
func TestNothingPulled(t *testing.T) {
	track(t)
	cs := clientset(t)
	startPullWatch(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pulled := 0
	for i := range events.Items {
		e := &events.Items[i]
		if bad := pullEvent(e); bad != "" {
			t.Errorf("stored event: %s", bad)
		}
		if e.Reason == "Pulled" {
			pulled++
		}
	}
	for _, bad := range pullWatch.seen() {
		t.Errorf("event seen during the suite: %s", bad)
	}
	t.Logf("%d events stored (%d say the image was already present), %d watched since the join", len(events.Items), pulled, pullWatch.count())

	for _, n := range allNodes {
		system := systemImages(t, n)
		imgs := listImages(t, n)
		have := map[string]bool{}
		for _, img := range imgs {
			have[img.name] = true
			switch {
			case system[img.name]:
				if img.pinned != "yes" {
					t.Errorf("%s: system image %s is not pinned", n, img.name)
				}
			case img.name == busyboxImage:
			default:
				t.Errorf("%s: image %s (%s) is neither a system image nor the imported busybox", n, img.name, img.digest)
			}
		}
		for s := range system {
			if !have[s] {
				t.Errorf("%s: system image %s missing from containerd", n, s)
			}
		}
		t.Logf("%s: %d images: %v", n, len(imgs), imgs)
	}
}

// pullEvent describes e if it says a node pulled, or tried to pull, an image.
func pullEvent(e *corev1.Event) string {
	msg := strings.ToLower(e.Message)
	switch {
	case e.Reason == "Pulling", e.Reason == "ErrImageNeverPull",
		strings.Contains(msg, "pulling image"), strings.Contains(msg, "failed to pull"),
		e.Reason == "Pulled" && !strings.Contains(msg, "already present on machine"):
		return fmt.Sprintf("%s/%s %s on %s: %s %s", e.InvolvedObject.Namespace, e.InvolvedObject.Name, e.InvolvedObject.Kind, e.Source.Host, e.Reason, e.Message)
	}
	return ""
}

// pullWatch records pull events of every namespace while the suite runs, so
// events of namespaces deleted by earlier tests are checked too.
var pullWatch eventWatch

type eventWatch struct {
	once sync.Once
	mu   sync.Mutex
	bad  []string
	n    int
}

func startPullWatch(t *testing.T, cs kubernetes.Interface) {
	pullWatch.once.Do(func() {
		ctx := context.Background()
		list, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		rv := list.ResourceVersion
		go func() {
			for {
				w, err := cs.CoreV1().Events("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
				if err != nil {
					time.Sleep(time.Second) // the control plane is down (TestControlPlaneUnreachableAtRun)
					continue
				}
				for ev := range w.ResultChan() {
					e, ok := ev.Object.(*corev1.Event)
					if !ok {
						continue
					}
					rv = e.ResourceVersion
					if ev.Type != watch.Added && ev.Type != watch.Modified {
						continue
					}
					pullWatch.mu.Lock()
					pullWatch.n++
					if bad := pullEvent(e); bad != "" {
						pullWatch.bad = append(pullWatch.bad, bad)
					}
					pullWatch.mu.Unlock()
				}
			}
		}()
	})
}

func (w *eventWatch) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bad...)
}

func (w *eventWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}
